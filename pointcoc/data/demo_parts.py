"""Built-in part-segmentation demo: synthetic shapes with labelled parts in ShapeNetPart's normal-resampled layout.

``ensure_partseg_demo(root)`` generates, if absent::

    root/parts/   synsetoffset2category.txt                 "<Name>\\t<synset>" per line (the release's synsets)
                  train_test_split/shuffled_{train,val,test}_file_list.json   ["shape_data/<synset>/<id>", ...]
                  <synset>/<id>.txt                         rows "x y z nx ny nz part", part a GLOBAL id (0..49)
                  pointcoc_demo.json                        -> pointcoc.data.ShapeNetPart(root / "parts", split)

Five of ShapeNetPart's categories, built from primitive surfaces; each part gets one of its
category's standard global ids (:data:`~pointcoc.data.shapenetpart.SHAPENETPART_PARTS`), chosen
after the part names usually given for the release (:data:`PART_DEMO_PARTS`)::

    Airplane  0 fuselage (cylinder, hemispherical nose, tapered tail cone), 1 wings (two swept slabs),
              2 tail (vertical fin and two stabilisers), 3 engines (2 or 4 nacelles under the wings)
    Chair    12 back (a slab, tilted back up to 15 degrees), 13 seat (slab), 14 legs (4 bars),
             15 arms (optional, half the chairs: a bar and a post each side)
    Lamp     24 base (flat cylinder), 25 shade (open cone frustum), 26 canopy (optional, half the
             lamps: a bulb sphere under the shade), 27 pole (thin cylinder)
    Mug      36 handle (half torus on the side), 37 body (open cylinder side and bottom disk)
    Table    47 top (slab), 48 legs (4 bars or 4 cylinders), 49 support (optional, half the
             tables: a lower shelf)

As ShapeNetPart, shapes are axis-aligned with y up (here turned about y by up to 15 degrees).
Every proportion is drawn per shape (mug radius and height, handle size, pole height, wing
span and sweep, ...), so no fixed coordinate threshold separates the parts. Points are drawn
on the surfaces proportionally to area, with a minimum per part (``max(num_points // 40, ...)``)
so that small parts (engines, arms) always appear; every shape has between ``min_points`` and
``max_points`` points (default 2,300..3,000, more than the 2,048 of a training sample, so a
full-shape evaluation differs from a sample). Normals are the exact outward unit normals of
the surfaces before the noise; xyz is normalised into the unit sphere and then gets Gaussian
noise (sigma ``noise``, default 0.008). Points within a file are shuffled.

Everything is deterministic for a seed (torch's RNG in private generators, one per split and
category, so the shapes of one category do not depend on the others; numbers identical for
the same torch version). The default config (580 shapes, 1.53 million points, 91 MB of text)
takes about 3 s on a 2-core CPU (measured: 2.4-2.6 s idle, 3.2-3.8 s beside a training run on
both cores; half of it formatting the text). It runs torch on one thread: with two, on that
busy machine, it took 25-34 s.
Generation goes through :mod:`pointcoc.data.demo`'s machinery: a temporary folder inside
``root`` renamed into place under an advisory lock, so concurrent callers never see a
half-written folder; an existing complete folder is never modified (a warning says when it
was written by another config or demo version).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pointcoc.data.demo import MARKER, _complete, _disk_part, _lock, _materialize, _sample_mesh, _side_part, _u, _unit
from pointcoc.data.shapenetpart import SHAPENETPART_PARTS
from pointcoc.errors import InputError

__all__ = ["PartDemoConfig", "make_part_shape", "write_partseg_demo", "ensure_partseg_demo", "PART_DEMO_CATEGORIES",
           "PART_DEMO_PARTS", "PART_DEMO_OPTIONAL", "PART_DEMO_VERSION"]

log = logging.getLogger(__name__)

#: Bumped when the generated shapes change; stored in the marker's counts as ``part_demo_version``.
PART_DEMO_VERSION = 1

#: category -> {primitive part: its global ShapeNetPart part id}
PART_DEMO_PARTS: dict[str, dict[str, int]] = {
    "Airplane": {"fuselage": 0, "wings": 1, "tail": 2, "engines": 3},
    "Chair": {"back": 12, "seat": 13, "legs": 14, "arms": 15},
    "Lamp": {"base": 24, "shade": 25, "canopy": 26, "pole": 27},
    "Mug": {"handle": 36, "body": 37},
    "Table": {"top": 47, "legs": 48, "support": 49},
}
#: the parts present in only some shapes (each with probability 1/2)
PART_DEMO_OPTIONAL: dict[str, tuple[str, ...]] = {"Chair": ("arms",), "Lamp": ("canopy",), "Table": ("support",)}
PART_DEMO_CATEGORIES: tuple[str, ...] = tuple(PART_DEMO_PARTS)

for _name, _parts in PART_DEMO_PARTS.items():  # the table above stays within the release's ids
    assert sorted(_parts.values()) == list(SHAPENETPART_PARTS[_name][1]), _name

_SPLITS = ("train", "val", "test")
_ROW_FORMAT = "%.6f %.6f %.6f %.6f %.6f %.6f %d"


@dataclass(frozen=True)
class PartDemoConfig:
    """Sizes, noise and seed of the part demo (the defaults are what ``ensure_partseg_demo`` writes).

    Attributes:
        train_per_category, val_per_category, test_per_category: shapes of each category per split.
        min_points, max_points: each shape has a number of points uniform in this range (inclusive).
        noise: sigma of the Gaussian noise on xyz, after normalisation into the unit sphere.
        seed: the seed of every generator.
        categories: a subset of :data:`PART_DEMO_CATEGORIES`, in label order.
    """

    train_per_category: int = 80
    val_per_category: int = 16
    test_per_category: int = 20
    min_points: int = 2300
    max_points: int = 3000
    noise: float = 0.008
    seed: int = 0
    categories: tuple[str, ...] = PART_DEMO_CATEGORIES

    def __post_init__(self) -> None:
        _check_categories(self.categories)
        if len(set(self.categories)) != len(self.categories) or not self.categories:
            raise InputError(f"categories must be distinct and at least one, got {list(self.categories)}")
        sizes = (self.train_per_category, self.val_per_category, self.test_per_category)
        if min(sizes) < 1:
            raise InputError(f"every split needs at least one shape per category, got {sizes}")
        if not 1 <= self.min_points <= self.max_points:
            raise InputError(f"need 1 <= min_points <= max_points, got {self.min_points}, {self.max_points}")
        if not self.noise >= 0:
            raise InputError(f"noise must be >= 0, got {self.noise}")


def _check_categories(names: tuple[str, ...] | list[str]) -> None:
    unknown = [n for n in names if n not in PART_DEMO_PARTS]
    if unknown:
        raise InputError(f"unknown part-demo categories {unknown}; known: {list(PART_DEMO_CATEGORIES)}")


# ----------------------------------------------------------------------------- surfaces
# A surface: (global part id, area, sampler M -> (points [M, 3], outward unit normals [M, 3])).
_Sampler = Callable[[int], tuple[Tensor, Tensor]]
_Surface = tuple[int, float, _Sampler]


def _r(g: torch.Generator, lo: float, hi: float) -> float:
    """One uniform number in ``[lo, hi)``."""
    return float(_u(g, 1, lo=lo, hi=hi))


def _coin(g: torch.Generator, p: float = 0.5) -> bool:
    return bool(torch.rand((), generator=g) < p)


def _place(pts: Tensor, nrm: Tensor, axis: int, origin: tuple[float, float, float]) -> tuple[Tensor, Tensor]:
    """Local frame (z along the primitive's axis) -> world: z to ``axis`` by a cyclic permutation, then ``+ origin``."""
    idx = [0, 0, 0]
    idx[axis], idx[(axis + 1) % 3], idx[(axis + 2) % 3] = 2, 0, 1
    return pts[:, idx] + torch.tensor(origin), nrm[:, idx]


def _tube(g: torch.Generator, part: int, radius: float, length: float, axis: int,
          start: tuple[float, float, float]) -> _Surface:
    """Open cylinder side of ``radius`` from ``start`` along ``+axis`` over ``length``."""
    def sample(m: int) -> tuple[Tensor, Tensor]:
        pts, nrm = _side_part(g, 1, m, torch.tensor([[length / 2]]), radius)
        pts = pts[0] + torch.tensor([0.0, 0.0, length / 2])
        return _place(pts, nrm[0], axis, start)
    return part, 2 * math.pi * radius * length, sample


def _disk(g: torch.Generator, part: int, radius: float, axis: int, sign: float,
          centre: tuple[float, float, float]) -> _Surface:
    """Disk of ``radius`` at ``centre``, normal to ``axis``, facing ``sign`` (+1 or -1) along it."""
    def sample(m: int) -> tuple[Tensor, Tensor]:
        pts, nrm = _disk_part(g, 1, m, torch.zeros(1, 1), sign, radius)
        return _place(pts[0], nrm[0], axis, centre)
    return part, math.pi * radius**2, sample


def _cylinder(g: torch.Generator, part: int, radius: float, length: float, axis: int,
              start: tuple[float, float, float]) -> list[_Surface]:
    """Closed cylinder: side and both end disks."""
    end = list(start)
    end[axis] += length
    return [_tube(g, part, radius, length, axis, start), _disk(g, part, radius, axis, -1.0, start),
            _disk(g, part, radius, axis, 1.0, (end[0], end[1], end[2]))]


def _frustum(g: torch.Generator, part: int, r0: float, r1: float, length: float, axis: int,
             start: tuple[float, float, float]) -> _Surface:
    """Open cone frustum from radius ``r0`` at ``start`` to ``r1`` at ``start + length`` along ``axis``."""
    slope = (r1 - r0) / length  # dr/dz

    def sample(m: int) -> tuple[Tensor, Tensor]:
        u = _u(g, m)
        if abs(r1 - r0) > 1e-9:  # density along z proportional to r(z): r = sqrt(r0^2 + u (r1^2 - r0^2))
            r = torch.sqrt(r0**2 + u * (r1**2 - r0**2))
            z = (r - r0) / slope
        else:
            r, z = torch.full_like(u, r0), u * length
        theta = _u(g, m, hi=2 * math.pi)
        c, s = torch.cos(theta), torch.sin(theta)
        pts = torch.stack([r * c, r * s, z], -1)
        nrm = _unit(torch.stack([c, s, torch.full_like(c, -slope)], -1))
        return _place(pts, nrm, axis, start)
    return part, math.pi * (r0 + r1) * math.hypot(length, r1 - r0), sample


def _sphere(g: torch.Generator, part: int, radius: float, centre: tuple[float, float, float],
            half_axis: int | None = None, half_sign: float = 1.0) -> _Surface:
    """Sphere, or with ``half_axis`` the hemisphere on the ``half_sign`` side of that axis."""
    def sample(m: int) -> tuple[Tensor, Tensor]:
        v = _unit(torch.randn(m, 3, generator=g))
        if half_axis is not None:
            v[:, half_axis] = half_sign * v[:, half_axis].abs()
        return radius * v + torch.tensor(centre), v
    return part, (2 if half_axis is not None else 4) * math.pi * radius**2, sample


def _half_torus(g: torch.Generator, part: int, ring: float, tube: float, centre: tuple[float, float, float]
                ) -> _Surface:
    """The ``x >= 0`` half of a torus in the x-y plane (ring radius ``ring``, tube radius ``tube``): a mug handle."""
    def sample(m: int) -> tuple[Tensor, Tensor]:
        k = 4 * m + 64  # area density ~ (ring + tube cos t): rejection, keeping the first m accepted
        t = _u(g, k, hi=2 * math.pi)
        accept = _u(g, k) * (ring + tube) < ring + tube * torch.cos(t)
        key = _u(g, k) + (~accept).float() * 2
        t = t[key.argsort()[:m]]
        phi = _u(g, m, lo=-math.pi / 2, hi=math.pi / 2)
        ct, st, cp, sp = torch.cos(t), torch.sin(t), torch.cos(phi), torch.sin(phi)
        arm = ring + tube * ct
        pts = torch.stack([arm * cp, arm * sp, tube * st], -1) + torch.tensor(centre)
        return pts, torch.stack([ct * cp, ct * sp, st], -1)
    return part, 2 * math.pi**2 * ring * tube, sample


# quads of a hexahedron whose corner i sits at the bits (i & 1, i & 2, i & 4) of a topological cube
_HEX_QUADS = ((0, 2, 6, 4), (1, 3, 7, 5), (0, 1, 5, 4), (2, 3, 7, 6), (0, 1, 3, 2), (4, 5, 7, 6))


def _hexahedron(g: torch.Generator, part: int, corners: Tensor) -> _Surface:
    """Surface of a convex hexahedron ``corners [8, 3]`` (box, parallelepiped, trapezoid slab)."""
    tris = torch.stack([corners[[a, b, c]] for q in _HEX_QUADS for a, b, c in ((q[0], q[1], q[2]), (q[0], q[2], q[3]))])
    area = 0.5 * float(torch.linalg.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]).norm(dim=-1).sum())

    def sample(m: int) -> tuple[Tensor, Tensor]:
        pts, nrm = _sample_mesh(tris[None], g, m)
        return pts[0], nrm[0]
    return part, area, sample


def _box(g: torch.Generator, part: int, lo: tuple[float, float, float], hi: tuple[float, float, float]) -> _Surface:
    """Axis-aligned box from corner ``lo`` to corner ``hi``."""
    corners = torch.tensor([[(lo, hi)[(i >> a) & 1][a] for a in range(3)] for i in range(8)])
    return _hexahedron(g, part, corners)


def _slab(g: torch.Generator, part: int, span: tuple[float, float], root: tuple[float, float],
          tip: tuple[float, float], level: float, thick: float, axes: tuple[int, int, int]) -> _Surface:
    """A trapezoid slab: along ``axes[0]`` from ``span[0]`` (chord ``root = (back, front)`` along ``axes[2]``)
    to ``span[1]`` (chord ``tip``), ``thick`` thick about ``level`` along ``axes[1]`` (wings, fins)."""
    corners = torch.zeros(8, 3)
    for i in range(8):
        s, t, c = i & 1, (i >> 1) & 1, (i >> 2) & 1
        corners[i, axes[0]] = span[s]
        corners[i, axes[1]] = level + (t - 0.5) * thick
        corners[i, axes[2]] = (root, tip)[s][c]
    return _hexahedron(g, part, corners)


# ----------------------------------------------------------------------------- categories
# Each builder: generator -> surfaces of one shape with fresh proportions, y up, in units of about 1.

def _mug(g: torch.Generator) -> list[_Surface]:
    handle, body = PART_DEMO_PARTS["Mug"]["handle"], PART_DEMO_PARTS["Mug"]["body"]
    radius, height = _r(g, 0.3, 0.55), _r(g, 0.7, 1.25)
    ring = height * _r(g, 0.22, 0.36)
    return [_tube(g, body, radius, height, 1, (0.0, 0.0, 0.0)), _disk(g, body, radius, 1, -1.0, (0.0, 0.0, 0.0)),
            _half_torus(g, handle, ring, _r(g, 0.03, 0.065), (radius * _r(g, 0.92, 1.0), height * _r(g, 0.42, 0.56),
                                                               0.0))]


def _lamp(g: torch.Generator) -> list[_Surface]:
    ids = PART_DEMO_PARTS["Lamp"]
    base_r, base_h = _r(g, 0.18, 0.4), _r(g, 0.03, 0.09)
    pole_r, pole_top = _r(g, 0.012, 0.035), _r(g, 0.8, 1.6)
    shade_r, shade_h = _r(g, 0.22, 0.48), _r(g, 0.2, 0.45)
    shade_lo = pole_top - shade_h * _r(g, 0.5, 0.8)
    out = [*_cylinder(g, ids["base"], base_r, base_h, 1, (0.0, 0.0, 0.0)),
           _tube(g, ids["pole"], pole_r, pole_top - base_h, 1, (0.0, base_h, 0.0)),
           _frustum(g, ids["shade"], shade_r, shade_r * _r(g, 0.3, 0.75), shade_h, 1, (0.0, shade_lo, 0.0))]
    if _coin(g):
        bulb = min(_r(g, 0.05, 0.11), 0.8 * shade_r)
        out.append(_sphere(g, ids["canopy"], bulb, (0.0, shade_lo + bulb * _r(g, 0.0, 0.8), 0.0)))
    return out


def _legs(g: torch.Generator, part: int, half_x: float, half_z: float, width: float, height: float,
          round_legs: bool) -> list[_Surface]:
    """Four vertical legs from ``y = 0`` to ``height``, centred ``(+-half_x, +-half_z)``."""
    out: list[_Surface] = []
    for sx in (-1.0, 1.0):
        for sz in (-1.0, 1.0):
            x, z = sx * half_x, sz * half_z
            if round_legs:
                out += [_tube(g, part, width / 2, height, 1, (x, 0.0, z)),
                        _disk(g, part, width / 2, 1, -1.0, (x, 0.0, z))]
            else:
                out.append(_box(g, part, (x - width / 2, 0.0, z - width / 2), (x + width / 2, height, z + width / 2)))
    return out


def _table(g: torch.Generator) -> list[_Surface]:
    ids = PART_DEMO_PARTS["Table"]
    half_x, half_z = _r(g, 0.4, 0.85), _r(g, 0.25, 0.5)
    thick, top_y = _r(g, 0.035, 0.08), _r(g, 0.55, 0.95)
    leg_w, inset = _r(g, 0.03, 0.08), _r(g, 0.02, 0.12)
    leg_x, leg_z = half_x - inset - leg_w / 2, half_z - inset - leg_w / 2
    out = [_box(g, ids["top"], (-half_x, top_y - thick, -half_z), (half_x, top_y, half_z)),
           *_legs(g, ids["legs"], leg_x, leg_z, leg_w, top_y - thick, _coin(g))]
    if _coin(g):
        y = top_y * _r(g, 0.12, 0.35)
        out.append(_box(g, ids["support"], (-leg_x, y, -leg_z), (leg_x, y + _r(g, 0.015, 0.04), leg_z)))
    return out


def _chair(g: torch.Generator) -> list[_Surface]:
    ids = PART_DEMO_PARTS["Chair"]
    half_x, half_z = _r(g, 0.2, 0.32), _r(g, 0.2, 0.3)
    seat_t, seat_y = _r(g, 0.04, 0.09), _r(g, 0.38, 0.55)
    leg_w = _r(g, 0.03, 0.06)
    back_t, back_h, tilt = _r(g, 0.03, 0.07), _r(g, 0.35, 0.75), math.tan(math.radians(_r(g, 0.0, 15.0)))
    out = [_box(g, ids["seat"], (-half_x, seat_y - seat_t, -half_z), (half_x, seat_y, half_z)),
           *_legs(g, ids["legs"], half_x - leg_w / 2, half_z - leg_w / 2, leg_w, seat_y - seat_t, False)]
    back = torch.tensor([[(-half_x, half_x)[i & 1], (seat_y, seat_y + back_h)[(i >> 1) & 1],
                          (-half_z, -half_z + back_t)[(i >> 2) & 1]] for i in range(8)])
    back[:, 2] -= (back[:, 1] - seat_y) * tilt  # leans backwards (towards -z)
    out.append(_hexahedron(g, ids["back"], back))
    if _coin(g):
        arm_y, arm_w, arm_t = seat_y + _r(g, 0.15, 0.28), _r(g, 0.03, 0.07), _r(g, 0.025, 0.05)
        front = half_z * _r(g, 0.7, 1.0)
        for sx in (-1.0, 1.0):
            x0, x1 = sorted((sx * half_x, sx * (half_x - arm_w)))
            out.append(_box(g, ids["arms"], (x0, arm_y - arm_t, -half_z + back_t), (x1, arm_y, front)))
            out.append(_box(g, ids["arms"], (x0, seat_y, front - arm_w), (x1, arm_y - arm_t, front)))
    return out


def _airplane(g: torch.Generator) -> list[_Surface]:
    ids = PART_DEMO_PARTS["Airplane"]
    radius, body = _r(g, 0.07, 0.14), _r(g, 1.2, 1.9)  # the fuselage lies along z, nose at +z
    tail_len, tail_r = _r(g, 0.25, 0.5), radius * _r(g, 0.2, 0.45)
    front, back = body / 2, -body / 2
    out = [_tube(g, ids["fuselage"], radius, body, 2, (0.0, 0.0, back)),
           _sphere(g, ids["fuselage"], radius, (0.0, 0.0, front), half_axis=2, half_sign=1.0),
           _frustum(g, ids["fuselage"], tail_r, radius, tail_len, 2, (0.0, 0.0, back - tail_len)),
           _disk(g, ids["fuselage"], tail_r, 2, -1.0, (0.0, 0.0, back - tail_len))]
    # wings: swept trapezoids from inside the fuselage to the tips
    span, chord = _r(g, 0.55, 1.1), body * _r(g, 0.18, 0.32)
    tip_chord, sweep = chord * _r(g, 0.3, 0.65), _r(g, 0.0, 0.6) * span
    lead, wing_y, wing_t = _r(g, -0.1, 0.25) * body / 2 + chord / 2, -radius * _r(g, 0.0, 0.6), _r(g, 0.02, 0.04)
    root_x = radius * 0.5
    for sx in (-1.0, 1.0):
        out.append(_slab(g, ids["wings"], (sx * root_x, sx * (radius + span)), (lead - chord, lead),
                         (lead - sweep - tip_chord, lead - sweep), wing_y, wing_t, (0, 1, 2)))
    # tail: a vertical fin and two horizontal stabilisers at the back
    fin_h, fin_c = _r(g, 0.2, 0.45), tail_len * _r(g, 0.8, 1.4)
    fin_back, fin_sweep = back - tail_len * 0.9, fin_h * _r(g, 0.3, 1.0)
    out.append(_slab(g, ids["tail"], (radius * 0.5, radius + fin_h), (fin_back, fin_back + fin_c),
                     (fin_back - fin_sweep * 0.3, fin_back - fin_sweep * 0.3 + fin_c * 0.5), 0.0, _r(g, 0.015, 0.03),
                     (1, 0, 2)))
    stab_span, stab_y = _r(g, 0.18, 0.4), radius * _r(g, -0.2, 0.4)
    for sx in (-1.0, 1.0):
        out.append(_slab(g, ids["tail"], (sx * tail_r * 0.5, sx * (tail_r + stab_span)),
                         (fin_back, fin_back + fin_c * 0.8), (fin_back - stab_span * 0.3, fin_back + fin_c * 0.35),
                         stab_y, 0.02, (0, 1, 2)))
    # engines: nacelles under the wings, ahead of the leading edge at their span position
    eng_r, eng_len = _r(g, 0.04, 0.075), _r(g, 0.18, 0.35)
    fractions = (_r(g, 0.25, 0.4), _r(g, 0.55, 0.75)) if _coin(g, 0.3) else (_r(g, 0.25, 0.55),)
    for f in fractions:
        y = wing_y - wing_t / 2 - eng_r * 1.1
        edge = lead - sweep * f
        for sx in (-1.0, 1.0):
            x = sx * (radius + span * f)
            out += _cylinder(g, ids["engines"], eng_r, eng_len, 2, (x, y, edge - eng_len * 0.6))
    return out


_BUILDERS: dict[str, Callable[[torch.Generator], list[_Surface]]] = {
    "Airplane": _airplane, "Chair": _chair, "Lamp": _lamp, "Mug": _mug, "Table": _table,
}
assert tuple(_BUILDERS) == PART_DEMO_CATEGORIES


def _allocate(areas: np.ndarray, total: int, minimum: int) -> np.ndarray:
    """Integer counts summing to ``total``, proportional to ``areas`` but at least ``minimum`` each."""
    fixed = np.zeros(len(areas), dtype=bool)
    share = total * areas / areas.sum()
    for _ in range(len(areas)):
        free = total - minimum * fixed.sum()
        share = np.where(fixed, minimum, free * areas / areas[~fixed].sum())
        low = ~fixed & (share < minimum)
        if not low.any():
            break
        fixed |= low
    counts = np.floor(share).astype(np.int64)
    rest = total - int(counts.sum())
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


def make_part_shape(category: str, num_points: int, g: torch.Generator, noise: float = 0.008,
                    max_yaw: float = 15.0) -> tuple[Tensor, Tensor, Tensor]:
    """One random shape of ``category`` with its parts.

    Args:
        category: one of :data:`PART_DEMO_CATEGORIES`.
        num_points: points of the shape; every part gets at least ``max(num_points // 40,
            min(32, num_points // (2 * parts)))`` of them (so each appears from ``2 * parts`` points on).
        g: the generator all randomness comes from.
        noise: sigma of the Gaussian noise added to xyz after normalisation into the unit sphere.
        max_yaw: the shape turns about the up axis (y) by an angle uniform in ``[-max_yaw, max_yaw]`` degrees.

    Returns:
        ``(xyz [N, 3] float32, normals [N, 3] float32 (unit, outward, exact before the noise),
        parts [N] int64 (global ShapeNetPart ids))`` with ``N = num_points``, in a random order.

    Raises:
        ValueError: for an unknown category (naming the known ones) or ``num_points < 1``.
    """
    if category not in _BUILDERS:
        raise InputError(f"unknown part-demo category {category!r}; known: {list(PART_DEMO_CATEGORIES)}")
    if isinstance(num_points, bool) or int(num_points) < 1:
        raise InputError(f"num_points must be >= 1, got {num_points!r}")
    surfaces = _BUILDERS[category](g)
    part_ids = sorted({p for p, _, _ in surfaces})
    part_area = np.array([sum(a for p, a, _ in surfaces if p == pid) for pid in part_ids])
    minimum = max(num_points // 40, min(32, num_points // (2 * len(part_ids))))
    per_part = _allocate(part_area, num_points, minimum)
    pts, nrm, lab = [], [], []
    for pid, count in zip(part_ids, per_part.tolist()):
        mine = [(a, s) for p, a, s in surfaces if p == pid]
        if count == 0:
            continue
        weights = torch.tensor([a for a, _ in mine], dtype=torch.float64)
        split = torch.bincount(torch.multinomial(weights, count, replacement=True, generator=g), minlength=len(mine))
        for (_, sample), m in zip(mine, split.tolist()):
            if m:
                p, n = sample(m)
                pts.append(p)
                nrm.append(n)
        lab.append(torch.full((count,), pid, dtype=torch.int64))
    xyz, normals, parts = torch.cat(pts), _unit(torch.cat(nrm)), torch.cat(lab)
    yaw = math.radians(_r(g, -max_yaw, max_yaw))
    c, s = math.cos(yaw), math.sin(yaw)
    rot = torch.tensor([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])  # x' = c x + s z, z' = -s x + c z
    xyz, normals = xyz @ rot, normals @ rot
    xyz = xyz - xyz.mean(0)
    xyz = xyz / xyz.norm(dim=-1).max().clamp_min(1e-12)
    xyz = xyz + noise * torch.randn(xyz.shape, generator=g)
    order = torch.randperm(num_points, generator=g)
    return xyz[order].float().contiguous(), normals[order].float().contiguous(), parts[order]


def _format_rows(xyz: Tensor, normals: Tensor, parts: Tensor) -> str:
    rows = zip(*xyz.double().T.tolist(), *normals.double().T.tolist(), parts.tolist())
    return "\n".join(_ROW_FORMAT % row for row in rows) + "\n"


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one intra-op thread meanwhile: the tensors of one shape are small, and on a busy 2-core machine
    (a training run beside) two OpenMP threads made the generation 15 times slower (measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def write_partseg_demo(directory: str | Path, config: PartDemoConfig = PartDemoConfig()) -> dict[str, int]:
    """Write the part demo into ``directory`` (ShapeNetPart's normal-resampled layout).

    Returns:
        ``{"train": shapes, "val": shapes, "test": shapes, "points": points over all shapes,
        "part_demo_version": PART_DEMO_VERSION}``.
    """
    directory = Path(directory)
    (directory / "train_test_split").mkdir(parents=True, exist_ok=True)
    names = list(config.categories)
    synsets = [SHAPENETPART_PARTS[n][0] for n in names]
    (directory / "synsetoffset2category.txt").write_text("".join(f"{n}\t{s}\n" for n, s in zip(names, synsets)))
    for s in synsets:
        (directory / s).mkdir(exist_ok=True)
    counts: dict[str, int] = {}
    total = 0
    sizes = {"train": config.train_per_category, "val": config.val_per_category, "test": config.test_per_category}
    with _one_thread():
        for k, split in enumerate(_SPLITS):
            counts[split], points = _write_split(directory, config, k, sizes[split], names, synsets)
            total += points
    counts["points"] = total
    counts["part_demo_version"] = PART_DEMO_VERSION
    return counts


def _write_split(directory: Path, config: PartDemoConfig, k: int, size: int, names: list[str], synsets: list[str]
                 ) -> tuple[int, int]:
    """The shapes and the file list of split ``_SPLITS[k]`` (``size`` shapes per category); returns (shapes, points)."""
    split, standard = _SPLITS[k], list(SHAPENETPART_PARTS)
    entries, total = [], 0
    for name, synset in zip(names, synsets):
        # one stream per (seed, split, category): a category's shapes do not depend on the others
        g = torch.Generator().manual_seed(1_000_003 * config.seed + 64 * k + standard.index(name))
        for i in range(size):
            n = int(torch.randint(config.min_points, config.max_points + 1, (), generator=g))
            xyz, normals, parts = make_part_shape(name, n, g, noise=config.noise)
            shape_id = f"demo_{split}_{i:05d}"
            (directory / synset / f"{shape_id}.txt").write_text(_format_rows(xyz, normals, parts))
            entries.append(f"shape_data/{synset}/{shape_id}")
            total += n
    order = torch.randperm(len(entries), generator=torch.Generator().manual_seed(1_000_003 * config.seed + 48 + k))
    listing = directory / "train_test_split" / f"shuffled_{split}_file_list.json"
    listing.write_text(json.dumps([entries[j] for j in order.tolist()]))
    return len(entries), total


def ensure_partseg_demo(root: str | Path = "data/demo", config: PartDemoConfig | None = None) -> Path:
    """Generate the part demo into ``root/parts`` if absent; return that folder.

    ``ShapeNetPart(ensure_partseg_demo(root), split, use_normals=True)`` reads it. Idempotent: a
    complete folder is left alone (a warning says when its config or version differs from the
    asked one; delete it yourself to regenerate). Safe with concurrent callers (the lock
    ``root/.lock`` and an atomic rename, as :func:`~pointcoc.data.demo.ensure_demo_data`);
    a folder that exists but is incomplete raises a ``ValueError``.
    """
    root = Path(root)
    config = config or PartDemoConfig()
    target = root / "parts"
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root / ".lock"):
        if target.is_dir() and _complete(target):
            _warn_if_stale(target, config)
        else:
            _materialize(root, "parts", write_partseg_demo, config)  # type: ignore[arg-type]
    return target


def _warn_if_stale(target: Path, config: PartDemoConfig) -> None:
    """Warn when ``target`` was written with another config or part-demo version (JSON turns tuples into lists,
    so the configs are compared after a JSON round trip; ``_materialize``'s own check would always differ)."""
    try:
        meta = json.loads((target / MARKER).read_text())
    except (OSError, ValueError):
        meta = {}
    asked = json.loads(json.dumps(asdict(config)))
    version = (meta.get("counts") or {}).get("part_demo_version")
    if meta.get("config") != asked or version != PART_DEMO_VERSION:
        log.warning("%s was generated with another part-demo version/config (version %s, %s); using it as it is "
                    "(delete it yourself to regenerate)", target, version, meta.get("config"))
