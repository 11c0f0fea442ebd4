"""ShapeNetPart for part segmentation: the normal-resampled text release and the PointNet HDF5 release.

Two public layouts (``data/README.md`` gives each and its source), both read-only:

* **normal-resampled** (``shapenetcore_partanno_segmentation_benchmark_v0_normal/``; PointNet++,
  PointMLP and PointNeXt use it): ``synsetoffset2category.txt`` (``<Name>\\t<synset>`` per line),
  ``train_test_split/shuffled_{train,val,test}_file_list.json`` (entries ``shape_data/<synset>/<id>``)
  and ``<synset>/<id>.txt`` with rows ``x y z nx ny nz part``; part ids are global (0..49).
* **PointNet HDF5** (``hdf5_data/``): ``ply_data_{train,val,test}<i>.h5`` with ``data [n, 2048, 3]``,
  ``label [n, 1]`` (the category) and ``pid [n, 2048]`` (the global part id), and
  ``all_object_categories.txt`` (``<Name> <synset>`` per line) when present.

The 16 categories and which of the 50 parts belong to each come from the data where it stores
them (the category files give names and order); the parts of a category are the standard table
(:data:`SHAPENETPART_PARTS`, the same in PointNet++, PointMLP and PointNeXt), since neither release
stores it. A shape comes back as ``(points [N, 3 or 6], category, parts [N])``: xyz centred and
scaled into the unit sphere (per shape, as PointNet++'s ``pc_normalize``), normals unchanged, and
``num_points`` points drawn with replacement (PointNet++/PointMLP's loaders: ``np.random.choice(n,
num_points, replace=True)``; here with torch's RNG), or every stored point with ``num_points=None``
(the test protocol on the full shape).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from pointcoc.data.h5 import DatasetNotFoundError, _dataset, _open, _read
from pointcoc.errors import InputError

__all__ = ["SHAPENETPART_PARTS", "PartCategories", "ShapeNetPart", "shapenetpart", "SHAPENETPART_LAYOUTS"]

log = logging.getLogger(__name__)

#: category name -> (synset, its global part ids): the standard table of PointNet++ / PointMLP / PointNeXt
SHAPENETPART_PARTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "Airplane": ("02691156", (0, 1, 2, 3)), "Bag": ("02773838", (4, 5)), "Cap": ("02954340", (6, 7)),
    "Car": ("02958343", (8, 9, 10, 11)), "Chair": ("03001627", (12, 13, 14, 15)),
    "Earphone": ("03261776", (16, 17, 18)), "Guitar": ("03467517", (19, 20, 21)), "Knife": ("03624134", (22, 23)),
    "Lamp": ("03636649", (24, 25, 26, 27)), "Laptop": ("03642341", (28, 29)),
    "Motorbike": ("03790512", (30, 31, 32, 33, 34, 35)), "Mug": ("03797390", (36, 37)),
    "Pistol": ("03948459", (38, 39, 40)), "Rocket": ("04099429", (41, 42, 43)),
    "Skateboard": ("04225946", (44, 45, 46)), "Table": ("04379243", (47, 48, 49)),
}

NORMAL_DIR = "shapenetcore_partanno_segmentation_benchmark_v0_normal"
HDF5_DIR = "hdf5_data"
SHAPENETPART_LAYOUTS = ("normal", "hdf5")
SOURCE = ("the normal-resampled release is shapenetcore_partanno_segmentation_benchmark_v0_normal.zip "
          "(Stanford, shapenet.cs.stanford.edu/media/, linked from github.com/charlesq34/pointnet2); the HDF5 "
          "release is shapenet_part_seg_hdf5_data.zip (linked from github.com/charlesq34/pointnet, "
          "part_seg/download_data.sh). Unzip into data/; pointcoc never downloads")
SPLITS = ("train", "val", "test", "trainval")


@dataclass(frozen=True)
class PartCategories:
    """The categories of a part-segmentation set and the parts of each.

    Attributes:
        names: category names, in label order.
        synsets: their ShapeNet synset ids.
        parts: the global part ids of each category.
        num_parts: parts over all categories (50 for ShapeNetPart).
    """

    names: tuple[str, ...]
    synsets: tuple[str, ...]
    parts: tuple[tuple[int, ...], ...]
    num_parts: int

    @classmethod
    def standard(cls, names: Sequence[str] | None = None) -> PartCategories:
        """The standard table, for ``names`` (default: all 16, alphabetical as the release lists them)."""
        names = list(SHAPENETPART_PARTS) if names is None else list(names)
        unknown = [n for n in names if n not in SHAPENETPART_PARTS]
        if unknown:
            raise InputError(f"unknown ShapeNetPart categories {unknown}; known: {list(SHAPENETPART_PARTS)}")
        parts = tuple(SHAPENETPART_PARTS[n][1] for n in names)
        return cls(tuple(names), tuple(SHAPENETPART_PARTS[n][0] for n in names), parts,
                   1 + max(p for ps in SHAPENETPART_PARTS.values() for p in ps[1]))

    @property
    def num_categories(self) -> int:
        return len(self.names)

    def part_mask(self) -> Tensor:
        """``[num_categories, num_parts]`` bool: which parts belong to each category (to predict among them)."""
        mask = torch.zeros(self.num_categories, self.num_parts, dtype=torch.bool)
        for c, parts in enumerate(self.parts):
            mask[c, list(parts)] = True
        return mask


def _category_file(path: Path) -> PartCategories:
    """Names and synsets from ``synsetoffset2category.txt`` / ``all_object_categories.txt``; parts from the table."""
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the category list ({err})") from err
    for i, row in enumerate(lines):
        if len(row) != 2:
            raise InputError(f"{path} line {i + 1}: expected '<Name> <synset>', got {' '.join(row)!r}")
        name, synset = row
        if name not in SHAPENETPART_PARTS:
            raise InputError(f"{path} line {i + 1}: unknown category {name!r}; the part table knows "
                             f"{list(SHAPENETPART_PARTS)}")
        if SHAPENETPART_PARTS[name][0] != synset:
            raise InputError(f"{path} line {i + 1}: {name} has synset {synset}, the release's is "
                             f"{SHAPENETPART_PARTS[name][0]}")
    if not lines:
        raise InputError(f"{path} lists no categories; write '<Name> <synset>' per line")
    return PartCategories.standard([row[0] for row in lines])


def _normalise(xyz: np.ndarray) -> np.ndarray:
    """Centre on the mean and scale the farthest point to radius 1 (PointNet++'s ``pc_normalize``)."""
    xyz = xyz - xyz.mean(axis=0)
    radius = float(np.sqrt((xyz ** 2).sum(axis=1)).max())
    return xyz / radius if radius > 0 else xyz


def _read_shape_txt(path: Path) -> np.ndarray:
    """``[n, 7]`` float64 rows ``x y z nx ny nz part`` of one shape file, checked row by row."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the shape ({err})") from err
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputError(f"{path}: the shape has no points (empty file); drop it from the file list or restore it")
    try:
        values = np.array(text.split(), dtype=np.float64)
    except ValueError:
        values = None
    if values is None or values.size != 7 * len(lines):
        for i, line in enumerate(lines):
            cols = line.split()
            if len(cols) != 7:
                raise InputError(f"{path} row {i + 1}: {len(cols)} columns, expected 7 (x y z nx ny nz part)")
            try:
                [float(c) for c in cols]
            except ValueError as err:
                raise InputError(f"{path} row {i + 1}: not a number ({err})") from err
    rows = values.reshape(len(lines), 7)
    bad = ~np.isfinite(rows).all(axis=1)
    if bad.any():
        raise InputError(f"{path} row {int(np.flatnonzero(bad)[0]) + 1}: NaN or inf values ({int(bad.sum())} "
                         "row(s)); clean the file")
    return rows


def _check_parts(parts: np.ndarray, category: int, cats: PartCategories, where: str) -> np.ndarray:
    """Part ids (integer-valued) that all belong to ``category``; ``where`` names the file (and shape)."""
    if parts.dtype.kind == "f" and not (parts == np.round(parts)).all():
        i = int(np.flatnonzero(parts != np.round(parts))[0])
        raise InputError(f"{where} row {i + 1}: part label {parts[i]} is not an integer")
    parts = parts.astype(np.int64)
    allowed = np.asarray(cats.parts[category])
    outside = ~np.isin(parts, allowed)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise InputError(f"{where} row {i + 1}: part {int(parts[i])} is not a part of {cats.names[category]} "
                         f"(its parts are {list(cats.parts[category])}); {int(outside.sum())} such point(s)")
    return parts


class ShapeNetPart(Dataset):
    """One split of ShapeNetPart (or a custom set in either layout).

    Args:
        root: the release folder (``.../shapenetcore_partanno_segmentation_benchmark_v0_normal`` or
            ``.../hdf5_data``), or a folder holding one of them.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"trainval"``.
        num_points: points per shape, drawn with replacement (``None``: every stored point).
        use_normals: ``[N, 6]`` (xyz + normals; normal layout only) instead of ``[N, 3]``.
        layout: ``"normal"``, ``"hdf5"`` or ``None`` (found from the folder).
        transform: ``points [N, C] -> points`` applied after normalisation (not to the labels).

    Attributes:
        categories (:class:`PartCategories`), layout, shapes (``(category, file)`` per shape, normal
        layout), labels (``[n]`` int64 categories).

    Raises:
        ValueError (an :class:`~pointcoc.errors.InputError`): naming the file and row or key: a
        missing folder or file list, an unknown synset, a wrong column count, NaN/inf, a part outside
        its category's parts, an empty shape, a category label out of range.
    """

    def __init__(self, root: str | Path, split: str = "train", num_points: int | None = 2048,
                 use_normals: bool = False, layout: str | None = None,
                 transform: Callable[[Tensor], Tensor] | None = None) -> None:
        if split not in SPLITS:
            raise InputError(f"split must be one of {SPLITS}, got {split!r}")
        if num_points is not None and (isinstance(num_points, bool) or int(num_points) < 1):
            raise InputError(f"num_points must be a positive int or None, got {num_points!r}")
        self.root, self.layout = _find_layout(Path(root), layout)
        if use_normals and self.layout == "hdf5":
            raise InputError(f"{self.root}: the HDF5 release stores no normals; use the normal-resampled release "
                             "or use_normals=False (--no-normals in the scripts)")
        self.split, self.num_points, self.use_normals, self.transform = split, num_points, use_normals, transform
        if self.layout == "normal":
            self._init_normal()
        else:
            self._init_hdf5()

    # ------------------------------------------------------------------ layouts
    def _init_normal(self) -> None:
        self.categories = _category_file(self.root / "synsetoffset2category.txt")
        by_synset = {s: i for i, s in enumerate(self.categories.synsets)}
        shapes: list[tuple[int, Path]] = []
        for part in ("train", "val") if self.split == "trainval" else (self.split,):
            listing = self.root / "train_test_split" / f"shuffled_{part}_file_list.json"
            if not listing.is_file():
                raise DatasetNotFoundError(f"{listing}: the {part} file list is missing; {SOURCE}")
            try:
                entries = json.loads(listing.read_text())
            except (OSError, ValueError) as err:
                raise InputError(f"{listing}: not a readable JSON list ({err})") from err
            if not isinstance(entries, list):
                raise InputError(f"{listing}: expected a JSON list of 'shape_data/<synset>/<id>' entries")
            for j, entry in enumerate(entries):
                bits = str(entry).split("/")
                if len(bits) < 2:
                    raise InputError(f"{listing} entry {j}: {entry!r} is not 'shape_data/<synset>/<id>'")
                synset, shape_id = bits[-2], bits[-1]
                if synset not in by_synset:
                    raise InputError(f"{listing} entry {j}: unknown synset {synset} ({entry!r}); "
                                     f"synsetoffset2category.txt lists {list(self.categories.synsets)}")
                shapes.append((by_synset[synset], self.root / synset / f"{shape_id}.txt"))
        if not shapes:
            raise InputError(f"{self.root}: the {self.split} split lists no shapes")
        self.shapes = shapes
        self.labels = torch.tensor([c for c, _ in shapes], dtype=torch.long)

    def _init_hdf5(self) -> None:
        names = self.root / "all_object_categories.txt"
        self.categories = _category_file(names) if names.is_file() else PartCategories.standard()
        parts = ("train", "val") if self.split == "trainval" else (self.split,)
        files = [f for p in parts for f in sorted(self.root.glob(f"ply_data_{p}*.h5"), key=_numbered)]
        if not files:
            raise DatasetNotFoundError(f"{self.root}: no ply_data_{self.split}*.h5 files; {SOURCE}")
        xyz, cats, pids = [], [], []
        for path in files:
            with _open(path) as f:
                data = _read(_dataset(f, path, "data", "the shapes, [n, 2048, 3] float"), path)
                label = _read(_dataset(f, path, "label", "the category of each shape, [n, 1]"), path)
                pid = _read(_dataset(f, path, "pid", "the part of each point, [n, 2048]"), path)
            n = data.shape[0] if data.ndim == 3 else -1
            if data.ndim != 3 or data.shape[2] != 3 or data.dtype.kind != "f":
                raise InputError(f"{path}: 'data' has shape {data.shape} {data.dtype}; expected [n, points, 3] float")
            if pid.shape != data.shape[:2]:
                raise InputError(f"{path}: 'pid' has shape {pid.shape}; expected {data.shape[:2]} (a part per point)")
            label = label.reshape(-1)
            if label.shape[0] != n:
                raise InputError(f"{path}: 'label' has {label.shape[0]} entries for {n} shapes")
            bad = (label < 0) | (label >= self.categories.num_categories)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise InputError(f"{path}: 'label' {int(label[i])} of shape {i} is outside the "
                                 f"{self.categories.num_categories} categories")
            finite = np.isfinite(data).all(axis=(1, 2))
            if not finite.all():
                raise InputError(f"{path}: 'data' holds NaN or inf in shape {int(np.flatnonzero(~finite)[0])}")
            for i in range(n):
                _check_parts(pid[i], int(label[i]), self.categories, f"{path} 'pid' shape {i} point")
            xyz.append(data.astype(np.float32))
            cats.append(label.astype(np.int64))
            pids.append(pid.astype(np.int64))
        self.files = files
        self._xyz, self._pid = np.concatenate(xyz), np.concatenate(pids)
        self.labels = torch.from_numpy(np.concatenate(cats))
        if len(self.labels) == 0:
            raise InputError(f"{self.root}: the {self.split} split holds no shapes")

    # ------------------------------------------------------------------ items
    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> tuple[np.ndarray, int, np.ndarray]:
        """Shape ``index`` as stored: ``(points [n, 3 or 6] float32, category, parts [n] int64)``, xyz normalised."""
        if self.layout == "normal":
            category, path = self.shapes[index]
            rows = _read_shape_txt(path)
            parts = _check_parts(rows[:, 6], category, self.categories, str(path))
            points = rows[:, :6] if self.use_normals else rows[:, :3]
        else:
            category, points, parts = int(self.labels[index]), self._xyz[index].astype(np.float64), self._pid[index]
        points = points.copy()
        points[:, :3] = _normalise(points[:, :3])
        return points.astype(np.float32), category, parts

    def __getitem__(self, index: int) -> tuple[Tensor, int, Tensor]:
        points, category, parts = self.load(index)
        pts, seg = torch.from_numpy(points), torch.from_numpy(parts)
        if self.num_points is not None:
            choice = torch.randint(0, pts.shape[0], (self.num_points,))
            pts, seg = pts[choice], seg[choice]
        if self.transform is not None:
            pts = self.transform(pts)
        return pts, category, seg

    def check(self) -> None:
        """Read and validate every shape of the split now (the text layout reads shapes lazily)."""
        for i in range(len(self)):
            self.load(i)


def _numbered(path: Path) -> tuple[str, int]:
    stem = path.stem.rstrip("0123456789")
    digits = path.stem[len(stem):]
    return stem, int(digits) if digits else -1


def _find_layout(root: Path, layout: str | None) -> tuple[Path, str]:
    """The release folder and its layout, from ``root`` itself or one of the known sub-folders."""
    if layout is not None and layout not in SHAPENETPART_LAYOUTS:
        raise InputError(f"layout must be one of {SHAPENETPART_LAYOUTS} or None, got {layout!r}")
    for folder in (root, root / NORMAL_DIR, root / HDF5_DIR):
        if (folder / "synsetoffset2category.txt").is_file() and layout in (None, "normal"):
            return folder, "normal"
        if any(folder.glob("ply_data_*.h5")) and layout in (None, "hdf5"):
            return folder, "hdf5"
    raise DatasetNotFoundError(
        f"{root}: no ShapeNetPart release here (looked for synsetoffset2category.txt or ply_data_*.h5 in it, "
        f"{NORMAL_DIR}/ and {HDF5_DIR}/); {SOURCE}")


def shapenetpart(root: str | Path = "data", split: str = "train", **kwargs) -> ShapeNetPart:
    """:class:`ShapeNetPart` of ``split`` under ``root`` (either layout); see the class for the arguments."""
    return ShapeNetPart(root, split, **kwargs)

