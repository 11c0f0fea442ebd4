"""Read a user's own point file, and write labelled points as a PLY: the files of ``scripts/predict.py``.

:func:`read_point_file` reads one cloud from a file, picking the format from the suffix
(case-insensitive, :data:`SUPPORTED_SUFFIXES`):

* ``.ply`` (ASCII or binary, through ``plyfile``): the ``vertex`` element's ``x, y, z``; normals
  ``nx, ny, nz`` (or ``normal_x, normal_y, normal_z``); colours ``red, green, blue`` (or ``r, g, b``);
  the label from the first of :data:`LABEL_NAMES` present; every other scalar property goes to
  ``fields``. Property names match case-insensitively; faces and other elements are ignored.
* ``.npy``: a 2-D numeric array ``[N, C]`` whose columns follow the column rules below, or a
  structured array whose field names are read like PLY properties.
* ``.npz``: positions from the first of ``pos``, ``xyz``, ``coord``, ``points`` (``[N, 3]``; ``points``,
  or any of them with ``columns``, follows the column rules), normals from ``normal``/``normals``,
  colours from ``color``/``colors``/``rgb``, labels from ``label``/``labels``/``segment``/``part``;
  other arrays with one row per point go to ``fields``, arrays of another length are skipped.
* ``.txt``, ``.xyz``, ``.pts``: numeric columns separated by whitespace or commas; blank lines, lines
  starting with ``#`` and text after a ``#`` are skipped. A first line that is not all numbers is a
  header: when ``columns`` is not given and the header names ``x``, ``y`` and ``z`` and one name per
  column, it names the columns, otherwise it is skipped. A first line holding a single integer
  followed by longer rows is a point count (as in many ``.pts`` files) and is skipped.

Column rules (``.npy``, text, ``npz`` ``points``): with ``columns``, a comma-separated name per
column, e.g. ``"x,y,z,nx,ny,nz,label"``, ``"x,y,z,r,g,b,label"`` or ``"x,y,z,intensity,_"``
(``_`` drops a column; names outside the known ones become ``fields``; ``x``, ``y``, ``z`` are
required). Without it: 3 columns are ``x y z``, 6 are ``x y z nx ny nz``, 7 are ``x y z nx ny nz
label`` (the ShapeNetPart text rows); any other count is an error asking for ``columns``.

Colours come back as uint8 0..255: stored floats in ``[0, 1]`` are scaled by 255, 16-bit integers
(values above 255) by ``255 / 65535``. Positions keep their precision (float64), labels must be
whole numbers (``-1`` marks an ignored point), positions must be finite.

:func:`write_labeled_ply` writes points with their (predicted) labels, coloured by
:func:`label_colors`, atomically (a temporary file beside the target, then a rename).

Every problem with a file is an :class:`~pointcoc.errors.InputError` (a ``ValueError``) whose one-line
message starts with the file's path and names the row, line, key or property at fault.
"""

from __future__ import annotations

import colorsys
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from pointcoc.errors import InputError

__all__ = ["PointFile", "read_point_file", "write_labeled_ply", "write_atomic", "label_colors", "label_palette",
           "SUPPORTED_SUFFIXES", "LABEL_NAMES", "IGNORE_COLOR", "LARGE_COORDINATE"]

log = logging.getLogger(__name__)

#: The file suffixes :func:`read_point_file` reads (compared case-insensitively).
SUPPORTED_SUFFIXES: tuple[str, ...] = (".ply", ".npy", ".npz", ".txt", ".xyz", ".pts")
#: PLY property names (and column names) read as the label, first match wins.
LABEL_NAMES: tuple[str, ...] = ("label", "class", "scalar_label", "segment", "part")
#: The colour of label ``-1`` (an ignored point): a dark grey, unlike every palette colour.
IGNORE_COLOR: tuple[int, int, int] = (64, 64, 64)
#: :func:`write_labeled_ply` keeps float64 coordinates when some ``|coordinate|`` exceeds this.
LARGE_COORDINATE = 1e4

_TEXT_SUFFIXES = (".txt", ".xyz", ".pts")
_NPZ_POS = ("pos", "xyz", "coord", "points")
_NPZ_NORMALS = ("normal", "normals")
_NPZ_COLORS = ("color", "colors", "rgb")
_NPZ_LABELS = ("label", "labels", "segment", "part")
_NORMAL_NAMES = (("nx", "ny", "nz"), ("normal_x", "normal_y", "normal_z"))
_COLOR_NAMES = (("red", "green", "blue"), ("r", "g", "b"))
_DEFAULT_COLUMNS = {3: ("x", "y", "z"), 6: ("x", "y", "z", "nx", "ny", "nz"),
                    7: ("x", "y", "z", "nx", "ny", "nz", "label")}
_COLUMNS_HINT = ("pass `columns` (--columns in the scripts) naming every column, e.g. 'x,y,z,r,g,b,label' or "
                 "'x,y,z,intensity,_' ('_' drops a column)")
# PLY property types plyfile writes, by numpy dtype
_PLY_TYPES = {np.dtype(t) for t in ("i1", "u1", "i2", "u2", "i4", "u4", "f4", "f8")}

Where = Callable[[int], str]


@dataclass
class PointFile:
    """One point cloud read from a file by :func:`read_point_file`.

    Attributes:
        path: the file it came from.
        pos: ``[N, 3]`` float64 positions (the stored precision is kept, e.g. large LiDAR coordinates).
        normals: ``[N, 3]`` float32 normals, or ``None`` when the file has none.
        colors: ``[N, 3]`` uint8 RGB colours, or ``None``.
        labels: ``[N]`` int64 labels stored in the file (ground truth; ``-1`` = ignored), or ``None``.
        fields: every other per-point column or property by name (e.g. ``intensity``), each ``[N]`` or ``[N, k]``.
    """

    path: Path
    pos: np.ndarray
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None
    labels: np.ndarray | None = None
    fields: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_points(self) -> int:
        """``N``, the number of points."""
        return int(self.pos.shape[0])

    def __len__(self) -> int:
        return self.num_points


# ----------------------------------------------------------------------------- palette
def _golden_rgb(i: int) -> tuple[float, float, float]:
    """Colour ``i >= 20``: the hue stepped by the golden ratio, saturation and brightness alternating."""
    golden = (np.sqrt(5.0) - 1.0) / 2.0
    return colorsys.hsv_to_rgb((i * golden) % 1.0, (0.85, 0.55, 0.7)[i % 3], (0.95, 0.8, 0.65)[(i // 3) % 3])


def _tab20() -> np.ndarray:
    from matplotlib import colormaps

    tab20 = np.asarray(colormaps["tab20"].colors, dtype=np.float64)[:, :3]
    return np.round(np.concatenate([tab20[0::2], tab20[1::2]]) * 255.0).astype(np.uint8)


def label_palette(num: int) -> np.ndarray:
    """``[num, 3]`` uint8: the colours of label ids ``0 .. num - 1``; colour ``i`` does not depend on ``num``.

    Ids 0..19 are matplotlib's ``tab20`` with its dark shades first (0..9 are ``tab10``); later ids
    step the hue by the golden ratio with alternating saturation and brightness. For up to 20 ids
    these are the colours of :func:`pointcoc.visualize.cluster_colors` (times 255, rounded).
    """
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 0:
        raise InputError(f"`num` must be an int >= 0, got {num!r}")
    rest = np.round(np.asarray([_golden_rgb(i) for i in range(20, int(num))]).reshape(-1, 3) * 255.0)
    return np.concatenate([_tab20()[:num], rest.astype(np.uint8)])


def label_colors(labels: np.ndarray, num_labels: int | None = None) -> np.ndarray:
    """The colour of every point's label: a fixed palette (:func:`label_palette`), label ``-1`` grey.

    Args:
        labels: ``[N]`` integer label ids ``>= -1`` (``-1`` = ignored, drawn :data:`IGNORE_COLOR`).
        num_labels: when given, the number of label ids: every label must be below it (the colours
            themselves do not depend on it).

    Returns:
        ``[N, 3]`` uint8 RGB.

    Raises:
        InputError: non-integer labels, labels below -1, or labels ``>= num_labels``.
    """
    ids = _integral(np.asarray(labels), "`labels`", lambda i: f"index {i}")
    if ids.ndim != 1:
        raise InputError(f"`labels` must be [N] (one label per point), got shape {tuple(ids.shape)}")
    out = np.empty((ids.shape[0], 3), dtype=np.uint8)
    out[:] = IGNORE_COLOR
    if ids.size == 0:
        return out
    low, high = int(ids.min()), int(ids.max())
    if low < -1:
        raise InputError(f"`labels` holds {low} at index {int(np.argmax(ids == low))}; labels are ids >= 0 "
                         f"(or -1 for an ignored point)")
    if num_labels is not None and high >= num_labels:
        raise InputError(f"`labels` holds {high} at index {int(np.argmax(ids == high))} but num_labels is "
                         f"{num_labels}; labels must be in [0, {num_labels - 1}] (or -1)")
    keep = ids >= 0
    if keep.any():
        present, inverse = np.unique(ids[keep], return_inverse=True)  # only the ids present: they may be large
        colors = np.empty((present.size, 3), dtype=np.uint8)
        small = present < 20
        colors[small] = _tab20()[present[small]]
        if not small.all():
            colors[~small] = np.round(np.asarray([_golden_rgb(int(i)) for i in present[~small]]) * 255.0)
        out[keep] = colors[inverse.reshape(-1)]
    return out


# ----------------------------------------------------------------------------- checks of arrays
def _integral(values: np.ndarray, what: str, where: Where) -> np.ndarray:
    """``values`` as int64; floats must hold whole numbers (the first one that does not is named)."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64, copy=False)
    if values.dtype.kind == "b":
        return values.astype(np.int64)
    if values.dtype.kind != "f":
        raise InputError(f"{what} has dtype {values.dtype}; labels must be integer ids")
    bad = ~np.isfinite(values) | (values != np.round(values)) | (np.abs(values) > 2**62)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        row = np.unravel_index(i, values.shape)[0]
        raise InputError(f"{what} holds {values.reshape(-1)[i].item()!r} at {where(int(row))}; labels must be "
                         f"whole numbers (integer part ids)")
    return values.astype(np.int64)


def _labels(values: np.ndarray, path: Path, what: str, where: Where) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise InputError(f"{path}: {what} has shape {tuple(values.shape)}; expected [N] (one label per point)")
    labels = _integral(values, f"{path}: {what}", where)
    if labels.size and labels.min() < -1:
        row = int(np.argmax(labels < -1))
        raise InputError(f"{path}: {what} holds {int(labels[row])} at {where(row)}; labels are ids >= 0 "
                         f"(-1 marks an ignored point)")
    return labels


def _numeric(values: np.ndarray, path: Path, what: str) -> np.ndarray:
    if values.dtype.kind not in "fiub":
        raise InputError(f"{path}: {what} has dtype {values.dtype}; expected numbers")
    return values


def _positions(values: np.ndarray, path: Path, what: str, where: Where) -> np.ndarray:
    values = _numeric(np.asarray(values), path, what)
    if values.ndim != 2 or values.shape[1] != 3:
        raise InputError(f"{path}: {what} has shape {tuple(values.shape)}; expected [N, 3] positions")
    if values.shape[0] == 0:
        raise InputError(f"{path}: the file holds no points (an empty cloud); give a file with at least one point")
    pos = values.astype(np.float64)
    bad = ~np.isfinite(pos).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError(f"{path}: position {pos[row].tolist()} at {where(row)} is not finite (NaN or inf; "
                         f"{int(bad.sum())} such point(s)); remove or fix those points")
    return pos


def _normals(values: np.ndarray, path: Path, what: str) -> np.ndarray:
    values = _numeric(np.asarray(values), path, what)
    if values.ndim != 2 or values.shape[1] != 3:
        raise InputError(f"{path}: {what} has shape {tuple(values.shape)}; expected [N, 3] normals")
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise InputError(f"{path}: {what} holds NaN or inf (row {int(np.flatnonzero(bad)[0])}); fix the normals or "
                         "drop them")
    return values.astype(np.float32)


def _colors(values: np.ndarray, path: Path, what: str, where: Where) -> np.ndarray:
    """``[N, 3]`` uint8 from uint8, floats in [0, 1] or [0, 255], or 16-bit integers (an RGBA alpha is dropped)."""
    values = _numeric(np.asarray(values), path, what)
    if values.ndim != 2 or values.shape[1] not in (3, 4):
        raise InputError(f"{path}: {what} has shape {tuple(values.shape)}; expected [N, 3] RGB colours")
    values = values[:, :3]
    if values.dtype == np.uint8 or values.size == 0:
        return values.astype(np.uint8)
    work = values.astype(np.float64)
    is_float = values.dtype.kind == "f"
    bad = ~np.isfinite(work).all(axis=1) | (work < 0).any(axis=1) | (work > (255 if is_float else 65535)).any(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError(f"{path}: {what} {values[row].tolist()} at {where(row)} is not a colour; expected values "
                         f"in 0..1 or 0..255")
    high = float(work.max())
    if is_float and high <= 1.0:
        work = work * 255.0
    elif not is_float and high > 255:
        log.info("%s: %s go up to %d; read as 16-bit colours", path, what, int(high))
        work = work * (255.0 / 65535.0)
    return np.round(work).astype(np.uint8)


def _check_length(values: np.ndarray, n: int, path: Path, what: str, of: str) -> None:
    if values.shape[0] != n:
        raise InputError(f"{path}: {what} has {values.shape[0]} rows but {of} has {n} points; every per-point "
                         f"array needs one row per point")


# ----------------------------------------------------------------------------- columns
def _parse_columns(spec: str, path: Path) -> tuple[str, ...]:
    if not isinstance(spec, str):
        raise InputError(f"{path}: `columns` must be a string like 'x,y,z,nx,ny,nz,label', got {spec!r}")
    names = tuple(n.strip() for n in spec.split(","))
    if any(not n or re.search(r"\s", n) for n in names):
        raise InputError(f"{path}: `columns` {spec!r} has an empty or blank-containing name; give one name per "
                         f"column separated by commas, e.g. 'x,y,z,intensity,_'")
    _roles(names, f"{path}: `columns` {spec!r}")
    return names


def _roles(names: tuple[str, ...], what: str) -> dict[str, list[int]]:
    """Which column holds what: ``pos``/``normals``/``colors`` (3 indices each, in x/y/z or r/g/b order),
    ``label`` (one), ``fields`` (the rest, ``_`` dropped)."""
    low = [n.lower() for n in names]
    used = [n for n in low if n != "_"]
    dupes = sorted({n for n in used if used.count(n) > 1})
    if dupes:
        raise InputError(f"{what} names {dupes} more than once; name each column once ('_' may repeat)")
    roles: dict[str, list[int]] = {"fields": []}
    claimed: set[int] = set()
    for role, options in (("pos", (("x", "y", "z"),)), ("normals", _NORMAL_NAMES), ("colors", _COLOR_NAMES)):
        for option in options:
            found = [low.index(n) for n in option if n in low]
            if len(found) == 3:
                roles[role] = found
                claimed.update(found)
                break
            if found and role != "pos":
                raise InputError(f"{what} names only {[names[i] for i in found]} of {list(option)}; name all "
                                 f"three or none")
    if "pos" not in roles:
        raise InputError(f"{what} does not name all of x, y, z; the position columns are required")
    labels = [i for i, n in enumerate(low) if n in LABEL_NAMES]
    if len(labels) > 1:
        raise InputError(f"{what} names several label columns {[names[i] for i in labels]}; keep one and "
                         f"rename or drop ('_') the others")
    if labels:
        roles["label"] = labels
        claimed.update(labels)
    roles["fields"] = [i for i, n in enumerate(low) if i not in claimed and n != "_"]
    return roles


def _from_columns(data: np.ndarray, names: tuple[str, ...] | None, path: Path, where: Where,
                  source: str = "the file") -> PointFile:
    """A :class:`PointFile` from a numeric table ``[N, C]`` whose columns are ``names`` (or the default rules)."""
    if data.ndim != 2:
        raise InputError(f"{path}: {source} has shape {tuple(data.shape)}; expected a table [N, C] of points")
    c = data.shape[1]
    if names is None:
        if c not in _DEFAULT_COLUMNS:
            raise InputError(f"{path}: {source} has {c} columns per point; without `columns` only 3 (x y z), 6 "
                             f"(x y z nx ny nz) or 7 (x y z nx ny nz label) are understood; {_COLUMNS_HINT}")
        names = _DEFAULT_COLUMNS[c]
    elif len(names) != c:
        raise InputError(f"{path}: `columns` names {len(names)} columns ({','.join(names)}) but {source} has {c} "
                         f"per point; name every column, '_' for those to drop")
    roles = _roles(names, f"{path}: the columns {','.join(names)}")
    pos = _positions(data[:, roles["pos"]], path, "the position columns (x, y, z)", where)
    out = PointFile(path=path, pos=pos)
    if "normals" in roles:
        out.normals = _normals(data[:, roles["normals"]], path, "the normal columns")
    if "colors" in roles:
        out.colors = _colors(data[:, roles["colors"]], path, "the colour columns", where)
    if "label" in roles:
        out.labels = _labels(data[:, roles["label"][0]], path, f"the label column '{names[roles['label'][0]]}'",
                             where)
    out.fields = {names[i]: data[:, i].copy() for i in roles["fields"]}
    return out


def _from_named(arrays: Mapping[str, np.ndarray], path: Path, where: Where, what: str) -> PointFile:
    """A :class:`PointFile` from 1-D per-point arrays named like PLY properties (case-insensitive)."""
    by_lower: dict[str, str] = {}
    for name in arrays:
        by_lower.setdefault(name.lower(), name)
    missing = [n for n in "xyz" if n not in by_lower]
    if missing:
        raise InputError(f"{path}: the {what} has no {', '.join(missing)} (it has {list(arrays)}); a point file "
                         f"needs x, y and z")
    taken = [by_lower[n] for n in "xyz"]
    pos = _positions(np.stack([np.asarray(arrays[n]) for n in taken], axis=1), path, f"the {what}'s x, y, z",
                     where)
    out = PointFile(path=path, pos=pos)
    for option in _NORMAL_NAMES:
        if all(n in by_lower for n in option):
            names = [by_lower[n] for n in option]
            out.normals = _normals(np.stack([arrays[n] for n in names], axis=1), path, f"the {what}'s normals")
            taken += names
            break
    for option in _COLOR_NAMES:
        if all(n in by_lower for n in option):
            names = [by_lower[n] for n in option]
            out.colors = _colors(np.stack([arrays[n] for n in names], axis=1), path,
                                 f"the {what}'s colours ({', '.join(names)})", where)
            taken += names
            break
    for name in LABEL_NAMES:
        if name in by_lower:
            out.labels = _labels(arrays[by_lower[name]], path, f"the {what}'s '{by_lower[name]}'", where)
            taken.append(by_lower[name])
            break
    out.fields = {n: np.asarray(a).astype(np.asarray(a).dtype.newbyteorder("=")) for n, a in arrays.items()
                  if n not in taken}  # copies, in native byte order (a big-endian PLY maps '>f4')
    return out


# ----------------------------------------------------------------------------- formats
def _read_ply(path: Path) -> PointFile:
    import plyfile

    try:
        ply = plyfile.PlyData.read(str(path), mmap="c")  # binary: memory-mapped (fast; copied out below)
    except (plyfile.PlyParseError, ValueError, TypeError, IndexError, KeyError, EOFError, OSError,
            MemoryError) as err:
        raise InputError(f"{path}: not a readable PLY file, corrupt or truncated ({err}); re-export it") from err
    elements = {el.name: el for el in ply.elements}
    if "vertex" not in elements:
        raise InputError(f"{path}: the PLY has no 'vertex' element (it has {list(elements)}); points are read "
                         f"from 'vertex'")
    data = elements["vertex"].data
    arrays: dict[str, np.ndarray] = {}
    for name in data.dtype.names or ():
        column = data[name]
        if column.dtype.kind == "O":  # a list property: not a per-point scalar
            log.info("%s: skipping the list property vertex '%s'", path, name)
            continue
        arrays[name] = column
    return _from_named(arrays, path, lambda i: f"vertex {i}", "'vertex' element")


def _load_npy(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as err:
        raise InputError(f"{path}: cannot read the file ({err})") from err
    if magic != b"\x93NUMPY" and magic[:4] != b"PK\x03\x04":  # else np.load takes it for a pickle
        raise InputError(f"{path}: not a NumPy file (no .npy or .npz signature at its start): corrupt, or another "
                         f"format under a NumPy name")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise InputError(f"{path}: holds Python objects (a pickle), not a numeric array; save a float "
                             f"array [N, C] with np.save") from err
        raise InputError(f"{path}: not a readable NumPy file, corrupt or truncated ({err})") from err
    except (OSError, EOFError, zipfile.BadZipFile, MemoryError) as err:
        raise InputError(f"{path}: not a readable NumPy file, corrupt or truncated ({err})") from err


def _read_npy(path: Path, columns: tuple[str, ...] | None) -> PointFile:
    arr = _load_npy(path)
    if not isinstance(arr, np.ndarray):
        if hasattr(arr, "close"):
            arr.close()
        raise InputError(f"{path}: is a .npz archive, not a .npy array; rename it to .npz")
    if arr.dtype.names:
        if columns is not None:
            raise InputError(f"{path}: a structured array names its own fields {list(arr.dtype.names)}; drop "
                             f"`columns`")
        if arr.ndim != 1:
            raise InputError(f"{path}: the structured array has shape {arr.shape}; expected [N] records")
        return _from_named({n: arr[n] for n in arr.dtype.names if arr[n].ndim == 1}, path,
                           lambda i: f"row {i}", "structured array")
    if arr.ndim != 2:
        raise InputError(f"{path}: the array has shape {tuple(arr.shape)}; expected [N, C] (one row per point, "
                         f"C >= 3 columns)")
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{path}: the array has dtype {arr.dtype}; expected a float array [N, C]")
    return _from_columns(arr, columns, path, lambda i: f"row {i}", "the array")


def _read_npz(path: Path, columns: tuple[str, ...] | None) -> PointFile:
    arrays: dict[str, np.ndarray] = {}
    archive = _load_npy(path)
    if isinstance(archive, np.ndarray):
        raise InputError(f"{path}: is a .npy array, not a .npz archive; rename it to .npy")
    with archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except ValueError as err:
                raise InputError(f"{path}: key '{key}' holds Python objects or is unreadable ({err}); store "
                                 f"numeric arrays") from err
            except (OSError, EOFError, zipfile.BadZipFile) as err:
                raise InputError(f"{path}: key '{key}' is corrupt or truncated ({err})") from err
    pos_key = next((k for k in _NPZ_POS if k in arrays), None)
    if pos_key is None:
        raise InputError(f"{path}: no positions: none of the keys {list(_NPZ_POS)} (it has {list(arrays)}); "
                         f"store the points [N, 3] as 'pos'")
    where = lambda i: f"index {i} of '{pos_key}'"  # noqa: E731
    table = np.asarray(arrays[pos_key])
    if table.dtype.kind not in "fiu":
        raise InputError(f"{path}: '{pos_key}' has dtype {table.dtype}; expected float positions")
    if pos_key == "points" or columns is not None:
        out = _from_columns(table, columns, path, where, f"'{pos_key}'")
    else:
        out = PointFile(path=path, pos=_positions(table, path, f"'{pos_key}'", where))
    n = out.num_points
    used = {pos_key}
    for keys, attr in ((_NPZ_NORMALS, "normals"), (_NPZ_COLORS, "colors"), (_NPZ_LABELS, "labels")):
        key = next((k for k in keys if k in arrays), None)
        if key is None:
            continue
        value = np.asarray(arrays[key])
        used.add(key)
        if attr == "labels" and value.ndim == 0:  # one label for the whole shape (a class), not per point
            log.info("%s: '%s' is a single value, not one label per point; not read as labels", path, key)
            continue
        if getattr(out, attr) is not None:
            raise InputError(f"{path}: both the columns of '{pos_key}' and the key '{key}' give {attr}; keep one "
                             f"(drop a column with '_' in `columns`)")
        if value.ndim == 0:
            raise InputError(f"{path}: '{key}' is a single value; expected one row per point ({n})")
        _check_length(value, n, path, f"'{key}'", f"'{pos_key}'")
        if attr == "normals":
            out.normals = _normals(value, path, f"'{key}'")
        elif attr == "colors":
            out.colors = _colors(value, path, f"'{key}'", lambda i, k=key: f"index {i} of '{k}'")
        else:
            out.labels = _labels(value, path, f"'{key}'", lambda i, k=key: f"index {i} of '{k}'")
    for key, value in arrays.items():
        if key in used or key in out.fields:
            continue
        if value.ndim >= 1 and value.shape[0] == n:
            out.fields[key] = value
        else:
            log.info("%s: skipping '%s' %s (not one row per point)", path, key, tuple(value.shape))
    return out


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _tokens(line: str, comma: bool) -> list[str]:
    return [t.strip() for t in line.split(",")] if comma else line.split()


def _read_text(path: Path, columns: tuple[str, ...] | None) -> PointFile:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not a text file (byte {err.start} is not UTF-8); a {path.suffix} file must "
                         f"hold rows of numbers") from err
    except OSError as err:
        raise InputError(f"{path}: cannot read the file ({err})") from err
    rows: list[str] = []
    numbers: list[int] = []  # the file's line number (1-based) of every row
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.split("#", 1)[0].strip()
        if line:
            rows.append(line)
            numbers.append(lineno)
    if not rows:
        raise InputError(f"{path}: the file holds no points (an empty cloud, no rows of numbers); give a file "
                         f"with at least one point")
    first = _tokens(rows[0], "," in rows[0])
    if not all(_is_number(t) for t in first):
        header = tuple(first)
        header = (header[0].lstrip("/"), *header[1:])  # CloudCompare writes "//X,Y,Z,..."
        log.info("%s: line %d is a header: %s", path, numbers[0], " ".join(header))
        rows, numbers = rows[1:], numbers[1:]
        if columns is None and all(header) and rows and len(header) == len(_tokens(rows[0], "," in rows[0])):
            try:
                _roles(header, "")
            except InputError:
                pass
            else:
                columns = header
    elif len(first) == 1 and first[0].isdigit() and len(rows) > 1 and len(_tokens(rows[1], "," in rows[1])) > 1:
        if int(first[0]) != len(rows) - 1:
            log.info("%s: line %d gives a point count %s but %d rows follow", path, numbers[0], first[0],
                     len(rows) - 1)
        rows, numbers = rows[1:], numbers[1:]
    if not rows:
        raise InputError(f"{path}: the file holds no points (an empty cloud: only a header); give a file with at "
                         f"least one point")
    comma = "," in rows[0]
    try:
        data = np.loadtxt(rows, delimiter="," if comma else None, dtype=np.float64, comments=None, ndmin=2)
    except ValueError as err:
        raise _text_error(path, rows, numbers, comma, err) from err
    return _from_columns(data, columns, path, lambda i: f"line {numbers[i]}", "the file")


def _text_error(path: Path, rows: list[str], numbers: list[int], comma: bool, err: Exception) -> InputError:
    """The first line numpy could not read, named (numpy's own message counts rows after the skipped lines)."""
    width = len(_tokens(rows[0], comma))
    for row, lineno in zip(rows, numbers):
        tokens = _tokens(row, comma)
        if len(tokens) != width:
            return InputError(f"{path}: line {lineno} has {len(tokens)} columns but line {numbers[0]} has {width}; "
                              f"every row must have the same columns")
        bad = next((t for t in tokens if not _is_number(t)), None)
        if bad is not None:
            return InputError(f"{path}: line {lineno}: {bad!r} is not a number; rows must hold numbers only "
                              f"(comments start with '#')")
    return InputError(f"{path}: cannot read the rows of numbers ({err})")


def read_point_file(path: str | Path, *, columns: str | None = None) -> PointFile:
    """Read one point cloud from a ``.ply``, ``.npy``, ``.npz``, ``.txt``, ``.xyz`` or ``.pts`` file.

    The module docstring gives how each format is read and the column rules.

    Args:
        path: the file; its suffix (case-insensitive) picks the format.
        columns: for ``.npy``, ``.npz`` ``points`` and text files, comma-separated column names, e.g.
            ``"x,y,z,r,g,b,label"`` or ``"x,y,z,intensity,_"`` (``_`` drops a column); must include
            ``x``, ``y``, ``z``. Not for ``.ply``, whose properties are named.

    Returns:
        a :class:`PointFile`: ``pos [N, 3]`` float64 and whatever normals, colours, labels and
        other per-point fields the file holds.

    Raises:
        InputError: a missing or unreadable file, an unknown suffix, an empty cloud, non-finite
            positions, wrong shapes or dtypes, non-integer labels, per-point arrays of different
            lengths; the message names the file and the line, row, key or property.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give one point file ({', '.join(SUPPORTED_SUFFIXES)})")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(f"{path}: unsupported file type {path.suffix or '(no suffix)'!r}; supported: "
                         f"{', '.join(SUPPORTED_SUFFIXES)}")
    names = None if columns is None else _parse_columns(columns, path)
    if suffix == ".ply":
        if names is not None:
            raise InputError(f"{path}: `columns` applies to .npy, .npz and text files; a PLY names its own "
                             f"properties, drop `columns`")
        out = _read_ply(path)
    elif suffix == ".npy":
        out = _read_npy(path, names)
    elif suffix == ".npz":
        out = _read_npz(path, names)
    else:
        out = _read_text(path, names)
    log.debug("read %s: %d points%s%s%s%s", path, out.num_points, ", normals" if out.normals is not None else "",
              ", colours" if out.colors is not None else "", ", labels" if out.labels is not None else "",
              f", fields {list(out.fields)}" if out.fields else "")
    return out


# ----------------------------------------------------------------------------- writing
def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """``write`` into a temporary file beside ``path`` (``.<name>.<random>.tmp``, flushed to disk), then rename it
    over ``path``: a crash mid-write leaves any previous file intact (checkpoints, logs, PLY and LAS outputs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _ply_column(values: np.ndarray, name: str) -> np.ndarray:
    """``values`` in a dtype PLY can store (bool -> uint8, 64-bit ints -> 32-bit when they fit, float16 -> float32)."""
    if values.dtype.kind in "iuf":
        values = values.astype(values.dtype.newbyteorder("="), copy=False)
    if values.dtype.kind == "b":
        return values.astype(np.uint8)
    if values.dtype.kind in "iu" and values.dtype.itemsize == 8:
        small = np.int32 if values.dtype.kind == "i" else np.uint32
        info = np.iinfo(small)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise InputError(f"field '{name}' holds values outside {small.__name__} (PLY has no 64-bit integers); "
                             f"store it as float64")
        return values.astype(small)
    if values.dtype == np.float16:
        return values.astype(np.float32)
    if values.dtype not in _PLY_TYPES:
        raise InputError(f"field '{name}' has dtype {values.dtype}; PLY stores integers and floats only")
    return values


def write_labeled_ply(path: str | Path, pos: np.ndarray, labels: np.ndarray, *, colors: np.ndarray | None = None,
                      normals: np.ndarray | None = None, fields: Mapping[str, np.ndarray] | None = None,
                      binary: bool = True) -> Path:
    """Write points with their labels as a PLY ``vertex`` element, atomically.

    Properties, in order: ``x, y, z`` (float32, or float64 when ``pos`` is float64 with some
    ``|coordinate| > 1e4`` so that LiDAR coordinates keep their precision), ``nx, ny, nz`` (float32)
    with ``normals``, ``red, green, blue`` (uint8; default :func:`label_colors` of ``labels``),
    ``label`` (int32), then ``fields`` (``[N]`` each; an ``[N, k]`` field becomes ``name_0 .. name_{k-1}``).

    Args:
        path: the ``.ply`` to write (parent folders are created; an existing file is replaced).
        pos: ``[N, 3]`` positions.
        labels: ``[N]`` integer labels (e.g. predicted part ids; ``-1`` = ignored).
        colors: ``[N, 3]`` colours (uint8, or floats in 0..1), or ``None`` for the label colours.
        normals: ``[N, 3]`` normals, or ``None``.
        fields: extra per-point values by property name (e.g. ``{"intensity": ...}``).
        binary: binary little-endian PLY (default) or ASCII.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        InputError: a path that is not ``.ply``, wrong shapes, arrays of different lengths, non-integer
            labels, field names that clash with the standard properties or dtypes PLY cannot store.
    """
    import plyfile

    path = Path(path)
    if path.suffix.lower() != ".ply":
        raise InputError(f"{path}: write_labeled_ply writes PLY files; give a path ending in .ply")
    xyz = np.asarray(pos)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or xyz.dtype.kind not in "fiu":
        raise InputError(f"{path}: `pos` must be a numeric [N, 3] array, got {xyz.dtype} {tuple(xyz.shape)}")
    n = xyz.shape[0]
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != n:
        raise InputError(f"{path}: `labels` has shape {tuple(lab.shape)} but `pos` has {n} points; give one label "
                         f"per point, [{n}]")
    lab = _labels(lab, path, "`labels`", lambda i: f"index {i}")
    if lab.size and (lab.max() > np.iinfo(np.int32).max):
        raise InputError(f"{path}: `labels` holds {int(lab.max())}, beyond PLY's int32 'label'")
    large = xyz.dtype == np.float64 and n > 0 and float(np.abs(xyz[np.isfinite(xyz)]).max(initial=0.0)) > \
        LARGE_COORDINATE
    coord = np.float64 if large else np.float32
    columns: list[tuple[str, np.ndarray]] = [(a, xyz[:, i].astype(coord)) for i, a in enumerate("xyz")]
    if normals is not None:
        nrm = np.asarray(normals)
        if nrm.ndim != 2 or nrm.shape != (n, 3):
            raise InputError(f"{path}: `normals` has shape {tuple(nrm.shape)} but `pos` has {n} points; expected "
                             f"[{n}, 3]")
        nrm = _normals(nrm, path, "`normals`")
        columns += [(a, nrm[:, i]) for i, a in enumerate(("nx", "ny", "nz"))]
    if colors is None:
        rgb = label_colors(lab)
    else:
        rgb = np.asarray(colors)
        if rgb.ndim != 2 or rgb.shape[0] != n:
            raise InputError(f"{path}: `colors` has shape {tuple(rgb.shape)} but `pos` has {n} points; expected "
                             f"[{n}, 3]")
        rgb = _colors(rgb, path, "`colors`", lambda i: f"index {i}")
    columns += [(a, rgb[:, i]) for i, a in enumerate(("red", "green", "blue"))]
    columns.append(("label", lab.astype(np.int32)))
    taken = {name for name, _ in columns}
    for name, value in (fields or {}).items():
        value = np.asarray(value)
        if value.ndim not in (1, 2) or value.shape[0] != n:
            raise InputError(f"{path}: field '{name}' has shape {tuple(value.shape)} but `pos` has {n} points; "
                             f"expected [{n}] or [{n}, k]")
        parts = [(name, value)] if value.ndim == 1 else [(f"{name}_{j}", value[:, j]) for j in range(value.shape[1])]
        for part, column in parts:
            if not isinstance(part, str) or not re.fullmatch(r"[^\s]+", part):
                raise InputError(f"{path}: field name {part!r} is not a PLY property name (non-empty, no spaces)")
            if part.lower() in taken:
                raise InputError(f"{path}: field '{part}' clashes with a property already written "
                                 f"({sorted(taken)}); rename it")
            try:
                columns.append((part, _ply_column(column, part)))
            except InputError as err:
                raise InputError(f"{path}: {err}") from None
            taken.add(part.lower())
    table = np.empty(n, dtype=[(name, column.dtype) for name, column in columns])
    for name, column in columns:
        table[name] = column
    ply = plyfile.PlyData([plyfile.PlyElement.describe(table, "vertex")], text=not binary,
                          byte_order="<" if binary else "=", comments=["written by pointcoc"])
    write_atomic(path, ply.write)
    log.debug("wrote %s: %d points (%s coordinates, %s)", path, n, np.dtype(coord).name,
              "binary" if binary else "ASCII")
    return path
