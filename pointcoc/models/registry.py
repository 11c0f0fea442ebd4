"""One registry for image and point models: ``create_model`` and ``list_models``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from torch import nn

from pointcoc.errors import InputError
from pointcoc.models.checkpoint import load_checkpoint

__all__ = ["register", "create_model", "list_models", "model_kind", "KINDS"]

#: model kinds: image classifiers, point-cloud classifiers, part segmenters (per-point part logits)
KINDS = ("image", "point", "partseg")

log = logging.getLogger(__name__)

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_KINDS: dict[str, str] = {}


def register(kind: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder ``fn(**kwargs) -> nn.Module`` under ``fn.__name__`` as a model of ``kind`` (:data:`KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}")

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if fn.__name__ in _BUILDERS:
            raise ValueError(f"model {fn.__name__!r} is registered twice")
        _BUILDERS[fn.__name__] = fn
        _KINDS[fn.__name__] = kind
        return fn

    return deco


def list_models(kind: str | None = None) -> list[str]:
    """Registered model names, sorted; ``kind`` filters to one of :data:`KINDS` (``"image"``, ``"point"``,
    ``"partseg"``)."""
    return sorted(n for n in _BUILDERS if kind is None or _KINDS[n] == kind)


def model_kind(name: str) -> str:
    """``"image"`` or ``"point"`` for a registered model name."""
    _check_name(name)
    return _KINDS[name]


def _check_name(name: str) -> None:
    if name not in _BUILDERS:
        raise InputError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")


def create_model(name: str, checkpoint: str | Path | None = None, **kwargs) -> nn.Module:
    """Build a registered model, optionally loading a checkpoint file.

    Args:
        name: a name from :func:`list_models`.
        checkpoint: a pointcoc checkpoint or an upstream one (plain, or wrapped in
            ``state_dict``/``model``/``net``, ``module.`` prefixes allowed); loaded
            with ``weights_only=True`` and strictly.
        **kwargs: constructor arguments (e.g. ``num_classes``).
    """
    _check_name(name)
    model = _BUILDERS[name](**kwargs)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
        log.info("loaded %s into %s", checkpoint, name)
    return model
