"""Scene semantic segmentation: voxel grids, training crops, augmentation and the model inputs of a scene.

The pipeline of a training sample (PointNeXt's S3DIS recipe, ``cfgs/s3dis/default.yaml`` of
https://github.com/guochengqian/PointNeXt, and Pointcept's):

1. read a scene folder (:func:`~pointcoc.data.scenes.read_scene`);
2. grid subsampling: one point per occupied voxel of side ``voxel_size`` (a random one in training, the first
   in the file order otherwise: :func:`voxelize`), on a grid anchored at the origin, so every tile of a scene
   shares the same voxels;
3. a crop of ``num_points``: the points nearest a random voxel point (a sphere, or a box: a square column), or
   the whole voxelised scene when it has fewer points;
4. augmentation (training, :class:`SceneAugment`): rotation about z, scaling, flips, jitter, colour
   auto-contrast and colour drop;
5. model inputs (:func:`scene_inputs`): positions centred on the crop's mean x, y and on the scene's floor
   (its lowest z), and features from ``colour`` (0..1), ``height`` (z above the floor) and ``normal``.

Randomness comes from a numpy generator seeded from torch's RNG for each sample, so the DataLoader's
per-worker seeding reproduces a run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from pointcoc.data.scenes import Scene, load_scene
from pointcoc.errors import InputError

__all__ = ["SCENE_FEATURES", "feature_channels", "voxelize", "scene_inputs", "SceneAugment", "SceneCrops",
           "collate_scenes", "sphere_crop", "crop_indices", "CROPS"]

log = logging.getLogger(__name__)

#: per-point input features and their widths
SCENE_FEATURES: dict[str, int] = {"color": 3, "height": 1, "normal": 3}


def feature_channels(features: Sequence[str]) -> int:
    """The model's ``in_chans`` for ``features`` (names of :data:`SCENE_FEATURES`)."""
    bad = [f for f in features if f not in SCENE_FEATURES]
    if bad or len(set(features)) != len(features):
        raise InputError(f"features must be distinct names among {list(SCENE_FEATURES)}, got {list(features)}")
    return sum(SCENE_FEATURES[f] for f in features)


def voxelize(coord: np.ndarray, voxel_size: float, rng: np.random.Generator | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """One point per occupied voxel of a grid anchored at the origin.

    Args:
        coord: ``[N, 3]`` positions.
        voxel_size: the voxels' side (``> 0``; the same units as ``coord``).
        rng: pick a random point of each voxel (training); ``None``: the first point in ``coord``'s order.

    Returns:
        ``index [V]`` (the chosen points, in voxel-key order) and ``inverse [N]`` (each point's voxel, into
        ``index``).
    """
    if not (isinstance(voxel_size, (int, float)) and math.isfinite(voxel_size) and voxel_size > 0):
        raise InputError(f"`voxel_size` must be a positive number, got {voxel_size!r}")
    cell = np.floor(np.asarray(coord, dtype=np.float64) / voxel_size).astype(np.int64)
    if len(cell):  # cells still on the origin's grid, counted from the lowest (UTM-sized coordinates fit)
        cell -= cell.min(axis=0)
    extent = cell.max(axis=0) + 1 if len(cell) else np.ones(3, dtype=np.int64)
    if float(np.prod(extent.astype(np.float64))) >= 2.0**62:
        raise InputError(f"`voxel_size`={voxel_size} gives too many cells for the scene's extent; use a larger one")
    key = (cell[:, 0] * extent[1] + cell[:, 1]) * extent[2] + cell[:, 2]
    if rng is None:
        uniq, index, inverse = np.unique(key, return_index=True, return_inverse=True)
        return index, inverse.reshape(-1)
    perm = rng.permutation(len(key))
    uniq, first, inverse = np.unique(key[perm], return_index=True, return_inverse=True)
    out_inverse = np.empty(len(key), dtype=np.int64)
    out_inverse[perm] = inverse.reshape(-1)
    return perm[first], out_inverse


#: crop shapes: ``sphere`` (the nearest points in 3D, PointNeXt's) or ``box`` (the nearest in x, y by the largest
#: coordinate difference: a square column from floor to ceiling)
CROPS = ("sphere", "box")


def crop_indices(coord: np.ndarray, num_points: int, center: np.ndarray, shape: str = "sphere") -> np.ndarray:
    """The indices of the ``num_points`` points of ``coord [N, 3]`` nearest ``center [3]`` (all when ``N`` is not
    larger), in ascending index order: by Euclidean distance (``sphere``) or by ``max(|dx|, |dy|)`` (``box``)."""
    if shape not in CROPS:
        raise InputError(f"crop must be one of {CROPS}, got {shape!r}")
    if len(coord) <= num_points:
        return np.arange(len(coord))
    diff = coord - center
    d = (diff**2).sum(axis=1) if shape == "sphere" else np.abs(diff[:, :2]).max(axis=1)
    return np.sort(np.argpartition(d, num_points - 1)[:num_points])


def sphere_crop(coord: np.ndarray, num_points: int, center: np.ndarray) -> np.ndarray:
    """:func:`crop_indices` with ``shape="sphere"``."""
    return crop_indices(coord, num_points, center, "sphere")


def scene_inputs(coord: np.ndarray, features: Sequence[str], *, floor: float, color: np.ndarray | None = None,
                 normal: np.ndarray | None = None, center: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """The model inputs of some points of a scene.

    Args:
        coord: ``[M, 3]`` positions.
        features: names of :data:`SCENE_FEATURES`, in this order in ``x``.
        floor: the scene's lowest z (positions and heights are measured from it).
        color: ``[M, 3]`` colours 0..255 (needed for ``color``).
        normal: ``[M, 3]`` normals (needed for ``normal``).
        center: ``[2]`` the x, y to centre on (default: the points' mean).

    Returns:
        ``pos [M, 3]`` float32 and ``x [M, F]`` float32 (``F = feature_channels(features)``).
    """
    coord = np.asarray(coord, dtype=np.float64)
    shift = np.empty(3)
    shift[:2] = coord[:, :2].mean(axis=0) if center is None else center
    shift[2] = floor
    pos = coord - shift
    parts: list[np.ndarray] = []
    for name in features:
        if name == "color":
            if color is None:
                raise InputError("the model reads colours (feature 'color') but the scene has none (no color.npy or "
                                 "RGB); train without it (--features height)")
            parts.append(np.asarray(color, dtype=np.float32) / 255.0)
        elif name == "height":
            parts.append(pos[:, 2:3])
        elif name == "normal":
            if normal is None:
                raise InputError("the model reads normals (feature 'normal') but the scene has none (no normal.npy)")
            parts.append(np.asarray(normal, dtype=np.float32))
    x = np.concatenate(parts, axis=1) if parts else np.zeros((len(pos), 0))
    return torch.from_numpy(pos.astype(np.float32)), torch.from_numpy(x.astype(np.float32))


@dataclass
class SceneAugment:
    """Training augmentation of a crop (PointNeXt's S3DIS transforms; 0 or None turns one off).

    Attributes:
        rotate: rotation about z by an angle uniform in ``[-rotate, rotate]`` times pi.
        scale: isotropic scaling uniform in ``scale``.
        flip: probability of mirroring x (and, independently, y).
        jitter: Gaussian sigma of position noise (clipped at ``jitter_clip``).
        contrast: probability of colour auto-contrast (stretching each crop's colours to 0..255, blended
            with a random factor).
        color_drop: probability of setting every colour of the crop to 0.
    """

    rotate: float = 1.0
    scale: tuple[float, float] = (0.9, 1.1)
    flip: float = 0.5
    jitter: float = 0.005
    jitter_clip: float = 0.02
    contrast: float = 0.2
    color_drop: float = 0.2

    def __call__(self, coord: np.ndarray, color: np.ndarray | None, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        """``coord [M, 3]`` (float64, about the crop's centre) and ``color [M, 3]`` -> augmented copies."""
        coord = coord.copy()
        if self.rotate:
            a = rng.uniform(-self.rotate, self.rotate) * math.pi
            c, s = math.cos(a), math.sin(a)
            coord[:, :2] = coord[:, :2] @ np.array([[c, s], [-s, c]])
        if self.scale:
            coord *= rng.uniform(*self.scale)
        for axis in (0, 1):
            if self.flip and rng.random() < self.flip:
                coord[:, axis] = -coord[:, axis]
        if self.jitter:
            coord += np.clip(rng.normal(0.0, self.jitter, coord.shape), -self.jitter_clip, self.jitter_clip)
        if color is not None:
            color = color.astype(np.float32)
            if self.contrast and rng.random() < self.contrast:
                lo, hi = color.min(axis=0), color.max(axis=0)
                stretched = (color - lo) * (255.0 / np.maximum(hi - lo, 1e-3))
                blend = rng.random()
                color = (1 - blend) * color + blend * stretched
            if self.color_drop and rng.random() < self.color_drop:
                color = np.zeros_like(color)
        return coord, color


class SceneCrops(Dataset):
    """Crops of scene folders for training and validation (see the module docstring).

    Args:
        folders: the scenes: scene folders, or single files (:func:`~pointcoc.data.scenes.load_scene`).
        num_classes: the class table's size (labels are checked against it).
        voxel_size: the grid subsampling (``None``: none).
        num_points: the crop size (``None``: whole voxelised scenes).
        crop: the crop's shape, ``sphere`` or ``box`` (:func:`crop_indices`).
        features: input features (names of :data:`SCENE_FEATURES`).
        augment: a :class:`SceneAugment` (training) or ``None``.
        loops: crops per scene per epoch (``len = len(folders) * loops``).
        train: random voxel points and crop centres (from torch's RNG); otherwise deterministic ones from
            ``seed`` and the sample's index.
        seed: the validation crops' seed.

    Items: ``(pos [M, 3], x [M, F], label [M])`` with ``M = min(num_points, voxels)``; ignored points have
    label ``-1``.
    """

    def __init__(self, folders: Sequence[str | Path], num_classes: int, *, voxel_size: float | None = 0.04,
                 num_points: int | None = 24_000, features: Sequence[str] = ("color", "height"),
                 augment: SceneAugment | None = None, loops: int = 1, train: bool = True, seed: int = 0,
                 label_map: object = None, crop: str = "sphere") -> None:
        if not folders:
            raise InputError("no scene folders to read (an empty split?)")
        if loops < 1 or (num_points is not None and num_points < 1):
            raise InputError(f"need loops >= 1 and num_points >= 1, got {loops}, {num_points}")
        feature_channels(features)
        self.folders = [Path(f) for f in folders]
        self.num_classes, self.voxel_size, self.num_points = num_classes, voxel_size, num_points
        self.features, self.augment, self.loops, self.train, self.seed = tuple(features), augment, loops, train, seed
        self.label_map = label_map
        if crop not in CROPS:
            raise InputError(f"crop must be one of {CROPS}, got {crop!r}")
        self.crop = crop

    def __len__(self) -> int:
        return len(self.folders) * self.loops

    def scene(self, i: int) -> Scene:
        """Scene ``i`` (of ``folders``), checked."""
        scene = load_scene(self.folders[i], num_classes=self.num_classes, label_map=self.label_map)
        if scene.segment is None:
            raise InputError(f"{self.folders[i]}: no labels (segment.npy, a label field, or --las-map for LAS) to "
                             "train or validate on")
        return scene

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        scene = self.scene(i % len(self.folders))
        if self.train:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        else:
            rng = np.random.default_rng([self.seed, i])
        coord = scene.coord.astype(np.float64)
        if self.voxel_size:
            index, _ = voxelize(coord, self.voxel_size, rng if self.train else None)
        else:
            index = np.arange(len(coord))
        if self.num_points is not None and len(index) > self.num_points:
            center = coord[index[rng.integers(len(index))]]
            index = index[crop_indices(coord[index], self.num_points, center, self.crop)]
        floor = float(coord[:, 2].min())
        pts = coord[index]
        color = None if scene.color is None else scene.color[index]
        normal = None if scene.normal is None else scene.normal[index]
        center = pts[:, :2].mean(axis=0)
        if self.augment is not None:
            local = pts - np.array([center[0], center[1], floor])
            local, color = self.augment(local, color, rng)
            pts, center = local + np.array([0.0, 0.0, floor]), np.zeros(2)
        pos, x = scene_inputs(pts, self.features, floor=floor, color=color, normal=normal, center=center)
        return pos, x, torch.from_numpy(scene.segment[index].astype(np.int64))


def collate_scenes(items: list[tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A flat batch of crops of different sizes: ``(pos [sum M, 3], x [sum M, F], label [sum M], batch [sum M])``."""
    pos, x, label = (torch.cat(t) for t in zip(*items))
    batch = torch.cat([torch.full((p.shape[0],), b, dtype=torch.long) for b, (p, _, _) in enumerate(items)])
    return pos, x, label, batch
