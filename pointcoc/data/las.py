"""Airborne and mobile LiDAR in LAS/LAZ files: read points and ASPRS classes, stream them, write predicted classes.

A LAS file stores integer coordinates ``X, Y, Z`` with a per-file scale and offset (``x = X * scale +
offset``), a classification code per point (the ASPRS codes, :data:`ASPRS_CLASSES`), intensity, return
numbers and, in point formats 2, 3, 5, 7, 8 and 10, 16-bit ``red, green, blue``. A LAZ file is the same,
compressed; it needs the ``lazrs`` package (``pip install 'pointcoc[las]'`` installs laspy and lazrs).

* :func:`read_las` reads a whole file as a :class:`~pointcoc.data.files.PointFile` (float64 positions,
  uint8 colours, labels through a :class:`LasLabelMap`, the other features in ``fields``), like
  :func:`~pointcoc.data.files.read_point_file` does for the other formats.
* :func:`iter_las_chunks` streams the same values chunk by chunk (:class:`LasChunk`): memory depends on
  the chunk size, not on the file's size.
* :func:`las_header_info` reads the header only (point count, bounds, point format, ...).
* :func:`write_las_labels` writes a copy of a file whose classification holds predicted classes, streaming
  and atomically, every other field, the header and its VLRs (the CRS) kept.

Classes: a :class:`LasLabelMap` maps ASPRS codes to class ids ``0 .. C-1`` (codes of several classes may
share one), marks codes to ignore (label ``-1``) and says what to do with a code it does not name (an
error by default). The mapping is a dict ``{"ground": [2], "vegetation": [3, 4, 5]}`` or a string
``"ground:2;vegetation:3-5;building:6;ignore:0,1,7,18"``. The default (:data:`DEFAULT_LAS_CLASSES`,
:data:`DEFAULT_LAS_IGNORE`), for typical airborne data:

=====  ============  ===========================================================================
 id     class         ASPRS codes
=====  ============  ===========================================================================
 0      ground        2 ground, 11 road surface
 1      vegetation    3, 4, 5 low, medium, high vegetation
 2      building      6 building
 3      water         9 water
 4      other         10 rail, 13 wire guard, 14 wire conductor, 15 transmission tower,
                      16 wire-structure connector, 17 bridge deck
 -1     (ignored)     0 never classified, 1 unassigned, 7 low point (noise), 8 model key-point
                      (reserved in LAS 1.4), 12 overlap (reserved in LAS 1.4), 18 high noise
=====  ============  ===========================================================================

Codes 19..255 (user-defined, e.g. a provider's own classes) are unknown in the default map: reading a file
that holds them is an error naming the codes, until they are added to a class or to the ignored codes (or
``unknown="ignore"``).

Every problem with a file is an :class:`~pointcoc.errors.InputError` whose one-line message starts with the
file's path: not a LAS file, a truncated file, a LAZ file without lazrs, an empty file, unknown codes.
A missing laspy is an ``ImportError`` saying what to install.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from pointcoc.data.files import PointFile, _integral, write_atomic
from pointcoc.errors import InputError

__all__ = ["ASPRS_CLASSES", "DEFAULT_LAS_CLASSES", "DEFAULT_LAS_IGNORE", "LAS_FEATURES", "LAS_SUFFIXES",
           "UNASSIGNED_CODE", "LasLabelMap", "LasChunk", "read_las", "iter_las_chunks", "las_header_info",
           "write_las_labels"]

log = logging.getLogger(__name__)

#: The ASPRS standard classification codes of LAS 1.4 (R15, point formats 6-10; formats 0-5 hold codes 0..31).
ASPRS_CLASSES: dict[int, str] = {
    0: "never classified",
    1: "unassigned",
    2: "ground",
    3: "low vegetation",
    4: "medium vegetation",
    5: "high vegetation",
    6: "building",
    7: "low point (noise)",
    8: "reserved (model key-point in LAS 1.0-1.3)",
    9: "water",
    10: "rail",
    11: "road surface",
    12: "reserved (overlap in LAS 1.0-1.3)",
    13: "wire guard (shield)",
    14: "wire conductor (phase)",
    15: "transmission tower",
    16: "wire-structure connector (insulator)",
    17: "bridge deck",
    18: "high noise",
}
#: The default class table of :meth:`LasLabelMap.default`: class name -> ASPRS codes, class ids in this order.
DEFAULT_LAS_CLASSES: dict[str, tuple[int, ...]] = {
    "ground": (2, 11),
    "vegetation": (3, 4, 5),
    "building": (6,),
    "water": (9,),
    "other": (10, 13, 14, 15, 16, 17),
}
#: The codes the default map ignores (label ``-1``): unclassified, noise and the reserved codes 8 and 12.
DEFAULT_LAS_IGNORE: tuple[int, ...] = (0, 1, 7, 8, 12, 18)
#: The code :func:`write_las_labels` writes for an ignored point (label ``-1``).
UNASSIGNED_CODE = 1
#: The features :func:`read_las` reads by default (``"rgb"`` -> ``colors``, the others -> ``fields``).
LAS_FEATURES: tuple[str, ...] = ("intensity", "return_number", "number_of_returns", "rgb")
#: The suffixes of LAS files (``.laz`` = compressed); :func:`write_las_labels` compresses by the suffix.
LAS_SUFFIXES: tuple[str, ...] = (".las", ".laz")

_UNKNOWN = -2  # the lookup-table entry of a code the map does not name, with unknown="error"
_READ_CHUNK = 1 << 20  # points per chunk when read_las reads a whole file
_INSTALL = "pip install 'pointcoc[las]' (laspy, and lazrs for .laz)"

#: what :func:`write_las_labels` takes as labels: ``[N]`` class ids, or ``labels_for(start, count) -> [count]``
LabelSource = np.ndarray | Callable[[int, int], np.ndarray]


def _laspy() -> Any:
    """The ``laspy`` module, imported on first use (it is the optional extra ``las``)."""
    try:
        import laspy
    except ImportError as err:
        raise ImportError(f"LAS/LAZ files need the laspy package: {_INSTALL}") from err
    return laspy


# ----------------------------------------------------------------------------- label map
def _code(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= 255:
        raise InputError(f"{where}: ASPRS class codes are integers 0..255, got {value!r}")
    return int(value)


def _codes(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (_code(value, where),)
    if isinstance(value, str):
        return _parse_codes(value, where)
    try:
        items = list(value)
    except TypeError:
        raise InputError(f"{where}: expected a code or a list of codes, got {value!r}") from None
    return tuple(_code(v, where) for v in items)


def _parse_codes(text: str, where: str) -> tuple[int, ...]:
    """``"3,4,5"`` or ``"3-5"`` (or a mix, ``"2,10-12"``) -> the codes, in order."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", part)
        if not match:
            raise InputError(f"{where}: {part!r} is not a code or a range of codes; write codes as '3,4,5' or "
                             f"'3-5' (integers 0..255)")
        low = _code(int(match.group(1)), where)
        high = low if match.group(2) is None else _code(int(match.group(2)), where)
        if high < low:
            raise InputError(f"{where}: the range {part!r} runs backwards; write it low-high, e.g. '3-5'")
        out.extend(range(low, high + 1))
    return tuple(out)


def _format_codes(codes: Iterable[int]) -> str:
    """``(3, 4, 5, 9)`` -> ``"3-5,9"`` (runs of 3 or more as a range)."""
    codes = list(codes)
    parts: list[str] = []
    i = 0
    while i < len(codes):
        j = i
        while j + 1 < len(codes) and codes[j + 1] == codes[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{codes[i]}-{codes[j]}")
            i = j + 1
        else:
            parts.append(str(codes[i]))
            i += 1
    return ",".join(parts)


def _describe(code: int) -> str:
    return ASPRS_CLASSES.get(code, "user-defined" if code >= 64 else "reserved")


@dataclass(frozen=True)
class LasLabelMap:
    """ASPRS classification codes -> class ids ``0 .. C-1``, ignored codes -> ``-1``; vectorised by a lookup table.

    Build one with :meth:`parse` (a dict or a ``"name:codes;..."`` string) or :meth:`default`.

    Attributes:
        names: the class names, class id ``i`` is ``names[i]``.
        codes: ``codes[i]`` are the ASPRS codes of class ``i`` (its first code is the one
            :meth:`to_codes` writes back).
        ignore: codes read as label ``-1`` (ignored points).
        unknown: ``"error"``: a code that is neither a class's nor ignored is an error naming it;
            ``"ignore"``: such a code reads as ``-1`` too.
    """

    names: tuple[str, ...]
    codes: tuple[tuple[int, ...], ...]
    ignore: tuple[int, ...] = ()
    unknown: str = "error"

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "codes", tuple(tuple(c) for c in self.codes))
        object.__setattr__(self, "ignore", tuple(self.ignore))
        where = f"label map {list(self.names)!r}"
        if self.unknown not in ("error", "ignore"):
            raise InputError(f"{where}: `unknown` must be 'error' or 'ignore', got {self.unknown!r}")
        if not self.names:
            raise InputError("label map: no classes; give at least one, e.g. 'ground:2;building:6'")
        if len(self.names) != len(self.codes):
            raise InputError(f"{where}: {len(self.names)} names but {len(self.codes)} code lists")
        seen: dict[int, str] = {}
        for name, codes in zip(self.names, self.codes):
            if not isinstance(name, str) or not re.fullmatch(r"[^\s:;,]+(?: [^\s:;,]+)*", name):
                raise InputError(f"{where}: class name {name!r} must be non-empty text without ':', ';' or ','")
            if name in seen.values() or name == "ignore":
                raise InputError(f"{where}: class name {name!r} is used twice (or is the reserved name 'ignore')")
            if not codes:
                raise InputError(f"{where}: class {name!r} has no codes; give at least one, e.g. '{name}:2'")
            for code in codes:
                _code(code, where)
                if code in seen:
                    raise InputError(f"{where}: code {code} is given to both {seen[code]!r} and {name!r}; give each "
                                     f"code to one class")
                seen[code] = name
        for code in self.ignore:
            _code(code, where)
            if code in seen:
                raise InputError(f"{where}: code {code} is both ignored and class {seen[code]!r}; drop it from one")

    # ------------------------------------------------------------------ building
    @classmethod
    def default(cls, *, unknown: str = "error") -> LasLabelMap:
        """The default map for airborne LiDAR (:data:`DEFAULT_LAS_CLASSES`, :data:`DEFAULT_LAS_IGNORE`)."""
        return cls(tuple(DEFAULT_LAS_CLASSES), tuple(DEFAULT_LAS_CLASSES.values()), DEFAULT_LAS_IGNORE, unknown)

    @classmethod
    def parse(cls, spec: LabelMapLike | None = None, *,
              ignore: Iterable[int] | str | None = None, unknown: str | None = None) -> LasLabelMap:
        """A label map from a dict, a string, an existing map, or ``None`` (the default map).

        Args:
            spec: ``{"ground": [2], "vegetation": [3, 4, 5], "building": 6}``, or the same as a string
                ``"ground:2;vegetation:3,4,5;building:6"`` (classes separated by ``;``, codes by ``,``,
                ``a-b`` a range of codes). Class ids follow the order given. An entry named ``ignore``
                (``"ignore:0,1,7,18"``) lists ignored codes. A :class:`LasLabelMap` is returned as it is
                (with ``ignore``/``unknown`` applied when given).
            ignore: more ignored codes (label ``-1``), added to the spec's ``ignore`` entry. When neither
                gives any, :data:`DEFAULT_LAS_IGNORE` less the codes the classes name.
            unknown: ``"error"`` (default) or ``"ignore"`` for codes the map does not name.

        Raises:
            InputError: a malformed string, codes outside 0..255, a code given to two classes (or to a class
                and ignored), a class without codes, an unknown ``unknown`` policy.
        """
        if isinstance(spec, LasLabelMap):
            extra = () if ignore is None else _codes(ignore, "`ignore`")
            merged = spec.ignore + tuple(c for c in extra if c not in spec.ignore)
            return cls(spec.names, spec.codes, merged, spec.unknown if unknown is None else unknown)
        if spec is None:
            items: list[tuple[str, tuple[int, ...]]] = list(DEFAULT_LAS_CLASSES.items())
        elif isinstance(spec, str):
            items = []
            for entry in (e.strip() for e in spec.split(";")):
                if not entry:
                    continue
                name, colon, codes = entry.partition(":")
                if not colon or not name.strip() or not codes.strip():
                    raise InputError(f"label map {spec!r}: entry {entry!r} is not 'name:codes'; write classes as "
                                     f"'ground:2;vegetation:3-5;building:6' (and 'ignore:0,1,7,18')")
                items.append((name.strip(), _parse_codes(codes, f"label map {spec!r}, class {name.strip()!r}")))
        elif isinstance(spec, Mapping):
            items = [(name, _codes(codes, f"label map, class {name!r}")) for name, codes in spec.items()]
        else:
            raise InputError(f"label map: expected a dict of class -> codes or a string like "
                             f"'ground:2;vegetation:3-5', got {type(spec).__name__}")
        given: list[int] = []
        classes = []
        for name, codes in items:
            if name == "ignore":
                given.extend(codes)
            else:
                classes.append((name, codes))
        if ignore is not None:
            given.extend(_codes(ignore, "`ignore`"))
        named = {c for _, codes in classes for c in codes}
        if ignore is None and not any(name == "ignore" for name, _ in items):
            given = [c for c in DEFAULT_LAS_IGNORE if c not in named]
        ignored = tuple(dict.fromkeys(given))
        return cls(tuple(n for n, _ in classes), tuple(c for _, c in classes), ignored,
                   "error" if unknown is None else unknown)

    # ------------------------------------------------------------------ use
    @property
    def num_classes(self) -> int:
        """``C``, the number of classes."""
        return len(self.names)

    @property
    def spec(self) -> str:
        """The map as a string :meth:`parse` reads back, e.g. ``"ground:2,11;vegetation:3-5;ignore:0,1"``."""
        parts = [f"{name}:{_format_codes(codes)}" for name, codes in zip(self.names, self.codes)]
        if self.ignore:
            parts.append(f"ignore:{_format_codes(self.ignore)}")
        return ";".join(parts)

    def __str__(self) -> str:
        return self.spec

    @cached_property
    def table(self) -> np.ndarray:
        """``[256]`` int64: the label of every code (``-1`` ignored; ``-2`` unknown when ``unknown="error"``)."""
        table = np.full(256, -1 if self.unknown == "ignore" else _UNKNOWN, dtype=np.int64)
        table[list(self.ignore)] = -1
        for i, codes in enumerate(self.codes):
            table[list(codes)] = i
        table.setflags(write=False)
        return table

    def to_labels(self, classification: np.ndarray, where: str = "classification") -> np.ndarray:
        """Class ids of ASPRS codes.

        Args:
            classification: ``[N]`` integer codes 0..255 (a LAS file's classification).
            where: what the codes are, for the error message (e.g. the file's path).

        Returns:
            ``[N]`` int64 labels in ``-1 .. C-1``.

        Raises:
            InputError: with ``unknown="error"``, codes the map does not name (each with its point count),
                or codes outside 0..255.
        """
        codes = np.asarray(classification)
        if codes.dtype != np.uint8:
            codes = _integral(codes, where, lambda i: f"index {i}")
            if codes.size and (codes.min() < 0 or codes.max() > 255):
                raise InputError(f"{where}: ASPRS codes are 0..255, found {int(codes.min())}..{int(codes.max())}")
        labels = self.table[codes]
        if self.unknown == "error":
            bad = labels == _UNKNOWN
            if bad.any():
                found, counts = np.unique(codes[bad], return_counts=True)
                listed = ", ".join(f"{int(c)} ({_describe(int(c))}, {int(k)} point{'s' if k != 1 else ''})"
                                   for c, k in zip(found, counts))
                first = int(found[0])
                are = "s" if found.size > 1 else ""
                raise InputError(f"{where}: class code{are} {listed} {'are' if are else 'is'} not in the label map "
                                 f"{self.spec!r}; add each code to a class (e.g. '...;other:{first}') or to the "
                                 f"ignored codes ('ignore:{first}'), or read with unknown='ignore'")
        return labels

    def to_codes(self, labels: np.ndarray, where: str = "`labels`") -> np.ndarray:
        """ASPRS codes of class ids: class ``i`` -> ``codes[i][0]``, ``-1`` -> :data:`UNASSIGNED_CODE` (1).

        Args:
            labels: ``[N]`` integer class ids in ``-1 .. C-1``.
            where: what the labels are, for the error message.

        Returns:
            ``[N]`` uint8 codes.

        Raises:
            InputError: non-integer labels, or labels outside ``-1 .. C-1``.
        """
        ids = _integral(np.asarray(labels), where, lambda i: f"index {i}")
        if ids.size and (ids.min() < -1 or ids.max() >= self.num_classes):
            bad = int(np.flatnonzero((ids < -1) | (ids >= self.num_classes))[0])
            raise InputError(f"{where} holds {int(ids[bad])} at index {bad}, but the label map {self.spec!r} has "
                             f"{self.num_classes} classes; labels must be in -1..{self.num_classes - 1}")
        inverse = np.array([UNASSIGNED_CODE] + [c[0] for c in self.codes], dtype=np.uint8)
        return inverse[ids + 1]


#: what the ``label_map`` arguments take: a :class:`LasLabelMap`, a dict of class -> codes, or a spec string
LabelMapLike = LasLabelMap | str | Mapping[str, int | Iterable[int]]


def _label_map(spec: LabelMapLike | None) -> LasLabelMap | None:
    return None if spec is None else LasLabelMap.parse(spec)


# ----------------------------------------------------------------------------- opening
def _size_check(path: Path, header: Any) -> None:
    """An uncompressed file must hold the points its header counts (a download cut short does not)."""
    if header.are_points_compressed:
        return
    need = int(header.offset_to_point_data) + int(header.point_count) * int(header.point_format.size)
    have = path.stat().st_size
    if have < need:
        holds = max(0, have - int(header.offset_to_point_data)) // int(header.point_format.size)
        raise InputError(f"{path}: truncated: the header counts {int(header.point_count)} points but the file holds "
                         f"only {holds} ({have} of {need} bytes); download or export the file again")


@contextmanager
def _open(path: str | os.PathLike[str], *, points: bool = True) -> Iterator[tuple[Path, Any]]:
    """``(path, laspy.LasReader)`` with every failure to open as an :class:`InputError` naming the file.

    ``points``: the caller reads points, so a truncated file or a LAZ file without lazrs is an error now.
    """
    laspy = _laspy()
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give one LAS/LAZ file")
    try:
        reader = laspy.open(path)
    except (laspy.errors.LaspyException, ValueError, OSError, EOFError, KeyError, IndexError) as err:
        raise InputError(f"{path}: not a readable LAS/LAZ file ({_one_line(err)}); check that it is a .las/.laz "
                         f"file and complete") from None
    try:
        header = reader.header
        if points:
            if header.are_points_compressed and not laspy.LazBackend.detect_available():
                raise InputError(f"{path}: a compressed LAZ file needs the lazrs package to decompress it: "
                                 f"{_INSTALL}")
            _size_check(path, header)
        yield path, reader
    finally:
        reader.close()


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _records(path: Path, reader: Any, chunk_size: int) -> Iterator[tuple[int, Any]]:
    """``(start, ScaleAwarePointRecord)`` chunks; a file that ends early is an :class:`InputError`."""
    laspy = _laspy()
    total = int(reader.header.point_count)
    start = 0
    while start < total:
        want = min(chunk_size, total - start)
        try:
            record = reader.read_points(want)
        except (laspy.errors.LaspyException, ValueError, OSError, EOFError, RuntimeError) as err:
            raise InputError(f"{path}: truncated or corrupt: reading points {start}..{start + want - 1} of the "
                             f"{total} its header counts failed ({_one_line(err)}); download or export the file "
                             f"again") from None
        if len(record) < want:
            raise InputError(f"{path}: truncated: the header counts {total} points but the file ends after "
                             f"{start + len(record)}; download or export the file again")
        yield start, record
        start += want


def _check_chunk_size(chunk_size: int) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise InputError(f"`chunk_size` must be an int >= 1 (points per chunk), got {chunk_size!r}")
    return int(chunk_size)


def _check_features(path: Path, header: Any, features: Sequence[str]) -> tuple[bool, list[str]]:
    """``(read rgb, other dimension names)``; a feature the point format lacks is an error (but ``rgb``)."""
    if isinstance(features, str):
        features = (features,)
    names = list(header.point_format.dimension_names)
    others = []
    for name in features:
        if name == "rgb":
            continue
        if name not in names:
            raise InputError(f"{path}: feature {name!r} is not a dimension of point format "
                             f"{header.point_format.id}; its dimensions: {', '.join(names)} (and 'rgb')")
        others.append(name)
    rgb = "rgb" in features and _has_rgb(header)
    return rgb, others


def _has_rgb(header: Any) -> bool:
    names = set(header.point_format.dimension_names)
    return {"red", "green", "blue"} <= names


def _xyz(record: Any, header: Any) -> np.ndarray:
    """``[n, 3]`` float64 real coordinates ``X * scale + offset`` (as laspy's ``x, y, z``)."""
    array = record.array
    pos = np.empty((len(record), 3), dtype=np.float64)
    for i, axis in enumerate("XYZ"):
        np.multiply(array[axis], header.scales[i], out=pos[:, i])
        pos[:, i] += header.offsets[i]
    return pos


def _raw_rgb(record: Any) -> np.ndarray:
    array = record.array
    return np.stack([array["red"], array["green"], array["blue"]], axis=1)


def _rgb8(raw: np.ndarray, bits: int) -> np.ndarray:
    """``[n, 3]`` uint8 from the stored 16-bit fields: ``value >> 8`` for 16-bit colours, kept for 8-bit ones.

    ``>> 8`` maps 65535 to 255 and returns ``v`` exactly for both usual 8-to-16-bit conversions, ``v * 256``
    and ``v * 257``.
    """
    if bits == 8:
        return raw.astype(np.uint8)
    return (raw >> 8).astype(np.uint8)


def _check_rgb_bits(rgb_bits: int | None) -> int | None:
    if rgb_bits not in (None, 8, 16):
        raise InputError(f"`rgb_bits` must be None (detect), 8 or 16, got {rgb_bits!r}")
    return rgb_bits


def _field(record: Any, name: str) -> np.ndarray:
    return np.array(record[name])


def _classification(record: Any) -> np.ndarray:
    return np.asarray(record["classification"], dtype=np.uint8)


# ----------------------------------------------------------------------------- reading
def read_las(path: str | os.PathLike[str], *, label_map: LabelMapLike | None = None,
             features: Sequence[str] = LAS_FEATURES, rgb_bits: int | None = None) -> PointFile:
    """Read a whole LAS/LAZ file.

    Args:
        path: the ``.las``/``.laz`` file (the header, not the suffix, says whether it is compressed).
        label_map: a :class:`LasLabelMap`, or what :meth:`LasLabelMap.parse` reads (a dict, a string);
            ``None``: no labels, the raw codes go to ``fields["classification"]`` instead. Use
            ``LasLabelMap.default()`` for the default classes.
        features: what to read besides positions: ``"rgb"`` (-> ``colors``, when the point format has
            colours; otherwise ``colors`` is ``None``) and any dimension name of the point format
            (``"intensity"``, ``"return_number"``, ``"number_of_returns"``, ``"gps_time"``, ``"user_data"``,
            ``"nir"``, extra bytes, ...) -> ``fields`` in their stored dtype.
        rgb_bits: how the 16-bit colour fields are filled: ``16`` (the standard; stored ``>> 8``), ``8`` (some
            writers store 0..255; kept), or ``None``: 8 when no value exceeds 255, else 16.

    Returns:
        a :class:`~pointcoc.data.files.PointFile`: ``pos`` ``[N, 3]`` float64 real coordinates (``X * scale +
        offset``), ``colors`` ``[N, 3]`` uint8 or ``None``, ``labels`` ``[N]`` int64 (``-1`` ignored) or
        ``None``, ``fields`` the features by name, each ``[N]``.

    Raises:
        InputError: a missing file, not a LAS file, a truncated file, a LAZ file without lazrs, a file with
            no points, a feature the point format lacks, codes the label map does not name.
        ImportError: laspy is not installed.
    """
    labels_from = _label_map(label_map)
    rgb_bits = _check_rgb_bits(rgb_bits)
    with _open(path) as (path, reader):
        header = reader.header
        n = int(header.point_count)
        if n == 0:
            raise InputError(f"{path}: the file holds no points (its header counts 0); give a file with points")
        want_rgb, names = _check_features(path, header, features)
        pos = np.empty((n, 3), dtype=np.float64)
        raw_rgb = np.empty((n, 3), dtype=np.uint16) if want_rgb else None
        fields: dict[str, np.ndarray] = {}
        codes = np.empty(n, dtype=np.uint8)
        for start, record in _records(path, reader, _READ_CHUNK):
            stop = start + len(record)
            pos[start:stop] = _xyz(record, header)
            if raw_rgb is not None:
                raw_rgb[start:stop] = _raw_rgb(record)
            for name in names:
                value = _field(record, name)
                if name not in fields:
                    fields[name] = np.empty((n,) + value.shape[1:], dtype=value.dtype)
                fields[name][start:stop] = value
            codes[start:stop] = _classification(record)
    colors = None
    if raw_rgb is not None:
        bits = rgb_bits or (8 if int(raw_rgb.max()) <= 255 else 16)
        if rgb_bits is None and bits == 8:
            log.info("%s: colours are at most 255; read as 8-bit values stored in the 16-bit fields", path)
        colors = _rgb8(raw_rgb, bits)
        del raw_rgb
    labels = None
    if labels_from is None:
        fields.setdefault("classification", codes)
    else:
        labels = labels_from.to_labels(codes, str(path))
    log.debug("read %s: %d points, point format %d, %s", path, n, header.point_format.id,
              "colours" if colors is not None else "no colours")
    return PointFile(path=path, pos=pos, colors=colors, labels=labels, fields=fields)


@dataclass
class LasChunk:
    """A run of consecutive points of a LAS file, from :func:`iter_las_chunks`.

    Attributes:
        start: the index of the chunk's first point in the file.
        pos: ``[n, 3]`` float64 real coordinates.
        colors: ``[n, 3]`` uint8, or ``None`` (no ``"rgb"`` feature, or a point format without colours).
        labels: ``[n]`` int64 labels through the label map (``-1`` ignored), or ``None`` without a map (the raw
            codes are then in ``fields["classification"]``).
        fields: the other features by name, each ``[n]``.
    """

    start: int
    pos: np.ndarray
    colors: np.ndarray | None = None
    labels: np.ndarray | None = None
    fields: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """``n``, the chunk's number of points."""
        return int(self.pos.shape[0])

    @property
    def stop(self) -> int:
        """The index after the chunk's last point (``start + count``)."""
        return self.start + self.count


def iter_las_chunks(path: str | os.PathLike[str], chunk_size: int = 1_000_000, *, label_map: LabelMapLike | None = None,
                    features: Sequence[str] = LAS_FEATURES, rgb_bits: int | None = None) -> Iterator[LasChunk]:
    """Stream a LAS/LAZ file in chunks of ``chunk_size`` points, in file order; memory depends on the chunk only.

    The chunks hold what :func:`read_las` returns (same arguments), cut at ``start .. stop``: concatenated, they
    equal the whole read. The file is opened on the first ``next()`` and closed when the iterator ends or is
    closed.

    With ``rgb_bits=None`` the colour depth is decided by the first chunk with a non-zero colour (8-bit when no
    value exceeds 255); a later chunk with values above 255 after an 8-bit decision is an error asking for
    ``rgb_bits=16``. An unknown code is reported with its count in the chunk where it first appears.

    Yields:
        :class:`LasChunk`, ``count == chunk_size`` but for the last.

    Raises:
        InputError: as :func:`read_las` (a truncated file when the chunk that reaches the cut is read).
        ImportError: laspy is not installed.
    """
    chunk_size = _check_chunk_size(chunk_size)
    labels_from = _label_map(label_map)
    rgb_bits = _check_rgb_bits(rgb_bits)
    with _open(path) as (path, reader):
        header = reader.header
        if int(header.point_count) == 0:
            raise InputError(f"{path}: the file holds no points (its header counts 0); give a file with points")
        want_rgb, names = _check_features(path, header, features)
        bits = rgb_bits
        for start, record in _records(path, reader, chunk_size):
            where = f"{path}: points {start}..{start + len(record) - 1}"
            colors = None
            if want_rgb:
                raw = _raw_rgb(record)
                high = int(raw.max())
                if bits is None and high > 0:
                    bits = 8 if high <= 255 else 16
                    if bits == 8:
                        log.info("%s: colours are at most 255; read as 8-bit values (pass rgb_bits=16 if not)",
                                 where)
                elif rgb_bits is None and bits == 8 and high > 255:
                    raise InputError(f"{where}: colours go up to {high}, but earlier chunks were at most 255 and "
                                     f"were read as 8-bit; read with rgb_bits=16 (the LAS standard) or rgb_bits=8")
                colors = _rgb8(raw, bits or 16)
            fields = {name: _field(record, name) for name in names}
            codes = _classification(record)
            labels = None
            if labels_from is None:
                fields.setdefault("classification", codes)
            else:
                labels = labels_from.to_labels(codes, where)
            yield LasChunk(start=start, pos=_xyz(record, header), colors=colors, labels=labels, fields=fields)


def las_header_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a LAS/LAZ file's header says, without reading its points.

    Returns:
        a dict of plain Python values: ``path`` (str), ``version`` (e.g. ``"1.4"``), ``point_format`` (int),
        ``point_count`` (int), ``compressed`` (bool), ``has_rgb`` (bool), ``dimensions`` (list of names),
        ``mins``, ``maxs``, ``scales``, ``offsets`` (each a list of 3 floats, x y z), ``vlrs`` (the VLR
        types, e.g. ``GeoKeyDirectoryVlr`` or ``WktCoordinateSystemVlr`` for the CRS), ``evlrs``
        (count), ``system_identifier``, ``generating_software``, ``creation_date`` (ISO date or ``None``).

    Raises:
        InputError: a missing file or not a LAS file.
        ImportError: laspy is not installed.
    """
    with _open(path, points=False) as (path, reader):
        h = reader.header
        date = getattr(h, "creation_date", None)
        return {
            "path": str(path),
            "version": f"{h.version.major}.{h.version.minor}",
            "point_format": int(h.point_format.id),
            "point_count": int(h.point_count),
            "compressed": bool(h.are_points_compressed),
            "has_rgb": _has_rgb(h),
            "dimensions": list(h.point_format.dimension_names),
            "mins": [float(v) for v in h.mins],
            "maxs": [float(v) for v in h.maxs],
            "scales": [float(v) for v in h.scales],
            "offsets": [float(v) for v in h.offsets],
            "vlrs": [type(v).__name__ for v in h.vlrs],
            "evlrs": int(h.number_of_evlrs),
            "system_identifier": str(h.system_identifier),
            "generating_software": str(h.generating_software),
            "creation_date": date.isoformat() if date is not None else None,
        }


# ----------------------------------------------------------------------------- writing
def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in LAS_SUFFIXES:
        raise InputError(f"{path}: write_las_labels writes LAS files; give a path ending in .las or .laz "
                         f"(.laz is compressed)")
    return suffix


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def write_las_labels(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                     labels: LabelSource, *, label_map: LabelMapLike | None = None,
                     chunk_size: int = 1_000_000) -> Path:
    """Write a copy of ``src`` to ``dst`` whose classification codes are ``labels``, streaming, atomically.

    Class ``i`` is written as its label map's first code (``codes[i][0]``), ``-1`` as 1 (unassigned). Every
    other field of every point is copied as stored, and so is the header (version, point format, scales,
    offsets, VLRs such as the CRS, EVLRs of LAS 1.4; the counts and bounds are recomputed, as laspy does).
    In point formats 0-5, whose classification is 5 bits, the synthetic/key-point/withheld flags are kept.
    ``src`` is only read. ``dst`` is written to a temporary file beside it, then renamed over it: a failure
    leaves no partial file, and a previous ``dst`` intact.

    Args:
        src: the LAS/LAZ file that was classified.
        dst: the file to write; ``.laz`` is compressed (needs lazrs), ``.las`` is not. Must differ from ``src``.
        labels: the class id of every point: an ``[N]`` integer array (or ``np.memmap``) with
            ``N = point count``, or a function ``labels_for(start, count) -> [count]`` ids called once per
            chunk, in order (for predictions that are not all in memory).
        label_map: the :class:`LasLabelMap` (or what :meth:`LasLabelMap.parse` reads) the class ids are of;
            ``None``: :meth:`LasLabelMap.default`.
        chunk_size: points read, relabelled and written at a time.

    Returns:
        ``dst`` as a :class:`~pathlib.Path`.

    Raises:
        InputError: ``dst`` is ``src`` or not ``.las``/``.laz``, ``src`` unreadable or truncated, ``labels`` of
            the wrong length or outside ``-1 .. C-1``, codes above 31 for a point format 0-5 file, a ``.laz``
            without lazrs.
        ImportError: laspy is not installed.
    """
    laspy = _laspy()
    chunk_size = _check_chunk_size(chunk_size)
    mapping = LasLabelMap.parse(label_map)
    src, dst = Path(src), Path(dst)
    compress = _suffix(dst) == ".laz"
    if _same_file(src, dst):
        raise InputError(f"{dst}: is the source file {src}; write the labelled copy to another path")
    if compress and not laspy.LazBackend.detect_available():
        raise InputError(f"{dst}: writing a compressed .laz needs the lazrs package: {_INSTALL}; or write .las")
    if not callable(labels):
        array = labels if isinstance(labels, np.ndarray) else np.asarray(labels)
        if array.ndim != 1:
            raise InputError(f"{dst}: `labels` has shape {tuple(array.shape)}; expected [N], one class id per point")

        def labels_for(start: int, count: int) -> np.ndarray:
            return array[start:start + count]
    else:
        array = None
        labels_for = labels

    with _open(src) as (src, reader):
        header = reader.header
        n = int(header.point_count)
        if array is not None and array.shape[0] != n:
            raise InputError(f"{dst}: `labels` has {array.shape[0]} entries but {src} has {n} points; give one "
                             f"class id per point")
        if header.point_format.id < 6:
            high = max([c[0] for c in mapping.codes] + [UNASSIGNED_CODE])
            if high > 31:
                raise InputError(f"{dst}: point format {header.point_format.id} of {src} stores codes 0..31, but "
                                 f"the label map {mapping.spec!r} writes {high}; give those classes a code below 32 "
                                 f"first, or convert the file to point format 6-10")
        evlrs = reader.header.evlrs if header.version.minor >= 4 else None

        def write(fh: BinaryIO) -> None:
            writer = laspy.LasWriter(fh, header, do_compress=compress, closefd=False)
            for start, record in _records(src, reader, chunk_size):
                count = len(record)
                ids = np.asarray(labels_for(start, count))
                if ids.shape != (count,):
                    raise InputError(f"{dst}: labels for points {start}..{start + count - 1} have shape "
                                     f"{tuple(ids.shape)}; expected [{count}]")
                record["classification"] = mapping.to_codes(ids, f"{dst}: `labels` (points from {start})")
                writer.write_points(record)
            if evlrs:
                writer.write_evlrs(evlrs)
            # not closed after a failure: the temporary file is dropped anyway
            writer.close()  # writes the final header (counts, bounds)

        write_atomic(dst, write)
    log.debug("wrote %s: %d points of %s relabelled (%s)", dst, n, src, "LAZ" if compress else "LAS")
    return dst
