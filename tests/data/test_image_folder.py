"""ImageNet-style folders: classes from folders, labels shared across splits, unreadable images, missing data."""

from __future__ import annotations

import gc
import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from data_builders import snapshot
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import ToTensor

from pointcoc.data import DatasetNotFoundError, ImageFolderDataset, image_folder


def save(path: Path, size: tuple[int, int] = (12, 10), mode: str = "RGB", fmt: str = "PNG", value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (np.arange(size[0] * size[1] * 3).reshape(size[1], size[0], 3) + value) % 256
    Image.fromarray(arr.astype(np.uint8)).convert(mode).save(path, format=fmt)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "imagenet"
    for split, classes in (("train", ["n01", "n02", "n03"]), ("val", ["n01", "n03"])):
        for k, c in enumerate(classes):
            save(root / split / c / "a.JPEG", fmt="JPEG", value=k)
            save(root / split / c / "b.png", mode="L", value=10 * k)
            save(root / split / c / "c.png", mode="RGBA", size=(7, 9))
    (root / "train" / "n01" / "notes.txt").write_text("not an image")
    (root / "train" / ".cache").mkdir()
    return root


def test_reads_layout_and_labels(folder: Path) -> None:
    before = snapshot(folder)
    train = image_folder(folder, "train")
    assert isinstance(train, ImageFolderDataset)
    assert train.classes == ["n01", "n02", "n03"] and train.num_classes == 3
    assert len(train) == 9  # notes.txt and the hidden folder are ignored
    image, label = train[0]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and label == 0
    assert sorted(train.targets) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    val = image_folder(folder, "val", transform=ToTensor())
    assert val.classes == train.classes and val.num_classes == 3  # labels follow the train folders
    assert sorted(set(val.targets)) == [0, 2]
    x, y = val[len(val) - 1]
    assert x.shape[0] == 3 and x.dtype == torch.float32 and y == 2
    assert all(val[i][0].shape[0] == 3 for i in range(len(val)))  # grey and RGBA become RGB
    assert snapshot(folder) == before


def test_any_folder_dataset_counts_its_classes(tmp_path: Path) -> None:
    for c in "abcde":
        save(tmp_path / "set" / "train" / c / "x.bmp", fmt="BMP")
    assert image_folder(tmp_path / "set", "train").num_classes == 5


def test_missing_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        image_folder(tmp_path / "imagenet")
    msg = str(info.value)
    for needle in ("does not exist", "train/<class>/", "val/<class>/", "image-net.org", "ensure_demo_data"):
        assert needle in msg, needle
    (tmp_path / "imagenet" / "train").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="there is no val/ folder"):
        image_folder(tmp_path / "imagenet", "val")


def test_empty_splits(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    (root / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"train has no class folders.*split is empty"):
        image_folder(root)
    (root / "train" / "cat").mkdir()
    (root / "train" / "cat" / "readme.md").write_text("x")
    with pytest.raises(ValueError, match=r"train: no images in its 1 class folder"):
        image_folder(root)


def test_val_class_unknown_to_train(folder: Path) -> None:
    save(folder / "val" / "n99" / "z.png")
    with pytest.raises(ValueError, match=r"val has class folder\(s\) \['n99'\] that .*train lacks"):
        image_folder(folder, "val")


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).uniform(0, 255, (64, 64, 3))).astype(np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("name, content", [
    ("garbage.png", b"this is not a png" * 10),
    ("truncated.jpg", _jpeg_bytes()[:300]),
    ("empty.JPEG", b""),
])
def test_unreadable_image_names_the_file(folder: Path, name: str, content: bytes) -> None:
    bad = folder / "train" / "n02" / name
    bad.write_bytes(content)
    before = snapshot(folder)
    ds = image_folder(folder, "train")  # the layout is fine; the image fails when loaded
    index = [p for p, _ in ds.samples].index(str(bad))
    with pytest.raises(ValueError, match=rf"{bad}: unreadable image"):
        ds[index]
    assert ds[0][1] == 0  # the other images still load
    assert snapshot(folder) == before


def test_unreadable_image_in_a_worker(folder: Path, monkeypatch) -> None:
    # a DataLoader whose worker failed joins each worker with this timeout when it is freed (10 s for two)
    monkeypatch.setattr(torch.utils.data._utils, "MP_STATUS_CHECK_INTERVAL", 0.2)
    bad = folder / "train" / "n03" / "zz.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    ds = image_folder(folder, "train", transform=ToTensor())
    batches = iter(DataLoader(ds, batch_size=1, num_workers=2))
    message = ""
    try:
        for _ in batches:
            pass
    except ValueError as err:  # re-raised in the main process with the worker's message
        message = str(err)
    del batches  # shut the workers down while the short timeout is in place
    gc.collect()
    assert re.search(rf"{bad}: unreadable image", message), message
