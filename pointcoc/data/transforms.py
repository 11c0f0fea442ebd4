"""Composable point-cloud transforms and the test-time voting augmentation.

Every transform is a callable ``points [N, C] -> points`` on a float tensor with ``C >= 3``:
the first three columns are the coordinates ``xyz``; when ``C >= 6`` columns ``3:6`` are
normals, which follow the geometry (rotations rotate them, anisotropic scaling maps them
with the inverse transpose and renormalises them); any further columns are carried along.
Row operations (shuffle, dropout, resample) move whole points. Inputs are never modified
in place.

Randomness comes from torch's RNG only: each random transform has a ``generator``
attribute (``None`` = the global torch RNG). The global RNG is what the DataLoader seeds
per worker (``base_seed + worker_id``, the base seed drawn from the loader's own
``generator``), so ``torch.manual_seed(s)`` plus a DataLoader with a seeded generator
reproduces a run, workers or not. Do not give a transform an explicit generator when the
DataLoader has workers: every worker would get a copy of the same generator state and
draw the same augmentations.

Sources of the recipes (PointMLP, Ma et al. ICLR'22, github.com/ma-xu/pointMLP-pytorch,
which Context Clusters' point-cloud code copies):

* ``classification_ModelNet40/data.py``: ``translate_pointcloud`` (per-axis scale
  U[2/3, 3/2], then shift U[-0.2, 0.2]) and ``np.random.shuffle`` in training;
  ``random_point_dropout`` (max ratio 0.875, dropped points replaced by the first point)
  and ``jitter_pointcloud`` (sigma 0.01, clip 0.02) are defined but not used.
* ``classification_ScanObjectNN/ScanObjectNN.py`` (and ``pointcloud/ScanObjectNN.py`` of
  Context-Cluster): the same ``translate_pointcloud`` + shuffle, no rotation.
* ``classification_ModelNet40/voting.py``: test-time voting with ``PointcloudScale``
  (per-cloud, per-axis scale U[0.85, 1.15]).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = [
    "Compose", "ScaleTranslate", "Jitter", "RotateAxis", "RandomDropout", "Shuffle",
    "NormalizeUnitSphere", "Resample", "default_train_transform", "vote_scales",
    "VOTE_SCALE_RANGE",
]

#: PointMLP's voting scale range (``PointcloudScale(scale_low=0.85, scale_high=1.15)`` in voting.py).
VOTE_SCALE_RANGE = (0.85, 1.15)

_AXES = {"x": 0, "y": 1, "z": 2}


def _check_points(points: Tensor, who: str) -> Tensor:
    """Check ``points [N, C]`` (C >= 3, floating); numpy arrays are converted."""
    if not isinstance(points, Tensor):
        points = torch.as_tensor(points)
    if points.dim() != 2 or points.shape[-1] < 3:
        raise ValueError(f"{who} expects points [N, C] with C >= 3 (xyz first), got shape {tuple(points.shape)}")
    if not points.is_floating_point():
        raise ValueError(f"{who} expects floating points, got dtype {points.dtype}; convert them with `.float()`")
    return points


def _uniform(shape: Sequence[int], lo: float, hi: float, generator: torch.Generator | None,
             like: Tensor) -> Tensor:
    """``U[lo, hi)`` samples of ``shape`` drawn with ``generator`` on the CPU, cast like ``like``."""
    u = torch.rand(tuple(shape), generator=generator, dtype=torch.float64)
    return (lo + (hi - lo) * u).to(dtype=like.dtype, device=like.device)


def _scale_columns(points: Tensor, scale: Tensor, shift: Tensor | None = None) -> Tensor:
    """Scale xyz by ``scale [..., 1, 3]`` (then add ``shift``); normals by the inverse transpose.

    ``points``: ``[..., N, C]``. Returns a new tensor.
    """
    out = points.clone()
    xyz = points[..., :3] * scale
    out[..., :3] = xyz if shift is None else xyz + shift
    if points.shape[-1] >= 6:
        n = points[..., 3:6] / scale
        out[..., 3:6] = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return out


class Compose:
    """Apply transforms in order: ``Compose([t1, t2])(p) == t2(t1(p))``."""

    def __init__(self, transforms: Sequence[Callable[[Tensor], Tensor]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, points: Tensor) -> Tensor:
        for t in self.transforms:
            points = t(points)
        return points

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class ScaleTranslate:
    """PointMLP's ``translate_pointcloud``: ``xyz * s + t``, ``s ~ U[scale]^3``, ``t ~ U[-shift, shift]^3``.

    One scale and one shift per axis and call. Normals get ``n / s``, renormalised.
    """

    def __init__(self, scale: tuple[float, float] = (2 / 3, 3 / 2), shift: float = 0.2,
                 generator: torch.Generator | None = None) -> None:
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"ScaleTranslate scale must be (lo, hi) with 0 < lo <= hi, got {scale}")
        if shift < 0:
            raise ValueError(f"ScaleTranslate shift must be >= 0, got {shift}")
        self.scale = (float(scale[0]), float(scale[1]))
        self.shift = float(shift)
        self.generator = generator

    def __call__(self, points: Tensor) -> Tensor:
        points = _check_points(points, "ScaleTranslate")
        s = _uniform((1, 3), *self.scale, self.generator, points)
        t = _uniform((1, 3), -self.shift, self.shift, self.generator, points)
        return _scale_columns(points, s, t)

    def __repr__(self) -> str:
        return f"ScaleTranslate(scale={self.scale}, shift={self.shift})"


class Jitter:
    """Add clipped Gaussian noise to xyz: ``xyz + clip(sigma * randn, -clip, clip)``.

    Defaults are PointNet's ``jitter_point_cloud`` (sigma 0.01, clip 0.05); PointMLP's unused
    ``jitter_pointcloud`` clips at 0.02.
    """

    def __init__(self, sigma: float = 0.01, clip: float = 0.05, generator: torch.Generator | None = None) -> None:
        if sigma < 0 or clip < 0:
            raise ValueError(f"Jitter sigma and clip must be >= 0, got sigma={sigma}, clip={clip}")
        self.sigma = float(sigma)
        self.clip = float(clip)
        self.generator = generator

    def __call__(self, points: Tensor) -> Tensor:
        points = _check_points(points, "Jitter")
        noise = torch.randn((points.shape[0], 3), generator=self.generator, dtype=torch.float64)
        noise = (self.sigma * noise).clamp(-self.clip, self.clip).to(points.dtype)
        out = points.clone()
        out[:, :3] = points[:, :3] + noise.to(points.device)
        return out

    def __repr__(self) -> str:
        return f"Jitter(sigma={self.sigma}, clip={self.clip})"


def _rotation_matrix(axis: int, angle: float, dtype: torch.dtype) -> Tensor:
    """``[3, 3]`` right-handed rotation by ``angle`` (radians) about coordinate ``axis``."""
    c, s = math.cos(angle), math.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = torch.eye(3, dtype=torch.float64)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r.to(dtype)


class RotateAxis:
    """Rotate xyz (and normals) about ``axis`` by an angle ``U[angle_range]`` (radians).

    ``angle_range=None`` means a full turn ``[0, 2 pi)``. ``y`` is the up axis of
    ModelNet40's HDF5 release and of ScanObjectNN.
    """

    def __init__(self, axis: str = "y", angle_range: tuple[float, float] | None = None,
                 generator: torch.Generator | None = None) -> None:
        if axis not in _AXES:
            raise ValueError(f"RotateAxis axis must be one of {sorted(_AXES)}, got {axis!r}")
        if angle_range is not None and not angle_range[0] <= angle_range[1]:
            raise ValueError(f"RotateAxis angle_range must be (lo, hi) with lo <= hi, got {angle_range}")
        self.axis = axis
        self.angle_range = (0.0, 2 * math.pi) if angle_range is None else (float(angle_range[0]),
                                                                            float(angle_range[1]))
        self.generator = generator

    def __call__(self, points: Tensor) -> Tensor:
        points = _check_points(points, "RotateAxis")
        lo, hi = self.angle_range
        angle = lo + (hi - lo) * float(torch.rand((), generator=self.generator, dtype=torch.float64))
        r = _rotation_matrix(_AXES[self.axis], angle, points.dtype).to(points.device)
        out = points.clone()
        out[:, :3] = points[:, :3] @ r.T
        if points.shape[1] >= 6:
            out[:, 3:6] = points[:, 3:6] @ r.T
        return out

    def __repr__(self) -> str:
        return f"RotateAxis(axis={self.axis!r}, angle_range={self.angle_range})"


class RandomDropout:
    """PointMLP's ``random_point_dropout``: drop a ratio ``U[0, max_ratio]`` of the points.

    Dropped points are replaced by the first point (the shape stays ``[N, C]``, as upstream,
    so batches still stack; a model sees duplicates, not missing points).
    """

    def __init__(self, max_ratio: float = 0.875, generator: torch.Generator | None = None) -> None:
        if not 0 <= max_ratio < 1:
            raise ValueError(f"RandomDropout max_ratio must be in [0, 1), got {max_ratio}")
        self.max_ratio = float(max_ratio)
        self.generator = generator

    def __call__(self, points: Tensor) -> Tensor:
        points = _check_points(points, "RandomDropout")
        ratio = float(torch.rand((), generator=self.generator, dtype=torch.float64)) * self.max_ratio
        drop = torch.rand(points.shape[0], generator=self.generator, dtype=torch.float64) <= ratio
        out = points.clone()
        out[drop.to(points.device)] = points[0]
        return out

    def __repr__(self) -> str:
        return f"RandomDropout(max_ratio={self.max_ratio})"


class Shuffle:
    """Randomly permute the points (rows)."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def __call__(self, points: Tensor) -> Tensor:
        points = _check_points(points, "Shuffle")
        perm = torch.randperm(points.shape[0], generator=self.generator)
        return points[perm.to(points.device)]

    def __repr__(self) -> str:
        return "Shuffle()"


class NormalizeUnitSphere:
    """Centre xyz on the centroid and scale so the farthest point is at distance 1.

    Normals are unchanged (an isotropic scale keeps them). A cloud whose points all
    coincide is only centred.
    """

    def __call__(self, points: Tensor) -> Tensor:
        points = _check_points(points, "NormalizeUnitSphere")
        xyz = points[:, :3] - points[:, :3].mean(dim=0, keepdim=True)
        radius = xyz.norm(dim=1).max() if xyz.shape[0] else xyz.new_zeros(())
        out = points.clone()
        out[:, :3] = xyz / radius if float(radius) > 0 else xyz
        return out

    def __repr__(self) -> str:
        return "NormalizeUnitSphere()"


class Resample:
    """Resample to exactly ``num_points`` points.

    Fewer points kept: a random subset without replacement. More points needed: all
    points plus random duplicates. The result is in random order.
    """

    def __init__(self, num_points: int, generator: torch.Generator | None = None) -> None:
        if int(num_points) < 1:
            raise ValueError(f"Resample num_points must be >= 1, got {num_points}")
        self.num_points = int(num_points)
        self.generator = generator

    def __call__(self, points: Tensor) -> Tensor:
        points = _check_points(points, "Resample")
        n = points.shape[0]
        if n == 0:
            raise ValueError(f"Resample got an empty cloud (shape {tuple(points.shape)}); cannot make "
                             f"{self.num_points} points from none")
        if self.num_points <= n:
            idx = torch.randperm(n, generator=self.generator)[: self.num_points]
        else:
            extra = torch.randint(n, (self.num_points - n,), generator=self.generator)
            idx = torch.cat([torch.arange(n), extra])
            idx = idx[torch.randperm(self.num_points, generator=self.generator)]
        return points[idx.to(points.device)]

    def __repr__(self) -> str:
        return f"Resample({self.num_points})"


def default_train_transform(dataset: str) -> Compose:
    """PointMLP's training augmentation for ``dataset`` (``"modelnet40"``, ``"scanobjectnn"``, ``"demo"``).

    All three are ``Compose([ScaleTranslate(), Shuffle()])``, as in PointMLP's own loaders:
    ``classification_ModelNet40/data.py`` (``translate_pointcloud`` then ``np.random.shuffle``)
    and ``classification_ScanObjectNN/ScanObjectNN.py`` (the same two, no rotation: the
    PB_T50_RS files already hold rotated, translated and scaled copies of each object).
    Context Clusters' ``pointcloud/ScanObjectNN.py`` is the same file. The demo data (random
    rotations already baked in) uses the same recipe.
    """
    key = dataset.lower().replace("-", "").replace("_", "")
    if key not in ("modelnet40", "scanobjectnn", "demo"):
        raise ValueError(f"no default train transform for dataset {dataset!r}; "
                         "expected 'modelnet40', 'scanobjectnn' or 'demo' (or build a Compose yourself)")
    return Compose([ScaleTranslate(), Shuffle()])


def vote_scales(points: Tensor, generator: torch.Generator | None = None,
                scale_range: tuple[float, float] = VOTE_SCALE_RANGE) -> Tensor:
    """One test-time voting view: each cloud scaled per axis by ``U[0.85, 1.15]``.

    PointMLP's ``classification_ModelNet40/voting.py`` (``PointcloudScale(0.85, 1.15)``,
    after PAConv's ``eval_voting.py``) averages the softmax of ``NUM_VOTE = 10`` views, the
    first unscaled. Upstream scales its batch in place, so its views compound; here each
    call scales the given points afresh and returns a new tensor.

    Args:
        points: ``[B, N, C]`` clouds (xyz first; normals in ``3:6`` are mapped consistently).
        generator: torch generator for the scales (default: the global torch RNG).
        scale_range: ``(lo, hi)`` of the uniform scale.

    Returns:
        ``[B, N, C]`` scaled clouds, same dtype and device.
    """
    if not isinstance(points, Tensor) or points.dim() != 3 or points.shape[-1] < 3:
        shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
        raise ValueError(f"vote_scales expects points [B, N, C] with C >= 3 (xyz first), got {shape}")
    if not points.is_floating_point():
        raise ValueError(f"vote_scales expects floating points, got dtype {points.dtype}")
    s = _uniform((points.shape[0], 1, 3), *scale_range, generator, points)
    return _scale_columns(points, s)
