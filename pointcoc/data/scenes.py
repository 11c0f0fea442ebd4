"""Scene folders: one scene (a room, a scan, a LiDAR tile) as a folder of ``.npy`` arrays.

This is Pointcept's preprocessed layout (S3DIS after its ``preprocess_s3dis.py``, ScanNet after
``preprocess_scannet.py``), which :func:`read_scene` reads and :func:`write_scene` writes:

* ``coord.npy``: ``[N, 3]`` float positions (metres);
* ``color.npy``: ``[N, 3]`` colours, uint8 0..255 (floats in 0..255 are accepted);
* ``normal.npy``: ``[N, 3]`` float normals (optional);
* ``segment.npy`` (or ``segment20.npy``, ScanNet's 20-class labels; ``segment200.npy``): ``[N]`` integer
  labels, ``-1`` (or any negative value) = ignored;
* anything else (``instance.npy``, ``intensity.npy``, ...) is left alone.

Every problem is an :class:`~pointcoc.errors.InputError` naming the file: a missing ``coord.npy``, arrays of
different lengths, NaN or infinite values, labels beyond the class table, an empty scene.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pointcoc.errors import InputError

__all__ = ["Scene", "read_scene", "write_scene", "scene_folders", "load_scene", "LABEL_FILES", "SCENE_FILE",
           "SCENE_FILE_SUFFIXES"]

log = logging.getLogger(__name__)

#: the label files of a scene folder, first match wins
LABEL_FILES: tuple[str, ...] = ("segment.npy", "segment20.npy", "segment200.npy")
#: the file whose presence makes a folder a scene
SCENE_FILE = "coord.npy"
#: single-file scenes (:func:`load_scene`): a user's point files and LiDAR tiles
SCENE_FILE_SUFFIXES = (".ply", ".npy", ".npz", ".txt", ".xyz", ".pts", ".las", ".laz")


@dataclass
class Scene:
    """One scene in memory.

    Attributes:
        name: the scene's name (its folder's, or ``Area_5/office_1`` style for S3DIS).
        coord: ``[N, 3]`` positions: float32 from scene folders (as stored), float64 from single files (LiDAR
            coordinates such as UTM keep their centimetres; everything downstream centres in float64).
        color: ``[N, 3]`` uint8 colours, or ``None``.
        segment: ``[N]`` int64 labels (negative = ignored), or ``None`` (an unlabelled scene).
        normal: ``[N, 3]`` float32 normals, or ``None``.
    """

    name: str
    coord: np.ndarray
    color: np.ndarray | None = None
    segment: np.ndarray | None = None
    normal: np.ndarray | None = None

    @property
    def num_points(self) -> int:
        """``N``."""
        return int(self.coord.shape[0])


def _load(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise InputError(f"{path}: not a readable .npy array ({err}); re-create it (scripts/prepare_s3dis.py "
                         f"for S3DIS)") from None


def _finite(values: np.ndarray, path: Path) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise InputError(f"{path}: row {row} holds {values[row].tolist()} (NaN or infinite); fix or drop that point")


def read_scene(folder: str | Path, *, num_classes: int | None = None, name: str | None = None,
               mmap: bool = False, label_file: str | None = None) -> Scene:
    """Read one scene folder (see the module docstring).

    Args:
        folder: the scene's folder (holding ``coord.npy``).
        num_classes: when given, labels must be ``< num_classes`` (negative ones are ignored points).
        name: the scene's name (default: the folder's name).
        mmap: memory-map the arrays instead of reading them (for scenes larger than memory; no checks of
            the values then, only of shapes).
        label_file: the label file to read (default: the first of :data:`LABEL_FILES` present; none: unlabelled).

    Returns:
        a :class:`Scene`.

    Raises:
        InputError: a missing ``coord.npy``, a wrong shape, arrays of different lengths, NaN, out-of-range labels,
            an empty scene.
    """
    folder = Path(folder)
    coord_path = folder / SCENE_FILE
    if not coord_path.is_file():
        raise InputError(f"{folder}: no {SCENE_FILE} (a scene folder holds coord.npy, color.npy and segment.npy)")
    coord = _load(coord_path, mmap)
    if coord.ndim != 2 or coord.shape[1] != 3 or coord.dtype.kind not in "fiu":
        raise InputError(f"{coord_path}: expected a numeric [N, 3] array, got {coord.dtype} {tuple(coord.shape)}")
    n = coord.shape[0]
    if n == 0:
        raise InputError(f"{coord_path}: the scene has no points")
    if not mmap:
        _finite(coord, coord_path)

    def optional(file: str, width: int | None) -> np.ndarray | None:
        path = folder / file
        if not path.is_file():
            return None
        arr = _load(path, mmap)
        want = (n,) if width is None else (n, width)
        if arr.shape != want:
            raise InputError(f"{path}: shape {tuple(arr.shape)} does not match {coord_path}'s {n} points; expected "
                             f"{list(want)}")
        if arr.dtype.kind not in "fiu":
            raise InputError(f"{path}: expected numbers, got dtype {arr.dtype}")
        return arr

    color = optional("color.npy", 3)
    if color is not None and not mmap:
        _finite(color.astype(np.float64, copy=False), folder / "color.npy")
        if color.size and (color.min() < 0 or color.max() > 255):
            raise InputError(f"{folder / 'color.npy'}: colours must be 0..255, found {color.min()}..{color.max()}")
        color = color.astype(np.uint8) if color.dtype != np.uint8 else color
    normal = optional("normal.npy", 3)
    if normal is not None and not mmap:
        _finite(normal, folder / "normal.npy")
        normal = normal.astype(np.float32, copy=False)
    files = [label_file] if label_file else [f for f in LABEL_FILES if (folder / f).is_file()][:1]
    segment = optional(files[0], None) if files else None
    if label_file and segment is None:
        raise InputError(f"{folder}: no {label_file}")
    if segment is not None and not mmap:
        label_path = folder / files[0]
        if segment.dtype.kind == "f":
            if not np.isfinite(segment).all() or (segment != np.round(segment)).any():
                raise InputError(f"{label_path}: labels must be whole numbers")
        segment = segment.astype(np.int64)
        if num_classes is not None and segment.size and segment.max() >= num_classes:
            row = int(np.argmax(segment))
            raise InputError(f"{label_path}: row {row} has label {int(segment[row])}, but the class table has "
                             f"{num_classes} classes (0..{num_classes - 1}; negative = ignored)")
    if not mmap:
        coord = coord.astype(np.float32, copy=False)
    return Scene(name or folder.name, coord, color, segment, normal)


def write_scene(folder: str | Path, coord: np.ndarray, *, color: np.ndarray | None = None,
                segment: np.ndarray | None = None, normal: np.ndarray | None = None,
                extra: dict[str, np.ndarray] | None = None, overwrite: bool = False) -> Path:
    """Write one scene folder atomically: the arrays go into a temporary folder beside ``folder``, which is then
    renamed, so a crash never leaves a half-written scene (a folder either has every file or does not exist).

    Args:
        folder: the scene folder to create.
        coord: ``[N, 3]`` positions (stored float32).
        color: ``[N, 3]`` colours 0..255 (stored uint8).
        segment: ``[N]`` integer labels (stored int16; negative = ignored).
        normal: ``[N, 3]`` normals (stored float32).
        extra: more ``[N, ...]`` arrays by file stem (e.g. ``{"instance": ...}``).
        overwrite: replace an existing folder (default: refuse).

    Raises:
        InputError: an existing folder without ``overwrite``, wrong shapes or lengths.
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise InputError(f"{folder}: already exists; pass overwrite=True to replace it")
    coord = np.asarray(coord)
    if coord.ndim != 2 or coord.shape[1] != 3:
        raise InputError(f"{folder}: `coord` must be [N, 3], got {tuple(coord.shape)}")
    n = coord.shape[0]
    arrays: dict[str, np.ndarray] = {"coord": coord.astype(np.float32)}
    for key, value, width, dtype in (("color", color, 3, np.uint8), ("segment", segment, None, np.int16),
                                     ("normal", normal, 3, np.float32)):
        if value is None:
            continue
        value = np.asarray(value)
        want = (n,) if width is None else (n, width)
        if value.shape != want:
            raise InputError(f"{folder}: `{key}` has shape {tuple(value.shape)}, expected {list(want)}")
        if key == "color":
            value = np.clip(np.round(value), 0, 255)
        arrays[key] = value.astype(dtype)
    for key, value in (extra or {}).items():
        value = np.asarray(value)
        if value.shape[:1] != (n,):
            raise InputError(f"{folder}: `{key}` has {value.shape[:1]} rows, expected {n}")
        arrays[key] = value
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        for key, value in arrays.items():
            np.save(tmp / f"{key}.npy", value)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def scene_folders(root: str | Path, subfolders: Sequence[str] | None = None, *, files: bool = False) -> list[Path]:
    """The scene folders (holding ``coord.npy``) under ``root`` or under its ``subfolders``, sorted by path;
    hidden (temporary) folders are skipped. With ``files``, also the single-file scenes directly in those folders
    (:data:`SCENE_FILE_SUFFIXES`, read by :func:`load_scene`)."""
    root = Path(root)
    tops = [root] if subfolders is None else [root / s for s in subfolders]
    out: list[Path] = []
    for top in tops:
        if not top.is_dir():
            raise InputError(f"{top}: no such folder")
        out += sorted(p.parent for p in top.rglob(SCENE_FILE) if not any(part.startswith(".") for part in
                                                                          p.relative_to(root).parts))
        if files:
            out += sorted(p for p in top.iterdir() if p.is_file() and not p.name.startswith(".")
                          and p.suffix.lower() in SCENE_FILE_SUFFIXES)
    return out


def load_scene(path: str | Path, *, num_classes: int | None = None, label_map: object = None,
               columns: str | None = None) -> Scene:
    """A scene from a scene folder (:func:`read_scene`) or from one file: ``.ply``, ``.npy``/``.npz``, text
    (:func:`pointcoc.data.files.read_point_file`, labels from its label field or column) or LiDAR ``.las``/``.laz``
    (:func:`pointcoc.data.las.read_las`, labels through ``label_map``; without one the file is unlabelled).

    Raises:
        InputError: as the reader of the format; labels ``>= num_classes``.
    """
    path = Path(path)
    if path.is_dir():
        return read_scene(path, num_classes=num_classes)
    if path.suffix.lower() in (".las", ".laz"):
        from pointcoc.data.las import las_header_info, read_las

        rgb = las_header_info(path)["has_rgb"]
        cloud = read_las(path, label_map=label_map, features=("rgb",) if rgb else ())
    else:
        from pointcoc.data.files import read_point_file

        cloud = read_point_file(path, columns=columns)
    labels = cloud.labels
    if labels is not None and num_classes is not None and labels.size and labels.max() >= num_classes:
        row = int(np.argmax(labels))
        raise InputError(f"{path}: point {row} has label {int(labels[row])}, but the class table has {num_classes} "
                         f"classes (0..{num_classes - 1}; negative = ignored)")
    return Scene(path.stem, np.asarray(cloud.pos, dtype=np.float64), cloud.colors, labels, cloud.normals)
