"""Point clouds in HDF5: ModelNet40 (PointNet release), ScanObjectNN, and custom sets in those layouts.

A split is read **once**, in ``PointCloudH5.__init__``: each ``.h5`` file of the split is
opened with h5py, its whole ``data`` (and ``label``, optional ``normal``) dataset is read
into memory in one contiguous read, validated and the file closed; the files' arrays are
concatenated into one ``[n, num_points, C]`` float32 tensor. ``__getitem__`` only indexes
that tensor, so no file handle exists when DataLoader workers fork (they share the
arrays copy-on-write) and nothing is opened per item. Files are opened read-only with
HDF5 file locking off (read-only and network file systems work); nothing in the data
folder is ever written, renamed or deleted.

``num_points`` smaller than the stored count keeps the **first** ``num_points`` points of
each cloud: PointMLP's loaders do ``self.data[item][:self.num_points]``
(``classification_ModelNet40/data.py``, ``classification_ScanObjectNN/ScanObjectNN.py``),
and the releases store the points in random order.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from pointcoc.errors import InputError

__all__ = [
    "PointCloudH5", "modelnet40", "scanobjectnn", "DatasetNotFoundError", "SCANOBJECTNN_CLASSES",
    "SCANOBJECTNN_VARIANTS", "load_time_benchmark",
]

log = logging.getLogger(__name__)

#: ScanObjectNN's 15 categories in label order (the h5 files store no names).
SCANOBJECTNN_CLASSES = [
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table", "bed", "pillow",
    "sink", "sofa", "toilet",
]

#: variant -> (sub-folder of h5_files/, file name pattern; ``{split}`` is ``training`` or ``test``).
SCANOBJECTNN_VARIANTS = {
    "pb_t50_rs": ("main_split", "{split}_objectdataset_augmentedrot_scale75.h5"),
    "obj_bg": ("main_split", "{split}_objectdataset.h5"),
    "obj_only": ("main_split_nobg", "{split}_objectdataset.h5"),
}

MODELNET40_LAYOUT = """\
  {root}/
    ply_data_train0.h5 ... ply_data_train4.h5   (keys: data [n, 2048, 3] float32, label [n, 1] integer,
    ply_data_test0.h5, ply_data_test1.h5          optional normal [n, 2048, 3])
    shape_names.txt                              (one class name per line; label i = line i)
    train_files.txt, test_files.txt              (the .h5 files of each split, one per line)"""

MODELNET40_SOURCE = (
    "get modelnet40_ply_hdf5_2048.zip from the PointNet release "
    "(https://shapenet.cs.stanford.edu/media/modelnet40_ply_hdf5_2048.zip, linked from "
    "https://github.com/charlesq34/pointnet) and unzip it into data/, or point `root` at your copy "
    "(any dataset saved in this layout works). pointcoc never downloads; for built-in data call "
    "pointcoc.data.ensure_demo_data() and read data/demo/points"
)

SCANOBJECTNN_LAYOUT = """\
  {root}/
    main_split/                  (PB_T50_RS and OBJ_BG)
      training_objectdataset_augmentedrot_scale75.h5, test_objectdataset_augmentedrot_scale75.h5
      training_objectdataset.h5, test_objectdataset.h5
    main_split_nobg/             (OBJ_ONLY)
      training_objectdataset.h5, test_objectdataset.h5
  (keys: data [n, 2048, 3] float, label [n] integer 0..14; optional shape_names.txt)"""

SCANOBJECTNN_SOURCE = (
    "get h5_files.zip from the ScanObjectNN authors (https://hkust-vgd.github.io/scanobjectnn/, "
    "download after the terms-of-use form; PointMLP mirrors the PB_T50_RS files at "
    "https://github.com/ma-xu/pointMLP-pytorch/releases/download/dataset/h5_files.zip) and unzip it "
    "into data/. pointcoc never downloads"
)


class DatasetNotFoundError(InputError):
    """A dataset's folder or files are missing; the message gives the expected layout and the source."""


def _natural_key(path: Path) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _read_shape_names(path: Path) -> list[str]:
    """Class names from ``shape_names.txt`` (one per line, blank lines ignored)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the class names ({err})") from err
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InputError(f"{path} lists no class names; write one class name per line (label i = line i)")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"{path} lists class name(s) {dupes} more than once; each line must be a distinct class")
    return names


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise InputError(f"{path}: file not found (it is listed for this split); restore it or fix the file list")
    try:
        return h5py.File(path, "r", locking=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable HDF5 file, corrupt or truncated ({err}); "
                         "copy or unzip it again from the release") from err


def _dataset(f: h5py.File, path: Path, key: str, hint: str) -> h5py.Dataset:
    if key not in f or not isinstance(f[key], h5py.Dataset):
        keys = sorted(f.keys())
        raise InputError(f"{path}: missing key '{key}' ({hint}); the file has keys {keys}")
    return f[key]


def _read(ds: h5py.Dataset, path: Path) -> np.ndarray:
    try:
        return ds[()]
    except (OSError, ValueError, TypeError) as err:
        raise InputError(f"{path}: cannot read '{ds.name.lstrip('/')}' {ds.shape}: the file is corrupt or "
                         f"truncated ({err}); copy it again") from err


def _check_labels(label: np.ndarray, path: Path, n: int) -> np.ndarray:
    """``label`` [n] or [n, 1] of integers (or integral floats) -> int64 [n]."""
    if label.ndim not in (1, 2) or label.shape[0] != n or (label.ndim == 2 and label.shape[1] != 1):
        raise InputError(f"{path}: 'label' has shape {label.shape}; expected [{n}] or [{n}, 1] "
                         f"(one label per cloud of 'data')")
    label = label.reshape(n)
    if label.dtype.kind in "iu":
        return label.astype(np.int64)
    if label.dtype.kind == "f":
        if not (np.isfinite(label).all() and (label == np.round(label)).all()):
            raise InputError(f"{path}: 'label' has dtype {label.dtype} with non-integer values; "
                             "labels must be integer class indices")
        return label.astype(np.int64)
    raise InputError(f"{path}: 'label' has dtype {label.dtype}; expected an integer dtype (class indices)")


def _check_points(shape: tuple[int, ...], dtype: np.dtype, path: Path, key: str, n: int | None = None) -> None:
    """Check a ``[n, points, 3]`` float dataset's shape and dtype (before reading it)."""
    if dtype.kind != "f":
        raise InputError(f"{path}: '{key}' has dtype {dtype}; expected float32 (or another float) coordinates")
    if len(shape) != 3 or shape[2] != 3 or shape[1] < 1 or (n is not None and shape[0] != n):
        first = "n" if n is None else str(n)
        raise InputError(f"{path}: '{key}' has shape {shape}; expected [{first}, points, 3]")


def _check_finite(arr: np.ndarray, path: Path, key: str) -> None:
    finite = np.isfinite(arr).all(axis=(1, 2))
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InputError(f"{path}: '{key}' holds NaN or inf values in {bad.size} cloud(s) (first at index "
                         f"{int(bad[0])}); clean or drop those clouds")


class PointCloudH5(Dataset):
    """Any HDF5 split in the ModelNet40 / ScanObjectNN layouts, loaded into memory once.

    Args:
        files: the ``.h5`` files of the split, concatenated in this order. Each holds
            ``data`` ``[n, P, 3]`` float, ``label`` ``[n]`` or ``[n, 1]`` integer and, with
            ``use_normals``, ``normal`` ``[n, P, 3]`` float.
        num_points: points per cloud; the first ``num_points`` stored points are kept
            (PointMLP's convention). ``None`` keeps all (every file must then store the same count).
        transform: callable ``points [num_points, C] -> points`` applied in ``__getitem__``.
        use_normals: return ``[num_points, 6]`` (xyz + normals).
        classes: class names (label ``i`` is ``classes[i]``); ``None``: ``"0" .. "C-1"`` with
            ``C`` = ``num_classes`` or, if that is ``None`` too, the largest label + 1.
        num_classes: class count when ``classes`` is ``None``.
        name: dataset name used in messages.
        classes_source: where ``classes`` come from, for messages (e.g. ``"shape_names.txt"``).

    Attributes:
        classes, num_classes, labels (``[n]`` int64), files, points (``[n, num_points, C]`` float32).

    Raises:
        ValueError: naming the file and the problem: unreadable (corrupt, truncated) file,
            missing key, wrong shape or dtype, NaN/inf values, a label outside the classes,
            an empty split, ``num_points`` larger than stored.
    """

    def __init__(self, files: Sequence[str | Path], num_points: int | None = None,
                 transform: Callable[[Tensor], Tensor] | None = None, use_normals: bool = False,
                 classes: Sequence[str] | None = None, num_classes: int | None = None,
                 name: str = "point cloud split", classes_source: str = "") -> None:
        self.files = [Path(f) for f in files]
        if not self.files:
            raise InputError(f"{name}: no .h5 files given for this split; the split is empty")
        if num_points is not None and int(num_points) < 1:
            raise InputError(f"{name}: num_points must be >= 1, got {num_points}")
        self.name = name
        self.transform = transform
        start = time.perf_counter()
        chunks, labels = [], []
        for path in self.files:
            pts, lab = self._load_file(path, num_points, use_normals)
            chunks.append(pts)
            labels.append(lab)
        total = sum(len(lab) for lab in labels)
        if total == 0:
            listing = ", ".join(str(p) for p in self.files)
            raise InputError(f"{name}: the split is empty (0 clouds in {listing}); the files hold no clouds")
        if num_points is None:
            counts = {p: c.shape[1] for p, c in zip(self.files, chunks) if len(c)}
            if len(set(counts.values())) > 1:
                listing = {str(k): v for k, v in counts.items()}
                raise InputError(f"{name}: files store different point counts {listing}; "
                                 "pass num_points <= the smallest to keep the first num_points of each")
        if classes is not None:
            self.classes = [str(c) for c in classes]
        else:
            top = max(int(lab.max()) for lab in labels if len(lab)) + 1
            count = top if num_classes is None else int(num_classes)
            self.classes = [str(i) for i in range(count)]
        self.num_classes = len(self.classes)
        for path, lab in zip(self.files, labels):
            bad = np.flatnonzero((lab < 0) | (lab >= self.num_classes))
            if bad.size:
                i = int(bad[0])
                raise InputError(f"{path}: label {int(lab[i])} at index {i} ({bad.size} bad label(s)) is outside the "
                                 f"{self.num_classes} classes 0..{self.num_classes - 1}"
                                 f"{f' of {classes_source}' if classes_source else ''}; fix the labels or the "
                                 "class list")
        self.points = torch.from_numpy(np.concatenate(chunks, axis=0) if len(chunks) > 1 else chunks[0])
        self.labels = torch.from_numpy(np.concatenate(labels))
        self.num_points = self.points.shape[1]
        self.load_seconds = time.perf_counter() - start
        log.debug("%s: %d clouds x %d points from %d file(s) in %.3f s", name, len(self), self.num_points,
                  len(self.files), self.load_seconds)

    @staticmethod
    def _load_file(path: Path, num_points: int | None, use_normals: bool) -> tuple[np.ndarray, np.ndarray]:
        """Read, check and trim one file: ``(points [n, num_points, C] float32, labels [n] int64)``."""
        with _open(path) as f:
            ds = _dataset(f, path, "data", "the clouds, [n, points, 3] float")
            ls = _dataset(f, path, "label", "the class of each cloud, [n] or [n, 1] integer")
            ns = _dataset(f, path, "normal", "per-point normals, needed by use_normals=True") if use_normals else None
            # dtype and shape checks before reading, so a wrong file fails fast
            _check_points(ds.shape, ds.dtype, path, "data")
            n = ds.shape[0]
            if ns is not None:
                _check_points(ns.shape, ns.dtype, path, "normal", n)
                if ns.shape != ds.shape:
                    raise InputError(f"{path}: 'normal' has shape {ns.shape} but 'data' has {ds.shape}; "
                                     "they must match")
            stored = ds.shape[1]
            if num_points is not None and num_points > stored:
                raise InputError(f"{path}: num_points={num_points} but the file stores {stored} points per cloud; "
                                 f"pass num_points <= {stored}")
            data = _read(ds, path)
            label = _check_labels(_read(ls, path), path, n)
            normal = _read(ns, path) if ns is not None else None
        _check_finite(data, path, "data")
        keep = stored if num_points is None else num_points
        parts = [data[:, :keep]]
        if normal is not None:
            _check_finite(normal, path, "normal")
            parts.append(normal[:, :keep])
        out = np.concatenate(parts, axis=2) if len(parts) > 1 else parts[0]
        return np.ascontiguousarray(out, dtype=np.float32), label

    def __len__(self) -> int:
        return self.points.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        """``(points [num_points, 3] float32 (or [num_points, 6] with normals), label)``."""
        points = self.points[i].clone()
        if self.transform is not None:
            points = self.transform(points)
        return points, int(self.labels[i])

    def __repr__(self) -> str:
        return (f"PointCloudH5({self.name}: {len(self)} clouds x {self.num_points} points x {self.points.shape[2]}, "
                f"{self.num_classes} classes, files={[f.name for f in self.files]})")


def _missing(name: str, root: Path, problem: str, layout: str, source: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(f"{name} not found at {root}: {problem}. Expected layout:\n"
                                f"{layout.format(root=root)}\n{source}.")


def _split_files(root: Path, split: str) -> list[Path]:
    """The split's files: ``{split}_files.txt`` (base names, resolved in ``root``), else ``ply_data_{split}*.h5``."""
    listing = root / f"{split}_files.txt"
    if listing.is_file():
        try:
            lines = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"{listing}: cannot read the file list ({err})") from err
        if not lines:
            raise InputError(f"{listing} lists no .h5 files: the {split} split is empty")
        # the release lists paths like data/modelnet40_ply_hdf5_2048/ply_data_train0.h5
        files = [root / Path(ln).name for ln in lines]
        for f in files:
            if not f.is_file():
                raise InputError(f"{listing} lists {Path(f).name} but {f} does not exist; restore it or fix the list")
        return files
    return sorted(root.glob(f"ply_data_{split}*.h5"), key=_natural_key)


def _max_label(files: Sequence[Path]) -> int:
    """Largest label in ``files`` (reads only the ``label`` datasets); -1 if none is readable."""
    top = -1
    for path in files:
        try:
            with h5py.File(path, "r", locking=False) as f:
                lab = np.asarray(f["label"][()])
            if lab.size and lab.dtype.kind in "iuf":
                top = max(top, int(np.nanmax(lab)))
        except (OSError, KeyError, ValueError, TypeError):
            continue
    return top


def modelnet40(root: str | Path = "data/modelnet40_ply_hdf5_2048", split: str = "train", num_points: int = 1024,
               transform: Callable[[Tensor], Tensor] | None = None, use_normals: bool = False) -> PointCloudH5:
    """ModelNet40 from the PointNet HDF5 release, or any dataset saved in that layout.

    Files of the split: those listed in ``{split}_files.txt`` (base names, looked up in
    ``root``), else ``ply_data_{split}*.h5`` in natural order. Classes: ``shape_names.txt``
    when present (so any class count works), else ``"0".."C-1"`` with ``C`` the largest label
    of the train and test files + 1 (a warning is logged).

    Args:
        root: folder holding the ``.h5`` files.
        split: ``"train"`` or ``"test"``.
        num_points: the first ``num_points`` points of each cloud (PointMLP's convention).
        transform: per-cloud callable, e.g. :func:`pointcoc.data.default_train_transform`.
        use_normals: also read ``normal`` and return ``[num_points, 6]``.

    Raises:
        DatasetNotFoundError (a ValueError): the folder or split files are missing; the
            message prints the expected layout and where the release is published.
        ValueError: bad data (see :class:`PointCloudH5`).
    """
    root = Path(root)
    if split not in ("train", "test"):
        raise InputError(f"ModelNet40 split must be 'train' or 'test', got {split!r}")
    if not root.is_dir():
        raise _missing("ModelNet40", root, "the folder does not exist", MODELNET40_LAYOUT, MODELNET40_SOURCE)
    files = _split_files(root, split)
    if not files:
        present = sorted(p.name for p in root.iterdir())[:10]
        raise _missing("ModelNet40", root, f"no {split}_files.txt and no ply_data_{split}*.h5 files "
                       f"(the folder holds {present})", MODELNET40_LAYOUT, MODELNET40_SOURCE)
    names_file = root / "shape_names.txt"
    classes, num_classes, source = None, None, ""
    if names_file.is_file():
        classes, source = _read_shape_names(names_file), str(names_file)
    else:
        other = _split_files(root, "test" if split == "train" else "train")
        num_classes = max(_max_label(list(files) + list(other)) + 1, 1)
        log.warning("%s has no shape_names.txt: using %d classes named '0'..'%d' (largest label of both splits + 1)",
                    root, num_classes, num_classes - 1)
    return PointCloudH5(files, num_points=num_points, transform=transform, use_normals=use_normals,
                        classes=classes, num_classes=num_classes, name=f"ModelNet40 {split} ({root})",
                        classes_source=source)


def scanobjectnn(root: str | Path = "data/h5_files", split: str = "train", variant: str = "pb_t50_rs",
                 num_points: int = 1024, transform: Callable[[Tensor], Tensor] | None = None) -> PointCloudH5:
    """ScanObjectNN from the authors' ``h5_files`` release, or any dataset saved in that layout.

    Variants: ``"pb_t50_rs"`` (the hardest, default: ``main_split/*_objectdataset_augmentedrot_scale75.h5``),
    ``"obj_bg"`` (``main_split/*_objectdataset.h5``), ``"obj_only"``
    (``main_split_nobg/*_objectdataset.h5``). Classes: ``shape_names.txt`` in the variant
    folder or in ``root`` when present, else ScanObjectNN's 15 categories.

    Args:
        root: the ``h5_files`` folder.
        split: ``"train"`` (files named ``training_*``) or ``"test"``.
        variant: see above.
        num_points: the first ``num_points`` points of each cloud (PointMLP's convention).
        transform: per-cloud callable.

    Raises:
        DatasetNotFoundError (a ValueError): missing folder or file, with the expected layout and source.
        ValueError: bad data (see :class:`PointCloudH5`).
    """
    root = Path(root)
    if split not in ("train", "test", "training"):
        raise InputError(f"ScanObjectNN split must be 'train' or 'test', got {split!r}")
    key = variant.lower().replace("-", "_")
    if key not in SCANOBJECTNN_VARIANTS:
        raise InputError(f"ScanObjectNN variant must be one of {sorted(SCANOBJECTNN_VARIANTS)}, got {variant!r}")
    folder, pattern = SCANOBJECTNN_VARIANTS[key]
    path = root / folder / pattern.format(split="test" if split == "test" else "training")
    if not root.is_dir():
        raise _missing("ScanObjectNN", root, "the folder does not exist", SCANOBJECTNN_LAYOUT, SCANOBJECTNN_SOURCE)
    if not path.is_file():
        raise _missing("ScanObjectNN", root, f"{variant} {split} file {path} does not exist",
                       SCANOBJECTNN_LAYOUT, SCANOBJECTNN_SOURCE)
    classes, source = SCANOBJECTNN_CLASSES, "ScanObjectNN's 15 categories (add a shape_names.txt for others)"
    for names_file in (root / folder / "shape_names.txt", root / "shape_names.txt"):
        if names_file.is_file():
            classes, source = _read_shape_names(names_file), str(names_file)
            break
    return PointCloudH5([path], num_points=num_points, transform=transform, classes=classes,
                        name=f"ScanObjectNN {key} {split} ({root})", classes_source=source)


def load_time_benchmark(num_clouds: int = 10_000, num_points: int = 2048, num_files: int = 5,
                        read_points: int = 1024, repeats: int = 3, directory: str | Path | None = None
                        ) -> dict[str, float]:
    """Time :func:`modelnet40` on a synthetic split written in the release layout.

    Writes ``num_files`` files ``ply_data_train*.h5`` (``data`` ``[n, num_points, 3]`` float32,
    ``label`` ``[n, 1]`` uint8, ``normal``) plus ``shape_names.txt`` into a temporary folder
    (inside ``directory`` if given), then loads the split ``repeats`` times (warm page cache;
    the first read after writing is already cached). Returns the best times as seconds per
    10k clouds for ``read_points`` points, for all stored points, and with normals, plus
    the split's size in MB.
    """
    g = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory(dir=directory, prefix="pointcoc-bench-") as tmp:
        root = Path(tmp)
        (root / "shape_names.txt").write_text("".join(f"c{i}\n" for i in range(40)))
        per = [num_clouds // num_files + (i < num_clouds % num_files) for i in range(num_files)]
        for i, n in enumerate(per):
            pts = torch.rand(n, num_points, 3, generator=g).numpy()
            with h5py.File(root / f"ply_data_train{i}.h5", "w") as f:
                f["data"] = pts
                f["normal"] = pts
                f["label"] = torch.randint(40, (n, 1), generator=g).numpy().astype(np.uint8)
        size_mb = sum(p.stat().st_size for p in root.glob("*.h5")) / 2**20
        out = {"size_mb": size_mb}
        for label, kwargs in (("s_per_10k_first", dict(num_points=read_points)),
                              ("s_per_10k_all", dict(num_points=num_points)),
                              ("s_per_10k_normals", dict(num_points=read_points, use_normals=True))):
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                ds = modelnet40(root, "train", **kwargs)
                best = min(best, time.perf_counter() - start)
                assert len(ds) == num_clouds
                del ds
            out[label] = best * 10_000 / num_clouds
    return out
