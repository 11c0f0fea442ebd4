"""ImageNet-style image folders: ``<root>/<split>/<class>/<image>``.

Any folder dataset in this layout works; the class list comes from the folders. For a
split other than ``train`` the class list is taken from the sibling ``train`` folder when
it exists, so label ``i`` means the same class in every split even when a validation
split lacks some classes. Images are decoded lazily (per item), so an unreadable image
raises when that item is loaded; the layout is checked up front. Image transforms come
from timm/torchvision and are passed in as ``transform``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from pointcoc.data.h5 import DatasetNotFoundError

__all__ = ["ImageFolderDataset", "image_folder", "load_image", "IMAGENET_LAYOUT", "IMAGENET_SOURCE"]

log = logging.getLogger(__name__)

IMAGENET_LAYOUT = """\
  {root}/
    train/<class>/<image>.JPEG   (one folder per class; JPEG, PNG, BMP, TIFF, WebP, PPM, PGM)
    val/<class>/<image>.JPEG     (the same class folder names; validation images sorted into them)"""

IMAGENET_SOURCE = (
    "get ILSVRC2012 (ImageNet-1k) from https://image-net.org/ (registration required) and sort the "
    "validation images into class folders, or point `root` at any folder dataset in this layout. "
    "pointcoc never downloads; for built-in data call pointcoc.data.ensure_demo_data() and read data/demo/images"
)


def load_image(path: str) -> Image.Image:
    """Decode ``path`` to an RGB PIL image; any decoding failure is a ``ValueError`` naming the file."""
    try:
        with open(path, "rb") as fh:
            img = Image.open(fh)
            return img.convert("RGB")  # forces the full decode while the file is open
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"{path}: unreadable image ({type(err).__name__}: {err}); the file is corrupt, truncated "
                         "or not an image: replace it or move it out of the class folder") from err


def _class_folders(directory: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))


class ImageFolderDataset(ImageFolder):
    """:class:`torchvision.datasets.ImageFolder` with a fixed class list and readable errors.

    Args:
        directory: the split folder (``<root>/<split>``) holding one folder per class.
        classes: class names in label order (each a folder name); ``None``: the sorted folders.
        transform: applied to the PIL image.
        target_transform: applied to the label.

    Attributes:
        classes, class_to_idx, num_classes, samples (``[(path, label)]``), targets.
    """

    def __init__(self, directory: str | Path, classes: list[str] | None = None,
                 transform: Callable[[Image.Image], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None) -> None:
        self._fixed_classes = None if classes is None else list(classes)
        super().__init__(str(directory), transform=transform, target_transform=target_transform, loader=load_image,
                         allow_empty=True)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        classes = self._fixed_classes if self._fixed_classes is not None else _class_folders(Path(directory))
        return classes, {c: i for i, c in enumerate(classes)}

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def image_folder(root: str | Path = "data/imagenet", split: str = "train",
                 transform: Callable[[Image.Image], Any] | None = None) -> ImageFolderDataset:
    """The ``split`` of an ImageNet-style folder dataset at ``root``.

    ``__getitem__`` returns ``(transform(image), label)``; without a transform the image is an
    RGB PIL image. Files whose extension is not an image extension are ignored.

    Raises:
        DatasetNotFoundError (a ValueError): ``root`` or ``root/split`` is missing; the message
            prints the expected layout and where ImageNet is published.
        ValueError: the split has no class folder or no image, or holds a class folder that
            the train split lacks; an unreadable image raises when its item is loaded.
    """
    root = Path(root)
    directory = root / split
    if not directory.is_dir():
        problem = "the folder does not exist" if not root.is_dir() else f"there is no {split}/ folder"
        raise DatasetNotFoundError(f"image folder dataset not found at {root}: {problem}. Expected layout:\n"
                                   f"{IMAGENET_LAYOUT.format(root=root)}\n{IMAGENET_SOURCE}.")
    found = _class_folders(directory)
    if not found:
        raise ValueError(f"{directory} has no class folders; put each class's images in {directory}/<class>/ "
                         "(the split is empty)")
    classes = found
    train_dir = root / "train"
    if split != "train" and train_dir.is_dir():
        classes = _class_folders(train_dir)
        extra = sorted(set(found) - set(classes))
        if extra:
            raise ValueError(f"{directory} has class folder(s) {extra[:5]} that {train_dir} lacks; every split must "
                             "use the train split's class folders (labels follow the train folder names)")
    dataset = ImageFolderDataset(directory, classes=classes, transform=transform)
    if not dataset.samples:
        raise ValueError(f"{directory}: no images in its {len(found)} class folder(s) (extensions "
                         f"{', '.join(IMG_EXTENSIONS)}); the split is empty")
    counts: dict[int, int] = {}
    for _, label in dataset.samples:
        counts[label] = counts.get(label, 0) + 1
    empty = [c for i, c in enumerate(classes) if i not in counts and c in found]
    if empty:
        log.warning("%s: class folder(s) %s hold no images", directory, empty[:5])
    return dataset
