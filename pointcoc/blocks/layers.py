"""Small layers shared by the blocks: a per-sample norm and a per-sample drop path.

Both accept the three layouts the blocks use: image maps ``[B, H, W, C]``,
dense point sets ``[B, N, C]`` and flat PyG batches ``[sum N, C]`` with a
``batch`` vector. In the flat layout "per sample" means per cloud.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointcoc.ops import Points

__all__ = ["SampleNorm", "apply_norm", "drop_path", "DropPath", "cloud_sizes"]


def cloud_sizes(batch: Tensor, num_points: int) -> Tensor:
    """Number of points per cloud ``[B]`` (on ``batch``'s device) for a sorted batch vector ``[sum N]``."""
    if batch.numel() != num_points:
        raise ValueError(f"`batch` has {batch.numel()} entries for {num_points} points")
    return torch.bincount(batch)


class SampleNorm(nn.Module):
    """Normalise each sample over all its points and channels, then a per-channel affine.

    On an image map ``[B, H, W, C]`` this is ``nn.GroupNorm(1, C)`` (upstream
    CoC's ``GroupNorm``) in channels-last layout; on a point set it normalises
    each cloud as a whole, which keeps the block's output independent of the
    other clouds in a flat batch.

    Args:
        dim: channels ``C``.
        eps: added to the variance.

    Shapes:
        x: ``[B, H, W, C]``, ``[B, N, C]`` or ``[sum N, C]`` (with ``batch [sum N]``);
        output: like ``x``.
    """

    accepts_batch = True

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor, batch: Tensor | None = None, counts: Tensor | None = None) -> Tensor:
        """``counts [B]`` (points per cloud, on ``x``'s device) saves recounting ``batch``."""
        if x.shape[-1] != self.dim:
            raise ValueError(f"SampleNorm({self.dim}) got {x.shape[-1]} channels (shape {tuple(x.shape)})")
        if batch is not None:
            if x.dim() != 2:
                raise ValueError(f"SampleNorm with `batch` takes flat features [sum N, C], got {tuple(x.shape)}")
            sizes = cloud_sizes(batch, x.shape[0]) if counts is None else counts
            count = (sizes * x.shape[1]).to(x.dtype)[:, None]
            mean = torch.zeros(sizes.numel(), 1, dtype=x.dtype, device=x.device)
            mean = mean.index_add(0, batch, x.sum(1, keepdim=True)) / count
            centred = x - mean[batch]
            var = torch.zeros_like(mean).index_add(0, batch, centred.pow(2).sum(1, keepdim=True)) / count
            return centred * torch.rsqrt(var + self.eps)[batch] * self.weight + self.bias
        if x.dim() == 2:  # one cloud [N, C]
            return self.forward(x.unsqueeze(0)).squeeze(0)
        return F.layer_norm(x, x.shape[1:], eps=self.eps) * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"


def apply_norm(norm: nn.Module, x: Tensor, points: Points | None = None) -> Tensor:
    """Call ``norm`` on ``x``; a norm that normalises per sample (``accepts_batch``) gets the clouds of
    ``points`` as ``norm(x, batch, counts)``."""
    if points is not None and getattr(norm, "accepts_batch", False):
        return norm(x, points.batch, points.counts_on_device())
    return norm(x)


def drop_path(x: Tensor, p: float, training: bool, batch: Tensor | None = None,
              num_clouds: int | None = None) -> Tensor:
    """Stochastic depth: zero a residual branch for whole samples with probability ``p``.

    Args:
        x: ``[B, ...]`` dense, or ``[sum N, C]`` flat with ``batch``.
        p: drop probability.
        training: only active in training mode.
        batch: flat layout, the cloud id of every point; clouds are dropped as a whole.
        num_clouds: flat layout, ``B`` (default: read from ``batch``, a device sync).
    """
    if p == 0.0 or not training:
        return x
    if p >= 1.0:  # every sample dropped (1 / keep would be 0 / 0)
        return torch.zeros_like(x)
    keep = 1.0 - p
    if batch is not None:
        num = num_clouds if num_clouds is not None else (int(batch.max()) + 1 if batch.numel() else 0)
        mask = x.new_empty(num).bernoulli_(keep).div_(keep)
        return x * mask[batch].unsqueeze(-1)
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep).div_(keep)
    return x * mask


class DropPath(nn.Module):
    """Module form of :func:`drop_path` (per sample, per cloud in flat batches)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"DropPath probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor, batch: Tensor | None = None, num_clouds: int | None = None) -> Tensor:
        return drop_path(x, self.p, self.training, batch, num_clouds)

    def extra_repr(self) -> str:
        return f"p={self.p}"
