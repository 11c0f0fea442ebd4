"""Shared model helpers: per-stage argument checks, point input handling, FPS start modes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pointcoc.errors import InputError
from pointcoc.ops import Points, canonical_points, fps_points
from pointcoc.ops._checks import check_pos

__all__ = ["drop_path_rates", "prepare_points", "input_features", "sample_anchors", "FPS_STARTS", "check_stage_lengths",
           "category_one_hot", "stages_min_points", "reducer_stages"]

FPS_STARTS = ("first", "canonical", "random")


def check_stage_lengths(**per_stage: Sequence[object]) -> int:
    """Check that every per-stage argument has one entry per stage; return the number of stages."""
    lengths = {name: len(values) for name, values in per_stage.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"per-stage arguments need one entry per stage, got lengths {lengths}")
    return next(iter(lengths.values()))


def drop_path_rates(drop_path_rate: float, depths: Sequence[int]) -> list[list[float]]:
    """Stochastic-depth rates per stage and block, rising linearly from 0 to ``drop_path_rate`` over all blocks.

    Block ``k`` of ``K`` gets ``drop_path_rate * k / (K - 1)`` (upstream CoC's formula, in double precision;
    timm's ``calculate_drop_path_rates`` gives the same values in single precision).
    """
    total = sum(depths)
    rates = [drop_path_rate * k / max(total - 1, 1) for k in range(total)]
    starts = [sum(depths[:i]) for i in range(len(depths))]
    return [rates[start:start + depth] for start, depth in zip(starts, depths)]


def prepare_points(pos: Tensor | Points, x: Tensor | None, batch: Tensor | None, in_chans: int, min_points: int,
                   pos_dim: int = 3) -> Points:
    """Validate a model's point input once and return it as :class:`~pointcoc.ops.Points`.

    Args:
        pos: dense ``[B, N, D]`` or flat ``[sum N, D]`` positions, or a ``Points`` (whose ``x`` holds
            the extra features; then ``x`` and ``batch`` must be ``None``).
        x: optional per-point features ``[..., in_chans]`` (required when ``in_chans > 0``).
        batch: flat form, sorted cloud ids.
        in_chans: the model's extra feature channels.
        min_points: the smallest cloud the model accepts.
        pos_dim: coordinates per point ``D``.

    Raises:
        ValueError: bad shapes, non-finite positions, or a cloud smaller than ``min_points``
            (the message gives the minimum).
    """
    if isinstance(pos, Points):
        if x is not None or batch is not None:
            raise ValueError("a Points carries its own features and batch; pass `x`/`batch` only with a tensor `pos`")
        points = pos
        x = points.x
    else:
        check_pos("pos", pos, (2, 3), finite=False)
        if pos.dim() == 3 and batch is not None:
            raise ValueError("`batch` is only for flat input pos [sum N, D]")
        points = None
    shape = tuple((points.pos if points is not None else pos).shape)
    if shape[-1] != pos_dim:
        raise ValueError(f"`pos` must have {pos_dim} coordinates per point, got shape {shape}; "
                         "upstream's [B, 3, N] layout is pos.transpose(1, 2)")
    if in_chans:
        if x is None or x.shape[-1] != in_chans or tuple(x.shape[:-1]) != shape[:-1]:
            raise ValueError(f"`x` must be {shape[:-1] + (in_chans,)} (per-point features), got "
                             f"{None if x is None else tuple(x.shape)}")
    elif x is not None:
        raise ValueError(f"this model takes no per-point features (in_chans=0), got x {tuple(x.shape)}")
    if points is None:
        points = Points.from_dense(pos, x) if pos.dim() == 3 else Points(pos, x, batch)
    smallest = min(points.sizes)
    if smallest < min_points:
        raise InputError(f"a cloud has {smallest} points; this model needs at least {min_points} points per cloud")
    return points


def input_features(points: Points) -> Tensor:
    """``[sum N, D + C]``: positions followed by the extra per-point features (the embedding's input)."""
    return points.pos if points.x is None else torch.cat([points.pos, points.x.to(points.pos.dtype)], dim=-1)


def sample_anchors(points: Points, num_samples: list[int], start: str, training: bool) -> Tensor:
    """FPS anchors of ``points`` with the given start mode; global indices, cloud by cloud.

    ``start``: ``"first"`` - each cloud's first point; ``"canonical"`` - its lexicographically
    smallest point (independent of the input order); ``"random"`` - random in training, first in eval.
    """
    if start == "canonical":
        order, ordered = canonical_points(points.with_x(None))
        return order[fps_points(ordered, num_samples)]
    return fps_points(points, num_samples, random_start=start == "random" and training)


def category_one_hot(category: Tensor | None, num_categories: int, num_clouds: int, like: Tensor) -> Tensor:
    """``[B]`` integer indices or ``[B, num_categories]`` one-hot (float) -> ``[B, num_categories]`` in
    ``like``'s dtype and device.

    Raises:
        ValueError: a missing category, a wrong shape or dtype, an index out of range, non-finite values.
    """
    C = num_categories
    if category is None:
        raise InputError(f"`category` is required: [B] indices in [0, {C}) or a [B, {C}] one-hot")
    if not isinstance(category, Tensor):
        category = torch.as_tensor(category)
    if category.dtype == torch.bool or category.is_complex():
        raise InputError(f"`category` must be integer indices or a float one-hot, got dtype {category.dtype}")
    if category.is_floating_point():
        if tuple(category.shape) != (num_clouds, C):
            raise InputError(f"a one-hot `category` must be [B, {C}] = {(num_clouds, C)}, got "
                             f"{tuple(category.shape)}")
        if not bool(torch.isfinite(category).all()):
            raise InputError("`category` holds NaN or inf")
        return category.to(like.device, like.dtype)
    if tuple(category.shape) != (num_clouds,):
        raise InputError(f"`category` indices must be [B] = ({num_clouds},), got {tuple(category.shape)}"
                         + (f"; a one-hot [B, {C}] must be floating point" if category.dim() == 2 else ""))
    low, high = int(category.min()), int(category.max())
    if low < 0 or high >= C:
        raise InputError(f"`category` index {low if low < 0 else high} is out of range [0, {C})")
    return F.one_hot(category.to(like.device).long(), C).to(like.dtype)


def reducer_stages(reducers: Sequence[Any], stages: Sequence[Any]) -> list[tuple[int, int, int]]:
    """``(k, reduction, regions)`` per stage of a PointReducer + ClusterStage stack, for :func:`stages_min_points`
    (``regions``: the most FPS regions any block of the stage splits a cloud into; 1 without blocks)."""
    return [(r.num_neighbors, r.reduction, max((b.token_mixer.num_regions for b in s), default=1))
            for r, s in zip(reducers, stages)]


def stages_min_points(stages: Sequence[tuple[int, int, int]], deepest: int = 1) -> int:
    """The smallest cloud that a stack of reducer stages accepts.

    Args:
        stages: per stage ``(k, reduction, regions)``: its reducer's ``k`` neighbours are searched in the
            stage's input, which keeps ``ceil(n / reduction)`` anchors, split into ``regions`` regions.
        deepest: points the last stage's output needs (e.g. a decoder's interpolation ``k``).
    """
    def fits(n: int) -> bool:
        for k, reduction, regions in stages:
            if n < k:
                return False
            n = -(-n // reduction)
            if n < regions:
                return False
        return n >= deepest

    n = 1
    while not fits(n):
        n += 1
    return n
