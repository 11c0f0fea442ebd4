"""FPS and kNN over many small padded groups, in plain torch.

A context-cluster block proposes a handful of centres (4 to 49) inside each of
many small regions (tens to a few hundred points). Launching torch-cluster once
per region would cost more than the work, so these two ops run every region at
once on a padded ``[G, n, D]`` layout with a validity mask, looping only over
the few samples. They follow the same rules as :func:`pointcoc.ops.fps` and
:func:`pointcoc.ops.knn` (squared Euclidean distance, start at the first valid
point, ties to the lowest index), which the tests check.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["fps_padded", "knn_padded"]


def _full_mask(pos: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return torch.ones(pos.shape[:2], dtype=torch.bool, device=pos.device)
    if mask.shape != pos.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(f"`mask` must be a bool tensor of shape {tuple(pos.shape[:2])}, got {tuple(mask.shape)} "
                         f"{mask.dtype}")
    return mask


def fps_padded(pos: Tensor, num_samples: int, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Farthest point sampling in every padded group at once.

    Args:
        pos: ``[G, n, D]`` positions of ``G`` groups padded to ``n`` points.
        num_samples: ``M`` samples per group.
        mask: ``[G, n]`` bool, which entries are real points (default: all).

    Returns:
        ``idx [G, M]`` indices into ``n`` in sampling order, starting at each group's
        first valid point, and ``valid [G, M]`` bool: a group with ``m < M`` valid
        points has only its first ``m`` samples valid.
    """
    if pos.dim() != 3:
        raise ValueError(f"`pos` must be [G, n, D], got {tuple(pos.shape)}")
    if num_samples < 1:
        raise ValueError(f"`num_samples` must be >= 1, got {num_samples}")
    mask = _full_mask(pos, mask)
    G, n, D = pos.shape
    planes = pos.detach().permute(2, 0, 1).contiguous()  # [D, G, n]: one contiguous plane per coordinate
    dist = torch.full((G, n), float("inf"), dtype=pos.dtype, device=pos.device)
    dist = dist.masked_fill(~mask, -1.0)
    cur = mask.to(torch.uint8).argmax(dim=1)  # first valid point (0 for an empty group)
    idx = torch.empty(G, num_samples, dtype=torch.long, device=pos.device)
    groups = torch.arange(G, device=pos.device)
    for m in range(num_samples):
        idx[:, m] = cur
        picked = planes[:, groups, cur]  # [D, G]
        # squared distance summed coordinate by coordinate, in order (the same sums as .pow(2).sum(-1));
        # per-plane in-place ops run 4-7x faster than reductions over a trailing dimension of 3
        d = (planes[0] - picked[0, :, None]).square_()
        for k in range(1, D):
            d += (planes[k] - picked[k, :, None]).square_()
        torch.minimum(dist, d, out=dist)
        cur = dist.argmax(dim=1)
    valid = torch.arange(num_samples, device=pos.device) < mask.sum(1, keepdim=True)
    return idx, valid


def knn_padded(pos: Tensor, query: Tensor, k: int, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest valid points of each group to that group's queries.

    Args:
        pos: ``[G, n, D]`` padded positions.
        query: ``[G, M, D]`` query positions per group.
        k: neighbours per query (at most ``n``).
        mask: ``[G, n]`` bool, which entries of ``pos`` are real points.

    Returns:
        ``idx [G, M, k]`` indices into ``n``, nearest first (ties: lowest index), and
        ``valid [G, M, k]`` bool, False where the group has fewer than ``k`` points.
    """
    if pos.dim() != 3 or query.dim() != 3 or pos.shape[0] != query.shape[0] or pos.shape[2] != query.shape[2]:
        raise ValueError(f"expected pos [G, n, D] and query [G, M, D], got {tuple(pos.shape)} and {tuple(query.shape)}")
    if not 1 <= k <= pos.shape[1]:
        raise ValueError(f"`k`={k} must be in 1..{pos.shape[1]} (the padded group size)")
    mask = _full_mask(pos, mask)
    dist = (query.detach()[:, :, None, :] - pos.detach()[:, None, :, :]).pow(2).sum(-1)  # [G, M, n]
    dist = dist.masked_fill(~mask[:, None, :], float("inf"))
    order = dist.argsort(dim=-1, stable=True)[..., :k]
    valid = torch.isfinite(dist.gather(-1, order))
    return order, valid
