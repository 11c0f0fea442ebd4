"""Builders of tiny datasets in exactly the real layouts, and a folder snapshot to prove nothing is modified.

Imported by the tests of this folder (pytest puts the folder on sys.path).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from snapshots import snapshot  # noqa: F401 (re-exported for the tests of this folder)


def write_h5(path: Path, **arrays: np.ndarray) -> Path:
    """Write ``arrays`` as datasets of a new HDF5 file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


def cloud_arrays(n: int, points: int, num_classes: int, seed: int, normals: bool = True) -> dict[str, np.ndarray]:
    """``data`` [n, points, 3] float32, ``label`` [n, 1] uint8 (as the release) and ``normal``."""
    rng = np.random.default_rng(seed)
    out = {"data": rng.uniform(-1, 1, (n, points, 3)).astype(np.float32),
           "label": rng.integers(0, num_classes, (n, 1)).astype(np.uint8)}
    if normals:
        nrm = rng.normal(size=(n, points, 3))
        out["normal"] = (nrm / np.linalg.norm(nrm, axis=-1, keepdims=True)).astype(np.float32)
    return out


def make_modelnet(root: Path, train: Sequence[int] = (6, 5), test: Sequence[int] = (4,), points: int = 32,
                  classes: Sequence[str] | None = ("airplane", "bathtub", "bed"), normals: bool = True,
                  listing: bool = True, seed: int = 0) -> dict[str, list[dict[str, np.ndarray]]]:
    """A ModelNet40-layout folder: ply_data_{split}{i}.h5, shape_names.txt, {split}_files.txt (release-style paths)."""
    root.mkdir(parents=True, exist_ok=True)
    num_classes = len(classes) if classes else 3
    written: dict[str, list[dict[str, np.ndarray]]] = {}
    for split, sizes in (("train", train), ("test", test)):
        written[split] = []
        names = []
        for i, n in enumerate(sizes):
            arrays = cloud_arrays(n, points, num_classes, seed=seed * 100 + (i if split == "train" else 50 + i),
                                  normals=normals)
            write_h5(root / f"ply_data_{split}{i}.h5", **arrays)
            written[split].append(arrays)
            names.append(f"data/modelnet40_ply_hdf5_2048/ply_data_{split}{i}.h5")
        if listing:
            (root / f"{split}_files.txt").write_text("\n".join(names) + "\n")
    if classes:
        (root / "shape_names.txt").write_text("\n".join(classes) + "\n")
    return written


def make_scanobjectnn(root: Path, n: int = 5, points: int = 40) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """An h5_files/ folder with all three variants; each file's labels differ so files can be told apart."""
    written = {}
    files = {("main_split", "{}_objectdataset_augmentedrot_scale75.h5"): 0,
             ("main_split", "{}_objectdataset.h5"): 1, ("main_split_nobg", "{}_objectdataset.h5"): 2}
    for (folder, pattern), k in files.items():
        for j, split in enumerate(("training", "test")):
            arrays = cloud_arrays(n + k + 3 * j, points, 15, seed=10 * k + j, normals=False)
            arrays["label"] = arrays["label"][:, 0].astype(np.int64)  # ScanObjectNN stores label [n]
            arrays["mask"] = np.zeros(arrays["data"].shape[:2], dtype=np.int32)
            path = root / folder / pattern.format(split)
            write_h5(path, **arrays)
            written[(folder, path.name)] = arrays
    return written
