"""The built-in room demo: readable as scene folders, labels geometrically right, deterministic, regenerated when out
of date, never adopted half-written, bad configs refused."""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import pointcoc.data.demo_rooms as demo_rooms
from pointcoc.data.demo import MARKER
from pointcoc.data.demo_rooms import (
    ROOM_DEMO_CLASSES,
    ROOM_DEMO_SPLITS,
    ROOM_DEMO_VERSION,
    RoomDemoConfig,
    ensure_room_demo,
    make_room,
    room_demo_classes,
    room_generator,
    write_room_demo,
)
from pointcoc.data.scenes import read_scene, scene_folders
from pointcoc.errors import InputError

from data_builders import snapshot

SMALL = RoomDemoConfig(train_rooms=4, val_rooms=2, test_rooms=2, density=60.0, seed=3)
FLOOR, CEILING, WALL, DOOR, TABLE, CHAIR, CLUTTER = range(7)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """The small config, generated once for this module by ``ensure_room_demo``."""
    return ensure_room_demo(tmp_path_factory.mktemp("rooms_root"), SMALL)


def _meta(folder: Path) -> dict:
    return json.loads((folder / MARKER).read_text())


def _arrays(folder: Path) -> dict[str, np.ndarray]:
    return {name: np.load(folder / f"{name}.npy") for name in ("coord", "color", "segment")}


def _all_arrays(folder: Path) -> dict[str, np.ndarray]:
    return {f"{p.parent.name}/{p.name}/{k}": v for p in scene_folders(folder) for k, v in _arrays(p).items()}


def test_layout_reads_as_scene_folders(small) -> None:
    assert small.name == "rooms"
    assert (small / "classes.txt").read_text().splitlines() == list(ROOM_DEMO_CLASSES)
    assert room_demo_classes(small) == list(ROOM_DEMO_CLASSES)
    meta = _meta(small)
    assert meta["version"] == ROOM_DEMO_VERSION and meta["config"]["seed"] == 3 and meta["config"]["density"] == 60
    assert meta["classes"] == list(ROOM_DEMO_CLASSES)
    total, per_class, sizes = 0, np.zeros(7, dtype=np.int64), []
    for split in ROOM_DEMO_SPLITS:
        folders = scene_folders(small, [split])
        assert [f.name for f in folders] == [f"room_{i:04d}" for i in range(SMALL.rooms(split))]
        assert meta["counts"][split] == len(folders)
        for folder in folders:
            raw = _arrays(folder)
            assert raw["coord"].dtype == np.float32 and raw["color"].dtype == np.uint8
            assert raw["segment"].dtype == np.int16
            scene = read_scene(folder, num_classes=7)
            n = scene.num_points
            assert scene.coord.shape == (n, 3) and scene.color.shape == (n, 3) and scene.segment.shape == (n,)
            assert scene.color.dtype == np.uint8 and int(scene.segment.min()) >= 0
            assert sorted(p.name for p in folder.iterdir()) == ["color.npy", "coord.npy", "segment.npy"]
            total += n
            sizes.append(n)
            per_class += np.bincount(scene.segment, minlength=7)
    counts = meta["counts"]
    assert counts["points"] == total and counts["min_points"] == min(sizes) and counts["max_points"] == max(sizes)
    assert list(counts["class_points"]) == list(ROOM_DEMO_CLASSES)
    assert list(counts["class_points"].values()) == per_class.tolist()
    # nothing else beside the layout (no temporary folders left in the set or beside it)
    assert sorted(p.name for p in small.iterdir()) == sorted([*ROOM_DEMO_SPLITS, "classes.txt", MARKER])
    assert sorted(p.name for p in small.parent.iterdir()) == [".lock", "rooms"]


def test_every_class_appears_in_the_train_split(small) -> None:
    seen = np.zeros(7, dtype=np.int64)
    for folder in scene_folders(small, ["train"]):
        scene = read_scene(folder, num_classes=7)
        seen += np.bincount(scene.segment, minlength=7)
        # every room has a floor, a ceiling, walls, a door, a table and chairs
        present = set(np.unique(scene.segment).tolist())
        assert {FLOOR, CEILING, WALL, DOOR, TABLE, CHAIR} <= present, (folder, present)
    assert (seen > 0).all(), dict(zip(ROOM_DEMO_CLASSES, seen.tolist()))
    fractions = seen / seen.sum()
    assert 0.25 < fractions[WALL] < 0.55 and fractions[DOOR] < 0.05  # walls dominate, doors are rare


def test_written_rooms_are_make_room_of_their_generator(small) -> None:
    for split in ("train", "test"):
        for i in (0, SMALL.rooms(split) - 1):
            scene, _ = make_room(room_generator(SMALL, split, i), SMALL, name=f"room_{i:04d}")
            raw = _arrays(small / split / f"room_{i:04d}")
            np.testing.assert_array_equal(raw["coord"], scene.coord)
            np.testing.assert_array_equal(raw["color"], scene.color)
            np.testing.assert_array_equal(raw["segment"], scene.segment)


def _near_walls(local: np.ndarray, size: tuple[float, float, float]) -> np.ndarray:
    """Distance of each point ``[N, 3]`` (local frame) to the nearest of the four wall planes."""
    length, width, _ = size
    return np.minimum.reduce([np.abs(local[:, 0]), np.abs(local[:, 0] - length), np.abs(local[:, 1]),
                              np.abs(local[:, 1] - width)])


def _inside(local: np.ndarray, boxes: list[tuple[float, ...]], tol: float) -> np.ndarray:
    """Each point lies within ``tol`` of the footprint ``(xmin, ymin, xmax, ymax, top)`` of some box, below its top."""
    out = np.zeros(len(local), dtype=bool)
    for x0, y0, x1, y1, top in boxes:
        out |= ((local[:, 0] > x0 - tol) & (local[:, 0] < x1 + tol) & (local[:, 1] > y0 - tol)
                & (local[:, 1] < y1 + tol) & (local[:, 2] < top + tol))
    return out


def test_labels_are_geometrically_right() -> None:
    config = RoomDemoConfig(density=120.0, seed=1)
    tol = 5 * config.noise + 1e-4  # the jitter, per axis
    yaws = []
    for i in range(4):
        scene, layout = make_room(room_generator(config, "train", i), config)
        length, width, height = layout.size
        assert config.room_size[0] <= min(length, width) <= max(length, width) <= config.room_size[1]
        assert config.room_height[0] <= height <= config.room_height[1]
        coord, seg = scene.coord.astype(np.float64), scene.segment
        local = layout.to_local(coord)
        np.testing.assert_allclose(local[:, 2], coord[:, 2], atol=1e-5)  # the turn is about z
        yaws.append(layout.yaw)
        # scene coordinates are shifted to x, y >= 0 (up to the jitter)
        assert coord[:, :2].min() > -tol and coord[:, :2].min() < 0.5
        # everything lies inside the room box
        assert local.min(0).min() > -tol
        assert (local.max(0) < np.array([length, width, height]) + tol).all()
        by = {c: local[seg == c] for c in range(7)}
        assert np.abs(by[FLOOR][:, 2]).max() < tol
        assert np.abs(by[CEILING][:, 2] - height).max() < tol
        assert _near_walls(by[WALL], layout.size).max() < tol
        # doors: in an opening of their wall, at most 4 cm in front of it, up to the head of the frame
        door = by[DOOR]
        assert _near_walls(door, layout.size).max() < 0.04 + tol
        assert door[:, 2].max() < max(h for *_, h in layout.doors) + 0.08 + tol
        # in front of the door's opening (up to 6 cm from the wall plane, above the floor) there is only door
        k, start, door_w, door_h = layout.doors[0]
        along = (local[:, 0], local[:, 1], length - local[:, 0], width - local[:, 1])[k]
        off = (local[:, 1], length - local[:, 0], width - local[:, 1], local[:, 0])[k]
        in_opening = ((along > start + tol) & (along < start + door_w - tol) & (off < 0.06)
                      & (local[:, 2] > tol) & (local[:, 2] < door_h - tol))
        assert in_opening.sum() > 0.5 * door_w * door_h * config.density
        assert (seg[in_opening] == DOOR).all()
        # tables: in a table's footprint, below its top; the highest table points are the tops
        tables = by[TABLE]
        assert layout.tables and _inside(tables, layout.tables, tol).all()
        for x0, y0, x1, y1, top in layout.tables:
            mine = tables[(tables[:, 0] > x0) & (tables[:, 0] < x1) & (tables[:, 1] > y0) & (tables[:, 1] < y1)]
            assert abs(np.quantile(mine[:, 2], 0.99) - top) < tol
            assert 0.69 < top < 0.79
            assert (mine[:, 2] > top - 0.05 - tol).mean() > 0.5  # most of a table's points are on its top
        assert _inside(by[CHAIR], layout.chairs, tol).all()
        assert by[CHAIR][:, 2].max() < max(t for *_, t in layout.chairs) + tol
        assert _inside(by[CLUTTER], layout.clutter, tol).all()
        # away from the walls: only ceiling at the ceiling, mostly floor at the floor (legs and boxes stand on it)
        inner = _near_walls(local, layout.size) > 0.05
        assert (seg[inner & (local[:, 2] > height - 0.05)] == CEILING).all()
        assert (seg[inner & (local[:, 2] < 0.005)] == FLOOR).mean() > 0.95
    assert len({round(y, 6) for y in yaws}) == 4 and max(abs(y) for y in yaws) <= math.pi


def test_counts_follow_density_and_the_default_range() -> None:
    default = RoomDemoConfig()
    sizes = []
    for split in ROOM_DEMO_SPLITS:
        for i in range(default.rooms(split)):
            scene, layout = make_room(room_generator(default, split, i), default)
            sizes.append(scene.num_points)
            assert abs(layout.sampled - layout.area * default.density) < 0.01 * layout.sampled
            # dropout (5 %, binomial) and three small holes: a bit more than 5 % fewer points
            assert layout.sampled * 0.92 < scene.num_points < layout.sampled * 0.97
            assert default.tables[0] <= len(layout.tables) <= default.tables[1]
            assert len(layout.chairs) <= default.chairs[1] and len(layout.doors) in (1, 2)
    assert 30_000 <= min(sizes) and max(sizes) <= 80_000, (min(sizes), max(sizes))
    # without dropout nor holes every drawn point is kept; without furniture only the room's shell remains
    bare = RoomDemoConfig(density=50.0, dropout=0.0, holes=0, tables=(0, 0), chairs=(0, 0), clutter=(0, 0))
    scene, layout = make_room(np.random.default_rng(0), bare)
    assert scene.num_points == layout.sampled and not layout.tables and not layout.chairs
    assert set(np.unique(scene.segment).tolist()) == {FLOOR, CEILING, WALL, DOOR}
    length, width, height = layout.size
    shell = 2 * length * width + 2 * (length + width) * height
    assert layout.area == pytest.approx(shell, rel=1e-9)  # the door and its frame fill their opening exactly
    # holes alone (no dropout) lose points: 20 spheres of 0.1-0.35 m, at least a few dozen points each
    holed = RoomDemoConfig(density=50.0, dropout=0.0, holes=20)
    scene, layout = make_room(np.random.default_rng(0), holed)
    assert layout.sampled - 20 * 50 * math.pi * 0.1**2 > scene.num_points


def test_colours_are_informative_but_not_decisive() -> None:
    config = RoomDemoConfig(train_rooms=6, density=60.0, seed=3)
    scenes = [make_room(room_generator(config, "train", i), config)[0] for i in range(6)]
    rgb = np.concatenate([s.color for s in scenes]).astype(np.float64)
    seg = np.concatenate([s.segment for s in scenes])
    assert all(s.color.dtype == np.uint8 for s in scenes)
    majority = np.bincount(seg).max() / len(seg)
    means = np.stack([rgb[seg == c].mean(0) for c in range(7)])
    nearest = ((rgb[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == seg).mean() > majority + 0.1
    # even the best rule on colour alone (the majority label of each 16^3 colour bin, fitted on these very points)
    # misses a share of the points
    per_bin: dict[int, Counter] = {}
    for key, label in zip(((rgb // 16) @ np.array([256, 16, 1])).astype(int).tolist(), seg.tolist()):
        per_bin.setdefault(key, Counter())[label] += 1
    oracle = sum(c.most_common(1)[0][1] for c in per_bin.values()) / len(seg)
    assert oracle < 0.97
    # within a class, colours vary (per object and per point)
    for c in range(7):
        assert rgb[seg == c].std(0).min() > 3.0, ROOM_DEMO_CLASSES[c]


def test_deterministic_per_seed_and_room() -> None:
    config = RoomDemoConfig(density=40.0, seed=7)
    a, _ = make_room(room_generator(config, "val", 2), config)
    b, _ = make_room(room_generator(config, "val", 2), config)
    np.testing.assert_array_equal(a.coord, b.coord)
    np.testing.assert_array_equal(a.color, b.color)
    np.testing.assert_array_equal(a.segment, b.segment)
    other = RoomDemoConfig(density=40.0, seed=8)
    for c, split, i in ((other, "val", 2), (config, "test", 2), (config, "val", 3)):
        d, _ = make_room(room_generator(c, split, i), c)
        assert d.num_points != a.num_points or not np.array_equal(d.coord, a.coord)
    # a room does not depend on how many rooms the split has
    more = RoomDemoConfig(density=40.0, seed=7, val_rooms=9)
    e, _ = make_room(room_generator(more, "val", 2), more)
    np.testing.assert_array_equal(e.coord, a.coord)


def test_write_twice_is_identical(tmp_path, small) -> None:
    counts = write_room_demo(tmp_path / "again", SMALL)
    assert counts == _meta(small)["counts"]
    first, second = _all_arrays(small), _all_arrays(tmp_path / "again")
    assert first.keys() == second.keys() and len(first) == 3 * 8
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


TINY = RoomDemoConfig(train_rooms=2, val_rooms=1, test_rooms=1, density=15.0, seed=11, chairs=(1, 2), clutter=(0, 1))


def test_ensure_is_idempotent_and_regenerates_when_the_config_or_version_changes(tmp_path, monkeypatch,
                                                                                   caplog) -> None:
    target = ensure_room_demo(tmp_path, TINY)
    assert target == tmp_path / "rooms"
    stamp = (target / MARKER).stat()
    before = snapshot(target)
    assert ensure_room_demo(tmp_path, TINY) == target  # complete and current: left alone
    assert snapshot(target) == before and (target / MARKER).stat().st_mtime_ns == stamp.st_mtime_ns
    # another config: regenerated in place
    other = RoomDemoConfig(train_rooms=3, val_rooms=1, test_rooms=1, density=15.0, seed=12, chairs=(1, 2),
                           clutter=(0, 1))
    with caplog.at_level(logging.WARNING, logger="pointcoc.data.demo_rooms"):
        assert ensure_room_demo(tmp_path, other) == target
    assert "replacing" in caplog.text
    assert _meta(target)["config"]["seed"] == 12 and len(scene_folders(target, ["train"])) == 3
    scene, _ = make_room(room_generator(other, "train", 2), other)
    np.testing.assert_array_equal(np.load(target / "train" / "room_0002" / "coord.npy"), scene.coord)
    # another version: regenerated too
    monkeypatch.setattr(demo_rooms, "ROOM_DEMO_VERSION", ROOM_DEMO_VERSION + 1)
    ensure_room_demo(tmp_path, other)
    assert _meta(target)["version"] == ROOM_DEMO_VERSION + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "rooms"]  # no old or temporary folder left


def test_incomplete_sets_and_leftovers_are_not_taken_for_complete(tmp_path) -> None:
    # a leftover temporary folder holding a complete-looking set: not used as the set, and removed
    leftover = tmp_path / ".rooms-tmp-crashed"
    write_room_demo(leftover, TINY)
    (leftover / "train" / "room_0000" / "segment.npy").write_bytes(b"garbage")
    target = ensure_room_demo(tmp_path, TINY)
    assert not leftover.exists()
    read_scene(target / "train" / "room_0000", num_classes=7)  # the fresh set reads
    # a set without its meta file (half-written): regenerated
    (target / MARKER).unlink()
    shutil.rmtree(target / "test")
    ensure_room_demo(tmp_path, TINY)
    assert (target / MARKER).is_file() and len(scene_folders(target, ["test"])) == 1
    # a meta file that matches, but a room folder lost: regenerated
    shutil.rmtree(target / "val" / "room_0000")
    ensure_room_demo(tmp_path, TINY)
    read_scene(target / "val" / "room_0000", num_classes=7)
    # a room with a missing array: regenerated
    (target / "train" / "room_0001" / "color.npy").unlink()
    ensure_room_demo(tmp_path, TINY)
    assert read_scene(target / "train" / "room_0001").color is not None


def test_a_crash_leaves_no_half_written_set(tmp_path, monkeypatch) -> None:
    calls = {"n": 0}
    real = demo_rooms.write_scene

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(demo_rooms, "write_scene", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_room_demo(tmp_path, TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]  # neither a set nor a temporary folder
    monkeypatch.setattr(demo_rooms, "write_scene", real)
    target = ensure_room_demo(tmp_path, TINY)
    before = snapshot(target)
    # a crash while replacing by another config keeps the old set, complete and current for its config
    calls["n"] = 0
    monkeypatch.setattr(demo_rooms, "write_scene", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_room_demo(tmp_path, RoomDemoConfig(train_rooms=2, val_rooms=1, test_rooms=1, density=15.0, seed=99))
    assert snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "rooms"]
    assert demo_rooms._is_current(target, TINY)


def test_a_foreign_folder_is_refused_and_left_alone(tmp_path) -> None:
    foreign = tmp_path / "rooms"
    (foreign / "train").mkdir(parents=True)
    (foreign / "my_scans.txt").write_text("mine\n")
    before = snapshot(foreign)
    with pytest.raises(InputError, match="not a pointcoc room demo"):
        ensure_room_demo(tmp_path, TINY)
    assert snapshot(foreign) == before


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"train_rooms": 0}, "train_rooms"), ({"val_rooms": -1}, "val_rooms"), ({"test_rooms": 1.5}, "test_rooms"),
    ({"train_rooms": True}, "train_rooms"), ({"density": -10.0}, "density"), ({"density": 0}, "density"),
    ({"density": float("nan")}, "density"), ({"noise": -0.001}, "noise"), ({"dropout": 1.0}, "dropout"),
    ({"holes": -1}, "holes"), ({"seed": -1}, "seed"), ({"room_size": (6.0, 4.0)}, "room_size"),
    ({"room_size": (1.0, 4.0)}, "room_size"), ({"room_size": 5.0}, "room_size"),
    ({"room_height": (2.0, 3.0)}, "room_height"), ({"tables": (3, 1)}, "tables"), ({"chairs": (0.5, 2)}, "chairs"),
    ({"color_noise": -1.0}, "color_noise"), ({"max_yaw": 270.0}, "max_yaw"),
])
def test_bad_config_values_name_the_argument(kwargs, argument) -> None:
    with pytest.raises(InputError, match=f"`{argument}`") as err:
        RoomDemoConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_other_input_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="classes.txt"):
        room_demo_classes(tmp_path)
    (tmp_path / "classes.txt").write_text("floor\nwall\nfloor\n")
    with pytest.raises(InputError, match="repeated"):
        room_demo_classes(tmp_path)
    (tmp_path / "classes.txt").write_text("floor\n\nwall\n")
    assert room_demo_classes(tmp_path) == ["floor", "wall"]
    with pytest.raises(InputError, match="not an empty folder"):
        write_room_demo(tmp_path, TINY)
    with pytest.raises(InputError, match="split"):
        room_generator(TINY, "trainval", 0)
    with pytest.raises(InputError, match="index"):
        room_generator(TINY, "train", -1)
    # the config's pairs are stored as tuples (lists are accepted)
    assert RoomDemoConfig(room_size=[5, 6]).room_size == (5.0, 6.0)
