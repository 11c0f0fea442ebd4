"""Build pointcoc models from upstream model descriptions (the golden fixtures' configs).

Upstream: Context-Cluster (https://github.com/ma-xu/Context-Cluster, ``models/context_cluster.py`` and
``pointcloud/models/contextcluster.py``) and PointMLP (https://github.com/ma-xu/pointMLP-pytorch,
``classification_ModelNet40/models/pointmlp.py`` and, for part segmentation, ``part_segmentation/model/pointMLP.py``).
Upstream's argument names live only here and in the models' checkpoint filters. Checkpoint I/O is
:mod:`pointcoc.models.checkpoint` (re-exported here for code that imported it from this module).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from torch import nn

from pointcoc.blocks import SampleNorm
from pointcoc.errors import InputError
from pointcoc.models.checkpoint import (
    checkpoint_filter_fn,
    load_checkpoint,
    load_upstream_state_dict,
    read_checkpoint,
    unwrap_state_dict,
)
from pointcoc.models.coc import CoC
from pointcoc.models.pointmlp import ACTIVATIONS, PointMLP
from pointcoc.models.pointmlp_partseg import PointMLPPartSeg

# build_from_upstream_config is this module's own; the rest is re-exported for code that imported it from here.
__all__ = ["build_from_upstream_config", "load_upstream_state_dict", "load_checkpoint", "read_checkpoint",
           "unwrap_state_dict", "checkpoint_filter_fn"]

log = logging.getLogger(__name__)

_NORMS: dict[str, type[nn.Module]] = {"GroupNorm": SampleNorm}
_ACTS: dict[str, type[nn.Module]] = {"GELU": nn.GELU, "ReLU": nn.ReLU, "SiLU": nn.SiLU}

# Defaults of upstream's ContextCluster constructor, for configs that give only some arguments.
_COC_DEFAULTS: dict[str, Any] = {
    "norm_layer": "BatchNorm2d", "act_layer": "GELU", "num_classes": 1000, "in_patch_size": 4, "in_stride": 4,
    "in_pad": 0, "down_patch_size": 2, "down_stride": 2, "down_pad": 0, "drop_rate": 0.0, "drop_path_rate": 0.0,
    "use_layer_scale": True, "layer_scale_init_value": 1e-5, "fork_feat": False,
    "proposal_w": [2, 2, 2, 2], "proposal_h": [2, 2, 2, 2], "fold_w": [8, 4, 2, 1], "fold_h": [8, 4, 2, 1],
    "heads": [2, 4, 6, 8], "head_dim": [16, 16, 32, 32],
}


def _lookup(table: Mapping[str, type[nn.Module]], name: str, what: str) -> type[nn.Module]:
    if name not in table:
        raise InputError(f"upstream {what} {name!r} is not supported; supported: {sorted(table)}")
    return table[name]


def _coc_from_upstream(args: Mapping[str, Any], env: Mapping[str, Any] | None) -> CoC:
    a = {**_COC_DEFAULTS, **args}
    if env and env.get("FORK_LAST3"):
        raise InputError("upstream FORK_LAST3 (no first fork_feat norm) is not supported")
    regions = [(fw, fh) if fw > 1 and fh > 1 else (1, 1)  # upstream folds only when both are > 1
               for fw, fh in zip(a["fold_w"], a["fold_h"])]
    return CoC(
        depths=a["layers"], dims=a["embed_dims"], mlp_ratios=a["mlp_ratios"], num_heads=a["heads"],
        head_dim=a["head_dim"], centers=list(zip(a["proposal_w"], a["proposal_h"])), regions=regions,
        downsamples=a["downsamples"], num_classes=a["num_classes"], in_patch_size=a["in_patch_size"],
        in_stride=a["in_stride"], in_pad=a["in_pad"], down_patch_size=a["down_patch_size"],
        down_stride=a["down_stride"], down_pad=a["down_pad"], norm_layer=_lookup(_NORMS, a["norm_layer"], "norm"),
        act_layer=_lookup(_ACTS, a["act_layer"], "activation"), drop_rate=a["drop_rate"],
        drop_path_rate=a["drop_path_rate"],
        layer_scale_init_value=a["layer_scale_init_value"] if a["use_layer_scale"] else None,
        fork_feat=a["fork_feat"],
    )


# Defaults of upstream's point-cloud ``Model`` (PointMLP and PointMLP-CoC).
_POINT_DEFAULTS: dict[str, Any] = {
    "points": 1024, "class_num": 40, "embed_dim": 64, "groups": 1, "res_expansion": 1.0, "activation": "relu",
    "bias": True, "use_xyz": True, "normalize": "center", "dim_expansion": [2, 2, 2, 2], "pre_blocks": [2, 2, 2, 2],
    "pos_blocks": [2, 2, 2, 2], "k_neighbors": [32, 32, 32, 32], "reducers": [2, 2, 2, 2],
}
_POINT_SOURCES = {
    ("pointcloud/models/contextcluster.py", "Model"): True,  # PointMLP-CoC
    ("pointcloud/models/pointmlp.py", "Model"): False,
    ("classification_ModelNet40/models/pointmlp.py", "Model"): False,
    ("classification_ScanObjectNN/models/pointmlp.py", "Model"): False,
}


def _check_pointmlp_args(a: Mapping[str, Any], fps_start: int | None) -> None:
    """What pointcoc's PointMLPs support of upstream's arguments (classification and part segmentation alike)."""
    if a["groups"] != 1:
        raise InputError(f"upstream groups={a['groups']} (grouped residual MLPs) is not supported; use groups=1")
    if a["activation"].lower() not in ACTIVATIONS:
        raise InputError(f"upstream activation {a['activation']!r} is not supported; supported: {sorted(ACTIVATIONS)}")
    if fps_start not in (None, 0):
        raise InputError(f"FPS start index {fps_start} is not supported; pointcoc starts at index 0 (or canonically)")


def _pointmlp_from_upstream(args: Mapping[str, Any], cluster: bool, fps_start: int | None) -> PointMLP:
    a = {**_POINT_DEFAULTS, **args}
    _check_pointmlp_args(a, fps_start)
    return PointMLP(num_classes=a["class_num"], points=a["points"], embed_dim=a["embed_dim"],
                    res_expansion=a["res_expansion"], act_layer=a["activation"], bias=a["bias"],
                    use_xyz=a["use_xyz"], normalize=a["normalize"], dim_expansion=a["dim_expansion"],
                    pre_depths=a["pre_blocks"], post_depths=a["pos_blocks"], num_neighbors=a["k_neighbors"],
                    reductions=a["reducers"], cluster=cluster)


# Defaults of upstream's part-segmentation ``PointMLP`` constructor (not its ``pointMLP`` zoo function).
_PARTSEG_DEFAULTS: dict[str, Any] = {
    "num_classes": 50, "points": 2048, "embed_dim": 64, "groups": 1, "res_expansion": 1.0, "activation": "relu",
    "bias": True, "use_xyz": True, "normalize": "anchor", "dim_expansion": [2, 2, 2, 2], "pre_blocks": [2, 2, 2, 2],
    "pos_blocks": [2, 2, 2, 2], "k_neighbors": [32, 32, 32, 32], "reducers": [4, 4, 4, 4],
    "de_dims": [512, 256, 128, 128], "de_blocks": [2, 2, 2, 2], "gmp_dim": 64, "cls_dim": 64,
}
_PARTSEG_SOURCE = ("part_segmentation/model/pointMLP.py", "PointMLP")


def _partseg_from_upstream(args: Mapping[str, Any], num_categories: int, fps_start: int | None) -> PointMLPPartSeg:
    a = {**_PARTSEG_DEFAULTS, **args}
    _check_pointmlp_args(a, fps_start)
    de_dims = list(a["de_dims"])
    if len(de_dims) == len(a["de_blocks"]) + 1:
        # upstream's constructor inserts the encoder's deepest width in front of the list it was given; a config
        # recorded after construction holds that list: drop the inserted entry when it is that width
        deepest = a["embed_dim"]
        for e in a["dim_expansion"]:
            deepest *= e
        if de_dims[0] != deepest:
            raise InputError(f"upstream de_dims {de_dims} has {len(de_dims)} entries for {len(a['de_blocks'])} "
                             f"decoder levels and does not start with the encoder's width {deepest}")
        de_dims = de_dims[1:]
    return PointMLPPartSeg(num_classes=a["num_classes"], num_categories=num_categories, points=a["points"],
                           embed_dim=a["embed_dim"], res_expansion=a["res_expansion"], act_layer=a["activation"],
                           bias=a["bias"], use_xyz=a["use_xyz"], normalize=a["normalize"],
                           dim_expansion=a["dim_expansion"], pre_depths=a["pre_blocks"], post_depths=a["pos_blocks"],
                           num_neighbors=a["k_neighbors"], reductions=a["reducers"], de_dims=de_dims,
                           de_blocks=a["de_blocks"], gmp_dim=a["gmp_dim"], cls_dim=a["cls_dim"])


def build_from_upstream_config(config: Mapping[str, Any]) -> nn.Module:
    """The pointcoc model equivalent to an upstream model description.

    Args:
        config: ``{"upstream_file": ..., "class": ..., "resolved_constructor_args": {...}}``
            as stored in the golden fixtures (``constructor_args`` is used when the
            resolved form is absent; missing arguments take upstream's defaults).

    Raises:
        InputError (a ValueError): an upstream model, norm or activation that pointcoc does not provide.
    """
    source = (config.get("upstream_file"), config.get("class"))
    args = config.get("resolved_constructor_args") or config.get("constructor_args")
    if args is None:
        raise InputError("upstream config has neither `resolved_constructor_args` nor `constructor_args`")
    if source == ("models/context_cluster.py", "ContextCluster"):
        return _coc_from_upstream(args, config.get("env"))
    if source in _POINT_SOURCES:
        return _pointmlp_from_upstream(args, _POINT_SOURCES[source], config.get("fps_start_index"))
    if source == _PARTSEG_SOURCE:
        return _partseg_from_upstream(args, config.get("num_categories", 16), config.get("fps_start_index"))
    supported = [("models/context_cluster.py", "ContextCluster"), *_POINT_SOURCES, _PARTSEG_SOURCE]
    raise InputError(f"unsupported upstream model {source}; supported: {supported}")
