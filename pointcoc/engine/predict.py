"""Inference on a user's file: ``scripts/predict.py --checkpoint CKPT --input FILE --output OUT``.

The checkpoint says which model and task it is: a pointcoc training checkpoint carries its run's
config (``model``, ``num_points``, ...), its ``class_names`` and, for part segmenters, the part table
(``categories``). Upstream checkpoints carry none of that: give ``--model`` (part segmenters then use
ShapeNetPart's standard table, classifiers numbered classes).

* **Part segmenters** read a ``.ply``, ``.npy``/``.npz`` or ``.txt``/``.xyz``/``.pts`` cloud
  (:func:`pointcoc.data.files.read_point_file`), normalise a copy into the unit sphere as in training,
  predict every point among the parts of ``--category`` and write ``OUT.ply`` (the input's points with a
  per-point ``label`` and its colour), ``OUT.npy`` (the labels) and ``OUT.png`` (prediction, and the
  file's own labels and the errors when it has labels).
* **Point classifiers** read the same files (FPS down to the run's ``num_points``); **image classifiers**
  read an image. Both print the top-k classes with probabilities, or write them to ``OUT.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pointcoc.data import PartCategories
from pointcoc.data.files import SUPPORTED_SUFFIXES, read_point_file, write_labeled_ply
from pointcoc.engine.checkpoint import write_text_atomic
from pointcoc.engine.cli import exit_on_input_error, setup_logging
from pointcoc.engine.config import positive_int
from pointcoc.engine.partseg import ShapeCollate
from pointcoc.errors import InputError
from pointcoc.models import (
    architecture_from_state,
    create_model,
    list_models,
    load_upstream_state_dict,
    model_kind,
    read_checkpoint,
    training_config,
    unwrap_state_dict,
)
from pointcoc.ops import fps

__all__ = ["build_parser", "main", "predict", "load_predictor", "Predictor", "segment_points", "classify_points",
           "normalised_points"]

log = logging.getLogger("pointcoc.predict")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class Predictor:
    """A model ready for inference and what its checkpoint says about it.

    Attributes:
        model: in eval mode on ``device``.
        name, kind: the registered model name and its kind (``"image"``, ``"point"``, ``"partseg"``).
        class_names: classifier classes, or a part segmenter's category names.
        categories: a part segmenter's :class:`~pointcoc.data.PartCategories` (else ``None``).
        config: the training run's config (``{}`` for upstream checkpoints).
    """

    def __init__(self, model: nn.Module, name: str, class_names: list[str], categories: PartCategories | None,
                 config: dict[str, Any], device: torch.device, kind: str | None = None,
                 features: list[str] | None = None) -> None:
        self.model, self.name, self.kind = model, name, kind or model_kind(name)
        self.class_names, self.categories, self.config, self.device = class_names, categories, config, device
        self.features = features or []


def _categories_from(ckpt: Any) -> PartCategories | None:
    table = ckpt.get("categories") if isinstance(ckpt, dict) else None
    if not isinstance(table, dict):
        return None
    try:
        return PartCategories(tuple(table["names"]), tuple(table["synsets"]),
                              tuple(tuple(int(p) for p in ps) for ps in table["parts"]), int(table["num_parts"]))
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"the checkpoint's part table ('categories') is malformed ({err!r}); it should hold "
                         "names, synsets, parts and num_parts") from err


def load_predictor(checkpoint: str | Path, model_name: str | None = None, device: str | None = None,
                   use_normals: bool = True) -> Predictor:
    """Build the checkpoint's model (``model_name`` for upstream checkpoints) and load the weights strictly.

    ``use_normals``: whether a part segmenter reads normals, for checkpoints that do not say (upstream's);
    a pointcoc checkpoint's own run config decides otherwise.

    Raises:
        InputError: an unreadable checkpoint, no model name, a model name that contradicts the checkpoint's,
            a device that is not there.
    """
    if device is not None and device != "cpu" and not device.startswith("cuda"):
        raise InputError(f"--device must be cpu or cuda[:N], got {device!r}")
    if device is not None and device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device} requested but CUDA is not available; use --device cpu")
    ckpt = read_checkpoint(checkpoint)
    cfg = training_config(ckpt)
    saved = cfg.get("model")
    if model_name and saved and model_name != saved:
        raise InputError(f"--checkpoint {checkpoint} is a run of {saved}, not {model_name}; drop --model")
    name = model_name or saved
    if not name:
        raise InputError(f"--checkpoint {checkpoint} does not say which model it holds (not a pointcoc training "
                         f"checkpoint); pass --model (one of: {', '.join(list_models())})")
    kind = model_kind(name)
    names = list(ckpt["class_names"]) if isinstance(ckpt, dict) and isinstance(ckpt.get("class_names"), list) else []
    categories = None
    kwargs: dict[str, Any] = {}
    features: list[str] = []
    if isinstance(ckpt, dict) and ckpt.get("task") == "semseg":  # a scene segmenter: classes, no categories
        from pointcoc.data.scene_sets import feature_channels

        kind, names, features = "semseg", list(ckpt.get("classes") or names), list(ckpt.get("features") or [])
        kwargs = dict(num_classes=len(names), num_categories=0, in_chans=feature_channels(features))
        if cfg.get("sampler"):
            kwargs["sampler"] = cfg["sampler"]
    elif kind == "partseg":
        categories = _categories_from(ckpt) or PartCategories.standard()
        names = list(categories.names)
        kwargs = dict(num_classes=categories.num_parts, num_categories=categories.num_categories)
        if not cfg.get("use_normals", use_normals):
            kwargs["in_chans"] = 0
    elif names:
        kwargs["num_classes"] = len(names)
    source = f"--checkpoint {checkpoint}"
    state = unwrap_state_dict(ckpt, source)  # once: the architecture is read from it, then it is loaded
    # what the weights say about the architecture (a segmenter's head context: older ones have the deepest level's)
    model = create_model(name, **kwargs, **architecture_from_state(name, state))
    load_upstream_state_dict(model, state, source=source)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if kind != "partseg" and not names:
        names = [str(i) for i in range(int(getattr(model, "num_classes", 0)))]
    return Predictor(model.to(dev).eval(), name, names, categories, cfg, dev, kind, features)


def normalised_points(pos: np.ndarray) -> Tensor:
    """``[N, 3]`` (float64) -> float32 centred on the centroid and scaled into the unit sphere (as training),
    computed in float64."""
    xyz = np.asarray(pos, dtype=np.float64)
    xyz = xyz - xyz.mean(axis=0, keepdims=True)
    radius = float(np.linalg.norm(xyz, axis=1).max())
    return torch.from_numpy((xyz / radius if radius > 0 else xyz).astype(np.float32))


def _normals_for(model: nn.Module, normals: np.ndarray | None, path: Path, n: int) -> Tensor | None:
    if getattr(model, "in_chans", 0) == 0:
        return None
    if normals is None:
        raise InputError(f"{path}: the model reads normals (nx, ny, nz) with the points and the file has none; "
                         "give a file with normals, or use a model trained with --no-normals")
    return torch.from_numpy(np.ascontiguousarray(normals[:n], dtype=np.float32))


@torch.no_grad()
def segment_points(pred: Predictor, pos: np.ndarray, normals: np.ndarray | None, category: str | None,
                   path: Path = Path("<points>")) -> tuple[np.ndarray, np.ndarray]:
    """Part labels of every point: ``pos [N, 3]`` (+ ``normals [N, 3]``) -> ``(labels [N] int64, probabilities
    [N] float32 of the chosen part)``, predicted among ``category``'s parts.

    A cloud smaller than the model's minimum is padded with repeats of its points (their predictions are
    dropped), as in the full-shape test.
    """
    cats = pred.categories
    assert cats is not None
    if category is None:
        if cats.num_categories != 1:
            raise InputError(f"{path}: give --category, one of {', '.join(cats.names)}")
        category = cats.names[0]
    if category not in cats.names:
        raise InputError(f"--category {category!r} is not one of the model's categories: {', '.join(cats.names)}")
    c = cats.names.index(category)
    n = pos.shape[0]
    x = normalised_points(pos)
    nrm = _normals_for(pred.model, normals, path, n)
    points = x if nrm is None else torch.cat([x, nrm], dim=1)
    min_points = pred.model.min_points() if hasattr(pred.model, "min_points") else 1
    flat, batch, category_t, _, keep = ShapeCollate(min_points)([(points, c, torch.zeros(n, dtype=torch.long))])
    flat = flat.to(pred.device)
    logits = pred.model(flat[:, :3], flat[:, 3:6] if nrm is not None else None, category_t.to(pred.device),
                        batch=batch.to(pred.device)).float().cpu()[keep]
    allowed = cats.part_mask()[c]
    probs = logits.masked_fill(~allowed, float("-inf")).softmax(-1)
    conf, labels = probs.max(-1)
    return labels.numpy().astype(np.int64), conf.numpy().astype(np.float32)


@torch.no_grad()
def classify_points(pred: Predictor, pos: np.ndarray, normals: np.ndarray | None, topk: int,
                    path: Path = Path("<points>")) -> list[tuple[str, float]]:
    """Top-k ``(class, probability)`` of a point classifier for one cloud (FPS to the run's ``num_points``)."""
    num = int(pred.config.get("num_points") or 1024)
    need = pred.model.min_points() if hasattr(pred.model, "min_points") else 1
    if pos.shape[0] < need:
        raise InputError(f"{path} has {pos.shape[0]} points; {pred.name} needs at least {need}")
    x = normalised_points(pos)
    keep = fps(x, num) if x.shape[0] > num else torch.arange(x.shape[0])
    nrm = _normals_for(pred.model, normals, path, pos.shape[0])
    pts = x[keep][None].to(pred.device)
    logits = pred.model(pts, None if nrm is None else nrm[keep][None].to(pred.device))
    return _topk(pred, logits[0], topk)


def _topk(pred: Predictor, logits: Tensor, topk: int) -> list[tuple[str, float]]:
    probs = logits.float().softmax(-1).cpu()
    values, idx = probs.topk(min(topk, probs.numel()))
    return [(pred.class_names[i] if i < len(pred.class_names) else str(i), float(v))
            for v, i in zip(values.tolist(), idx.tolist())]


@torch.no_grad()
def classify_image(pred: Predictor, path: Path, topk: int) -> list[tuple[str, float]]:
    """Top-k ``(class, probability)`` of an image classifier (timm's eval transform at the run's size)."""
    from pointcoc.data import load_image
    from pointcoc.engine.images import eval_image_transform

    transform, _ = eval_image_transform(int(pred.config.get("img_size") or 224), pred.model)
    x = transform(load_image(path))[None].to(pred.device)
    return _topk(pred, pred.model(x)[0], topk)


def _outputs(output: str | Path) -> Path:
    out = Path(output)
    if out.is_dir():
        raise InputError(f"--output {out} is a folder; give a file path (its stem names the outputs)")
    return out


def predict(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run ``cfg`` (the parsed options): returns what was predicted and written."""
    path = Path(cfg["input"])
    if not path.is_file():
        raise InputError(f"--input {path} does not exist")
    pred = load_predictor(cfg["checkpoint"], cfg.get("model"), cfg.get("device"), cfg.get("use_normals", True))
    out = _outputs(cfg["output"]) if cfg.get("output") else None
    result: dict[str, Any] = {"model": pred.name, "task": pred.kind, "input": str(path)}
    if pred.kind == "image":
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f"--input {path}: {pred.name} is an image classifier; give an image "
                             f"({', '.join(IMAGE_SUFFIXES)})")
        result["top"] = classify_image(pred, path, cfg["topk"])
    elif pred.kind == "semseg":
        from pointcoc.engine.predict_scene import LAS_SUFFIXES, segment_scene_file
        from pointcoc.engine.scene_infer import tile_config

        if path.suffix.lower() not in SUPPORTED_SUFFIXES + LAS_SUFFIXES:
            raise InputError(f"--input {path}: unsupported file type {path.suffix!r}; scene files are "
                             f"{', '.join(SUPPORTED_SUFFIXES + LAS_SUFFIXES)}")
        tiles = tile_config(pred.config, pred.features, {**cfg, "amp": "none"})
        result.update(segment_scene_file(pred.model, path, out, tiles, pred.class_names, device=pred.device,
                                         stream=cfg["stream"], stream_above=cfg["stream_above"],
                                         chunk_size=cfg["chunk_size"], columns=cfg.get("columns"),
                                         label_map=cfg.get("las_map") or pred.config.get("las_map"),
                                         title=f"{pred.name}: {path.name}"))
    else:
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise InputError(f"--input {path}: unsupported file type {path.suffix!r}; point files are "
                             f"{', '.join(SUPPORTED_SUFFIXES)}")
        cloud = read_point_file(path, columns=cfg.get("columns"))
        if pred.kind == "point":
            result["top"] = classify_points(pred, cloud.pos, cloud.normals, cfg["topk"], path)
        else:
            labels, conf = segment_points(pred, cloud.pos, cloud.normals, cfg.get("category"), path)
            result.update(_write_segmentation(pred, cloud, labels, conf, cfg.get("category") or pred.class_names[0],
                                              out or path.with_name(path.stem + "_pred.ply")))
    if "top" in result:
        result["top"] = [{"class": c, "probability": p} for c, p in result["top"]]
        if out is not None:
            if out.suffix.lower() != ".json":
                raise InputError(f"--output {out}: a classifier writes its top-k as JSON; give a .json path")
            write_text_atomic(json.dumps(result, indent=2), out)
            result["written"] = [str(out)]
    return result


def _write_segmentation(pred: Predictor, cloud: Any, labels: np.ndarray, conf: np.ndarray, category: str,
                        out: Path) -> dict[str, Any]:
    from pointcoc.visualize import draw_part_segmentation

    stem = out.with_suffix("")
    ply, npy, png = stem.with_suffix(".ply"), stem.with_suffix(".npy"), stem.with_suffix(".png")
    clash = [p for p in (ply, npy, png) if p.resolve() == cloud.path.resolve()]
    if clash:
        raise InputError(f"--output {out} would overwrite the input {cloud.path}; choose another --output")
    ply.parent.mkdir(parents=True, exist_ok=True)
    write_labeled_ply(ply, cloud.pos, labels, normals=cloud.normals, fields={"confidence": conf})
    tmp = npy.with_name(f".{npy.name}.tmp.npy")
    np.save(tmp, labels)
    tmp.replace(npy)
    target = cloud.labels
    if target is not None:
        own = pred.categories.parts[pred.categories.names.index(category)]
        stray = np.setdiff1d(np.unique(target), [*own, -1])
        if stray.size:
            raise InputError(f"{cloud.path}: its labels {stray[:5].tolist()} are not {category}'s global part ids "
                             f"{list(own)} (or -1); drop the label column (--columns with '_') to predict without "
                             "scoring")
    info: dict[str, Any] = {"category": category, "points": int(labels.shape[0]),
                            "parts": {int(p): int((labels == p).sum()) for p in np.unique(labels)}}
    if target is not None:
        valid = target >= 0
        info["accuracy"] = 100.0 * float((labels[valid] == target[valid]).mean()) if valid.any() else float("nan")
    draw_part_segmentation(cloud.pos, labels, target, png, title=f"{pred.name}: {cloud.path.name} ({category})",
                           names=[f"part {i}" for i in range(pred.categories.num_parts)])
    info["written"] = [str(ply), str(npy), str(png)]
    return info


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Predict with a trained model on your own file: part labels for a "
                                            "segmenter, top-k classes for a classifier.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a pointcoc best.pt/last.pt (or an upstream one with --model)")
    p.add_argument("--input", required=True, help=f"a point file ({', '.join(SUPPORTED_SUFFIXES)}) or an image")
    p.add_argument("--output", help="segmenters: OUT(.ply) -> OUT.ply, OUT.npy, OUT.png (default: "
                                    "<input>_pred.*); classifiers: a .json file (default: print)")
    p.add_argument("--category", help="part segmenters: the shape's category (e.g. Airplane)")
    p.add_argument("--model", help="the model of an upstream checkpoint (pointcoc checkpoints name theirs)")
    p.add_argument("--columns", help="text/.npy columns, e.g. 'x,y,z,nx,ny,nz' or 'x,y,z,label' (default: by count)")
    p.add_argument("--no-normals", dest="use_normals", action="store_false",
                   help="an upstream part segmenter's checkpoint trained on xyz only (pointcoc checkpoints say so)")
    p.add_argument("--topk", type=positive_int, default=5, help="classifiers: classes to report")
    scene = p.add_argument_group("scene segmenters")
    scene.add_argument("--stream", choices=["auto", "on", "off"], default="auto",
                       help="read .las/.laz/.npy in chunks and predict tile by tile (auto: above --stream-above)")
    scene.add_argument("--stream-above", type=positive_int, default=5_000_000, help="points")
    scene.add_argument("--chunk-size", type=positive_int, default=1_000_000, help="points read at a time")
    scene.add_argument("--las-map", help="LAS/LAZ: classification codes of the classes, e.g. "
                                         "'ground:2;vegetation:3,4,5;building:6' (scores the file, writes codes)")
    scene.add_argument("--voxel-size", type=float, help="default: the training run's")
    scene.add_argument("--tile-size", type=float, help="tile side in metres (default: the training run's)")
    scene.add_argument("--tile-margin", type=float, help="context around a tile in metres")
    scene.add_argument("--tile-points", type=positive_int, help="most voxels per model call")
    scene.add_argument("--vote", type=positive_int, help="average N rotations about z")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cfg = vars(build_parser().parse_args(argv))
    setup_logging()
    with exit_on_input_error(log):
        result = predict(cfg)
    if "top" in result and "written" not in result:
        for row in result["top"]:
            print(f"{row['probability']:.4f}  {row['class']}")  # the script's output (stdout)
    else:
        log.info("%s", {k: v for k, v in result.items() if k != "parts"})
    return result
