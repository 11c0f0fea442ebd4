"""Checkpoint files: safe reading, unwrapping, conversion of upstream layouts, strict loading with a key report.

This module imports no model, so every layer above it can use it. Each model file
registers its own checkpoint filter (:func:`register_checkpoint_filter`, timm's
``checkpoint_filter_fn`` pattern); :func:`load_upstream_state_dict` and
:func:`load_checkpoint` apply it, then load strictly.

Upstream's image models keep features NCHW with 1x1 convolutions; pointcoc keeps them
channels last with ``nn.Linear`` and runs point reducers as linear layers over
neighbour-major features. The conversion is therefore a reshape
(:func:`convert_layouts`): a conv weight ``[out, in, kh, kw]`` becomes
``[out, kh * kw * in]`` (``permute(0, 2, 3, 1)``), which for 1x1 convolutions is the plain
``[out, in]``.
"""

from __future__ import annotations

import argparse
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pointcoc.errors import InputError, strip_ansi

__all__ = ["read_checkpoint", "training_config", "unwrap_state_dict", "convert_layouts", "register_checkpoint_filter",
           "checkpoint_filter_fn", "load_upstream_state_dict", "load_state_dict_strictly", "load_checkpoint"]

_WRAPPERS = ("state_dict", "model", "net", "state_dict_ema", "model_ema")
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's archive (the default since torch 1.6)
_PICKLE_MAGIC = b"\x80"  # a pickle of protocol 2 or later (torch's legacy format, plain pickles)
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _checkpoint_format(path: Path) -> str:
    """``"zip"``, ``"pickle"``; raises :class:`InputError` for a file that is neither (empty, text, random bytes)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
        intact_zip = head == _ZIP_MAGIC and zipfile.is_zipfile(path)
    except (OSError, zipfile.BadZipFile) as err:  # is_zipfile lets BadZipFile through for some damaged ends
        if isinstance(err, OSError):
            raise InputError(f"checkpoint {str(path)!r} cannot be read: {err.strerror or err}") from err
        raise InputError(f"checkpoint {str(path)!r} is damaged: its zip archive's directory is unreadable "
                         f"({err}); copy it again or use another checkpoint (e.g. best.pt)") from err
    if not head:
        raise InputError(f"checkpoint {str(path)!r} is empty (0 bytes): its write was interrupted or it was never "
                         "written; use another checkpoint (e.g. best.pt) or start the run afresh")
    if head == _ZIP_MAGIC:
        if not intact_zip:
            raise InputError(f"checkpoint {str(path)!r} is truncated: the zip archive that torch.save writes ends "
                             f"early ({path.stat().st_size:,} bytes, no end of archive); a write or a copy was "
                             "interrupted: copy it again or use another checkpoint (e.g. best.pt)")
        return "zip"
    if head[:1] == _PICKLE_MAGIC:
        return "pickle"
    raise InputError(f"checkpoint {str(path)!r} is not a PyTorch checkpoint: it starts with bytes {head!r}, "
                     "neither a torch.save zip archive nor a pickle; check the path")


def training_config(ckpt: Any) -> dict[str, Any]:
    """The run configuration a pointcoc training checkpoint carries (``ckpt["config"]``); ``{}`` for other files."""
    cfg = ckpt.get("config") if isinstance(ckpt, dict) else None
    return cfg if isinstance(cfg, dict) else {}


def read_checkpoint(path: str | Path) -> Any:
    """Read a checkpoint file onto the CPU with ``torch.load(weights_only=True)``.

    Tensors, containers and plain values only (plus ``argparse.Namespace``, which timm
    training scripts store): a file that carries pickled code is refused, never executed.

    Raises:
        InputError (a ValueError): the file is missing, empty, truncated, not a checkpoint, or
            holds a pickled object that is not plain data; the message says which.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise InputError(f"checkpoint {str(path)!r} is not a file")
    fmt = _checkpoint_format(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            # a damaged pickle may claim any protocol; the error below says what is wrong
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = _REFUSED_GLOBAL.search(strip_ansi(str(err)))
        if refused:
            raise InputError(
                f"checkpoint {str(path)!r} was refused, not loaded: it holds a pickled {refused.group(1)}, which is "
                "not plain data, and unpickling it could run code. pointcoc reads only tensors, containers and plain "
                "values (weights_only=True); if you made the file yourself, re-save its tensors (e.g. "
                "torch.save(model.state_dict(), path))") from err
        raise InputError(f"checkpoint {str(path)!r} is damaged: its {fmt} data does not unpickle (a corrupt or "
                         "partial file); copy it again or use another checkpoint") from err
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - a weights_only load runs no code: any other failure is bad data
        raise InputError(f"checkpoint {str(path)!r} is truncated or damaged: its {fmt} data cannot be read "
                         f"({type(err).__name__}); copy it again or use another checkpoint (e.g. best.pt)") from err


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, Tensor]:
    """The plain state dict inside a checkpoint: unwraps ``state_dict``/``model``/``net``/EMA entries and strips
    ``module.`` prefixes (DataParallel / DDP)."""
    if isinstance(obj, Mapping):
        for key in _WRAPPERS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise InputError(f"{source} holds no state dict (expected a dict of tensors, optionally under one of "
                         f"{list(_WRAPPERS)})")
    out: dict[str, Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, Tensor):
            raise InputError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
        out[key[len("module."):] if key.startswith("module.") else key] = value
    return out


def convert_layouts(model: nn.Module, state: Mapping[str, Tensor],
                    renames: Sequence[tuple[str, str]] = ()) -> dict[str, Tensor]:
    """Rename keys (regex ``(pattern, replacement)`` pairs, in order) and reshape tensors to ``model``'s layouts
    where the element counts agree: a Conv1d/Conv2d weight ``[out, in, kh, kw]`` becomes the Linear
    ``[out, kh * kw * in]`` (neighbour-major), an affine ``[1, 1, 1, C]`` becomes ``[C]``."""
    expected = model.state_dict()
    out = {}
    for key, value in state.items():
        for pattern, repl in renames:
            key = re.sub(pattern, repl, key)
        target = expected.get(key)
        if target is not None and value.shape != target.shape and value.numel() == target.numel():
            if value.dim() in (3, 4) and target.dim() == 2:  # Conv1d/Conv2d -> Linear, neighbour-major
                value = value.movedim(1, -1).reshape(target.shape)
            elif value.squeeze().shape == target.squeeze().shape:  # e.g. affine [1, 1, 1, C] -> [C]
                value = value.reshape(target.shape)
        out[key] = value
    return out


FilterFn = Callable[[dict[str, Tensor], nn.Module], dict[str, Tensor]]
_FILTERS: dict[type, FilterFn] = {}


def register_checkpoint_filter(cls: type[nn.Module], fn: FilterFn) -> FilterFn:
    """Make ``fn(state_dict, model)`` (timm's ``pretrained_filter_fn`` form) the conversion of checkpoints for
    ``cls`` and its subclasses; each model file registers its own. Returns ``fn``."""
    _FILTERS[cls] = fn
    return fn


def checkpoint_filter_fn(state_dict: Any, model: nn.Module, source: str = "checkpoint") -> dict[str, Tensor]:
    """An upstream or pointcoc checkpoint -> ``model``'s state dict: unwrapped (:func:`unwrap_state_dict`, errors
    name ``source``), then converted by the filter registered for the model's class (which may unwrap again:
    that is a no-op on a plain state dict), or by :func:`convert_layouts` alone."""
    state = unwrap_state_dict(state_dict, source)
    for cls in type(model).__mro__:
        if cls in _FILTERS:
            return _FILTERS[cls](state, model)
    return convert_layouts(model, state)


def load_upstream_state_dict(model: nn.Module, state_dict: Any, source: str = "state dict") -> nn.Module:
    """Load upstream (or pointcoc) weights into ``model`` strictly, converting shapes as needed.

    Args:
        model: a pointcoc model (e.g. from :func:`build_from_upstream_config` or ``create_model``).
        state_dict: a state dict or a checkpoint dict wrapping one (see :func:`unwrap_state_dict`).
        source: a name for error messages (e.g. the file).

    Raises:
        InputError (a ValueError): missing or unexpected keys, or shapes that no conversion
            reconciles; the message lists them.
    """
    load_state_dict_strictly(model, checkpoint_filter_fn(state_dict, model, source), source)
    return model


def load_state_dict_strictly(model: nn.Module, state: Mapping[str, Tensor], source: str = "state dict") -> None:
    """``model.load_state_dict(state, strict=True)``, with no conversion, after checking every key and shape.

    Raises:
        InputError: missing or unexpected keys, or tensors of other shapes; the message names
            ``source`` and lists them (5 of each at most).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k}: {tuple(state[k].shape)} vs model {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{label}: {items[:5]}{more}")
        raise InputError(f"{source} does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a checkpoint file (pointcoc's or upstream's) into ``model`` (see :func:`read_checkpoint`)."""
    return load_upstream_state_dict(model, read_checkpoint(path), source=f"checkpoint {str(path)!r}")
