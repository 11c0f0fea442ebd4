"""Shared model helpers: per-stage argument checks, point input handling, FPS start modes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from pointcoc.errors import InputError
from pointcoc.ops import canonical_order, fps
from pointcoc.ops._checks import check_batch, check_pos

__all__ = ["PointInput", "prepare_points", "sample_anchors", "FPS_STARTS", "check_stage_lengths"]

FPS_STARTS = ("first", "canonical", "random")


def check_stage_lengths(**per_stage: Sequence[object]) -> int:
    """Check that every per-stage argument has one entry per stage; return the number of stages."""
    lengths = {name: len(values) for name, values in per_stage.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"per-stage arguments need one entry per stage, got lengths {lengths}")
    return next(iter(lengths.values()))


@dataclass
class PointInput:
    """A batch of clouds in flat form.

    Attributes:
        pos: ``[sum N, D]`` positions.
        feats: ``[sum N, D + C]`` positions followed by the extra per-point features.
        batch: ``[sum N]`` sorted cloud ids.
        num_clouds: ``B``.
    """

    pos: Tensor
    feats: Tensor
    batch: Tensor
    num_clouds: int


def prepare_points(pos: Tensor, x: Tensor | None, batch: Tensor | None, in_channels: int, min_points: int,
                   pos_dim: int = 3) -> PointInput:
    """Validate a model's point input and return it in flat form.

    Args:
        pos: dense ``[B, N, D]`` or flat ``[sum N, D]`` positions.
        x: optional per-point features ``[..., in_channels]`` (required when ``in_channels > 0``).
        batch: flat form, sorted cloud ids.
        in_channels: the model's extra feature channels.
        min_points: the smallest cloud the model accepts.
        pos_dim: coordinates per point ``D``.

    Raises:
        ValueError: bad shapes, non-finite positions, or a cloud smaller than ``min_points``
            (the message gives the minimum).
    """
    check_pos("pos", pos, (2, 3))
    if pos.shape[-1] != pos_dim:
        raise ValueError(f"`pos` must have {pos_dim} coordinates per point, got shape {tuple(pos.shape)}; "
                         "upstream's [B, 3, N] layout is pos.transpose(1, 2)")
    if in_channels:
        if x is None or x.shape[:-1] != pos.shape[:-1] or x.shape[-1] != in_channels:
            raise ValueError(f"`x` must be {tuple(pos.shape[:-1]) + (in_channels,)} (per-point features), got "
                             f"{None if x is None else tuple(x.shape)}")
    elif x is not None:
        raise ValueError(f"this model takes no per-point features (in_channels=0), got x {tuple(x.shape)}")
    if pos.dim() == 3:
        if batch is not None:
            raise ValueError("`batch` is only for flat input pos [sum N, D]")
        B, N, _ = pos.shape
        counts = torch.full((B,), N, dtype=torch.long)
        batch = torch.arange(B, device=pos.device).repeat_interleave(N)
        pos = pos.reshape(B * N, pos_dim)
        x = x.reshape(B * N, in_channels) if x is not None else None
    else:
        counts = check_batch("batch", batch, pos.shape[0], "pos")
        if batch is None:
            batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
    if counts.numel() == 0 or int(counts.min()) < min_points:
        smallest = int(counts.min()) if counts.numel() else 0
        raise InputError(f"a cloud has {smallest} points; this model needs at least {min_points} points per cloud")
    feats = pos if x is None else torch.cat([pos, x.to(pos.dtype)], dim=-1)
    return PointInput(pos, feats, batch, counts.numel())


def sample_anchors(pos: Tensor, batch: Tensor, num_samples: Tensor, start: str, training: bool) -> Tensor:
    """FPS anchors of a flat batch with the given start mode; global indices, cloud by cloud.

    ``start``: ``"first"`` - each cloud's first point; ``"canonical"`` - its lexicographically
    smallest point (independent of the input order); ``"random"`` - random in training, first in eval.
    """
    if start == "canonical":
        order = canonical_order(pos, batch)
        return order[fps(pos[order], num_samples, batch[order])]
    return fps(pos, num_samples, batch, random_start=start == "random" and training)
