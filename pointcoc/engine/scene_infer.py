"""Whole-scene inference: every original point of a scene predicted, in tiles of bounded size.

A scene is cut into square tiles in x, y (side ``tile_size``). A tile *owns* the points of its core
``[x0, x1) x [y0, y1)`` and reads those within ``margin`` around it as context. The context's points are
voxelised on a grid anchored at the origin (so neighbouring tiles share voxels), the model predicts every
voxel, and each owned point takes its voxel's probabilities: every point is predicted exactly once, by the
one tile that owns it. A tile whose context has more than ``max_points`` voxels is split into four (down to
``min_tile``), so the model never sees more than ``max_points`` points at once and memory does not depend on
the scene's size.

The same tile loop serves points held in memory (:class:`ArraySource`) and points streamed from a file
larger than memory (a source that reads a tile's points from disk), so both give the same labels.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from pointcoc.data.scene_sets import scene_inputs, voxelize
from pointcoc.engine.trainer import autocast_context
from pointcoc.errors import InputError

__all__ = ["TileConfig", "TilePoints", "ArraySource", "SpilledSource", "tile_cores", "predict_tiles", "predict_scene",
           "rotate_z", "tile_config"]

log = logging.getLogger(__name__)


@dataclass
class TileConfig:
    """How a scene is cut and fed to the model.

    Attributes:
        voxel_size: grid subsampling of each tile (the training voxel size; ``0``: none).
        tile_size: side of a tile's core in x, y (metres).
        margin: context read around a core (metres).
        max_points: most voxels per model call; larger tiles are split into four.
        min_tile: the smallest core side a split may reach (then the tile's voxels are thinned to
            ``max_points`` by keeping every k-th).
        features: the model's input features (names of :data:`~pointcoc.data.scene_sets.SCENE_FEATURES`).
        height_ref: ``scene``: positions and heights from the scene's lowest z (indoor rooms); ``tile``: from the
            tile context's lowest z (terrain, as in LiDAR).
        votes: predictions averaged over this many rotations about z (``k * 2 pi / votes``; 1: none).
        amp: mixed precision of the forward pass.
    """

    voxel_size: float = 0.04
    tile_size: float = 3.0
    margin: float = 0.5
    max_points: int = 60_000
    min_tile: float = 0.25
    features: tuple[str, ...] = ("color", "height")
    height_ref: str = "scene"
    votes: int = 1
    amp: str = "none"

    def __post_init__(self) -> None:
        if not (self.tile_size > 0 and self.margin >= 0 and self.max_points >= 1 and self.min_tile > 0
                and self.voxel_size >= 0 and self.votes >= 1):
            raise InputError(f"tile settings need tile_size > 0, margin >= 0, max_points >= 1, min_tile > 0, "
                             f"voxel_size >= 0 and votes >= 1; got {self}")
        if self.height_ref not in ("scene", "tile"):
            raise InputError(f"height_ref must be 'scene' or 'tile', got {self.height_ref!r}")
        self.features = tuple(self.features)


@dataclass
class TilePoints:
    """The points of a tile's context: ``index [M]`` (global point indices), ``coord [M, 3]`` (float64),
    ``color [M, 3]`` / ``normal [M, 3]`` (or None) and ``own [M]`` (bool, the core's points)."""

    index: np.ndarray
    coord: np.ndarray
    color: np.ndarray | None
    normal: np.ndarray | None
    own: np.ndarray


class PointSource(Protocol):
    """Where the tile loop reads points from (memory or a file)."""

    #: x, y, z minima and maxima of every point ``[2, 3]``
    bounds: np.ndarray
    num_points: int

    def read(self, lo: np.ndarray, hi: np.ndarray, core_lo: np.ndarray, core_hi: np.ndarray) -> TilePoints:
        """The points with ``lo <= (x, y) < hi``; ``own`` marks those with ``core_lo <= (x, y) < core_hi``."""
        ...


def _in_box(xy: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (xy[:, 0] >= lo[0]) & (xy[:, 0] < hi[0]) & (xy[:, 1] >= lo[1]) & (xy[:, 1] < hi[1])


@dataclass
class ArraySource:
    """Points held in memory: ``coord [N, 3]``, optional ``color [N, 3]`` and ``normal [N, 3]``."""

    coord: np.ndarray
    color: np.ndarray | None = None
    normal: np.ndarray | None = None
    bounds: np.ndarray = field(init=False)
    num_points: int = field(init=False)

    def __post_init__(self) -> None:
        self.coord = np.asarray(self.coord)
        if self.coord.ndim != 2 or self.coord.shape[1] != 3 or len(self.coord) == 0:
            raise InputError(f"`coord` must be a non-empty [N, 3] array, got {tuple(self.coord.shape)}")
        self.num_points = len(self.coord)
        self.bounds = np.stack([self.coord.min(0), self.coord.max(0)]).astype(np.float64)
        self._order = np.argsort(self.coord[:, 0], kind="stable")  # a tile reads its x slab, not every point
        self._xs = self.coord[self._order, 0]

    def read(self, lo: np.ndarray, hi: np.ndarray, core_lo: np.ndarray, core_hi: np.ndarray) -> TilePoints:
        a, b = np.searchsorted(self._xs, [lo[0], hi[0]], side="left")
        slab = self._order[a:b]
        y = self.coord[slab, 1]
        index = np.sort(slab[(y >= lo[1]) & (y < hi[1])])  # file order, as the voxels' picks need
        coord = self.coord[index].astype(np.float64)
        return TilePoints(index, coord, None if self.color is None else self.color[index],
                          None if self.normal is None else self.normal[index], _in_box(coord[:, :2], core_lo, core_hi))


def tile_cores(bounds: np.ndarray, tile_size: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """The tile cores ``(lo [2], hi [2])`` covering ``bounds [2, 3]``'s x, y, row by row; the last row and column
    reach past the maximum (and :func:`predict_tiles` opens the first ones below the minimum), so every point lies
    in exactly one core. Core ``i`` starts at ``bounds[0] + i * tile_size`` (:class:`SpilledSource` bins the
    points on the same edges)."""
    lo = bounds[0, :2].astype(np.float64)
    count = np.maximum(np.ceil((bounds[1, :2] - lo) / tile_size + 1e-9), 1).astype(int)
    out = []
    for j in range(count[1]):
        for i in range(count[0]):
            c_lo = lo + np.array([i, j]) * tile_size
            c_hi = c_lo + tile_size
            # the outermost cores are open beyond the scene, so the maximum itself is owned
            c_hi = np.where(np.array([i, j]) == count - 1, np.inf, c_hi)
            out.append((c_lo, c_hi))
    return out


def rotate_z(coord: np.ndarray, angle: float, center: np.ndarray) -> np.ndarray:
    """``coord [M, 3]`` rotated about the vertical axis through ``center [2]`` by ``angle`` radians."""
    if angle == 0:
        return coord
    c, s = math.cos(angle), math.sin(angle)
    out = coord.copy()
    xy = coord[:, :2] - center
    out[:, 0] = xy[:, 0] * c - xy[:, 1] * s + center[0]
    out[:, 1] = xy[:, 0] * s + xy[:, 1] * c + center[1]
    return out


@torch.no_grad()
def _tile_probs(model: nn.Module, tile: TilePoints, cfg: TileConfig, floor: float, center: np.ndarray,
                device: torch.device, min_points: int) -> np.ndarray | None:
    """Class probabilities ``[owned points, C]`` of a tile, or None when its voxels exceed ``max_points``."""
    if cfg.voxel_size:
        index, inverse = voxelize(tile.coord, cfg.voxel_size)
    else:
        index, inverse = np.arange(len(tile.coord)), np.arange(len(tile.coord))
    if len(index) > cfg.max_points:
        return None
    pick = index
    if len(pick) < min_points:  # a tiny tile: repeat its points (the repeats' predictions are not read)
        pick = np.concatenate([pick, np.resize(pick, min_points - len(pick))])
    coord = tile.coord[pick]
    color = None if tile.color is None else tile.color[pick]
    normal = None if tile.normal is None else tile.normal[pick]
    probs = None
    for v in range(cfg.votes):
        view = rotate_z(coord, 2 * math.pi * v / cfg.votes, center)
        pos, x = scene_inputs(view, cfg.features, floor=floor, color=color, normal=normal, center=center)
        pos, x = pos.to(device), x.to(device)
        batch = torch.zeros(len(pos), dtype=torch.long, device=device)
        with autocast_context(cfg.amp, device):
            logits = model(pos, x if x.shape[1] else None, batch=batch)
        p = logits.float().softmax(-1)[:len(index)].cpu().numpy()
        probs = p if probs is None else probs + p
    assert probs is not None
    return probs[inverse[tile.own]] / cfg.votes


def predict_tiles(model: nn.Module, source: PointSource, cfg: TileConfig, device: torch.device | str = "cpu",
                  progress: Callable[[float], None] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Predict every point of ``source``: yields ``(index [K], probs [K, C])`` per tile, the global indices of
    the points the tile owns and their class probabilities. Every point is yielded exactly once.

    ``progress(fraction of the area done)`` is called after each tile.
    """
    device = torch.device(device)
    model.eval()
    min_points = model.min_points() if hasattr(model, "min_points") else 1
    floor = float(source.bounds[0, 2])
    scene_lo = source.bounds[0, :2]
    cores = tile_cores(source.bounds, cfg.tile_size)
    stack: list[tuple[np.ndarray, np.ndarray, float]] = [(lo, hi, cfg.tile_size) for lo, hi in reversed(cores)]
    done, total = 0.0, float(len(cores))
    while stack:
        lo, hi, side = stack.pop()
        # cores on the scene's lower edges own everything below it too (a LAS header's minimum may be too high)
        own_lo = np.where(lo <= scene_lo, -np.inf, lo)
        tile = source.read(own_lo - cfg.margin, hi + cfg.margin, own_lo, hi)
        weight = (side / cfg.tile_size) ** 2
        if not tile.own.any():
            done += weight
            continue
        tile_floor = floor if cfg.height_ref == "scene" else float(tile.coord[:, 2].min())
        finite_hi = np.where(np.isfinite(hi), hi, lo + side)
        center = (lo + finite_hi) / 2
        probs = _tile_probs(model, tile, cfg, tile_floor, center, device, min_points)
        if probs is None and side / 2 >= cfg.min_tile:
            half = side / 2
            for dj in (1, 0):
                for di in (1, 0):
                    q_lo = lo + np.array([di, dj]) * half
                    q_hi = np.where(np.array([di, dj]) == 1, hi, q_lo + half)
                    stack.append((q_lo, q_hi, half))
            continue
        if probs is None:  # at the smallest side: thin the context's points
            step = math.ceil(len(tile.index) / cfg.max_points)
            log.warning("a %.2f m tile still has more than %d voxels; predicting it from every %d-th point",
                        side, cfg.max_points, step)
            probs = _thinned_probs(model, tile, cfg, tile_floor, center, device, min_points, step)
        done += weight
        if progress is not None:
            progress(done / total)
        yield tile.index[tile.own], probs


def _thinned_probs(model: nn.Module, tile: TilePoints, cfg: TileConfig, floor: float, center: np.ndarray,
                   device: torch.device, min_points: int, step: int) -> np.ndarray:
    """A dense tile: the model reads every ``step``-th point, each owned point takes its nearest read point's
    probabilities."""
    from scipy.spatial import cKDTree

    keep = np.arange(0, len(tile.index), step)
    sub = TilePoints(tile.index[keep], tile.coord[keep], None if tile.color is None else tile.color[keep],
                     None if tile.normal is None else tile.normal[keep], np.ones(len(keep), dtype=bool))
    flat = TileConfig(**{**cfg.__dict__, "voxel_size": 0.0, "max_points": len(keep)})
    probs = _tile_probs(model, sub, flat, floor, center, device, min_points)
    assert probs is not None
    _, nearest = cKDTree(sub.coord).query(tile.coord[tile.own])
    return probs[nearest]


def predict_scene(model: nn.Module, coord: np.ndarray, cfg: TileConfig, *, color: np.ndarray | None = None,
                  normal: np.ndarray | None = None, device: torch.device | str = "cpu",
                  progress: Callable[[float], None] | None = None, num_classes: int | None = None
                  ) -> np.ndarray:
    """Class probabilities ``[N, C]`` (float32) of every point of a scene held in memory (``coord [N, 3]``,
    ``color [N, 3]``, ``normal [N, 3]``); see the module docstring."""
    source = ArraySource(coord, color, normal)
    out: np.ndarray | None = None
    seen = np.zeros(source.num_points, dtype=bool)
    for index, probs in predict_tiles(model, source, cfg, device, progress):
        if out is None:
            out = np.zeros((source.num_points, probs.shape[1]), dtype=np.float32)
        out[index] = probs
        seen[index] = True
    if out is None or not seen.all():
        raise RuntimeError(f"{int((~seen).sum())} points were not predicted (a tiling bug)")
    if num_classes is not None and out.shape[1] != num_classes:
        raise InputError(f"the model predicts {out.shape[1]} classes, the data has {num_classes}")
    return out


def tile_config(config: dict[str, Any], features: Sequence[str], overrides: dict[str, Any] | None = None
                ) -> TileConfig:
    """The :class:`TileConfig` of a training run's config (``voxel_size``, ``tile_size``, ``tile_margin``,
    ``tile_points``, ``height_ref``, ``vote``, ``amp``), each overridden by ``overrides`` where that is not None
    (the command line of ``predict.py`` / ``validate.py``)."""
    def pick(key: str, default: Any) -> Any:
        value = (overrides or {}).get(key)
        if value is None:
            value = config.get(key)
        return default if value is None else value

    return TileConfig(voxel_size=float(pick("voxel_size", 0.04) or 0.0), tile_size=float(pick("tile_size", 3.0)),
                      margin=float(pick("tile_margin", 0.5)), max_points=int(pick("tile_points", 60_000)),
                      features=tuple(features), height_ref=str(pick("height_ref", "scene")),
                      votes=max(int(pick("vote", 1) or 1), 1), amp=str(pick("amp", "none")))

class SpilledSource:
    """Points streamed from a file larger than memory, binned on disk by tile.

    One pass over ``chunks`` (``(start, coord [n, 3], color [n, 3] or None)``, in file order) appends every
    point to the spill file of each top-level tile whose context (core plus ``margin``) holds it, under
    ``workdir`` (35 bytes a point with colours, times about ``(1 + 2 margin / tile_size)^2`` for the copies in
    the margins). :meth:`read` then loads one top-level tile's file at a time (its quadrants reuse it), so
    memory follows the largest tile with its margin, not the file. ``bounds [2, 3]`` are the points' minima
    and maxima (a LAS header's, or a first pass's); points beyond them go to the outermost tiles.
    """

    def __init__(self, chunks: Any, bounds: np.ndarray, num_points: int, cfg: TileConfig, workdir: str | Path,
                 has_color: bool) -> None:
        self.bounds, self.num_points, self.has_color = np.asarray(bounds, dtype=np.float64), int(num_points), has_color
        self.tile, self.margin = cfg.tile_size, cfg.margin
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        lo = self.bounds[0, :2]
        self.count = np.maximum(np.ceil((self.bounds[1, :2] - lo) / self.tile + 1e-9), 1).astype(int)
        # the cores' lower edges, computed as tile_cores does, so binning and ownership agree to the last bit
        self.edges = [lo[d] + np.arange(self.count[d]) * self.tile for d in range(2)]
        self.dtype = np.dtype([("index", "<i8"), ("coord", "<f8", 3)] + ([("color", "u1", 3)] if has_color else []))
        self._cache: tuple[int, np.ndarray] | None = None
        seen = 0
        for start, coord, color in chunks:
            self._spill(start, np.asarray(coord, dtype=np.float64), color)
            seen += len(coord)
        if seen != self.num_points:
            raise InputError(f"the file gave {seen} points, its header says {self.num_points}; it may be truncated")

    def _cell(self, xy: np.ndarray) -> np.ndarray:
        """The tile (column, row) of each ``xy [n, 2]``: the last core edge at or below it (clipped to the grid)."""
        cols = [np.searchsorted(self.edges[d], xy[:, d], side="right") - 1 for d in range(2)]
        return np.clip(np.stack(cols, axis=1), 0, self.count - 1)

    def _path(self, cell: int) -> Path:
        return self.workdir / f"tile_{cell}.bin"

    def _spill(self, start: int, coord: np.ndarray, color: np.ndarray | None) -> None:
        rows = np.empty(len(coord), dtype=self.dtype)
        rows["index"] = np.arange(start, start + len(coord))
        rows["coord"] = coord
        if self.has_color:
            rows["color"] = color
        xy = coord[:, :2]
        lo_cell, hi_cell = self._cell(xy - self.margin), self._cell(xy + self.margin)
        # a point goes to every tile whose context box holds it: at most (cells spanned in x) * (in y)
        for dx in range(int((hi_cell - lo_cell)[:, 0].max(initial=0)) + 1):
            for dy in range(int((hi_cell - lo_cell)[:, 1].max(initial=0)) + 1):
                cx, cy = lo_cell[:, 0] + dx, lo_cell[:, 1] + dy
                ok = (cx <= hi_cell[:, 0]) & (cy <= hi_cell[:, 1])
                cell = cy[ok] * self.count[0] + cx[ok]
                sub = rows[ok]
                order = np.argsort(cell, kind="stable")
                cell, sub = cell[order], sub[order]
                cuts = np.flatnonzero(np.diff(cell)) + 1
                for part, c in zip(np.split(sub, cuts), cell[np.r_[0, cuts]] if len(cell) else []):
                    with open(self._path(int(c)), "ab") as fh:
                        part.tofile(fh)

    def read(self, lo: np.ndarray, hi: np.ndarray, core_lo: np.ndarray, core_hi: np.ndarray) -> TilePoints:
        # the top-level tile of this core: the cell of a point well inside it (not of its rounded corner)
        lo_f = np.where(np.isfinite(core_lo), core_lo, self.bounds[0, :2])
        hi_f = np.minimum(np.where(np.isfinite(core_hi), core_hi, lo_f + self.tile), lo_f + self.tile)
        cx, cy = self._cell(((lo_f + hi_f) / 2)[None])[0]
        cell = int(cy * self.count[0] + cx)
        if self._cache is None or self._cache[0] != cell:
            path = self._path(cell)
            rows = np.fromfile(path, dtype=self.dtype) if path.exists() else np.empty(0, dtype=self.dtype)
            rows = rows[np.argsort(rows["index"], kind="stable")]  # file order, as in memory (the voxels' picks)
            self._cache = (cell, rows)
        rows = self._cache[1]
        keep = _in_box(rows["coord"][:, :2], lo, hi)
        rows = rows[keep]
        coord = rows["coord"]
        return TilePoints(rows["index"], coord, rows["color"] if self.has_color else None, None,
                          _in_box(coord[:, :2], core_lo, core_hi))
