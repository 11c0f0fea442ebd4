"""Build pointcoc models from upstream configs and load upstream (or pointcoc) checkpoints.

Upstream: Context-Cluster (https://github.com/ma-xu/Context-Cluster, ``models/context_cluster.py`` and
``pointcloud/models/contextcluster.py``) and PointMLP (https://github.com/ma-xu/pointMLP-pytorch,
``classification_ModelNet40/models/pointmlp.py``).
Its image models keep features NCHW with 1x1 convolutions; pointcoc keeps them
channels last with ``nn.Linear`` and runs point reducers as linear layers over
neighbour-major features. The checkpoint conversion is therefore a reshape:
a conv weight ``[out, in, kh, kw]`` becomes ``[out, kh * kw * in]``
(``permute(0, 2, 3, 1)``), which for 1x1 convolutions is the plain ``[out, in]``.
The point models also rename the context cluster's ``fc1``/``fc_v``/``fc2`` to
the shared block's ``f``/``v``/``proj`` and flatten the ``[1, 1, 1, C]`` affines.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pointcoc.blocks import SampleNorm
from pointcoc.errors import InputError, strip_ansi
from pointcoc.models.coc import CoC
from pointcoc.models.pointmlp import ACTIVATIONS, PointMLP

__all__ = ["build_from_upstream_config", "load_upstream_state_dict", "load_state_dict_strictly", "load_checkpoint",
           "read_checkpoint", "unwrap_state_dict", "checkpoint_filter_fn"]

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

_WRAPPERS = ("state_dict", "model", "net", "state_dict_ema", "model_ema")


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
        depths=a["layers"], dims=a["embed_dims"], mlp_ratios=a["mlp_ratios"], heads=a["heads"],
        head_dims=a["head_dim"], centers=list(zip(a["proposal_w"], a["proposal_h"])), regions=regions,
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


def _pointmlp_from_upstream(args: Mapping[str, Any], cluster: bool, fps_start: int | None) -> PointMLP:
    a = {**_POINT_DEFAULTS, **args}
    if a["groups"] != 1:
        raise InputError(f"upstream groups={a['groups']} (grouped residual MLPs) is not supported; use groups=1")
    if a["activation"].lower() not in ACTIVATIONS:
        raise InputError(f"upstream activation {a['activation']!r} is not supported; supported: {sorted(ACTIVATIONS)}")
    if fps_start not in (None, 0):
        raise InputError(f"FPS start index {fps_start} is not supported; pointcoc starts at index 0 (or canonically)")
    return PointMLP(num_classes=a["class_num"], points=a["points"], embed_dim=a["embed_dim"],
                    res_expansion=a["res_expansion"], activation=a["activation"], bias=a["bias"],
                    use_xyz=a["use_xyz"], normalize=a["normalize"], dim_expansion=a["dim_expansion"],
                    pre_blocks=a["pre_blocks"], pos_blocks=a["pos_blocks"], k_neighbors=a["k_neighbors"],
                    reducers=a["reducers"], cluster=cluster)


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
    supported = [("models/context_cluster.py", "ContextCluster"), *_POINT_SOURCES]
    raise InputError(f"unsupported upstream model {source}; supported: {supported}")


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


# Upstream names that differ from pointcoc's, per model class (pattern, replacement).
_RENAMES: dict[type[nn.Module], list[tuple[str, str]]] = {
    PointMLP: [(r"^(pre_blocks_list\.\d+\.operation\.\d+)\.fc1\.", r"\1.f."),
               (r"^(pre_blocks_list\.\d+\.operation\.\d+)\.fc_v\.", r"\1.v."),
               (r"^(pre_blocks_list\.\d+\.operation\.\d+)\.fc2\.", r"\1.proj.")],
}


def _convert(model: nn.Module, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename upstream keys and reshape upstream tensors to the model's layouts where the element counts agree."""
    renames = _RENAMES.get(type(model), [])
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
    state = _convert(model, unwrap_state_dict(state_dict, source))
    load_state_dict_strictly(model, state, source)
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


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a checkpoint file (pointcoc's or upstream's) into ``model`` (see :func:`read_checkpoint`)."""
    return load_upstream_state_dict(model, read_checkpoint(path), source=f"checkpoint {str(path)!r}")


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """timm ``pretrained_filter_fn``: an upstream or pointcoc checkpoint -> this model's state dict."""
    return _convert(model, unwrap_state_dict(state_dict))
