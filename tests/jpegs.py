"""Photo-like JPEGs, intact and damaged inside their entropy-coded data (shared by the data and engine tests)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def jpeg_bytes(size: int = 64, **save: object) -> bytes:
    """A JPEG of a smooth gradient with noise (as a photo: the entropy-coded data is long enough to damage)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size] * (255 / size)
    arr = np.stack([xx, yy, (xx + yy) / 2], -1) + rng.normal(0, 10, (size, size, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).convert(str(save.pop("mode", "RGB"))).save(
        buf, "JPEG", **save)
    return buf.getvalue()


def damaged_mid_stream(kind: str, size: int = 256) -> bytes:
    """A JPEG damaged inside its entropy-coded data: Pillow decodes it without a word (garbage pixels).

    ``kind``: ``"zeroed"`` (its middle third zeroed) or ``"noise"`` (200 random bytes in the middle).
    """
    raw = jpeg_bytes(size, quality=90)
    n = len(raw)
    if kind == "zeroed":
        return raw[:n // 3] + b"\0" * (n // 3) + raw[2 * n // 3:]
    noise = np.random.default_rng(1).integers(0, 256, 200, dtype=np.uint8).tobytes()
    return raw[:n // 2] + noise + raw[n // 2 + 200:]
