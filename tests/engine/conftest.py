"""Tiny datasets in the real layouts, for end-to-end training runs."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image


def _shape(kind: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Points of an easy class: 0 sphere, 1 flat disk, 2 line, 3 cube surface."""
    if kind == 0:
        p = rng.normal(size=(n, 3))
        return p / np.linalg.norm(p, axis=1, keepdims=True)
    if kind == 1:
        return np.c_[rng.uniform(-1, 1, (n, 2)), 0.02 * rng.normal(size=n)]
    if kind == 2:
        return np.c_[rng.uniform(-1, 1, n), 0.02 * rng.normal(size=(n, 2))]
    p = rng.uniform(-1, 1, (n, 3))
    axis = rng.integers(0, 3, n)
    p[np.arange(n), axis] = np.sign(p[np.arange(n), axis])
    return p


def write_modelnet_layout(root: Path, train: int = 48, test: int = 24, points: int = 128, seed: int = 0) -> Path:
    """A 4-class dataset in the ModelNet40 HDF5 release layout."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    names = ["sphere", "disk", "line", "cube"]
    (root / "shape_names.txt").write_text("\n".join(names) + "\n")
    for split, count in (("train", train), ("test", test)):
        labels = np.arange(count) % 4
        data = np.stack([_shape(int(k), points, rng) for k in labels]).astype(np.float32)
        with h5py.File(root / f"ply_data_{split}0.h5", "w") as fh:
            fh["data"] = data
            fh["label"] = labels.astype(np.uint8)[:, None]
        (root / f"{split}_files.txt").write_text(f"data/modelnet40_ply_hdf5_2048/ply_data_{split}0.h5\n")
    return root


def write_image_folders(root: Path, per_class: int = 8, size: int = 32) -> Path:
    """Two classes (dark, bright) in the ImageNet folder layout."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", per_class // 2)):
        for cls, base in (("dark", 40), ("bright", 210)):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def modelnet_dir(tmp_path_factory) -> Path:
    return write_modelnet_layout(tmp_path_factory.mktemp("mn") / "modelnet40_ply_hdf5_2048")


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    return write_image_folders(tmp_path_factory.mktemp("img") / "imagenet")
