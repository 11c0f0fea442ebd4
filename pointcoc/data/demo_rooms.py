"""Built-in scene-segmentation demo: synthetic indoor rooms with per-point labels in Pointcept's preprocessed layout.

``ensure_room_demo(root)`` generates, if absent or out of date::

    root/rooms/   classes.txt                      one class name per line, in label order (ROOM_DEMO_CLASSES)
                  {train,val,test}/room_XXXX/      coord.npy [N, 3] float32 (metres), color.npy [N, 3] uint8,
                                                   segment.npy [N] int16 (0..6, no ignored points)
                  pointcoc_demo.json               version, config, counts; written last
                  -> pointcoc.data.scenes.read_scene(folder, num_classes=7) for each of
                     scene_folders(root / "rooms", [split]); room_demo_classes(root / "rooms") -> the names

Seven classes (label = index in :data:`ROOM_DEMO_CLASSES`)::

    0 floor    the floor rectangle (z = 0)
    1 ceiling  the ceiling rectangle (z = room height)
    2 wall     the four walls, minus the door openings
    3 door     1 door (2 in a third of the rooms): a leaf 1-4 cm in front of the wall plane in an opening
               cut out of the wall, and a frame (jambs and head, 5-8 cm wide, 1 cm in front)
    4 table    1-3 tables: a top box (0.70-0.78 m high) and 4 legs
    5 chair    2-6 chairs: seat, back and 4 legs; most face a table side, the others stand free
    6 clutter  2-6 boxes on the floor (mostly against a wall, a quarter with a smaller box on top) and
               0-2 small boxes on each table

Rooms are boxes of floor ``room_size`` x ``room_size`` (each side drawn in the range, default 4.5-7.5 m)
and height ``room_height`` (default 2.6-3.0 m), built axis-aligned in a local frame (floor on
``z = 0``), then turned about z by an angle uniform in ``[-max_yaw, max_yaw]`` degrees and
shifted so that the room's corners have x, y >= 0 (ScanNet style). The furniture is placed by
rejection sampling on the floor plan (footprints do not overlap, tables keep chair space
around them, nothing stands in front of a door); an object that finds no place is left out,
so the counts above are upper bounds. The same object draws its proportions anew every time.

Every surface is a rectangle sampled uniformly at ``density`` points per square metre
(stochastic rounding per rectangle; the bottoms of legs and boxes, resting on something, are
not sampled; hidden faces such as a table top's underside are). Then, as a sensor would:
``holes`` spheres of radius 0.1-0.35 m around random points lose all their points, a random
fraction ``dropout`` of the rest is dropped, and positions get Gaussian noise of sigma
``noise`` (default 5 mm) per axis. Labels are those of the surface a point was drawn on,
exact. Points within a room are shuffled.

Colours are informative but not decisive: each class has a few palettes (floors: woods,
carpets, tiles; walls and ceilings: near-whites, so walls and ceilings look alike; tables:
woods, white, black, so a wooden table can match a wooden floor; chairs: fabrics and wood;
doors: woods, white, grey; clutter: any colour), picked per room or object, varied per
object (+-10 per channel, brightness 0.9-1.1), shaded by the surface's tilt and by the
distance to a light under the ceiling, plus per-point noise (sigma ``color_noise``).

The default config (36 rooms, 24/6/6, 350 points per m^2) gives rooms of 39k-70k points
(38.7k-72.9k over the 180 rooms of seeds 1-5; 1.96 million in all, 33 MB of ``.npy``) and
takes 1.3-2.3 s on a 2-core CPU shared with other jobs (measured: 1.3-1.7 s at a load of 3,
2.0-2.3 s at a load of 5; a tenth of it writing the arrays). Class fractions of the default
set: floor 22.5 %, ceiling 22.4 %, wall 39.3 %, door 1.9 %, table 3.5 %, chair 3.3 %,
clutter 7.1 %.

Everything is deterministic for a seed: room ``i`` of split ``s`` comes from its own numpy
generator, :func:`room_generator` ``(config, s, i)``, so a room does not depend on the others
or on the number of rooms (numbers identical for the same numpy version).

Generation goes into a temporary folder ``root/.rooms-tmp-*`` that is renamed into place under
the advisory lock ``root/.lock`` (the one :mod:`pointcoc.data.demo` uses), so concurrent
callers never see a half-written set. A set is present only when its ``pointcoc_demo.json``
is there, holds this version and the asked config, and its room folders are all there;
otherwise it is regenerated and replaced (a folder at ``root/rooms`` that holds anything but
this layout is never deleted: that is an error).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pointcoc.data.demo import MARKER, _lock
from pointcoc.data.scenes import SCENE_FILE, Scene, write_scene
from pointcoc.errors import InputError

__all__ = ["RoomDemoConfig", "RoomLayout", "make_room", "room_generator", "write_room_demo", "ensure_room_demo",
           "room_demo_classes", "ROOM_DEMO_CLASSES", "ROOM_DEMO_SPLITS", "ROOM_DEMO_VERSION", "ROOM_DEMO_FOLDER",
           "ROOM_CLASSES_FILE"]

log = logging.getLogger(__name__)

#: the class names; a point's label is the index of its class here
ROOM_DEMO_CLASSES: tuple[str, ...] = ("floor", "ceiling", "wall", "door", "table", "chair", "clutter")
FLOOR, CEILING, WALL, DOOR, TABLE, CHAIR, CLUTTER = range(len(ROOM_DEMO_CLASSES))
#: Bumped when the generated rooms change; stored in the meta file, a set of another version is regenerated.
ROOM_DEMO_VERSION = 1
#: the folder under ``root`` that :func:`ensure_room_demo` fills
ROOM_DEMO_FOLDER = "rooms"
ROOM_DEMO_SPLITS: tuple[str, ...] = ("train", "val", "test")
#: the class table of a room set, one name per line
ROOM_CLASSES_FILE = "classes.txt"
_KIND = "pointcoc room demo"

# ----------------------------------------------------------------------------- config


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"RoomDemoConfig `{name}` must be an integer >= {minimum}, got {value!r}")


def _check_float(name: str, value: Any, lo: float, hi: float, *, open_lo: bool = False) -> None:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > hi or value < lo or (open_lo and value == lo):
        where = f"{'(' if open_lo else '['}{lo}, {hi}]"
        raise InputError(f"RoomDemoConfig `{name}` must be a number in {where}, got {value!r}")


def _check_pair(name: str, value: Any, lo: float, hi: float, integer: bool) -> tuple[Any, Any]:
    kind = "integers" if integer else "numbers"
    try:
        a, b = value
    except (TypeError, ValueError):
        raise InputError(f"RoomDemoConfig `{name}` must be a pair (min, max) of {kind} in [{lo}, {hi}], "
                         f"got {value!r}") from None
    for v in (a, b):
        good = (isinstance(v, (int, np.integer)) if integer else isinstance(v, (int, float, np.floating)))
        if isinstance(v, bool) or not good or not math.isfinite(v) or not lo <= v <= hi:
            raise InputError(f"RoomDemoConfig `{name}` must be a pair (min, max) of {kind} in [{lo}, {hi}], "
                             f"got {value!r}")
    if a > b:
        raise InputError(f"RoomDemoConfig `{name}` must be (min, max) with min <= max, got {value!r}")
    return (int(a), int(b)) if integer else (float(a), float(b))


@dataclass(frozen=True)
class RoomDemoConfig:
    """Sizes, noise and seed of the room demo (the defaults are what ``ensure_room_demo`` writes).

    Attributes:
        train_rooms, val_rooms, test_rooms: rooms per split (each >= 1).
        density: points per square metre of sampled surface, before holes and dropout (> 0). 350 gives
            rooms of about 30k-80k points with the default sizes.
        room_size: (min, max) of each floor side in metres (each side drawn uniformly; 2..50).
        room_height: (min, max) of the ceiling height in metres (2.4..10).
        tables, chairs, clutter: (min, max) counts drawn uniformly (inclusive) per room; ``clutter`` counts the
            boxes on the floor (each table gets 0-2 small boxes besides). Objects that find no free place are
            left out.
        noise: sigma in metres of the Gaussian noise on every coordinate (>= 0).
        dropout: fraction of the points dropped at random, in [0, 1).
        holes: spheres (radius 0.1-0.35 m, around random points) whose points are all dropped, per room.
        color_noise: sigma of the per-point Gaussian colour noise, in 0..255 units (>= 0).
        max_yaw: each room turns about z by an angle uniform in [-max_yaw, max_yaw] degrees (0..180).
        seed: the seed (>= 0) of every room's generator (see :func:`room_generator`).
    """

    train_rooms: int = 24
    val_rooms: int = 6
    test_rooms: int = 6
    density: float = 350.0
    room_size: tuple[float, float] = (4.5, 7.5)
    room_height: tuple[float, float] = (2.6, 3.0)
    tables: tuple[int, int] = (1, 3)
    chairs: tuple[int, int] = (2, 6)
    clutter: tuple[int, int] = (2, 6)
    noise: float = 0.005
    dropout: float = 0.05
    holes: int = 3
    color_noise: float = 6.0
    max_yaw: float = 180.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("train_rooms", "val_rooms", "test_rooms"):
            _check_int(name, getattr(self, name), 1)
        _check_int("holes", self.holes, 0)
        _check_int("seed", self.seed, 0)
        _check_float("density", self.density, 0.0, 1e6, open_lo=True)
        _check_float("noise", self.noise, 0.0, 0.5)
        _check_float("dropout", self.dropout, 0.0, 0.99)
        _check_float("color_noise", self.color_noise, 0.0, 255.0)
        _check_float("max_yaw", self.max_yaw, 0.0, 180.0)
        for name, lo, hi, integer in (("room_size", 2.0, 50.0, False), ("room_height", 2.4, 10.0, False),
                                      ("tables", 0, 100, True), ("chairs", 0, 100, True),
                                      ("clutter", 0, 100, True)):
            object.__setattr__(self, name, _check_pair(name, getattr(self, name), lo, hi, integer))

    def rooms(self, split: str) -> int:
        """The number of rooms of ``split`` (one of :data:`ROOM_DEMO_SPLITS`)."""
        if split not in ROOM_DEMO_SPLITS:
            raise InputError(f"unknown room-demo split {split!r}; known: {list(ROOM_DEMO_SPLITS)}")
        return int(getattr(self, f"{split}_rooms"))


def room_generator(config: RoomDemoConfig, split: str, index: int) -> np.random.Generator:
    """The generator of room ``index`` of ``split``: ``make_room(room_generator(config, split, i), config)`` is the
    room that :func:`write_room_demo` writes as ``<split>/room_{i:04d}``."""
    config.rooms(split)  # an unknown split raises
    _check_int("index", index, 0)
    return np.random.default_rng([int(config.seed), ROOM_DEMO_SPLITS.index(split), int(index)])


# ----------------------------------------------------------------------------- palettes (RGB, 0..255)

_PALETTES: dict[int, tuple[tuple[int, int, int], ...]] = {
    FLOOR: ((176, 134, 90), (122, 84, 52), (150, 112, 72), (105, 105, 110), (70, 85, 115), (200, 190, 170),
            (150, 148, 142)),
    CEILING: ((236, 236, 232), (225, 225, 220), (240, 237, 228), (214, 214, 210)),
    WALL: ((228, 226, 218), (214, 219, 224), (232, 222, 200), (202, 212, 200), (236, 236, 232), (222, 208, 196)),
    DOOR: ((140, 96, 58), (165, 120, 80), (232, 232, 228), (150, 155, 160), (84, 62, 46)),
    TABLE: ((170, 128, 85), (124, 86, 56), (224, 224, 218), (56, 56, 60), (140, 140, 146)),
    CHAIR: ((42, 42, 48), (110, 110, 116), (52, 72, 140), (150, 46, 46), (62, 112, 72), (150, 110, 70)),
}


def _tone(rng: np.random.Generator, base: Sequence[float]) -> np.ndarray:
    """``base`` varied as one object's colour: +-10 per channel (Gaussian) and a brightness of 0.9-1.1."""
    return (np.asarray(base, dtype=np.float64) + rng.normal(0.0, 10.0, 3)) * rng.uniform(0.9, 1.1)


def _pick(rng: np.random.Generator, label: int) -> np.ndarray:
    palette = _PALETTES[label]
    return np.asarray(palette[int(rng.integers(len(palette)))], dtype=np.float64)


# ----------------------------------------------------------------------------- surfaces

class _Surfaces:
    """Rectangles ``origin + s u + t v`` (``s, t`` in [0, 1)) with a label and an RGB colour each."""

    def __init__(self) -> None:
        self.origin: list[np.ndarray] = []
        self.u: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.label: list[int] = []
        self.color: list[np.ndarray] = []

    def rect(self, origin: Sequence[float], u: Sequence[float], v: Sequence[float], label: int,
             color: np.ndarray) -> None:
        self.origin.append(np.asarray(origin, dtype=np.float64))
        self.u.append(np.asarray(u, dtype=np.float64))
        self.v.append(np.asarray(v, dtype=np.float64))
        self.label.append(label)
        self.color.append(color)

    def box(self, lo: Sequence[float], hi: Sequence[float], label: int, color: np.ndarray, *,
            yaw: float = 0.0, at: Sequence[float] = (0.0, 0.0), bottom: bool = False) -> None:
        """The faces of the box ``lo..hi`` (local frame), turned by ``yaw`` about z and moved by ``at`` (x, y);
        without its bottom face unless ``bottom`` (it rests on something)."""
        lo_, hi_ = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        dx, dy, dz = hi_ - lo_
        x0, y0, z0 = lo_
        x1, y1, z1 = hi_
        faces = [((x0, y0, z1), (dx, 0, 0), (0, dy, 0)),  # top
                 ((x0, y0, z0), (dx, 0, 0), (0, 0, dz)), ((x0, y1, z0), (dx, 0, 0), (0, 0, dz)),  # y = y0, y1
                 ((x0, y0, z0), (0, dy, 0), (0, 0, dz)), ((x1, y0, z0), (0, dy, 0), (0, 0, dz))]  # x = x0, x1
        if bottom:
            faces.append(((x0, y0, z0), (dx, 0, 0), (0, dy, 0)))
        c, s = math.cos(yaw), math.sin(yaw)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        shift = np.array([at[0], at[1], 0.0])
        for o, u, v in faces:
            self.rect(rot @ np.asarray(o, dtype=np.float64) + shift, rot @ np.asarray(u, dtype=np.float64),
                      rot @ np.asarray(v, dtype=np.float64), label, color)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(origin [R, 3], u [R, 3], v [R, 3], label [R], color [R, 3])``."""
        return (np.stack(self.origin), np.stack(self.u), np.stack(self.v), np.asarray(self.label, dtype=np.int64),
                np.stack(self.color))


# ----------------------------------------------------------------------------- floor plan

_Footprint = tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in the room's local frame


def _footprint(cx: float, cy: float, half_x: float, half_y: float, yaw: float) -> _Footprint:
    """The axis-aligned bounds of a ``2 half_x x 2 half_y`` rectangle centred at (cx, cy), turned by ``yaw``."""
    c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
    ex, ey = c * half_x + s * half_y, s * half_x + c * half_y
    return cx - ex, cy - ey, cx + ex, cy + ey


def _free(box: _Footprint, taken: Sequence[_Footprint], size: tuple[float, float], margin: float,
          gap: float = 0.05) -> bool:
    """``box`` lies ``margin`` inside the room (``size`` = length, width) and ``gap`` away from every ``taken``."""
    if box[0] < margin or box[1] < margin or box[2] > size[0] - margin or box[3] > size[1] - margin:
        return False
    return all(box[0] >= t[2] + gap or box[2] <= t[0] - gap or box[1] >= t[3] + gap or box[3] <= t[1] - gap
               for t in taken)


def _grow(box: _Footprint, by: float) -> _Footprint:
    return box[0] - by, box[1] - by, box[2] + by, box[3] + by


@dataclass
class RoomLayout:
    """What :func:`make_room` built, in the room's local frame (floor ``[0, L] x [0, W]`` at ``z = 0``, axis-aligned).

    Attributes:
        size: ``(L, W, H)`` in metres.
        yaw: the turn about z (radians) from the local frame to the scene's coordinates.
        offset: ``[3]`` the shift after the turn: ``coord = local @ rotation.T + offset``.
        doors: per door ``(wall, start, width, height)``: wall 0..3 (0: y = 0, 1: x = L, 2: y = W, 3: x = 0),
            the leaf from ``start`` to ``start + width`` metres along the wall (counter-clockwise), from the floor.
        tables: per table ``(xmin, ymin, xmax, ymax, height)``: the top's bounds and its upper face's height.
        chairs: per chair ``(xmin, ymin, xmax, ymax, height)``: the bounds of its footprint and its back's top.
        clutter: per clutter box ``(xmin, ymin, xmax, ymax, top)``: the bounds of its (turned) footprint and its top.
        area: the sampled surface in square metres.
        sampled: points drawn on the surfaces, before holes and dropout (about ``area * density``).
    """

    size: tuple[float, float, float]
    yaw: float
    offset: np.ndarray
    doors: list[tuple[int, float, float, float]] = field(default_factory=list)
    tables: list[tuple[float, float, float, float, float]] = field(default_factory=list)
    chairs: list[tuple[float, float, float, float, float]] = field(default_factory=list)
    clutter: list[tuple[float, float, float, float, float]] = field(default_factory=list)
    area: float = 0.0
    sampled: int = 0

    @property
    def rotation(self) -> np.ndarray:
        """``[3, 3]`` the turn about z by :attr:`yaw`."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    def to_local(self, coord: np.ndarray) -> np.ndarray:
        """Scene coordinates ``[N, 3]`` -> the local frame ``[N, 3]`` (float64)."""
        return (np.asarray(coord, dtype=np.float64) - self.offset) @ self.rotation


# wall k: start corner (x, y) as fractions of (L, W), direction along it, inward normal
_WALLS = (((0, 0), (1, 0), (0, 1)), ((1, 0), (0, 1), (-1, 0)), ((1, 1), (-1, 0), (0, -1)), ((0, 1), (0, -1), (1, 0)))


def _wall_frame(k: int, length: float, width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Wall ``k``'s start point (x, y), unit direction, inward unit normal and length."""
    (fx, fy), e, n = _WALLS[k]
    return (np.array([fx * length, fy * width]), np.array(e, dtype=np.float64), np.array(n, dtype=np.float64),
            length if k % 2 == 0 else width)


def _shell(rng: np.random.Generator, surf: _Surfaces, layout: RoomLayout, keep_out: list[_Footprint]) -> None:
    """Floor, ceiling, walls with door openings, doors; the floor in front of each door goes into ``keep_out``."""
    length, width, height = layout.size
    surf.rect((0, 0, 0), (length, 0, 0), (0, width, 0), FLOOR, _tone(rng, _pick(rng, FLOOR)))
    surf.rect((0, 0, height), (length, 0, 0), (0, width, 0), CEILING, _tone(rng, _pick(rng, CEILING)))
    wall_color = _tone(rng, _pick(rng, WALL))
    walls = [int(w) for w in rng.permutation(4)[: 2 if rng.random() < 1 / 3 else 1]]
    door_color = _tone(rng, _pick(rng, DOOR))
    for k in range(4):
        start, e, n, span = _wall_frame(k, length, width)

        def wall_rect(s0: float, s1: float, z0: float, z1: float, label: int, color: np.ndarray,
                      inset: float = 0.0, start: np.ndarray = start, e: np.ndarray = e, n: np.ndarray = n) -> None:
            xy = start + e * s0 + n * inset
            surf.rect((xy[0], xy[1], z0), (*(e * (s1 - s0)), 0.0), (0.0, 0.0, z1 - z0), label, color)

        if k not in walls:
            wall_rect(0.0, span, 0.0, height, WALL, wall_color)
            continue
        frame, door_w = rng.uniform(0.05, 0.08), rng.uniform(0.8, 1.0)
        door_h = rng.uniform(2.0, min(2.2, height - 0.15 - frame))
        s0 = rng.uniform(0.15 + frame, span - 0.15 - frame - door_w)
        a, b, top = s0 - frame, s0 + door_w + frame, door_h + frame
        wall_rect(0.0, a, 0.0, height, WALL, wall_color)
        wall_rect(b, span, 0.0, height, WALL, wall_color)
        wall_rect(a, b, top, height, WALL, wall_color)
        leaf = door_color if rng.random() < 0.7 else _tone(rng, _pick(rng, DOOR))
        wall_rect(s0, s0 + door_w, 0.0, door_h, DOOR, leaf, inset=rng.uniform(0.01, 0.04))
        frame_color = _tone(rng, door_color * rng.uniform(0.8, 1.1))
        wall_rect(a, s0, 0.0, top, DOOR, frame_color, inset=0.01)
        wall_rect(s0 + door_w, b, 0.0, top, DOOR, frame_color, inset=0.01)
        wall_rect(s0, s0 + door_w, door_h, top, DOOR, frame_color, inset=0.01)
        layout.doors.append((k, float(s0), float(door_w), float(door_h)))
        corners = np.stack([start + e * a, start + e * b, start + e * a + n * 1.0, start + e * b + n * 1.0])
        keep_out.append((*corners.min(0), *corners.max(0)))  # type: ignore[arg-type]


def _tables(rng: np.random.Generator, surf: _Surfaces, layout: RoomLayout, count: int, taken: list[_Footprint]
            ) -> None:
    length, width, _ = layout.size
    color = _tone(rng, _pick(rng, TABLE))
    for _ in range(count):
        a, b = rng.uniform(0.8, 1.8), rng.uniform(0.6, 1.0)
        if rng.random() < 0.5:
            a, b = b, a
        for _attempt in range(60):
            cx, cy = rng.uniform(0.0, length), rng.uniform(0.0, width)
            box = _footprint(cx, cy, a / 2, b / 2, 0.0)
            if _free(box, [_grow(t, 0.35) for t in taken], (length, width), margin=0.45):
                break
        else:
            continue
        height, thick = rng.uniform(0.70, 0.78), rng.uniform(0.03, 0.05)
        leg, inset = rng.uniform(0.04, 0.07), rng.uniform(0.03, 0.10)
        mine = color if rng.random() < 0.8 else _tone(rng, _pick(rng, TABLE))
        surf.box((-a / 2, -b / 2, height - thick), (a / 2, b / 2, height), TABLE, mine, at=(cx, cy), bottom=True)
        for sx in (-1.0, 1.0):
            for sy in (-1.0, 1.0):
                x = sx * (a / 2 - inset - leg / 2)
                y = sy * (b / 2 - inset - leg / 2)
                surf.box((x - leg / 2, y - leg / 2, 0.0), (x + leg / 2, y + leg / 2, height - thick), TABLE, mine,
                         at=(cx, cy))
        taken.append(box)
        layout.tables.append((*box, float(height)))  # type: ignore[arg-type]


def _chair(rng: np.random.Generator, surf: _Surfaces, color: np.ndarray, cx: float, cy: float, yaw: float,
           w: float, d: float) -> float:
    """A chair of seat ``w x d`` centred at (cx, cy) facing ``+y`` turned by ``yaw``; returns its back's top."""
    seat, seat_t = rng.uniform(0.42, 0.50), rng.uniform(0.04, 0.08)
    back_h, back_t, leg = rng.uniform(0.35, 0.50), rng.uniform(0.03, 0.06), rng.uniform(0.03, 0.05)
    at = (cx, cy)
    surf.box((-w / 2, -d / 2, seat - seat_t), (w / 2, d / 2, seat), CHAIR, color, yaw=yaw, at=at, bottom=True)
    surf.box((-w / 2, -d / 2, seat), (w / 2, -d / 2 + back_t, seat + back_h), CHAIR, color, yaw=yaw, at=at)
    for x in (-w / 2, w / 2 - leg):
        for y in (-d / 2, d / 2 - leg):
            surf.box((x, y, 0.0), (x + leg, y + leg, seat - seat_t), CHAIR, color, yaw=yaw, at=at)
    return seat + back_h


def _chairs(rng: np.random.Generator, surf: _Surfaces, layout: RoomLayout, count: int, taken: list[_Footprint]
            ) -> None:
    length, width, _ = layout.size
    style = _pick(rng, CHAIR)
    for _ in range(count):
        w, d = rng.uniform(0.40, 0.50), rng.uniform(0.40, 0.50)
        at_table = bool(layout.tables) and rng.random() < 0.75
        for attempt in range(60):
            if at_table and attempt < 30:  # at a table side, facing it
                x0, y0, x1, y1, _h = layout.tables[int(rng.integers(len(layout.tables)))]
                side, gap = int(rng.integers(4)), rng.uniform(0.03, 0.2) + d / 2
                yaw = (0.0, math.pi, -math.pi / 2, math.pi / 2)[side] + math.radians(rng.uniform(-10, 10))
                along_x, along_y = rng.uniform(x0 + w / 2, max(x0 + w / 2, x1 - w / 2)), rng.uniform(
                    y0 + w / 2, max(y0 + w / 2, y1 - w / 2))
                cx, cy = ((along_x, y0 - gap), (along_x, y1 + gap), (x0 - gap, along_y), (x1 + gap, along_y))[side]
            else:  # free-standing
                cx, cy = rng.uniform(0.0, length), rng.uniform(0.0, width)
                yaw = float(rng.integers(4)) * math.pi / 2 + math.radians(rng.uniform(-20, 20))
            box = _footprint(cx, cy, w / 2, d / 2, yaw)
            if _free(box, taken, (length, width), margin=0.05):
                break
        else:
            continue
        color = _tone(rng, style if rng.random() < 0.7 else _pick(rng, CHAIR))
        top = _chair(rng, surf, color, cx, cy, yaw, w, d)
        taken.append(box)
        layout.chairs.append((*box, float(top)))  # type: ignore[arg-type]


def _clutter_color(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(30.0, 230.0, 3)


def _floor_clutter(rng: np.random.Generator, surf: _Surfaces, layout: RoomLayout, count: int,
                   taken: list[_Footprint]) -> None:
    """Boxes on the floor: mostly against a wall (cabinets, shelves, boxes), some free-standing, a quarter with a
    smaller box on top."""
    length, width, height = layout.size
    for _ in range(count):
        sx, sy, sz = rng.uniform(0.3, 1.2), rng.uniform(0.25, 0.6), rng.uniform(0.2, min(1.8, height - 0.3))
        against = rng.random() < 0.7
        for _attempt in range(60):
            if against:  # back (the -y face) against a wall, facing into the room
                k = int(rng.integers(4))
                start, e, n, span = _wall_frame(k, length, width)
                xy = start + e * rng.uniform(sx / 2, max(sx / 2, span - sx / 2)) + n * (sy / 2 + rng.uniform(0.0, 0.05))
                yaw = math.atan2(n[1], n[0]) - math.pi / 2  # local +y onto the inward normal
                margin = -1e-6  # touching the wall (up to rounding)
            else:
                xy = np.array([rng.uniform(0.0, length), rng.uniform(0.0, width)])
                yaw, margin = rng.uniform(-math.pi, math.pi), 0.05
            box = _footprint(float(xy[0]), float(xy[1]), sx / 2, sy / 2, yaw)
            if _free(box, taken, (length, width), margin=margin, gap=0.03):
                break
        else:
            continue
        color = _clutter_color(rng)
        surf.box((-sx / 2, -sy / 2, 0.0), (sx / 2, sy / 2, sz), CLUTTER, color, yaw=yaw, at=(xy[0], xy[1]))
        top = sz
        if rng.random() < 0.25:
            tx, ty, tz = sx * rng.uniform(0.4, 0.9), sy * rng.uniform(0.5, 0.9), rng.uniform(0.1, 0.4)
            dx, dy = rng.uniform(-(sx - tx) / 2, (sx - tx) / 2), rng.uniform(-(sy - ty) / 2, (sy - ty) / 2)
            tz = min(tz, height - 0.1 - sz)
            surf.box((dx - tx / 2, dy - ty / 2, sz), (dx + tx / 2, dy + ty / 2, sz + tz), CLUTTER,
                     _clutter_color(rng), yaw=yaw, at=(xy[0], xy[1]))
            top = sz + tz
        taken.append(box)
        layout.clutter.append((*box, float(top)))  # type: ignore[arg-type]


def _table_clutter(rng: np.random.Generator, surf: _Surfaces, layout: RoomLayout) -> None:
    """0-2 small boxes on each table top (books, monitors, boxes), not overlapping."""
    for x0, y0, x1, y1, height in list(layout.tables):
        placed: list[_Footprint] = []
        for _ in range(int(rng.integers(3))):
            sx, sy, sz = rng.uniform(0.08, 0.4), rng.uniform(0.08, 0.3), rng.uniform(0.03, 0.3)
            for _attempt in range(30):
                cx, cy, yaw = rng.uniform(x0, x1), rng.uniform(y0, y1), rng.uniform(-math.pi, math.pi)
                box = _footprint(cx, cy, sx / 2, sy / 2, yaw)
                inside = box[0] >= x0 + 0.02 and box[1] >= y0 + 0.02 and box[2] <= x1 - 0.02 and box[3] <= y1 - 0.02
                if inside and _free(box, placed, (math.inf, math.inf), margin=-math.inf, gap=0.02):
                    break
            else:
                continue
            surf.box((-sx / 2, -sy / 2, height), (sx / 2, sy / 2, height + sz), CLUTTER, _clutter_color(rng),
                     yaw=yaw, at=(cx, cy))
            placed.append(box)
            layout.clutter.append((*box, float(height + sz)))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- one room

def make_room(rng: np.random.Generator, config: RoomDemoConfig | None = None, name: str = "room"
              ) -> tuple[Scene, RoomLayout]:
    """One random room with its labelled points (see the module docstring for what it holds).

    Args:
        rng: the generator all randomness comes from (:func:`room_generator` gives those of the written set).
        config: sizes, counts, density and noise (default :class:`RoomDemoConfig()`); the split sizes and the seed
            are not used here.
        name: the scene's name.

    Returns:
        ``(scene, layout)``: ``scene.coord [N, 3] float32`` (metres, turned and shifted, so x, y >= 0 up to the
        noise), ``scene.color [N, 3] uint8``, ``scene.segment [N] int64`` (0..6, indices of
        :data:`ROOM_DEMO_CLASSES`), points in a random order; ``layout`` the room's geometry in its local frame.
    """
    config = config or RoomDemoConfig()
    length, width = rng.uniform(*config.room_size, size=2)
    height = rng.uniform(*config.room_height)
    layout = RoomLayout(size=(float(length), float(width), float(height)), yaw=0.0, offset=np.zeros(3))
    surf = _Surfaces()
    taken: list[_Footprint] = []
    _shell(rng, surf, layout, taken)
    _tables(rng, surf, layout, int(rng.integers(config.tables[0], config.tables[1] + 1)), taken)
    _chairs(rng, surf, layout, int(rng.integers(config.chairs[0], config.chairs[1] + 1)), taken)
    _floor_clutter(rng, surf, layout, int(rng.integers(config.clutter[0], config.clutter[1] + 1)), taken)
    _table_clutter(rng, surf, layout)

    # sample the rectangles: area * density points each (stochastic rounding)
    origin, u, v, label, color = surf.arrays()
    normal = np.cross(u, v)
    area = np.linalg.norm(normal, axis=1)
    counts = np.floor(area * config.density + rng.random(len(area))).astype(np.int64)
    idx = np.repeat(np.arange(len(area)), counts)
    st = rng.random((len(idx), 2))
    points = origin[idx] + st[:, :1] * u[idx] + st[:, 1:] * v[idx]
    layout.area, layout.sampled = float(area.sum()), int(len(idx))

    # sensor: holes, dropout, jitter
    keep = rng.random(len(idx)) >= config.dropout
    if len(idx):
        for centre, radius in zip(points[rng.integers(len(idx), size=config.holes)],
                                  rng.uniform(0.1, 0.35, config.holes)):
            keep &= ((points - centre) ** 2).sum(1) >= radius**2
    points, idx = points[keep], idx[keep]
    points = points + rng.normal(0.0, config.noise, points.shape)

    # colours: the rectangle's, shaded by its tilt and the distance to a light, plus per-point noise
    tilt = 1.0 - 0.12 * (1.0 - np.abs(normal[:, 2]) / np.maximum(area, 1e-12))
    light = np.array([rng.uniform(0.0, length), rng.uniform(0.0, width), height])
    fall = 1.0 - 0.25 * np.linalg.norm(points - light, axis=1) / math.sqrt(length**2 + width**2 + height**2)
    rgb = color[idx] * (tilt[idx] * fall)[:, None] + rng.normal(0.0, config.color_noise, (len(idx), 3))
    rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)

    # turn about the room's centre, then shift the corners to x, y >= 0
    layout.yaw = float(math.radians(rng.uniform(-config.max_yaw, config.max_yaw)))
    rot = layout.rotation
    corners = np.array([[x, y, 0.0] for x in (0.0, length) for y in (0.0, width)]) @ rot.T
    layout.offset = np.array([-corners[:, 0].min(), -corners[:, 1].min(), 0.0])
    coord = points @ rot.T + layout.offset
    order = rng.permutation(len(idx))
    scene = Scene(name, coord[order].astype(np.float32), rgb[order], label[idx][order].astype(np.int64))
    return scene, layout


# ----------------------------------------------------------------------------- writing

def _config_json(config: RoomDemoConfig) -> dict[str, Any]:
    """``config`` as its JSON round trip (tuples become lists), the form stored in and compared with the meta file."""
    return json.loads(json.dumps(asdict(config)))


def write_room_demo(out: str | Path, config: RoomDemoConfig | None = None) -> dict[str, Any]:
    """Write the room demo into ``out`` (created; must be absent or empty): ``classes.txt``, ``<split>/room_XXXX/``
    scene folders, and last ``pointcoc_demo.json`` (version, config, counts, seconds). Not atomic by itself (use
    :func:`ensure_room_demo` for that); a folder without the meta file is incomplete.

    Returns:
        the counts: ``{"train": rooms, "val": rooms, "test": rooms, "points": all points, "min_points": fewest in a
        room, "max_points": most in a room, "class_points": {class name: points}}``.

    Raises:
        InputError: ``out`` exists and is not an empty folder.
    """
    out = Path(out)
    config = config or RoomDemoConfig()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: already exists and is not an empty folder; write the room demo elsewhere")
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (out / ROOM_CLASSES_FILE).write_text("".join(f"{name}\n" for name in ROOM_DEMO_CLASSES))
    class_points = np.zeros(len(ROOM_DEMO_CLASSES), dtype=np.int64)
    sizes: list[int] = []
    counts: dict[str, Any] = {}
    for split in ROOM_DEMO_SPLITS:
        counts[split] = config.rooms(split)
        for i in range(config.rooms(split)):
            scene, _ = make_room(room_generator(config, split, i), config, name=f"room_{i:04d}")
            write_scene(out / split / scene.name, scene.coord, color=scene.color, segment=scene.segment)
            class_points += np.bincount(scene.segment, minlength=len(ROOM_DEMO_CLASSES))
            sizes.append(scene.num_points)
    counts.update(points=int(sum(sizes)), min_points=int(min(sizes)), max_points=int(max(sizes)),
                  class_points=dict(zip(ROOM_DEMO_CLASSES, class_points.tolist())))
    meta = {"kind": _KIND, "version": ROOM_DEMO_VERSION, "config": _config_json(config),
            "classes": list(ROOM_DEMO_CLASSES), "counts": counts, "seconds": round(time.perf_counter() - start, 3)}
    (out / MARKER).write_text(json.dumps(meta, indent=1) + "\n")
    return counts


def room_demo_classes(folder: str | Path) -> list[str]:
    """The class names of a room set (``classes.txt`` of the folder :func:`ensure_room_demo` returns), in label
    order; the scene reader does not read it (pass ``num_classes=len(names)`` to ``read_scene``).

    Raises:
        InputError: no ``classes.txt``, an empty one, or repeated names.
    """
    path = Path(folder) / ROOM_CLASSES_FILE
    if not path.is_file():
        raise InputError(f"{path}: no such file (a room set holds classes.txt; generate it with ensure_room_demo)")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise InputError(f"{path}: no class names (one per line, in label order)")
    if len(set(names)) != len(names):
        raise InputError(f"{path}: repeated class names {sorted({n for n in names if names.count(n) > 1})}")
    return names


def _read_meta(target: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((target / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _is_current(target: Path, config: RoomDemoConfig) -> bool:
    """``target`` holds a complete set of this version and config: its meta file matches, and every room folder
    holds its three arrays."""
    meta = _read_meta(target)
    if meta is None or meta.get("kind") != _KIND or meta.get("version") != ROOM_DEMO_VERSION:
        return False
    if meta.get("config") != _config_json(config) or not (target / ROOM_CLASSES_FILE).is_file():
        return False
    for split in ROOM_DEMO_SPLITS:
        for i in range(config.rooms(split)):
            folder = target / split / f"room_{i:04d}"
            if not all((folder / f).is_file() for f in (SCENE_FILE, "color.npy", "segment.npy")):
                return False
    return True


def _is_ours(target: Path) -> bool:
    """``target`` can be replaced: it has a room-demo meta file, or holds nothing but this layout's entries (a set
    whose meta file is missing)."""
    meta = _read_meta(target)
    if meta is not None and meta.get("kind") == _KIND:
        return True
    allowed = {*ROOM_DEMO_SPLITS, ROOM_CLASSES_FILE, MARKER}
    return target.is_dir() and all(p.name in allowed for p in target.iterdir())


def ensure_room_demo(root: str | Path = "data/demo", config: RoomDemoConfig | None = None) -> Path:
    """Generate the room demo into ``root/rooms`` unless a complete set of this version and config is there; return
    ``root/rooms``.

    Read it with ``scene_folders(path, [split])`` and ``read_scene(folder, num_classes=7)``; the names are
    :func:`room_demo_classes` ``(path)``. A set of another config or version (or one with missing room folders, or
    without its meta file) is regenerated and replaced; leftover temporary folders of a crashed run
    (``root/.rooms-tmp-*``, ``root/.rooms-old-*``) are deleted. Safe with concurrent callers: the advisory lock
    ``root/.lock`` serialises them, and the new set appears by renaming a complete temporary folder into place
    (a reader that holds the old set's paths while another config replaces it loses them).

    Raises:
        InputError: ``root/rooms`` exists but holds something else than a room set (it is left alone).
    """
    root = Path(root)
    config = config or RoomDemoConfig()
    target = root / ROOM_DEMO_FOLDER
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root / ".lock"):
        for stale in [*root.glob(f".{ROOM_DEMO_FOLDER}-tmp-*"), *root.glob(f".{ROOM_DEMO_FOLDER}-old-*")]:
            log.info("removing %s, left over by an interrupted room-demo generation", stale)
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists():
            if _is_current(target, config):
                return target
            if not _is_ours(target):
                raise InputError(f"{target} exists but is not a pointcoc room demo (no {MARKER}, and other files "
                                 "than its layout); pointcoc does not delete it: move it away, or pass another root")
        tmp = Path(tempfile.mkdtemp(prefix=f".{ROOM_DEMO_FOLDER}-tmp-", dir=root))
        try:
            counts = write_room_demo(tmp, config)
            if target.exists():
                meta = _read_meta(target) or {}
                log.warning("replacing %s (room demo version %s, config %s) by version %s, config %s", target,
                            meta.get("version"), meta.get("config"), ROOM_DEMO_VERSION, _config_json(config))
                old = root / f".{ROOM_DEMO_FOLDER}-old-{uuid.uuid4().hex[:8]}"
                os.rename(target, old)
                os.rename(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, target)
            log.info("wrote the room demo into %s: %s", target, counts)
        finally:
            if tmp.exists():  # only our own temporary folder
                shutil.rmtree(tmp, ignore_errors=True)
    return target
