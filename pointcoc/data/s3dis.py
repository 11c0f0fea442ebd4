"""S3DIS (Stanford Large-Scale 3D Indoor Spaces): read the raw release once, then use scene folders.

The raw release ``Stanford3dDataset_v1.2_Aligned_Version`` (buildingparser.stanford.edu/dataset.html, access
form) holds ``Area_{1..6}/<room>/Annotations/<class>_<i>.txt``: one text file per object, rows
``x y z r g b`` (space-separated; colours 0..255). A room's points are the rows of all its annotation files,
each labelled with the file's class (:data:`S3DIS_CLASSES`; a class outside the 13, such as the release's
``stairs``, is read as ``clutter``, as PointNet's ``indoor3d_util`` does). ``<room>/<room>.txt`` (the whole room,
unlabelled) is not read.

* :func:`read_s3dis_room` reads one raw room into a :class:`~pointcoc.data.scenes.Scene`;
* :func:`prepare_s3dis` converts the raw release once into scene folders ``<out>/Area_<k>/<room>/{coord,color,
  segment}.npy`` (Pointcept's preprocessed layout), resumably (rooms already written are skipped) and past bad
  rooms (reported at the end); ``scripts/prepare_s3dis.py`` is its command line;
* :func:`s3dis_scenes` lists the scene folders of a split (:data:`S3DIS_SPLITS`, the Area-5 protocol: train on
  areas 1, 2, 3, 4, 6, test on area 5), and :func:`read_s3dis_scene` reads one of them.

Text rows are parsed with numpy's C reader (``np.loadtxt``, about 0.3 s per million rows); only a file it
rejects is scanned line by line, to name the first bad line, or, with ``bad_lines="skip"``, to drop the bad lines
(a line is bad when it does not hold 6 numbers, holds NaN or infinity, or a colour outside 0..255). The Aligned
release has one: ``Area_5/hallway_6/Annotations/ceiling_1.txt`` line 180389 holds a control character in place of
a space.

Every problem is an :class:`~pointcoc.errors.InputError` (a ``ValueError``) whose one-line message starts with the
file or folder at fault.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pointcoc.data.h5 import DatasetNotFoundError
from pointcoc.data.scenes import SCENE_FILE, Scene, read_scene, write_scene
from pointcoc.errors import InputError

__all__ = ["S3DIS_CLASSES", "S3DIS_AREAS", "S3DIS_SPLITS", "S3DIS_ROOMS", "S3DIS_RAW_DIR", "BAD_LINE_POLICIES",
           "read_s3dis_room", "prepare_s3dis", "find_s3dis_raw", "s3dis_scenes", "read_s3dis_scene"]

log = logging.getLogger(__name__)

#: the 13 classes, in label order (PointNet's and Pointcept's)
S3DIS_CLASSES: tuple[str, ...] = ("ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair",
                                  "sofa", "bookcase", "board", "clutter")
#: the six areas
S3DIS_AREAS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
#: the areas of each split, Area-5 protocol (``trainval`` = train + val = every area, the test area included)
S3DIS_SPLITS: dict[str, tuple[int, ...]] = {"train": (1, 2, 3, 4, 6), "val": (5,), "test": (5,),
                                            "trainval": S3DIS_AREAS}
#: rooms per area in the release (272 in all)
S3DIS_ROOMS: dict[int, int] = {1: 44, 2: 40, 3: 23, 4: 49, 5: 68, 6: 48}
#: the raw release's folder name
S3DIS_RAW_DIR = "Stanford3dDataset_v1.2_Aligned_Version"
#: what :func:`read_s3dis_room` does with a bad line
BAD_LINE_POLICIES: tuple[str, ...] = ("error", "skip")

SOURCE = (f"S3DIS comes from buildingparser.stanford.edu/dataset.html (access form; the {S3DIS_RAW_DIR} "
          "release); pointcoc never downloads")
_CLUTTER = S3DIS_CLASSES.index("clutter")
_COLUMNS = 6
_SKIP_HINT = "fix the line or pass bad_lines='skip' (--bad-lines skip in scripts/prepare_s3dis.py) to drop it"


# ----------------------------------------------------------------------------- one annotation file
def _class_of(path: Path) -> str:
    """``ceiling_1.txt`` -> ``ceiling`` (lower-case; a name without ``_<i>`` is the class itself)."""
    match = re.fullmatch(r"(.+?)_\d+", path.stem)
    return (match.group(1) if match else path.stem).lower()


def _token_problem(tokens: list[bytes]) -> str:
    """Why a line's tokens are not 6 numbers."""
    if len(tokens) != _COLUMNS:
        return f"{len(tokens)} columns, expected {_COLUMNS} (x y z r g b)"
    for token in tokens:
        try:
            float(token)
        except ValueError:
            return f"{token.decode('utf-8', 'replace')!r} is not a number"
    return "not a row x y z r g b"


def _scan(path: Path, bad_lines: str, reason: str) -> np.ndarray:
    """The rows of ``path`` checked line by line (the slow path, for a file the fast reader rejected)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"{path}: cannot read the annotation file ({err})") from None
    lines = data.split(b"\n")
    rows: list[list[float]] = []
    numbers: list[int] = []  # the 0-based line of each row
    bad: list[tuple[int, str]] = []  # (0-based line, problem)
    for i, line in enumerate(lines):
        tokens = line.split()
        if not tokens:
            continue
        try:
            if len(tokens) != _COLUMNS:
                raise ValueError
            rows.append([float(t) for t in tokens])
            numbers.append(i)
        except ValueError:
            bad.append((i, _token_problem(tokens)))
    values = np.asarray(rows, dtype=np.float64).reshape(-1, _COLUMNS)
    where = np.asarray(numbers, dtype=np.int64)
    finite = np.isfinite(values).all(axis=1)
    colour = ((values[:, 3:] >= 0) & (values[:, 3:] <= 255)).all(axis=1)
    bad += [(int(i), "NaN or infinite value") for i in where[~finite]]
    bad += [(int(i), "colour outside 0..255") for i in where[finite & ~colour]]
    bad.sort()
    if not bad:  # the fast reader failed but every line is fine: report what it said
        raise InputError(f"{path}: cannot parse the rows ({reason}); expected lines 'x y z r g b'")
    first, problem = bad[0]
    if bad_lines == "error":
        text = lines[first].strip().decode("utf-8", "replace")
        raise InputError(f"{path} line {first + 1}: {problem} in {text[:80]!r}; {_SKIP_HINT}")
    keep = finite & colour
    if not keep.any():
        raise InputError(f"{path}: no line is a row 'x y z r g b' (line {first + 1}: {problem}); this is not an "
                         "S3DIS annotation file")
    shown = ", ".join(str(i + 1) for i, _ in bad[:5]) + (", ..." if len(bad) > 5 else "")
    log.warning("%s: skipped %d bad line(s) of %d (line %s; first: %s)", path, len(bad), int(keep.sum()) + len(bad),
                shown, problem)
    return values[keep]


def _read_rows(path: Path, bad_lines: str) -> np.ndarray:
    """``[n, 6]`` float64 rows ``x y z r g b`` of one annotation file (``n`` may be 0: an empty file)."""
    try:
        if path.stat().st_size == 0:
            return np.zeros((0, _COLUMNS))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": a blank file
            rows = np.loadtxt(path, dtype=np.float64, ndmin=2, comments=None, encoding="utf-8")
    except OSError as err:
        raise InputError(f"{path}: cannot read the annotation file ({err})") from None
    except ValueError as err:  # a wrong column count, a non-number, a byte that is not UTF-8
        return _scan(path, bad_lines, str(err).split(";")[0])
    if rows.shape[0] == 0:
        return np.zeros((0, _COLUMNS))
    if rows.shape[1] != _COLUMNS or not np.isfinite(rows).all() or (rows[:, 3:] < 0).any() or \
            (rows[:, 3:] > 255).any():
        return _scan(path, bad_lines, f"{rows.shape[1]} columns, or values out of range")
    return rows


# ----------------------------------------------------------------------------- one room
def read_s3dis_room(room_dir: str | Path, bad_lines: str = "error") -> Scene:
    """Read one raw S3DIS room: the rows of every ``Annotations/*.txt``, labelled by the file's class.

    Annotation files are read in sorted name order. A file named with a class outside :data:`S3DIS_CLASSES`
    (``stairs_1.txt``) is read as clutter (logged at INFO once per room); an empty file adds no points (logged as
    a warning); files not ending in ``.txt`` are ignored.

    Args:
        room_dir: ``.../Area_<k>/<room>`` (holding ``Annotations/``).
        bad_lines: ``"error"``: a bad line (not 6 numbers, NaN or infinite, a colour outside 0..255) raises;
            ``"skip"``: bad lines are dropped with a warning counting them.

    Returns:
        a :class:`~pointcoc.data.scenes.Scene` named ``Area_<k>/<room>``: ``coord: [N, 3]`` float32,
        ``color: [N, 3]`` uint8, ``segment: [N]`` int64 in ``0..12``.

    Raises:
        InputError: no ``Annotations`` folder, no annotation file, a bad line (file and line number; with
            ``"error"``), a file without any good line, a room without points, an unknown ``bad_lines``.
    """
    if bad_lines not in BAD_LINE_POLICIES:
        raise InputError(f"bad_lines must be one of {BAD_LINE_POLICIES}, got {bad_lines!r}")
    room_dir = Path(room_dir)
    name = f"{room_dir.parent.name}/{room_dir.name}"
    notes = room_dir / "Annotations"
    if not notes.is_dir():
        what = "no such room folder" if not room_dir.is_dir() else "no Annotations folder"
        raise InputError(f"{room_dir}: {what}; an S3DIS room holds Annotations/<class>_<i>.txt ({S3DIS_RAW_DIR})")
    files = sorted(p for p in notes.iterdir() if p.suffix == ".txt" and not p.name.startswith(".") and p.is_file())
    if not files:
        raise InputError(f"{notes}: no annotation files (<class>_<i>.txt); restore the room from the release")
    parts: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    unknown: list[str] = []
    for path in files:
        cls = _class_of(path)
        if cls in S3DIS_CLASSES:
            label = S3DIS_CLASSES.index(cls)
        else:
            label = _CLUTTER
            unknown.append(path.name)
        rows = _read_rows(path, bad_lines)
        if rows.shape[0] == 0:
            log.warning("%s: empty annotation file; it adds no points", path)
            continue
        parts.append(rows)
        labels.append(np.full(rows.shape[0], label, dtype=np.int64))
    if unknown:
        log.info("%s: %s not among the %d classes, read as clutter (as PointNet's indoor3d_util does)", name,
                 ", ".join(unknown), len(S3DIS_CLASSES))
    if not parts:
        raise InputError(f"{notes}: every annotation file is empty; the room has no points")
    rows = np.concatenate(parts)
    color = np.round(rows[:, 3:]).astype(np.uint8)
    return Scene(name, rows[:, :3].astype(np.float32), color, np.concatenate(labels))


# ----------------------------------------------------------------------------- the release
def _area_dirs(root: Path) -> dict[int, Path]:
    return {a: root / f"Area_{a}" for a in S3DIS_AREAS if (root / f"Area_{a}").is_dir()}


def _rooms(area_dir: Path) -> list[Path]:
    return sorted(p for p in area_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _is_preprocessed(root: Path) -> bool:
    return any((room / SCENE_FILE).is_file() for area in _area_dirs(root).values() for room in _rooms(area))


def _is_raw(root: Path) -> bool:
    return any((room / "Annotations").is_dir() for area in _area_dirs(root).values() for room in _rooms(area))


def find_s3dis_raw(root: str | Path) -> Path:
    """The raw release folder: ``root`` itself when it holds ``Area_<k>/`` folders, else ``root/`` +
    :data:`S3DIS_RAW_DIR`.

    Raises:
        DatasetNotFoundError (an InputError): neither holds an area, or ``root`` is the preprocessed layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"{root}: no such folder; {SOURCE}")
    for folder in (root, root / S3DIS_RAW_DIR):
        if _area_dirs(folder):
            if _is_preprocessed(folder):
                raise DatasetNotFoundError(f"{folder}: this is the preprocessed layout (Area_<k>/<room>/coord.npy), "
                                           f"not the raw release; read it with s3dis_scenes()")
            return folder
    zipped = root / f"{S3DIS_RAW_DIR}.zip"
    hint = f"unzip {zipped} first" if zipped.is_file() else SOURCE
    raise DatasetNotFoundError(f"{root}: no S3DIS raw release here (looked for Area_1..Area_6 in it and in "
                               f"{S3DIS_RAW_DIR}/); {hint}")


def _check_areas(areas: Sequence[int], what: str) -> tuple[int, ...]:
    out = []
    for a in areas:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or int(a) not in S3DIS_AREAS:
            raise InputError(f"{what}: {a!r} is not an S3DIS area; areas are {list(S3DIS_AREAS)}")
        out.append(int(a))
    if not out:
        raise InputError(f"{what}: no areas given; areas are {list(S3DIS_AREAS)}")
    return tuple(sorted(set(out)))


def prepare_s3dis(raw_root: str | Path, out_root: str | Path, areas: Sequence[int] | None = None,
                  bad_lines: str = "error", overwrite: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Convert the raw release into scene folders ``out_root/Area_<k>/<room>/{coord,color,segment}.npy``.

    Each room is read with :func:`read_s3dis_room` and written with :func:`~pointcoc.data.scenes.write_scene`
    (atomically), so the run can be stopped and started again: a room whose scene folder exists is skipped.
    A room that fails with an :class:`~pointcoc.errors.InputError` is logged, counted and skipped; the run goes on
    and the summary lists it. Other errors (a full disk) stop the run.

    Args:
        raw_root: the release folder (:data:`S3DIS_RAW_DIR`) or a folder holding it.
        out_root: where the scene folders go (created; must not be the release folder).
        areas: the areas to convert (default: every area present in the release).
        bad_lines: ``"error"`` or ``"skip"``, as in :func:`read_s3dis_room`.
        overwrite: rewrite rooms already written.
        progress: show a progress bar (default: when stderr is a terminal).

    Returns:
        a summary: ``raw_root``, ``out_root`` (str), ``areas`` (list), ``written`` and ``skipped`` (room names
        ``Area_<k>/<room>``), ``failed`` (name -> one-line error), ``points`` (points written), ``seconds``.

    Raises:
        InputError: no release at ``raw_root``, an area asked for but missing, an area without rooms, ``out_root``
            the release folder, an unknown ``bad_lines``.
    """
    start = time.perf_counter()
    if bad_lines not in BAD_LINE_POLICIES:
        raise InputError(f"bad_lines must be one of {BAD_LINE_POLICIES}, got {bad_lines!r}")
    raw = find_s3dis_raw(raw_root)
    out = Path(out_root)
    if out.resolve() == raw.resolve():
        raise InputError(f"{out}: the output folder is the raw release; give another folder (e.g. data/s3dis)")
    present = _area_dirs(raw)
    if areas is None:
        chosen = tuple(present)
        absent = [a for a in S3DIS_AREAS if a not in present]
        if absent:
            log.warning("%s: areas %s are missing; converting areas %s", raw, absent, list(chosen))
    else:
        chosen = _check_areas(areas, "areas")
        absent = [a for a in chosen if a not in present]
        if absent:
            raise DatasetNotFoundError(f"{raw}: no {', '.join(f'Area_{a}' for a in absent)} (found "
                                       f"{', '.join(p.name for p in present.values())}); {SOURCE}")
    rooms: list[Path] = []
    for a in chosen:
        found = _rooms(present[a])
        if not found:
            raise InputError(f"{present[a]}: no room folders; restore the area from the release")
        if len(found) < S3DIS_ROOMS[a]:
            log.warning("%s: %d room(s), the release has %d", present[a], len(found), S3DIS_ROOMS[a])
        rooms += found
    summary: dict[str, Any] = {"raw_root": str(raw), "out_root": str(out), "areas": list(chosen), "written": [],
                               "skipped": [], "failed": {}, "points": 0}
    enabled = sys.stderr.isatty() if progress is None else progress
    with logging_redirect_tqdm() if enabled else nullcontext():  # log lines above the bar, not through it
        for room in tqdm(rooms, desc="S3DIS rooms", unit="room", disable=not enabled, dynamic_ncols=True):
            name = f"{room.parent.name}/{room.name}"
            target = out / room.parent.name / room.name
            if (target / SCENE_FILE).is_file() and not overwrite:
                summary["skipped"].append(name)
                continue
            try:
                scene = read_s3dis_room(room, bad_lines=bad_lines)
                write_scene(target, scene.coord, color=scene.color, segment=scene.segment, overwrite=overwrite)
            except InputError as err:
                log.error("%s: failed: %s", name, err)
                summary["failed"][name] = str(err)
                continue
            log.debug("%s: %d points", name, scene.num_points)
            summary["written"].append(name)
            summary["points"] += scene.num_points
    summary["seconds"] = round(time.perf_counter() - start, 3)
    log.info("S3DIS -> %s: %d room(s) written (%d points), %d already done, %d failed, %.1f s", out,
             len(summary["written"]), summary["points"], len(summary["skipped"]), len(summary["failed"]),
             summary["seconds"])
    return summary


# ----------------------------------------------------------------------------- the preprocessed layout
def _split_areas(split: str | Sequence[int]) -> tuple[int, ...]:
    if isinstance(split, str):
        if split not in S3DIS_SPLITS:
            raise InputError(f"split must be one of {list(S3DIS_SPLITS)} (or a list of areas), got {split!r}")
        return S3DIS_SPLITS[split]
    return _check_areas(split, "split")


def s3dis_scenes(root: str | Path, split: str | Sequence[int] = "train") -> list[Path]:
    """The scene folders of a split in the preprocessed layout ``root/Area_<k>/<room>/coord.npy``.

    Args:
        root: the output folder of :func:`prepare_s3dis` (or a folder holding it as ``s3dis/``).
        split: a name in :data:`S3DIS_SPLITS` (Area-5 protocol) or the areas themselves, e.g. ``[1, 2]``.

    Returns:
        the room folders, area by area, rooms sorted by name (hidden, temporary folders skipped). An area with
        fewer rooms than the release's (:data:`S3DIS_ROOMS`, e.g. a room that failed to convert) is logged as a
        warning.

    Raises:
        DatasetNotFoundError (an InputError): ``root`` missing, the raw release instead of the preprocessed one
            (run ``scripts/prepare_s3dis.py``), an area of the split missing or without scene folders.
    """
    areas = _split_areas(split)
    given = Path(root)
    if not given.is_dir():
        raise DatasetNotFoundError(f"{given}: no such folder; convert the raw release first with "
                                   f"scripts/prepare_s3dis.py --raw-dir RAW --out-dir {given}")
    root = given if _area_dirs(given) or not _area_dirs(given / "s3dis") else given / "s3dis"
    present = _area_dirs(root)
    for folder in (root, root / S3DIS_RAW_DIR):
        if _area_dirs(folder) and not _is_preprocessed(folder) and _is_raw(folder):
            raise DatasetNotFoundError(f"{folder}: this is the raw S3DIS release, not the preprocessed layout; "
                                       f"convert it once with scripts/prepare_s3dis.py --raw-dir {folder} --out-dir "
                                       f"OUT and pass OUT")
    if not present:
        raise DatasetNotFoundError(f"{given}: no Area_<k>/ folders (the preprocessed S3DIS layout is "
                                   f"Area_<k>/<room>/coord.npy); make it with scripts/prepare_s3dis.py; {SOURCE}")
    missing = [a for a in areas if a not in present]
    if missing:
        which = f"the {split} split" if isinstance(split, str) else "the split"
        raise DatasetNotFoundError(f"{root}: {which} needs {', '.join(f'Area_{a}' for a in missing)}, which "
                                   f"{'is' if len(missing) == 1 else 'are'} missing (found "
                                   f"{', '.join(p.name for p in present.values())}); convert "
                                   f"{'it' if len(missing) == 1 else 'them'} with scripts/prepare_s3dis.py --areas "
                                   f"{','.join(str(a) for a in missing)}")
    out: list[Path] = []
    for a in areas:
        scenes = [r for r in _rooms(present[a]) if (r / SCENE_FILE).is_file()]
        if not scenes:
            raise DatasetNotFoundError(f"{present[a]}: no scene folders (<room>/coord.npy); convert the area with "
                                       f"scripts/prepare_s3dis.py --areas {a}")
        if len(scenes) < S3DIS_ROOMS[a]:
            log.warning("%s: %d room(s), the release has %d; results are not comparable to published ones",
                        present[a], len(scenes), S3DIS_ROOMS[a])
        out += scenes
    return out


def read_s3dis_scene(folder: str | Path, mmap: bool = False) -> Scene:
    """One preprocessed room (:func:`~pointcoc.data.scenes.read_scene` with the 13 classes), named
    ``Area_<k>/<room>``."""
    folder = Path(folder)
    return read_scene(folder, num_classes=len(S3DIS_CLASSES), name=f"{folder.parent.name}/{folder.name}", mmap=mmap)
