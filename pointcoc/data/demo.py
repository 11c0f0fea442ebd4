"""Built-in demo data: synthetic 3D shapes in the ModelNet40 HDF5 layout and drawn images in the ImageNet layout.

``ensure_demo_data(root)`` generates, if absent::

    root/points/   ply_data_train0.h5, ply_data_train1.h5, ply_data_test0.h5 (data [n, 1024, 3] float32,
                   label [n, 1] int64, normal [n, 1024, 3] float32), shape_names.txt, train_files.txt,
                   test_files.txt, pointcoc_demo.json      -> pointcoc.data.modelnet40(root / "points")
    root/images/   train/<class>/*.png, val/<class>/*.png, pointcoc_demo.json
                                                           -> pointcoc.data.image_folder(root / "images")

Point clouds: 12 classes of geometric surfaces, each cloud with random shape parameters,
a random anisotropic scale (U[0.5, 1.5] per axis), a random rotation about the up axis
(y, as in ModelNet40's aligned models) with a small random tilt (up to 15 degrees), a
partial occlusion (the points beyond a random plane cut are dropped: up to 40 %), 1024
of the remaining points, normalisation to the unit sphere and Gaussian noise
(sigma U[0.005, 0.02]). Normals are exact for the surface before the noise. Rotation and
scale make simple global statistics useless: a linear classifier on them stays far from
solving the task (:func:`linear_baseline_accuracy`, tested).

Everything is deterministic for a seed (torch's RNG in a private generator; numbers
identical for the same torch version). Generation writes into a temporary folder inside
``root`` and renames it into place, so concurrent callers (torchrun ranks) never see a
half-written folder; an existing folder is never modified or deleted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from pointcoc.errors import InputError

__all__ = [
    "DemoConfig", "ensure_demo_data", "make_demo_clouds", "make_demo_image", "write_point_demo",
    "write_image_demo", "global_features", "linear_baseline_accuracy", "DEMO_SHAPES", "DEMO_IMAGE_CLASSES",
    "MARKER",
]

log = logging.getLogger(__name__)

#: Written last into each generated folder; its presence means the folder is complete.
MARKER = "pointcoc_demo.json"
DEMO_VERSION = 2

DEMO_SHAPES = ["sphere", "cube", "cylinder", "cone", "torus", "pyramid", "octahedron", "capsule", "dumbbell",
               "disk", "helix", "bowl"]
DEMO_IMAGE_CLASSES = ["checker", "circle", "square", "stripes", "triangle"]  # sorted: ImageFolder order


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and seed of the demo data (the defaults are what ``ensure_demo_data`` writes)."""

    train_per_class: int = 200
    test_per_class: int = 50
    num_points: int = 1024
    train_files: int = 2
    image_size: int = 32
    image_train_per_class: int = 60
    image_val_per_class: int = 20
    seed: int = 0


# ----------------------------------------------------------------------------- shape samplers
# Each sampler: (B clouds, M points, generator) -> (points [B, M, 3], normals [B, M, 3]) on a
# canonical surface of size about 1, with per-cloud random shape parameters.

def _u(g: torch.Generator, *shape: int, lo: float = 0.0, hi: float = 1.0) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


def _unit(v: Tensor) -> Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _pick(parts: list[tuple[Tensor, Tensor]], weights: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Per point, one of the candidate parts ``[(points [B, M, 3], normals [B, M, 3])]`` by area ``weights [B, K]``."""
    B, M, _ = parts[0][0].shape
    which = torch.multinomial(weights, M, replacement=True, generator=g)  # [B, M]
    pts = torch.stack([p for p, _ in parts])  # [K, B, M, 3]
    nrm = torch.stack([n for _, n in parts])
    idx = which[None, :, :, None].expand(1, B, M, 3)
    return pts.gather(0, idx)[0], nrm.gather(0, idx)[0]


def _circle(g: torch.Generator, B: int, M: int) -> tuple[Tensor, Tensor]:
    theta = _u(g, B, M, hi=2 * math.pi)
    return torch.cos(theta), torch.sin(theta)


def _sphere_pts(g: torch.Generator, B: int, M: int) -> Tensor:
    return _unit(torch.randn(B, M, 3, generator=g))


def _disk_part(g: torch.Generator, B: int, M: int, z: Tensor, up: float, radius: Tensor | float = 1.0
               ) -> tuple[Tensor, Tensor]:
    r = torch.sqrt(_u(g, B, M)) * radius
    c, s = _circle(g, B, M)
    pts = torch.stack([r * c, r * s, z.expand(B, M)], -1)
    nrm = torch.zeros(B, M, 3)
    nrm[..., 2] = up
    return pts, nrm


def _side_part(g: torch.Generator, B: int, M: int, half: Tensor, radius: Tensor | float = 1.0
               ) -> tuple[Tensor, Tensor]:
    c, s = _circle(g, B, M)
    z = (2 * _u(g, B, M) - 1) * half
    pts = torch.stack([radius * c, radius * s, z], -1)
    return pts, torch.stack([c, s, torch.zeros_like(c)], -1)


def _sample_mesh(verts: Tensor, g: torch.Generator, M: int) -> tuple[Tensor, Tensor]:
    """Uniform samples on triangles ``verts [B, F, 3, 3]`` (convex solid), outward normals."""
    B, F = verts.shape[:2]
    a, b, c = verts[:, :, 0], verts[:, :, 1], verts[:, :, 2]
    cross = torch.linalg.cross(b - a, c - a)
    area = cross.norm(dim=-1)
    normal = _unit(cross)
    center = verts.mean(dim=(1, 2), keepdim=True)[:, :, 0]  # [B, 1, 3], inside a convex solid
    outward = torch.sign(((a + b + c) / 3 - center).mul(normal).sum(-1, keepdim=True))
    normal = normal * outward
    face = torch.multinomial(area, M, replacement=True, generator=g)  # [B, M]
    u, v = _u(g, B, M, 1), _u(g, B, M, 1)
    flip = (u + v) > 1
    u, v = torch.where(flip, 1 - u, u), torch.where(flip, 1 - v, v)
    idx = face[..., None].expand(B, M, 3)
    fa, fb, fc = (t.gather(1, idx) for t in (a, b, c))
    return fa + u * (fb - fa) + v * (fc - fa), normal.gather(1, idx)


def _sphere(g: torch.Generator, B: int, M: int) -> tuple[Tensor, Tensor]:
    p = _sphere_pts(g, B, M)
    return p, p.clone()


def _cube(g: torch.Generator, B: int, M: int) -> tuple[Tensor, Tensor]:
    pts = 2 * _u(g, B, M, 3) - 1
    axis = torch.randint(3, (B, M, 1), generator=g)
    sign = torch.randint(2, (B, M, 1), generator=g).float() * 2 - 1
    pts = pts.scatter(-1, axis, sign)
    return pts, torch.zeros(B, M, 3).scatter(-1, axis, sign)


def _cylinder(g: torch.Generator, B: int, M: int) -> tuple[Tensor, Tensor]:
    half = _u(g, B, 1, lo=0.7, hi=1.3)
    parts = [_side_part(g, B, M, half), _disk_part(g, B, M, half, 1.0), _disk_part(g, B, M, -half, -1.0)]
    w = torch.cat([4 * math.pi * half, torch.full((B, 2), math.pi)], 1)
    return _pick(parts, w, g)


def _cone(g: torch.Generator, B: int, M: int) -> tuple[Tensor, Tensor]:
    h = _u(g, B, 1, lo=1.5, hi=2.5)
    t = torch.sqrt(_u(g, B, M))  # distance fraction from the apex: area grows linearly
    c, s = _circle(g, B, M)
    side = torch.stack([t * c, t * s, h / 2 - t * h], -1)
    side_n = _unit(torch.stack([h.expand(B, M) * c, h.expand(B, M) * s, torch.ones(B, M)], -1))
    w = torch.cat([math.pi * torch.sqrt(1 + h**2), torch.full((B, 1), math.pi)], 1)
    return _pick([(side, side_n), _disk_part(g, B, M, -h / 2, -1.0)], w, g)


def _torus(g: torch.Generator, B: int, M: int) -> tuple[Tensor, Tensor]:
    r = _u(g, B, 1, lo=0.25, hi=0.45)
    ct, st = _circle(g, B, M)
    cp, sp = _circle(g, B, M)
    ring = 1 + r * ct
    pts = torch.stack([ring * cp, ring * sp, r * st], -1)
    return pts, torch.stack([ct * cp, ct * sp, st], -1)


def _pyramid(g: torch.Generator, B: int, M: int) -> tuple[Tensor, Tensor]:
    h = _u(g, B, lo=1.2, hi=2.0)
    apex = torch.stack([torch.zeros(B), torch.zeros(B), h / 2], -1)
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    base = torch.cat([corners.expand(B, 4, 2), (-h / 2)[:, None, None].expand(B, 4, 1)], -1)  # [B, 4, 3]
    faces = [torch.stack([base[:, i], base[:, (i + 1) % 4], apex], 1) for i in range(4)]
    faces += [torch.stack([base[:, 0], base[:, 1], base[:, 2]], 1),
              torch.stack([base[:, 0], base[:, 2], base[:, 3]], 1)]
    return _sample_mesh(torch.stack(faces, 1), g, M)


def _octahedron(g: torch.Generator, B: int, M: int) -> tuple[Tensor, Tensor]:
    faces = []
    for sx in (-1.0, 1.0):
        for sy in (-1.0, 1.0):
            for sz in (-1.0, 1.0):
                faces.append(torch.tensor([[sx, 0, 0], [0, sy, 0], [0, 0, sz]]))
    return _sample_mesh(torch.stack(faces)[None].expand(B, 8, 3, 3), g, M)


def _capsule(g: torch.Generator, B: int, M: int) -> tuple[Tensor, Tensor]:
    half = _u(g, B, 1, lo=0.8, hi=1.4)
    caps = []
    for sign in (1.0, -1.0):
        v = _sphere_pts(g, B, M)
        v = torch.cat([v[..., :2], sign * v[..., 2:].abs()], -1)
        caps.append((v + torch.stack([torch.zeros_like(half), torch.zeros_like(half), sign * half], -1), v))
    w = torch.cat([4 * math.pi * half, torch.full((B, 2), 2 * math.pi)], 1)
    return _pick([_side_part(g, B, M, half), *caps], w, g)


def _dumbbell(g: torch.Generator, B: int, M: int) -> tuple[Tensor, Tensor]:
    rho = _u(g, B, 1, lo=0.45, hi=0.6)
    dist = _u(g, B, 1, lo=1.1, hi=1.5)
    balls = []
    for sign in (1.0, -1.0):
        v = _sphere_pts(g, B, M)
        centre = torch.stack([torch.zeros_like(dist), torch.zeros_like(dist), sign * dist], -1)
        balls.append((rho[..., None] * v + centre, v))
    rod_half = dist - 0.9 * rho
    rod = _side_part(g, B, M, rod_half, radius=0.15)
    w = torch.cat([4 * math.pi * rho**2, 4 * math.pi * rho**2, 2 * math.pi * 0.15 * 2 * rod_half], 1)
    return _pick([*balls, rod], w, g)


def _disk(g: torch.Generator, B: int, M: int) -> tuple[Tensor, Tensor]:
    t = 0.04
    parts = [_disk_part(g, B, M, torch.full((B, 1), t), 1.0), _disk_part(g, B, M, torch.full((B, 1), -t), -1.0),
             _side_part(g, B, M, torch.full((B, 1), t))]
    w = torch.tensor([math.pi, math.pi, 4 * math.pi * t]).expand(B, 3)
    return _pick(parts, w, g)


def _helix(g: torch.Generator, B: int, M: int) -> tuple[Tensor, Tensor]:
    turns = _u(g, B, 1, lo=1.5, hi=2.5)
    s = _u(g, B, M) * 2 * math.pi * turns
    rise = 1 / (math.pi * turns)  # dz/ds: the helix climbs from -1 to 1
    centre = torch.stack([torch.cos(s), torch.sin(s), -1 + rise * s], -1)
    tangent = _unit(torch.stack([-torch.sin(s), torch.cos(s), rise.expand(B, M)], -1))
    normal = torch.stack([-torch.cos(s), -torch.sin(s), torch.zeros_like(s)], -1)
    binormal = torch.linalg.cross(tangent, normal)
    ca, sa = _circle(g, B, M)
    offset = ca[..., None] * normal + sa[..., None] * binormal
    return centre + 0.15 * offset, offset


def _bowl(g: torch.Generator, B: int, M: int) -> tuple[Tensor, Tensor]:
    v = _sphere_pts(g, B, M)
    v = torch.cat([v[..., :2], -v[..., 2:].abs()], -1)
    return v, v.clone()


_SAMPLERS: dict[str, Callable[[torch.Generator, int, int], tuple[Tensor, Tensor]]] = {
    "sphere": _sphere, "cube": _cube, "cylinder": _cylinder, "cone": _cone, "torus": _torus, "pyramid": _pyramid,
    "octahedron": _octahedron, "capsule": _capsule, "dumbbell": _dumbbell, "disk": _disk, "helix": _helix,
    "bowl": _bowl,
}
assert list(_SAMPLERS) == DEMO_SHAPES


def _random_rotations(g: torch.Generator, B: int, max_tilt: float = math.radians(15)) -> Tensor:
    """``[B, 3, 3]`` rotations: a uniform turn about the up axis (y), then a tilt of up to ``max_tilt``."""
    yaw = _u(g, B, hi=2 * math.pi)
    tilt = _u(g, B, hi=max_tilt)
    tilt_dir = _u(g, B, hi=2 * math.pi)
    zero, one = torch.zeros(B), torch.ones(B)
    cy, sy = yaw.cos(), yaw.sin()
    r_yaw = torch.stack([torch.stack([cy, zero, sy], -1), torch.stack([zero, one, zero], -1),
                         torch.stack([-sy, zero, cy], -1)], 1)
    # tilt: rotate by `tilt` about the horizontal axis (cos d, 0, sin d) (Rodrigues)
    k = torch.stack([tilt_dir.cos(), zero, tilt_dir.sin()], -1)
    kx = torch.zeros(B, 3, 3)
    kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 0] = -k[:, 2], k[:, 1], k[:, 2]
    kx[:, 1, 2], kx[:, 2, 0], kx[:, 2, 1] = -k[:, 0], -k[:, 1], k[:, 0]
    st, ct = tilt.sin()[:, None, None], tilt.cos()[:, None, None]
    r_tilt = torch.eye(3).expand(B, 3, 3) + st * kx + (1 - ct) * (kx @ kx)
    return r_tilt @ r_yaw


def make_demo_clouds(per_class: int, num_points: int = 1024, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Generate ``per_class`` clouds of each of the 12 :data:`DEMO_SHAPES`.

    Returns:
        ``(points [n, num_points, 3] float32, normals [n, num_points, 3] float32, labels [n] int64)``
        with ``n = 12 * per_class``, classes interleaved in a seeded random order.
    """
    if per_class < 1 or num_points < 1:
        raise ValueError(f"per_class and num_points must be >= 1, got {per_class}, {num_points}")
    g = torch.Generator().manual_seed(seed)
    oversample = 2 * num_points  # the occlusion drops at most 40 %
    all_pts, all_nrm = [], []
    for name in DEMO_SHAPES:
        pts, nrm = _SAMPLERS[name](g, per_class, oversample)
        scale = _u(g, per_class, 1, 3, lo=0.5, hi=1.5)
        pts, nrm = pts * scale, _unit(nrm / scale)
        rot = _random_rotations(g, per_class).transpose(1, 2)
        pts, nrm = pts @ rot, nrm @ rot
        # occlusion: drop the points beyond a random plane (a fraction U[0, 0.4] of them)
        direction = _unit(torch.randn(per_class, 1, 3, generator=g))
        depth = (pts * direction).sum(-1)
        rank = depth.argsort(dim=1).argsort(dim=1)
        keep = rank < (oversample * (1 - _u(g, per_class, 1, hi=0.4))).long()
        key = torch.rand(per_class, oversample, generator=g) + (~keep).float() * 2
        idx = key.argsort(dim=1)[:, :num_points, None].expand(-1, -1, 3)
        pts, nrm = pts.gather(1, idx), nrm.gather(1, idx)
        pts = pts - pts.mean(dim=1, keepdim=True)
        pts = pts / pts.norm(dim=-1).amax(dim=1)[:, None, None]
        pts = pts + _u(g, per_class, 1, 1, lo=0.005, hi=0.02) * torch.randn(pts.shape, generator=g)
        all_pts.append(pts)
        all_nrm.append(nrm)
    labels = torch.arange(len(DEMO_SHAPES)).repeat_interleave(per_class)
    order = torch.randperm(labels.numel(), generator=g)
    return (torch.cat(all_pts)[order].float().contiguous(), torch.cat(all_nrm)[order].float().contiguous(),
            labels[order])


def write_point_demo(directory: str | Path, config: DemoConfig = DemoConfig()) -> dict[str, int]:
    """Write the point demo into ``directory`` (ModelNet40 HDF5 layout); returns clouds per split."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, per_class, seed, nfiles in (("train", config.train_per_class, 2 * config.seed, config.train_files),
                                          ("test", config.test_per_class, 2 * config.seed + 1, 1)):
        pts, nrm, lab = make_demo_clouds(per_class, config.num_points, seed)
        names = []
        for i, chunk in enumerate(torch.arange(lab.numel()).tensor_split(nfiles)):
            name = f"ply_data_{split}{i}.h5"
            with h5py.File(directory / name, "w") as f:
                f.create_dataset("data", data=pts[chunk].numpy())
                f.create_dataset("label", data=lab[chunk].numpy()[:, None])
                f.create_dataset("normal", data=nrm[chunk].numpy())
            names.append(name)
        (directory / f"{split}_files.txt").write_text("".join(n + "\n" for n in names))
        counts[split] = int(lab.numel())
    (directory / "shape_names.txt").write_text("".join(n + "\n" for n in DEMO_SHAPES))
    return counts


# ----------------------------------------------------------------------------- images

def make_demo_image(label: int, size: int, g: torch.Generator) -> Image.Image:
    """One ``size x size`` RGB image of class ``DEMO_IMAGE_CLASSES[label]`` with random colours and placement."""
    def rnd(lo: float = 0.0, hi: float = 1.0) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=g))

    bg = np.array([rnd(0, 255) for _ in range(3)])
    fg = (bg + np.array([rnd(90, 165) for _ in range(3)])) % 256  # a clear contrast to the background
    kind = DEMO_IMAGE_CLASSES[label]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if kind in ("stripes", "checker"):
        angle, period = rnd(0, math.pi), rnd(size / 8, size / 3)
        u = xx * math.cos(angle) + yy * math.sin(angle)
        v = -xx * math.sin(angle) + yy * math.cos(angle)
        mask = np.sin(2 * math.pi * u / period) > 0
        if kind == "checker":
            mask = mask ^ (np.sin(2 * math.pi * v / period) > 0)
        arr = np.where(mask[..., None], fg, bg)
    else:
        img = Image.new("RGB", (size, size), tuple(int(c) for c in bg))
        draw = ImageDraw.Draw(img)
        r = rnd(0.2, 0.4) * size
        cx, cy = rnd(r, size - r), rnd(r, size - r)
        colour = tuple(int(c) for c in fg)
        if kind == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        else:
            corners = 4 if kind == "square" else 3
            start = rnd(0, 2 * math.pi)
            draw.polygon([(cx + r * math.cos(start + 2 * math.pi * k / corners),
                           cy + r * math.sin(start + 2 * math.pi * k / corners)) for k in range(corners)], fill=colour)
        arr = np.asarray(img, dtype=np.float64)
    noise = torch.randn((size, size, 3), generator=g, dtype=torch.float64).numpy() * rnd(2, 12)
    return Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8))


def write_image_demo(directory: str | Path, config: DemoConfig = DemoConfig()) -> dict[str, int]:
    """Write the image demo into ``directory`` (``train/<class>/*.png``, ``val/<class>/*.png``)."""
    directory = Path(directory)
    counts = {}
    for split, per_class, seed in (("train", config.image_train_per_class, 2 * config.seed),
                                   ("val", config.image_val_per_class, 2 * config.seed + 1)):
        g = torch.Generator().manual_seed(10_000 + seed)
        for label, name in enumerate(DEMO_IMAGE_CLASSES):
            folder = directory / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                make_demo_image(label, config.image_size, g).save(folder / f"{name}_{i:04d}.png")
        counts[split] = per_class * len(DEMO_IMAGE_CLASSES)
    return counts


# ----------------------------------------------------------------------------- ensure_demo_data

@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (POSIX ``flock``; a no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _complete(target: Path) -> bool:
    return (target / MARKER).is_file()


def _materialize(root: Path, name: str, writer: Callable[[Path, DemoConfig], dict[str, int]],
                 config: DemoConfig) -> bool:
    """Create ``root/name`` with ``writer`` via a temporary folder and an atomic rename.

    Returns True if this call wrote it, False if it already existed (or another process won the race).
    """
    target = root / name
    if target.exists():
        if not _complete(target):
            raise InputError(f"{target} exists but is not a complete pointcoc demo folder (no {MARKER}); pointcoc "
                             "never deletes data: move it away, or pass another root to ensure_demo_data")
        try:
            meta = json.loads((target / MARKER).read_text())
        except (OSError, ValueError):
            meta = {}
        if meta.get("config") != asdict(config) or meta.get("version") != DEMO_VERSION:
            log.warning("%s was generated with another demo version/config (%s); using it as it is (delete it "
                        "yourself to regenerate)", target, meta.get("config"))
        return False
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-tmp-", dir=root))
    try:
        start = time.perf_counter()
        counts = writer(tmp, config)
        meta = {"version": DEMO_VERSION, "config": asdict(config), "counts": counts,
                "seconds": round(time.perf_counter() - start, 3)}
        (tmp / MARKER).write_text(json.dumps(meta, indent=1) + "\n")
        try:
            os.rename(tmp, target)  # atomic; fails if another process created target meanwhile
        except OSError:
            if _complete(target):
                return False
            raise
        log.info("wrote demo %s into %s: %s in %.1f s", name, target, counts, meta["seconds"])
        return True
    finally:
        if tmp.exists():  # only our own temporary folder
            shutil.rmtree(tmp, ignore_errors=True)


def ensure_demo_data(root: str | Path = "data/demo", config: DemoConfig | None = None) -> Path:
    """Generate the demo data under ``root`` if absent; return ``root``.

    ``root/points`` holds the point demo in the ModelNet40 layout (``modelnet40(root / "points")``),
    ``root/images`` the image demo in the ImageNet layout (``image_folder(root / "images")``).
    Idempotent: complete folders are left alone. Safe with concurrent callers: an advisory
    lock (``root/.lock``) serialises them and each folder appears by an atomic rename of a
    temporary folder. Nothing existing is modified or deleted; a folder that exists but is
    incomplete raises a ``ValueError``.
    """
    root = Path(root)
    config = config or DemoConfig()
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root / ".lock"):
        _materialize(root, "points", write_point_demo, config)
        _materialize(root, "images", write_image_demo, config)
    return root


# ----------------------------------------------------------------------------- linear baseline

def global_features(points: Tensor) -> Tensor:
    """Simple global statistics of clouds ``[B, N, 3]`` -> ``[B, 14]``.

    Per axis: mean, standard deviation, extent (max - min); the sorted eigenvalues of the
    covariance; the mean and standard deviation of the distance to the centroid.
    """
    xyz = points[..., :3].double()
    centred = xyz - xyz.mean(1, keepdim=True)
    cov = centred.transpose(1, 2) @ centred / xyz.shape[1]
    radius = centred.norm(dim=-1)
    return torch.cat([xyz.mean(1), xyz.std(1), xyz.amax(1) - xyz.amin(1), torch.linalg.eigvalsh(cov),
                      radius.mean(1, keepdim=True), radius.std(1, keepdim=True)], 1).float()


def linear_baseline_accuracy(train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], steps: int = 300,
                             seed: int = 0) -> float:
    """Test accuracy of a logistic regression on :func:`global_features`.

    Args:
        train, test: ``(points [n, N, 3], labels [n])``.
        steps: full-batch L-BFGS iterations.

    Returns:
        The test accuracy in ``[0, 1]``.
    """
    xtr, xte = global_features(train[0]), global_features(test[0])
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    ytr = train[1].long()
    classes = int(max(int(ytr.max()), int(test[1].max()))) + 1
    with torch.random.fork_rng(devices=[]):  # seeded initial weights; the caller's random state is left alone
        torch.manual_seed(seed)
        model = torch.nn.Linear(xtr.shape[1], classes)
    opt = torch.optim.LBFGS(model.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xtr), ytr) + 1e-4 * model.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((model(xte).argmax(1) == test[1]).float().mean())
