"""ImageNet-style folders: classes from folders, labels shared across splits, unreadable images, missing data."""

from __future__ import annotations

import gc
import io
import logging
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from jpegs import damaged_mid_stream, jpeg_bytes
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import ToTensor

from pointcoc.data import (
    DamagedImageError,
    DatasetNotFoundError,
    ImageFolderDataset,
    collate_skipping,
    image_folder,
    load_image,
)
from pointcoc.errors import InputError, input_error_message

from data_builders import snapshot


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


DAMAGED = {
    "garbage.png": (b"this is not a png" * 10, "not in an image format Pillow can read"),
    "truncated.jpg": (jpeg_bytes()[:300], "OSError: Truncated File Read"),  # cut inside the header
    "half.jpg": (jpeg_bytes(256)[:3000], "corrupt JPEG data"),
    "empty.JPEG": (b"", "the file is empty"),
    "broken.png": (None, "OSError: broken data stream"),
    "zeroed.jpg": (damaged_mid_stream("zeroed"), "corrupt JPEG data"),
    "noise.jpg": (damaged_mid_stream("noise"), "corrupt JPEG data"),
}


def _broken_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(buf, "PNG")
    raw = bytearray(buf.getvalue())
    at = raw.index(b"IDAT") + 6  # inside the compressed pixels
    raw[at] ^= 0xFF
    return bytes(raw)


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_damaged_image_names_the_file(folder: Path, name: str, caplog) -> None:
    content, cause = DAMAGED[name]
    bad = folder / "train" / "n02" / name
    bad.write_bytes(_broken_png() if content is None else content)
    before = snapshot(folder)
    strict = image_folder(folder, "train")  # the default; the layout is fine, the image fails when loaded
    index = [p for p, _ in strict.samples].index(str(bad))
    with pytest.raises(DamagedImageError, match=rf"^{re.escape(str(bad))}: damaged image \({re.escape(cause)}") as info:
        strict[index]
    assert isinstance(info.value, InputError) and info.value.path == str(bad) and cause in info.value.reason
    assert strict[0][1] == 0  # the other images still load
    skipping = image_folder(folder, "train", bad_images="skip")  # the scripts' default: a warning naming the file
    with caplog.at_level(logging.WARNING, logger="pointcoc.data.images"):
        assert skipping[index] is None
    assert f"skipped {bad}: damaged image ({cause}" in caplog.text
    assert snapshot(folder) == before


@pytest.mark.parametrize("kind", ["zeroed", "noise"])
def test_pillow_alone_misses_mid_stream_damage(tmp_path: Path, kind: str) -> None:
    """The case a user found: Pillow decodes a JPEG damaged mid-stream to garbage without an error."""
    path = tmp_path / "x.jpg"
    path.write_bytes(damaged_mid_stream(kind))
    with Image.open(path) as img:
        damaged = np.asarray(img.convert("RGB"), dtype=float)
    intact = np.asarray(Image.open(io.BytesIO(jpeg_bytes(256, quality=90))).convert("RGB"), dtype=float)
    assert np.abs(damaged - intact).mean() > 10  # garbage pixels, yet no error from Pillow
    with pytest.raises(DamagedImageError, match="corrupt JPEG data"):
        load_image(path)


@pytest.mark.parametrize("save", [dict(quality=95, subsampling=0), dict(quality=75, subsampling=2),
                                  dict(quality=85, progressive=True), dict(mode="L"), dict(mode="CMYK"),
                                  dict(quality=50, subsampling=1)], ids=str)
def test_jpeg_pixels_equal_pillow(tmp_path: Path, save: dict) -> None:
    """libjpeg-turbo (simplejpeg) decodes intact JPEGs to exactly Pillow's pixels (with the libjpeg builds that
    simplejpeg and Pillow ship). CMYK must go through Pillow: simplejpeg's own CMYK -> RGB differs by 1 level."""
    path = tmp_path / "x.jpg"
    path.write_bytes(jpeg_bytes(97, **save))
    with Image.open(path) as img:
        expected = np.asarray(img.convert("RGB"))
    got = load_image(path)
    assert got.mode == "RGB" and got.size == (97, 97)
    np.testing.assert_array_equal(np.asarray(got), expected)


def test_damaged_image_error_pickles_with_its_fields() -> None:
    err = DamagedImageError.of("data/x.JPEG", "corrupt JPEG data: premature end of data segment")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is DamagedImageError and str(back) == str(err)
    assert (back.path, back.reason) == ("data/x.JPEG", "corrupt JPEG data: premature end of data segment")
    assert str(err).startswith("data/x.JPEG: damaged image (corrupt JPEG data")
    rebuilt = DamagedImageError("Caught DamagedImageError in DataLoader worker process 0.")  # as a worker re-raises it
    assert isinstance(rebuilt, InputError) and rebuilt.path == ""


def test_collate_skipping() -> None:
    samples = [(torch.full((2,), float(i)), i) for i in range(5)]
    batch, skipped = collate_skipping([samples[0], None, samples[2], samples[3], None])
    assert skipped == 2 and batch[0].shape == (3, 2) and batch[1].tolist() == [0, 2, 3]
    batch, skipped = collate_skipping([samples[0], None, samples[2], samples[3]], even=True)  # Mixup pairs them
    assert skipped == 1 and batch[1].tolist() == [0, 2]
    assert collate_skipping([None, None]) == (None, 2)
    assert collate_skipping([samples[1]], even=True) == (None, 0)


def test_damaged_image_in_a_worker(folder: Path, monkeypatch) -> None:
    """Re-raised in the main process as the same InputError; its message reads as one line again."""
    # a DataLoader whose worker failed joins each worker with this timeout when it is freed (10 s for two)
    monkeypatch.setattr(torch.utils.data._utils, "MP_STATUS_CHECK_INTERVAL", 0.2)
    bad = folder / "train" / "n03" / "zz.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    ds = image_folder(folder, "train", transform=ToTensor(), bad_images="error")
    batches = iter(DataLoader(ds, batch_size=1, num_workers=2))
    error: Exception | None = None
    try:
        for _ in batches:
            pass
    except InputError as err:  # re-raised in the main process with the worker's traceback as its message
        error = err
    del batches  # shut the workers down while the short timeout is in place
    gc.collect()
    assert isinstance(error, DamagedImageError), error
    assert "Original Traceback" in str(error)
    message = input_error_message(error)
    assert message.startswith(f"{bad}: damaged image (") and "\n" not in message, message
