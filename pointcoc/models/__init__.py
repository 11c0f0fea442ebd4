"""Models built from :mod:`pointcoc.blocks`, and the registry.

Importing this package registers the image zoo in timm too, so
``timm.create_model("coc_tiny")`` works after ``import pointcoc``.
"""

from pointcoc.models.checkpoint import (
    load_checkpoint,
    load_state_dict_strictly,
    load_upstream_state_dict,
    read_checkpoint,
    training_config,
    unwrap_state_dict,
)
from pointcoc.models.coc import CoC, image_to_points, pixel_features
from pointcoc.models.point_coc import PointCoC
from pointcoc.models.point_seg import SEG_VARIANTS, PointCoCSeg, architecture_from_state, context_kwargs_from_state
from pointcoc.models.pointmlp import PointMLP
from pointcoc.models.pointmlp_partseg import PointMLPPartSeg
from pointcoc.models.registry import create_model, list_models, model_kind, register
from pointcoc.models.upstream import build_from_upstream_config

__all__ = [
    "create_model",
    "list_models",
    "model_kind",
    "register",
    "CoC",
    "PointCoC",
    "PointCoCSeg",
    "SEG_VARIANTS",
    "architecture_from_state",
    "context_kwargs_from_state",
    "PointMLP",
    "PointMLPPartSeg",
    "image_to_points",
    "pixel_features",
    "build_from_upstream_config",
    "load_upstream_state_dict",
    "load_state_dict_strictly",
    "load_checkpoint",
    "read_checkpoint",
    "training_config",
    "unwrap_state_dict",
]
