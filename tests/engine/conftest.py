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


# Real pictures that ship with matplotlib (mpl-data): a photograph, a product photo, a logo and toolbar icons.
_REAL_SOURCES = {
    "hopper_face": ("sample_data/grace_hopper.jpg", (150, 40, 400, 330)),
    "hopper_uniform": ("sample_data/grace_hopper.jpg", (40, 330, 480, 600)),
    "hopper_flag": ("sample_data/grace_hopper.jpg", (0, 0, 160, 300)),
    "hopper_medals": ("sample_data/grace_hopper.jpg", (220, 380, 420, 520)),
    "present": ("sample_data/Minduka_Present_Blue_Pack.png", None),
    "logo": ("sample_data/logo2.png", None),
    "home": ("images/home_large.png", None),
    "zoom": ("images/zoom_to_rect_large.png", None),
    "save": ("images/filesave_large.png", None),
    "help": ("images/help_large.png", None),
}
# how the samples are stored: the formats and modes a real folder set mixes
_REAL_FORMATS = [("JPEG", "RGB", {"quality": 90}), ("PNG", "RGBA", {}), ("JPEG", "L", {"quality": 75}),
                 ("PNG", "P", {}), ("JPEG", "RGB", {"quality": 80, "progressive": True}), ("PNG", "L", {}),
                 ("JPEG", "CMYK", {}), ("PNG", "RGB", {})]


def write_real_image_folders(root: Path, train: int = 12, val: int = 4, seed: int = 0) -> Path:
    """Ten classes of real pictures in the ImageNet folder layout: random crops, rescales and rotations of
    matplotlib's bundled sample images, saved as JPEG (baseline, progressive, greyscale, CMYK) and PNG
    (RGBA, palette, greyscale), 24 to 220 pixels a side."""
    import matplotlib

    rng = np.random.default_rng(seed)
    data = Path(matplotlib.get_data_path())
    for k, (cls, (source, box)) in enumerate(_REAL_SOURCES.items()):
        with Image.open(data / source) as img:
            base = img.convert("RGBA")
        if box is not None:
            base = base.crop(box)
        for split, count in (("train", train), ("val", val)):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                w, h = base.size
                cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
                x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                side = int(rng.integers(24, 221))
                sample = base.crop((x0, y0, x0 + cw, y0 + ch)).rotate(float(rng.uniform(-20, 20)), expand=False)
                sample = sample.resize((side, max(8, int(side * ch / cw))), Image.Resampling.BICUBIC)
                fmt, mode, options = _REAL_FORMATS[(i + k) % len(_REAL_FORMATS)]
                flat = Image.alpha_composite(Image.new("RGBA", sample.size, (255, 255, 255, 255)), sample)
                stored = sample if mode == "RGBA" else flat.convert("RGB").convert(mode)
                suffix = ".JPEG" if fmt == "JPEG" else ".png"
                stored.save(folder / f"{cls}_{i}{suffix}", format=fmt, **options)
    return root


@pytest.fixture(scope="session")
def real_image_dir(tmp_path_factory) -> Path:
    return write_real_image_folders(tmp_path_factory.mktemp("real") / "images")


@pytest.fixture(scope="session")
def modelnet_dir(tmp_path_factory) -> Path:
    return write_modelnet_layout(tmp_path_factory.mktemp("mn") / "modelnet40_ply_hdf5_2048")


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    return write_image_folders(tmp_path_factory.mktemp("img") / "imagenet")
