"""The upstream image recipe's training transform runs for as long as a real run draws from it.

Found on real images: timm's RandAugment ``rand-m9-mstd0.5-inc1`` draws PosterizeIncreasing at level
10 (0 bits kept) 7 times in 5,000 draws (with this test's seeds), and Pillow 13 refuses 0 bits, so a
training run stopped inside its first epoch.
"""

from __future__ import annotations

import random

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from timm.data import auto_augment, create_transform

from pointcoc.engine.images import build_parser, image_transforms, posterize, safe_posterize_ops


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A real photograph (matplotlib's bundled grace_hopper.jpg), small."""
    with Image.open(f"{matplotlib.get_data_path()}/sample_data/grace_hopper.jpg") as img:
        return img.convert("RGB").resize((64, 75))


def _spy_on_posterize(transform) -> list[int]:
    """Record the bits every posterize op of ``transform`` is asked to keep (then call the op)."""
    bits: list[int] = []
    for op in transform.transforms[2].ops:
        if op.name.startswith("Posterize"):
            def spy(img, b, _fn=op.aug_fn, **kw):
                bits.append(b)
                return _fn(img, b, **kw)
            op.aug_fn = spy
    return bits


def test_default_training_transform_survives_thousands_of_draws(photo) -> None:
    cfg = {**vars(build_parser().parse_args([])), "img_size": 32}
    assert cfg["aa"] == "rand-m9-mstd0.5-inc1"  # the default recipe is what is tested
    train, _ = image_transforms(cfg)
    bits = _spy_on_posterize(train)
    random.seed(0)
    np.random.seed(0)  # timm's RandAugment picks its ops with numpy
    torch.manual_seed(0)
    for _ in range(5000):
        x = train(photo)
        assert x.shape == (3, 32, 32) and bool(torch.isfinite(x).all())
    assert bits.count(0) >= 3, "the seeded draws never met the 0-bit posterize; the test would prove nothing"


def test_posterize_matches_pillow_before_13(photo) -> None:
    """0 bits: an all-black image (Pillow < 13's mask ~255); 1-7 bits: Pillow's posterize; 8: unchanged."""
    assert np.asarray(posterize(photo, 0)).max() == 0 and posterize(photo, 0).size == photo.size
    assert np.asarray(posterize(photo, -1)).max() == 0  # never below 0 in timm, but defined
    for bits in range(1, 8):
        assert np.array_equal(np.asarray(posterize(photo, bits)), np.asarray(ImageOps.posterize(photo, bits)))
    assert posterize(photo, 8) is photo
    try:  # what timm's own op does with 0 bits depends on Pillow: a refusal (13) or the same black image
        unpatched = auto_augment.posterize(photo, 0)
    except ValueError as err:
        assert "bits must be between" in str(err)
    else:
        assert np.asarray(unpatched).max() == 0


@pytest.mark.parametrize("policy", ["rand-m9-mstd0.5-inc1", "rand-m1-n3", "original", "v0", "augmix-m5-w3"])
def test_every_timm_policy_gets_the_safe_posterize(policy: str, photo) -> None:
    """RandAugment (increasing and plain ``Posterize``, 0 bits below magnitude 2.5), AutoAugment and AugMix."""
    transform = create_transform(32, is_training=True, auto_augment=policy)
    assert safe_posterize_ops(transform) >= 1
    assert safe_posterize_ops(transform) == 0  # nothing left to change
    random.seed(1)
    torch.manual_seed(1)
    for _ in range(300):
        transform(photo)
