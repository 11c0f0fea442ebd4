"""ImageNet-style image folders: ``<root>/<split>/<class>/<image>``.

Any folder dataset in this layout works; the class list comes from the folders. For a
split other than ``train`` the class list is taken from the sibling ``train`` folder when
it exists, so label ``i`` means the same class in every split even when a validation
split lacks some classes. The layout is checked up front; images are decoded lazily (per
item). Image transforms come from timm/torchvision and are passed in as ``transform``.

Damaged images. A file that does not decode (truncated, not an image), or a JPEG whose
decoder reports corrupt data, is a damaged image. Pillow decodes many corrupt JPEGs
without a word (the pixels after the damage are garbage), so JPEGs are decoded by
libjpeg-turbo through simplejpeg in strict mode, which reports the damage; for baseline
YCbCr and greyscale JPEGs its pixels equal Pillow's (tested), other colour spaces
(CMYK, YCCK, RGB) are checked the same way and then decoded by Pillow. With
``bad_images="error"`` (the default here) loading a damaged image raises a
:class:`DamagedImageError` naming the file; with ``"skip"`` (the training scripts'
default, ``--bad-images``) it is skipped with a logged warning that names the file: the
item is ``None``, which :func:`collate_skipping` drops and counts (``train_skipped`` /
``val_skipped`` in ``metrics.csv``). Note that web-collected sets (ImageNet among them)
hold a few JPEGs with trailing junk that libjpeg reports as corrupt data; they count as
damaged too.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import simplejpeg
from PIL import Image, UnidentifiedImageError
from torch.utils.data import default_collate
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from pointcoc.data.h5 import DatasetNotFoundError
from pointcoc.errors import InputError

__all__ = ["ImageFolderDataset", "image_folder", "load_image", "collate_skipping", "DamagedImageError",
           "BAD_IMAGE_POLICIES", "IMAGENET_LAYOUT", "IMAGENET_SOURCE"]

log = logging.getLogger(__name__)

#: what to do with a damaged image: skip it with a warning, or raise
BAD_IMAGE_POLICIES = ("skip", "error")

IMAGENET_LAYOUT = """\
  {root}/
    train/<class>/<image>.JPEG   (one folder per class; JPEG, PNG, BMP, TIFF, WebP, PPM, PGM)
    val/<class>/<image>.JPEG     (the same class folder names; validation images sorted into them)"""

IMAGENET_SOURCE = (
    "get ILSVRC2012 (ImageNet-1k) from https://image-net.org/ (registration required) and sort the "
    "validation images into class folders, or point `root` at any folder dataset in this layout. "
    "pointcoc never downloads; for built-in data call pointcoc.data.ensure_demo_data() and read data/demo/images"
)

_JPEG_MAGIC = b"\xff\xd8\xff"
_SAME_PIXELS_AS_PILLOW = ("YCbCr", "Gray")  # simplejpeg's RGB output equals Pillow's for these colour spaces


class DamagedImageError(InputError):
    """An image file does not decode, or decodes only with corrupt data; ``path`` and ``reason`` say which and why.

    Constructible from the message alone, as a DataLoader worker re-raises it in the main process.
    """

    def __init__(self, message: str, path: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.path, self.reason = path, reason

    @classmethod
    def of(cls, path: str | os.PathLike[str], reason: str) -> DamagedImageError:
        """The error for ``path``, damaged because of ``reason``."""
        return cls(f"{path}: damaged image ({reason}); replace it or move it out of the class folder", str(path),
                   reason)

    def __reduce__(self) -> tuple[Any, ...]:  # keeps path and reason through pickling
        return type(self), (str(self), self.path, self.reason)


def _decode_jpeg(path: str, data: bytes) -> Image.Image | None:
    """An intact baseline JPEG decoded by libjpeg-turbo; None to let Pillow decode an intact JPEG of another
    colour space, or one libjpeg-turbo cannot read at all (Pillow then decides)."""
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    limit = Image.MAX_IMAGE_PIXELS
    if limit and height * width > 2 * limit:  # Pillow's own decompression-bomb limit
        raise DamagedImageError.of(path, f"{width}x{height} pixels is more than twice PIL.Image.MAX_IMAGE_PIXELS "
                                      f"({limit:,}), Pillow's decompression-bomb limit")
    target = "CMYK" if colorspace in ("CMYK", "YCCK") else "RGB"
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace=target, strict=True)
    except ValueError as strict_error:
        try:
            simplejpeg.decode_jpeg(data, colorspace=target, strict=False)
        except ValueError:
            return None  # not decodable by libjpeg-turbo at all
        raise DamagedImageError.of(path, f"corrupt JPEG data: {strict_error}") from strict_error
    if colorspace in _SAME_PIXELS_AS_PILLOW:
        return Image.fromarray(pixels)  # [H, W, 3] uint8: RGB
    return None


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Decode ``path`` to an RGB PIL image.

    Raises:
        DamagedImageError (an InputError): the file cannot be read, does not decode, or is a JPEG
            with corrupt data (see the module notes); the message names the file and the cause.
    """
    path = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise DamagedImageError.of(path, f"cannot read the file: {err.strerror or err}") from err
    if data[:3] == _JPEG_MAGIC:
        image = _decode_jpeg(path, data)
        if image is not None:
            return image
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")  # forces the full decode
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - any decoder failure on a file means the file is damaged
        if not data:
            what = "the file is empty"
        elif isinstance(err, UnidentifiedImageError):
            what = "not in an image format Pillow can read"
        else:
            what = f"{type(err).__name__}: {err}"
        raise DamagedImageError.of(path, what) from err


def _class_folders(directory: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))


class ImageFolderDataset(ImageFolder):
    """:class:`torchvision.datasets.ImageFolder` with a fixed class list, readable errors and damaged-image handling.

    Args:
        directory: the split folder (``<root>/<split>``) holding one folder per class.
        classes: class names in label order (each a folder name); ``None``: the sorted folders.
        transform: applied to the PIL image.
        target_transform: applied to the label.
        bad_images: ``"error"``: a damaged image (see the module notes) raises
            :class:`DamagedImageError`; ``"skip"``: ``__getitem__`` logs a warning naming the
            file and returns ``None`` (use :func:`collate_skipping` as the loader's
            ``collate_fn``: it drops and counts such items; PyTorch's default collate cannot).

    Attributes:
        classes, class_to_idx, num_classes, samples (``[(path, label)]``), targets.
    """

    def __init__(self, directory: str | Path, classes: list[str] | None = None,
                 transform: Callable[[Image.Image], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None, bad_images: str = "error") -> None:
        if bad_images not in BAD_IMAGE_POLICIES:
            raise InputError(f"bad_images must be one of {BAD_IMAGE_POLICIES}, got {bad_images!r}")
        self._fixed_classes = None if classes is None else list(classes)
        self.bad_images = bad_images
        super().__init__(str(directory), transform=transform, target_transform=target_transform, loader=load_image,
                         allow_empty=True)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        classes = self._fixed_classes if self._fixed_classes is not None else _class_folders(Path(directory))
        return classes, {c: i for i, c in enumerate(classes)}

    def __getitem__(self, index: int) -> Any:
        """``(transform(image), label)``; ``None`` for a damaged image when ``bad_images="skip"``."""
        path, target = self.samples[index]
        try:
            image = self.loader(path)
        except DamagedImageError as err:
            if self.bad_images == "error":
                raise
            log.warning("skipped %s: damaged image (%s)", err.path, err.reason)
            return None
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def collate_skipping(samples: list[Any], even: bool = False) -> tuple[Any, int]:
    """Collate a batch without the ``None`` samples (damaged images): ``(batch or None, samples dropped)``.

    Args:
        samples: what the dataset returned for each index of the batch.
        even: drop one more sample when an odd number is left (Mixup/CutMix pair the samples);
            that sample is not counted, since it is not damaged.
    """
    kept = [s for s in samples if s is not None]
    skipped = len(samples) - len(kept)
    if even and len(kept) % 2:
        kept = kept[:-1]
    return (default_collate(kept) if kept else None), skipped


def image_folder(root: str | Path = "data/imagenet", split: str = "train",
                 transform: Callable[[Image.Image], Any] | None = None, bad_images: str = "error"
                 ) -> ImageFolderDataset:
    """The ``split`` of an ImageNet-style folder dataset at ``root``.

    ``__getitem__`` returns ``(transform(image), label)``; without a transform the image is an
    RGB PIL image. Files whose extension is not an image extension are ignored. ``bad_images``
    says what a damaged image does (``"error"``: raise; ``"skip"``: ``None`` and a warning, for
    :func:`collate_skipping`), see :class:`ImageFolderDataset`.

    Raises:
        DatasetNotFoundError (a ValueError): ``root`` or ``root/split`` is missing; the message
            prints the expected layout and where ImageNet is published.
        ValueError: the split has no class folder or no image, or holds a class folder that
            the train split lacks; with ``bad_images="error"`` a damaged image raises a
            :class:`DamagedImageError` when its item is loaded.
    """
    root = Path(root)
    directory = root / split
    if not directory.is_dir():
        problem = "the folder does not exist" if not root.is_dir() else f"there is no {split}/ folder"
        raise DatasetNotFoundError(f"image folder dataset not found at {root}: {problem}. Expected layout:\n"
                                   f"{IMAGENET_LAYOUT.format(root=root)}\n{IMAGENET_SOURCE}.")
    found = _class_folders(directory)
    if not found:
        raise InputError(f"{directory} has no class folders; put each class's images in {directory}/<class>/ "
                         "(the split is empty)")
    classes = found
    train_dir = root / "train"
    if split != "train" and train_dir.is_dir():
        classes = _class_folders(train_dir)
        extra = sorted(set(found) - set(classes))
        if extra:
            raise InputError(f"{directory} has class folder(s) {extra[:5]} that {train_dir} lacks; every split must "
                             "use the train split's class folders (labels follow the train folder names)")
    dataset = ImageFolderDataset(directory, classes=classes, transform=transform, bad_images=bad_images)
    if not dataset.samples:
        raise InputError(f"{directory}: no images in its {len(found)} class folder(s) (extensions "
                         f"{', '.join(IMG_EXTENSIONS)}); the split is empty")
    counts: dict[int, int] = {}
    for _, label in dataset.samples:
        counts[label] = counts.get(label, 0) + 1
    empty = [c for i, c in enumerate(classes) if i not in counts and c in found]
    if empty:
        log.warning("%s: class folder(s) %s hold no images", directory, empty[:5])
    return dataset
