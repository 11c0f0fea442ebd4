"""Input validation shared by the point-set ops.

Every check raises a :class:`ValueError` that names the argument, the shape it
got and what to do, so that a bad batch fails at the op and not deep inside a
compiled kernel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def check_pos(name: str, pos: Tensor, dims: tuple[int, ...], finite: bool = True) -> None:
    """Check that ``pos`` is a (finite, unless ``finite=False``) floating tensor with one of ``dims`` dimensions."""
    if not isinstance(pos, Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(pos).__name__}")
    if pos.dim() not in dims:
        forms = " or ".join(f"{d}-D" for d in dims)
        raise ValueError(
            f"`{name}` must be {forms} ([B, N, D] dense or [sum N, D] flat), got shape {tuple(pos.shape)}"
        )
    if not pos.is_floating_point():
        raise ValueError(
            f"`{name}` must be a floating tensor (positions), got dtype {pos.dtype} with shape "
            f"{tuple(pos.shape)}; convert it with `.float()`"
        )
    if finite and pos.numel() > 0 and not bool(torch.isfinite(pos).all()):
        bad = int((~torch.isfinite(pos)).any(dim=-1).sum())
        raise ValueError(
            f"`{name}` (shape {tuple(pos.shape)}) holds NaN or inf coordinates in {bad} point(s); "
            "clean or drop those points first"
        )


def check_batch(name: str, batch: Tensor | None, num: int, pos_name: str) -> Tensor:
    """Validate a PyG batch vector and return the number of points per cloud ``[B]``.

    ``batch`` must be a 1-D integer tensor of length ``num``, sorted, with every
    cloud id in ``0..B-1`` holding at least one point.
    """
    if batch is None:
        if num == 0:
            raise ValueError(f"`{pos_name}` is an empty cloud (0 points); every cloud needs points")
        return torch.tensor([num], dtype=torch.long)
    if not isinstance(batch, Tensor) or batch.dim() != 1 or batch.is_floating_point():
        shape = tuple(batch.shape) if isinstance(batch, Tensor) else type(batch).__name__
        raise ValueError(f"`{name}` must be a 1-D integer tensor [sum N], got {shape}")
    if batch.numel() != num:
        raise ValueError(
            f"`{name}` has {batch.numel()} entries but `{pos_name}` has {num} points; "
            "they must have the same length"
        )
    if num == 0:
        raise ValueError(f"`{pos_name}` is empty (0 points); every cloud needs points")
    if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError(f"`{name}` must be sorted by cloud (PyG convention); sort the points by `{name}` first")
    if int(batch[0]) < 0:
        raise ValueError(f"`{name}` holds negative cloud ids (min {int(batch[0])})")
    counts = torch.bincount(batch.long()).cpu()
    if bool((counts == 0).any()):
        empty = torch.nonzero(counts == 0).flatten().tolist()[:5]
        raise ValueError(
            f"`{name}` skips cloud id(s) {empty}: every cloud 0..{counts.numel() - 1} needs at least one point "
            "(empty cloud)"
        )
    return counts


def check_k(k: int, sizes: Sequence[int], pos_name: str) -> None:
    """``k`` must be a positive int no larger than the smallest cloud (``sizes``: points per cloud)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"`k` must be a positive int, got {k!r}")
    smallest = min(sizes)
    if k > smallest:
        b = list(sizes).index(smallest)
        raise ValueError(
            f"`k`={k} is larger than the cloud: cloud {b} of `{pos_name}` has only {smallest} points; "
            f"use k <= {smallest}"
        )


def check_same_device(**tensors: Tensor | None) -> None:
    """Check that all given tensors live on one device."""
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"`{n}` on {d}" for n, d in devices.items())
        raise ValueError(f"tensors must be on one device, got {listing}")
