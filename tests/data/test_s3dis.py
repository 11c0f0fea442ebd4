"""S3DIS on a tiny built raw release: room reading, bad lines, the one-time preparation, splits and the script."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pointcoc.data.s3dis as s3dis
from pointcoc.data.h5 import DatasetNotFoundError
from pointcoc.data.s3dis import (
    S3DIS_CLASSES,
    S3DIS_RAW_DIR,
    S3DIS_SPLITS,
    find_s3dis_raw,
    prepare_s3dis,
    read_s3dis_room,
    read_s3dis_scene,
    s3dis_scenes,
)
from pointcoc.data.scenes import read_scene, write_scene
from pointcoc.errors import InputError

from scripts_loader import ROOT, load_script

CEILING, FLOOR, WALL, CHAIR, CLUTTER = (S3DIS_CLASSES.index(c) for c in ("ceiling", "floor", "wall", "chair",
                                                                         "clutter"))
#: the tiny release: area -> room -> annotation file -> row count
ROOMS: dict[int, dict[str, dict[str, int]]] = {
    1: {"office_1": {"ceiling_1.txt": 5, "wall_1.txt": 4, "wall_2.txt": 3, "stairs_1.txt": 2},
        "hallway_2": {"floor_1.txt": 6, "chair_1.txt": 3}},
    5: {"office_3": {"ceiling_1.txt": 4, "clutter_1.txt": 2, "floor_1.txt": 3}},
}


def rows(n: int, seed: int) -> np.ndarray:
    """``[n, 6]`` rows ``x y z r g b`` as the release writes them (3 decimals, integer colours)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([np.round(rng.uniform(-20, 40, (n, 3)), 3), rng.integers(0, 256, (n, 3))], axis=1)


def write_rows(path: Path, values: np.ndarray) -> None:
    np.savetxt(path, values, fmt=["%.3f"] * 3 + ["%d"] * 3)


def make_release(root: Path, rooms: dict[int, dict[str, dict[str, int]]] = ROOMS) -> Path:
    """The raw release under ``root/S3DIS_RAW_DIR``; returns the release folder."""
    rel = root / S3DIS_RAW_DIR
    seed = 0
    for area, by_room in rooms.items():
        for room, files in by_room.items():
            notes = rel / f"Area_{area}" / room / "Annotations"
            notes.mkdir(parents=True)
            (notes.parent / f"{room}.txt").write_text("not read\n")  # the unlabelled whole room
            for name, n in files.items():
                seed += 1
                write_rows(notes / name, rows(n, seed))
    return rel


def expected(rel: Path, area: int, room: str) -> tuple[np.ndarray, np.ndarray]:
    """The rows and labels of a room, from its files in sorted order."""
    notes = rel / f"Area_{area}" / room / "Annotations"
    values, labels = [], []
    for path in sorted(notes.glob("*.txt")):
        cls = path.stem.rsplit("_", 1)[0]
        values.append(np.loadtxt(path, ndmin=2))
        labels += [S3DIS_CLASSES.index(cls) if cls in S3DIS_CLASSES else CLUTTER] * len(values[-1])
    return np.concatenate(values), np.asarray(labels)


def corrupt(path: Path, line: int) -> None:
    """Replace the first space of ``line`` (1-based) by a control character, as in Area_5/hallway_6."""
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] = lines[line - 1].replace(b" ", b"\x10", 1)
    path.write_bytes(b"\n".join(lines))


# ----------------------------------------------------------------------------- one room
def test_read_room_labels_colours_and_counts(tmp_path: Path, caplog) -> None:
    rel = make_release(tmp_path)
    (rel / "Area_1" / "office_1" / "Annotations" / "notes.md").write_text("ignored")
    caplog.set_level(logging.INFO, logger="pointcoc.data.s3dis")
    scene = read_s3dis_room(rel / "Area_1" / "office_1")
    values, labels = expected(rel, 1, "office_1")
    assert scene.name == "Area_1/office_1" and scene.num_points == 14
    assert scene.coord.dtype == np.float32 and scene.color.dtype == np.uint8 and scene.segment.dtype == np.int64
    np.testing.assert_allclose(scene.coord, values[:, :3], atol=1e-5)
    np.testing.assert_array_equal(scene.color, values[:, 3:].astype(np.uint8))
    np.testing.assert_array_equal(scene.segment, labels)
    assert np.bincount(scene.segment, minlength=13)[[CEILING, WALL, CLUTTER]].tolist() == [5, 7, 2]
    assert set(np.unique(scene.segment)) == {CEILING, WALL, CLUTTER}  # stairs_1 -> clutter
    notes = [r.getMessage() for r in caplog.records if "read as clutter" in r.getMessage()]
    assert len(notes) == 1 and "stairs_1.txt" in notes[0] and "Area_1/office_1" in notes[0]


def test_read_room_one_million_rows_is_fast(tmp_path: Path) -> None:
    notes = tmp_path / "Area_2" / "big" / "Annotations"
    notes.mkdir(parents=True)
    line = b"-15.609 39.505 2.214 71 64 54\n"
    (notes / "wall_1.txt").write_bytes(line * 200_000)
    start = time.perf_counter()
    scene = read_s3dis_room(notes.parent)
    seconds = time.perf_counter() - start
    assert scene.num_points == 200_000 and scene.color[0].tolist() == [71, 64, 54]
    assert seconds < 2.0, f"{seconds:.2f} s for 200k rows"  # ~0.07 s: numpy's C reader, not a Python loop


def test_corrupted_line_names_file_and_line_or_is_skipped(tmp_path: Path, caplog) -> None:
    rel = make_release(tmp_path)
    path = rel / "Area_1" / "office_1" / "Annotations" / "ceiling_1.txt"
    corrupt(path, 3)
    with pytest.raises(InputError, match=r"ceiling_1\.txt line 3: 5 columns, expected 6.*bad_lines='skip'") as err:
        read_s3dis_room(path.parent.parent)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    caplog.set_level(logging.WARNING, logger="pointcoc.data.s3dis")
    scene = read_s3dis_room(path.parent.parent, bad_lines="skip")
    values, labels = expected_without(rel, path, 3)
    assert scene.num_points == 13 and np.bincount(scene.segment, minlength=13)[CEILING] == 4
    np.testing.assert_allclose(scene.coord, values[:, :3], atol=1e-5)
    np.testing.assert_array_equal(scene.segment, labels)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("skipped 1 bad line(s) of 5" in m and "line 3" in m for m in warned), warned


def expected_without(rel: Path, path: Path, line: int) -> tuple[np.ndarray, np.ndarray]:
    """The room's rows and labels with ``line`` of ``path`` dropped (from a clean copy of the file)."""
    text = path.read_bytes().split(b"\n")
    del text[line - 1]
    clean = rel.parent / "clean"
    clean.mkdir(exist_ok=True)
    (clean / "x.txt").write_bytes(b"\n".join(text))
    parts, labels = [], []
    for other in sorted(path.parent.glob("*.txt")):
        values = np.loadtxt(clean / "x.txt" if other == path else other, ndmin=2)
        cls = other.stem.rsplit("_", 1)[0]
        parts.append(values)
        labels += [S3DIS_CLASSES.index(cls) if cls in S3DIS_CLASSES else CLUTTER] * len(values)
    return np.concatenate(parts), np.asarray(labels)


@pytest.mark.parametrize("content, line, problem", [
    (b"1 2 3 4 5 6\n1 2 3 4 5\n", 2, "5 columns, expected 6"),
    (b"1 2 3 4 5 6\n\n1 2 3 4 5 6 7\n", 3, "7 columns, expected 6"),  # blank lines still count
    (b"1 2 3 4 5 6\n1 2 3 4 5 6\nnan 2 3 4 5 6\n", 3, "NaN or infinite"),
    (b"1 2 3 4 5 6\n1 2 inf 4 5 6\n", 2, "NaN or infinite"),
    (b"1 2 3 4 5 6\n1 2 3 4 5 300\n", 2, "colour outside 0..255"),
    (b"1 2 3 4 5 6\n1 2 3 4 5 x6\n", 2, "'x6' is not a number"),
    (b"1 2 3 4 5 6\n1 2 3 \xff4 5 6\n", 2, "'.4' is not a number"),  # not UTF-8
])
def test_bad_lines_are_named(tmp_path: Path, content: bytes, line: int, problem: str) -> None:
    notes = tmp_path / "Area_1" / "room" / "Annotations"
    notes.mkdir(parents=True)
    (notes / "wall_1.txt").write_bytes(content)
    with pytest.raises(InputError, match=rf"wall_1\.txt line {line}: {problem}"):
        read_s3dis_room(notes.parent)
    scene = read_s3dis_room(notes.parent, bad_lines="skip")
    good = [r for r in content.split(b"\n") if r.strip()]
    assert scene.num_points == len(good) - 1 and scene.coord[0].tolist() == [1, 2, 3]


def test_room_errors(tmp_path: Path, caplog) -> None:
    room = tmp_path / "Area_1" / "room"
    with pytest.raises(InputError, match="no such room folder"):
        read_s3dis_room(room)
    room.mkdir(parents=True)
    with pytest.raises(InputError, match=r"room: no Annotations folder"):
        read_s3dis_room(room)
    (room / "Annotations").mkdir()
    with pytest.raises(InputError, match=r"Annotations: no annotation files"):
        read_s3dis_room(room)
    (room / "Annotations" / "wall_1.txt").write_text("")
    (room / "Annotations" / "wall_2.txt").write_text("\n \n")
    with pytest.raises(InputError, match="every annotation file is empty"):
        read_s3dis_room(room)
    write_rows(room / "Annotations" / "floor_1.txt", rows(3, 0))
    caplog.clear()
    scene = read_s3dis_room(room)  # empty files are allowed: they add no points
    assert scene.num_points == 3 and set(scene.segment.tolist()) == {FLOOR}
    assert sum("empty annotation file" in r.getMessage() for r in caplog.records) == 2
    (room / "Annotations" / "junk_1.txt").write_text("a b c\nd e f\n")
    with pytest.raises(InputError, match=r"junk_1\.txt line 1: 3 columns"):
        read_s3dis_room(room)
    with pytest.raises(InputError, match=r"junk_1\.txt: no line is a row"):  # skipping everything is no answer
        read_s3dis_room(room, bad_lines="skip")
    with pytest.raises(InputError, match="bad_lines must be one of"):
        read_s3dis_room(room, bad_lines="ignore")


# ----------------------------------------------------------------------------- preparation
def test_prepare_writes_the_preprocessed_layout(tmp_path: Path) -> None:
    rel = make_release(tmp_path / "raw")
    out = tmp_path / "s3dis"
    summary = prepare_s3dis(tmp_path / "raw", out)  # a folder holding the release
    assert summary["raw_root"] == str(rel) and summary["areas"] == [1, 5] and summary["failed"] == {}
    assert summary["written"] == ["Area_1/hallway_2", "Area_1/office_1", "Area_5/office_3"]
    assert summary["skipped"] == [] and summary["points"] == 9 + 14 + 9
    for area, by_room in ROOMS.items():
        for room in by_room:
            folder = out / f"Area_{area}" / room
            assert sorted(p.name for p in folder.iterdir()) == ["color.npy", "coord.npy", "segment.npy"]
            back = read_scene(folder, num_classes=13)
            direct = read_s3dis_room(rel / f"Area_{area}" / room)
            np.testing.assert_array_equal(back.coord, direct.coord)
            np.testing.assert_array_equal(back.color, direct.color)
            np.testing.assert_array_equal(back.segment, direct.segment)
            assert read_s3dis_scene(folder).name == f"Area_{area}/{room}"
    assert not any(p.name.startswith(".") for p in out.rglob("*"))  # no temporary folders left
    assert prepare_s3dis(rel, tmp_path / "only5", areas=[5])["written"] == ["Area_5/office_3"]


def test_prepare_resumes_and_overwrites(tmp_path: Path, monkeypatch) -> None:
    rel = make_release(tmp_path)
    out = tmp_path / "out"
    prepare_s3dis(rel, out, areas=[1])
    done = out / "Area_1" / "office_1" / "coord.npy"
    stamp = done.stat().st_mtime_ns

    def refuse(*args, **kwargs):
        raise AssertionError("write_scene called for a room already written")

    with monkeypatch.context() as m:
        m.setattr(s3dis, "write_scene", refuse)
        summary = prepare_s3dis(rel, out, areas=[1])
    assert summary["skipped"] == ["Area_1/hallway_2", "Area_1/office_1"] and summary["written"] == []
    assert summary["points"] == 0 and done.stat().st_mtime_ns == stamp
    summary = prepare_s3dis(rel, out)
    assert summary["written"] == ["Area_5/office_3"] and len(summary["skipped"]) == 2 and summary["points"] == 9
    calls = []
    monkeypatch.setattr(s3dis, "write_scene", lambda folder, *a, **k: calls.append((folder, k["overwrite"])))
    summary = prepare_s3dis(rel, out, overwrite=True)
    assert len(calls) == 3 and all(flag for _, flag in calls) and summary["skipped"] == []


def test_prepare_continues_past_bad_rooms(tmp_path: Path, caplog) -> None:
    rel = make_release(tmp_path)
    corrupt(rel / "Area_1" / "office_1" / "Annotations" / "wall_2.txt", 2)
    (rel / "Area_5" / "storage_1").mkdir()  # no Annotations
    out = tmp_path / "out"
    summary = prepare_s3dis(rel, out)
    assert summary["written"] == ["Area_1/hallway_2", "Area_5/office_3"]
    assert list(summary["failed"]) == ["Area_1/office_1", "Area_5/storage_1"]
    assert "wall_2.txt line 2: 5 columns" in summary["failed"]["Area_1/office_1"]
    assert "no Annotations folder" in summary["failed"]["Area_5/storage_1"]
    assert not (out / "Area_1" / "office_1").exists() and not (out / "Area_5" / "storage_1").exists()
    assert sum("failed" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR) == 2
    again = prepare_s3dis(rel, out, bad_lines="skip")  # the resumed run converts only the bad room
    assert again["written"] == ["Area_1/office_1"] and len(again["skipped"]) == 2
    assert read_scene(out / "Area_1" / "office_1").num_points == 13


def test_prepare_input_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="no such folder"):
        prepare_s3dis(tmp_path / "nothing", tmp_path / "out")
    with pytest.raises(DatasetNotFoundError, match=rf"no S3DIS raw release here .*{S3DIS_RAW_DIR}"):
        prepare_s3dis(tmp_path, tmp_path / "out")
    (tmp_path / f"{S3DIS_RAW_DIR}.zip").write_bytes(b"PK")
    with pytest.raises(DatasetNotFoundError, match="unzip"):
        find_s3dis_raw(tmp_path)
    rel = make_release(tmp_path)
    assert find_s3dis_raw(tmp_path) == rel and find_s3dis_raw(rel) == rel
    with pytest.raises(DatasetNotFoundError, match=r"no Area_2, Area_3 \(found Area_1, Area_5\)"):
        prepare_s3dis(rel, tmp_path / "out", areas=[1, 2, 3])
    with pytest.raises(InputError, match=r"areas: 7 is not an S3DIS area"):
        prepare_s3dis(rel, tmp_path / "out", areas=[7])
    with pytest.raises(InputError, match="the output folder is the raw release"):
        prepare_s3dis(tmp_path, rel)
    with pytest.raises(InputError, match="bad_lines must be one of"):
        prepare_s3dis(rel, tmp_path / "out", bad_lines="drop")
    prepare_s3dis(rel, tmp_path / "out", areas=[5])
    with pytest.raises(DatasetNotFoundError, match="preprocessed layout"):
        prepare_s3dis(tmp_path / "out", tmp_path / "again")
    (rel / "Area_2").mkdir()
    with pytest.raises(InputError, match=r"Area_2: no room folders"):
        prepare_s3dis(rel, tmp_path / "out", areas=[2])
    assert not (tmp_path / "again").exists()


# ----------------------------------------------------------------------------- splits
def prepared(tmp_path: Path) -> Path:
    out = tmp_path / "s3dis"
    for area, rooms in {1: ["office_1", "office_2"], 2: ["hallway_1"], 5: ["office_3", "WC_1"]}.items():
        for room in rooms:
            write_scene(out / f"Area_{area}" / room, rows(4, area)[:, :3], color=rows(4, area)[:, 3:],
                        segment=np.arange(4))
    (out / "Area_1" / ".office_9.abc.tmp").mkdir()  # a crashed write: hidden, skipped
    (out / "Area_1" / "not_a_scene").mkdir()
    return out


def test_s3dis_scenes_selects_areas(tmp_path: Path, caplog) -> None:
    out = prepared(tmp_path)
    caplog.set_level(logging.WARNING, logger="pointcoc.data.s3dis")
    test = s3dis_scenes(out, "test")
    assert [p.relative_to(out).as_posix() for p in test] == ["Area_5/WC_1", "Area_5/office_3"]
    assert any("Area_5: 2 room(s), the release has 68" in r.getMessage() for r in caplog.records)
    areas = [p.relative_to(out).as_posix() for p in s3dis_scenes(out, [2, 1])]
    assert areas == ["Area_1/office_1", "Area_1/office_2", "Area_2/hallway_1"]
    assert s3dis_scenes(tmp_path, "val") == test  # a folder holding s3dis/
    assert S3DIS_SPLITS["train"] == (1, 2, 3, 4, 6) and S3DIS_SPLITS["test"] == (5,)
    assert len(s3dis_scenes(out, [1, 2, 5])) == 5


def test_s3dis_scenes_errors(tmp_path: Path) -> None:
    out = prepared(tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"the train split needs Area_3, Area_4, Area_6, which are "
                                                   r"missing \(found Area_1, Area_2, Area_5\).*--areas 3,4,6"):
        s3dis_scenes(out, "train")
    with pytest.raises(InputError, match="split must be one of"):
        s3dis_scenes(out, "Area_5")
    with pytest.raises(InputError, match="split: 0 is not an S3DIS area"):
        s3dis_scenes(out, [0])
    with pytest.raises(DatasetNotFoundError, match="no such folder.*prepare_s3dis.py"):
        s3dis_scenes(tmp_path / "missing", "test")
    with pytest.raises(DatasetNotFoundError, match="no Area_<k>/ folders"):
        s3dis_scenes(out / "Area_1", "test")
    (out / "Area_6" / "empty_room").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match=r"Area_6: no scene folders.*--areas 6"):
        s3dis_scenes(out, [6])
    raw = tmp_path / "raw"
    rel = make_release(raw)
    for root in (raw, rel):
        with pytest.raises(DatasetNotFoundError, match=rf"{S3DIS_RAW_DIR}: this is the raw S3DIS release.*"
                                                       r"scripts/prepare_s3dis.py --raw-dir"):
            s3dis_scenes(root, "test")


# ----------------------------------------------------------------------------- the script
def test_script_exit_codes(tmp_path: Path, caplog) -> None:
    script = load_script("prepare_s3dis")
    rel = make_release(tmp_path)
    with pytest.raises(SystemExit) as stop:
        script.main(["--raw-dir", str(tmp_path / "nothing"), "--out-dir", str(tmp_path / "out")])
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("error: ")]
    assert stop.value.code == 2 and len(said) == 1 and "nothing: no such folder" in said[0] and "\n" not in said[0]
    with pytest.raises(SystemExit) as stop:
        script.main(["--raw-dir", str(rel), "--out-dir", str(tmp_path / "out"), "--areas", "1,x"])
    assert stop.value.code == 2  # argparse
    corrupt(rel / "Area_5" / "office_3" / "Annotations" / "floor_1.txt", 1)
    caplog.clear()
    with pytest.raises(SystemExit) as stop:
        script.main(["--raw-dir", str(tmp_path), "--out-dir", str(tmp_path / "out")])
    assert stop.value.code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("Area_5/office_3" in m and "floor_1.txt line 1" in m for m in errors), errors
    assert any("--bad-lines skip" in m for m in errors), errors
    summary = script.main(["--raw-dir", str(rel), "--out-dir", str(tmp_path / "out"), "--bad-lines", "skip",
                           "--areas", "5"])
    assert summary["written"] == ["Area_5/office_3"] and summary["failed"] == {}
    assert read_scene(tmp_path / "out" / "Area_5" / "office_3").num_points == 8  # 9 rows, the bad one dropped


@pytest.mark.slow  # a python start: importing pointcoc takes seconds
def test_script_runs_as_a_file_and_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    make_release(tmp_path, {1: {"office_1": {"wall_1.txt": 3}}})
    cmd = [sys.executable, str(ROOT / "scripts" / "prepare_s3dis.py"), "--raw-dir", str(tmp_path), "--out-dir",
           str(tmp_path / "out"), "--areas", "1,2"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().count("\n") == 0 and "error: " in res.stderr and "no Area_2" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "out").exists()
