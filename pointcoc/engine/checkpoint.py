"""Checkpoints: atomic writes, safe loads, RNG states."""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pointcoc.data.files import write_atomic

__all__ = ["save_atomic", "copy_atomic", "write_text_atomic", "stale_temporaries", "rng_state", "set_rng_state"]


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` into a temporary file beside ``path``, then rename it over ``path``.

    A crash mid-write leaves the previous file intact.
    """
    write_atomic(path, lambda fh: torch.save(obj, fh))


def write_text_atomic(text: str, path: str | Path) -> None:
    """Write ``text`` (UTF-8) to ``path`` the same crash-safe way."""
    write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def stale_temporaries(folder: Path, names: Iterable[str]) -> list[Path]:
    """The temporary files that writes of ``folder/<name>`` killed mid-way left (``.<name>.<random>.tmp``)."""
    return [f for name in names for f in folder.glob(f".{name}.*.tmp")]


def copy_atomic(src: str | Path, dst: str | Path) -> None:
    """Copy the file ``src`` to ``dst`` the same crash-safe way (no second serialisation)."""
    with open(src, "rb") as source:
        write_atomic(dst, lambda fh: shutil.copyfileobj(source, fh, 16 * 2**20))


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states, in types that ``weights_only`` loading accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
