"""Evaluate a checkpoint (pointcoc's or upstream's) on a dataset split, images or points."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pointcoc import data as pdata
from pointcoc.engine.cli import add_allocator_arg, exit_on_input_error, setup_logging
from pointcoc.engine.config import nonnegative_int, positive_int
from pointcoc.engine.distributed import cleanup_distributed, init_distributed
from pointcoc.engine.images import ImageTask, add_bad_images_arg, eval_image_transform
from pointcoc.engine.points import PointTask, VotingTask, point_split
from pointcoc.engine.runtime import apply_cpu_allocator
from pointcoc.engine.trainer import evaluate, make_loader
from pointcoc.errors import InputError
from pointcoc.models import create_model, list_models, model_kind

__all__ = ["build_parser", "main", "validate"]

log = logging.getLogger("pointcoc.validate")

#: model kind -> the --dataset values it evaluates on ('demo': the demo point set, or the demo part set)
DATASETS = {"image": ("images",), "point": ("modelnet40", "scanobjectnn", "demo"), "partseg": ("shapenetpart", "demo")}
#: scene sets (scene segmenters, whose checkpoints say ``task: semseg``; 'demo' is then the demo rooms)
SCENE_DATASETS = ("s3dis", "scannet", "folder")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Evaluate a checkpoint on a dataset split (OA/mAcc or top-1/top-5).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, choices=list_models())
    p.add_argument("--checkpoint", help="pointcoc (last.pt/best.pt) or upstream checkpoint; none: random weights")
    p.add_argument("--dataset", choices=["modelnet40", "scanobjectnn", "shapenetpart", "s3dis", "scannet", "folder",
                                         "demo", "images"], required=True,
                   help="'images' is an ImageNet-style folder (--data-dir, or 'demo'); 'demo' is the demo point set "
                        "for classifiers, the demo part set for part segmenters and the demo rooms for scene "
                        "segmenters; s3dis / scannet / folder are scene sets (as in train_semseg.py)")
    p.add_argument("--data-dir")
    p.add_argument("--split", default=None, help="test (points) / val (images) by default")
    p.add_argument("--variant", choices=sorted(pdata.SCANOBJECTNN_VARIANTS), default="pb_t50_rs")
    p.add_argument("--num-points", type=positive_int, default=1024)
    p.add_argument("--img-size", type=positive_int, default=224)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--vote", type=nonnegative_int, default=0, help="points: N-vote scale augmentation")
    p.add_argument("--no-normals", dest="use_normals", action="store_false",
                   help="part segmenters trained on xyz only (a pointcoc checkpoint says so itself)")
    p.add_argument("--workers", type=nonnegative_int, default=2)
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--output", help="also write the metrics to this JSON file")
    add_bad_images_arg(p)
    add_allocator_arg(p)
    return p


def validate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Metrics of ``cfg["model"]`` with ``cfg["checkpoint"]`` on the chosen split."""
    dist = init_distributed(cfg["device"])
    try:
        kind = model_kind(cfg["model"])
        if cfg["dataset"] in SCENE_DATASETS or (kind == "partseg" and _is_scene_checkpoint(cfg["checkpoint"])):
            return validate_semseg(cfg, dist)
        if cfg["dataset"] not in DATASETS[kind]:
            raise InputError(f"model {cfg['model']} is {'an' if kind == 'image' else 'a'} {kind} model; it runs on "
                             f"--dataset {' or '.join(DATASETS[kind])}, not {cfg['dataset']}")
        cfg = {**cfg, "seed": 0}
        if kind == "partseg":
            return validate_partseg(cfg, dist)
        if kind == "point":
            split = cfg["split"] or "test"
            ds = point_split(cfg, split)
            task: Any = PointTask(0.0)
            if cfg["vote"]:
                task = VotingTask(task, cfg["vote"])
        else:
            split = cfg["split"] or "val"
            root = cfg["data_dir"]
            if root is None or root == "demo":
                root = str(pdata.ensure_demo_data("data/demo") / "images")
            probe = create_model(cfg["model"], num_classes=1)
            ds = pdata.image_folder(root, split, eval_image_transform(cfg["img_size"], probe)[0],
                                    bad_images=cfg["bad_images"])
            task = ImageTask(cfg)
        model = create_model(cfg["model"], checkpoint=cfg["checkpoint"], num_classes=len(ds.classes)).to(dist.device)
        loader = make_loader(ds, cfg, dist, 0, False, task.collate(False))
        metrics = evaluate(task, model, loader, dist, len(ds.classes))
        metrics.update(model=cfg["model"], checkpoint=cfg["checkpoint"], split=split, samples=len(ds),
                       classes=list(ds.classes))
        return metrics
    finally:
        cleanup_distributed()


def validate_partseg(cfg: dict[str, Any], dist: Any) -> dict[str, Any]:
    """A part segmenter on every stored point of each shape of the split (the standard protocol), with
    ``--vote N`` scaled copies averaged when asked."""
    from pointcoc.engine.partseg import evaluate_shapes, partseg_split
    from pointcoc.engine.predict import load_predictor

    split = cfg["split"] or "test"
    if cfg["checkpoint"]:
        pred = load_predictor(cfg["checkpoint"], cfg["model"], str(dist.device), cfg["use_normals"])
        cfg = {**cfg, "use_normals": pred.config.get("use_normals", cfg["use_normals"])}
        model = pred.model
    ds = partseg_split(cfg, split, None)
    if not cfg["checkpoint"]:
        kwargs = dict(num_classes=ds.categories.num_parts, num_categories=ds.categories.num_categories)
        model = create_model(cfg["model"], **kwargs, **({} if cfg["use_normals"] else {"in_chans": 0}))
        model = model.to(dist.device)
    elif pred.categories is not None and pred.categories.names != ds.categories.names:
        raise InputError(f"--checkpoint {cfg['checkpoint']} predicts the categories {list(pred.categories.names)}, "
                         f"the {split} split has {list(ds.categories.names)}")
    metrics = evaluate_shapes(model, ds, cfg, dist, cfg["vote"])
    metrics["per_category"] = dict(zip(ds.categories.names, metrics["per_category"]))
    metrics.update(model=cfg["model"], checkpoint=cfg["checkpoint"], split=split, samples=len(ds),
                   classes=list(ds.categories.names), full_shapes=True, vote=cfg["vote"])
    return metrics


def _is_scene_checkpoint(checkpoint: str | None) -> bool:
    from pointcoc.models import read_checkpoint

    if not checkpoint:
        return False
    ckpt = read_checkpoint(checkpoint)
    return isinstance(ckpt, dict) and ckpt.get("task") == "semseg"


def validate_semseg(cfg: dict[str, Any], dist: Any) -> dict[str, Any]:
    """A scene segmenter on every original point of each scene of the split, predicted in tiles with its training
    run's settings (``--vote N`` rotations averaged when asked); the metrics hold the confusion matrix."""
    from pointcoc.engine.predict import load_predictor
    from pointcoc.engine.semseg import evaluate_scenes, scene_split

    if not cfg["checkpoint"]:
        raise InputError("scene segmenters are evaluated with their --checkpoint (it names the classes and input "
                         "features)")
    pred = load_predictor(cfg["checkpoint"], cfg["model"], str(dist.device))
    if pred.kind != "semseg":
        raise InputError(f"--checkpoint {cfg['checkpoint']} is not a scene segmenter (train one with "
                         f"scripts/train_semseg.py); --dataset {cfg['dataset']} is a scene set")
    if cfg["dataset"] not in SCENE_DATASETS + ("demo",):
        raise InputError(f"{cfg['model']} segments scenes; use --dataset {' or '.join(SCENE_DATASETS + ('demo',))}")
    split = cfg["split"] or "test"
    folders, classes = scene_split({"dataset": cfg["dataset"], "data_dir": cfg["data_dir"]}, split)
    if list(classes) != list(pred.class_names):
        raise InputError(f"--checkpoint {cfg['checkpoint']} predicts {pred.class_names}, the {split} split has "
                         f"{classes}")
    run = {**pred.config, "vote": cfg["vote"], "amp": "none"}
    metrics, confusion = evaluate_scenes(pred.model, folders, classes, run, dist, pred.features)
    metrics["per_class"] = dict(zip(classes, metrics["per_class"]))
    metrics["per_class_acc"] = dict(zip(classes, metrics["per_class_acc"]))
    metrics.update(model=pred.name, checkpoint=cfg["checkpoint"], split=split, samples=len(folders),
                   classes=list(classes), vote=cfg["vote"], confusion=confusion.long().tolist())
    return metrics


def _json_safe(value: Any) -> Any:
    """``value`` with NaN (a class that never occurs) as null, so the file is valid JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _check_output(output: str | None) -> None:
    """Refuse an ``--output`` that cannot be written before the evaluation runs, not after."""
    if output is None:
        return
    path = Path(output)
    if path.is_dir() or not path.parent.is_dir():
        what = "is a folder" if path.is_dir() else f"needs the folder {path.parent}, which does not exist"
        raise InputError(f"--output {output} {what}; give a .json file path in an existing folder")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cfg = vars(build_parser().parse_args(argv))
    setup_logging()
    with exit_on_input_error(log):
        _check_output(cfg["output"])
        apply_cpu_allocator(cfg["cpu_allocator"])
        metrics = validate(cfg)
        keys = [k for k in ("miou", "oa", "macc", "top1", "top5", "instance_miou", "class_miou", "accuracy", "loss")
                if k in metrics]
        skipped = f", {metrics['skipped']} damaged skipped" if metrics.get("skipped") else ""
        log.info("%s on %s (%d samples%s): %s", cfg["model"], metrics["split"], metrics["samples"], skipped,
                 ", ".join(f"{k} {metrics[k]:.2f}" for k in keys))
        if cfg["output"]:
            try:
                Path(cfg["output"]).write_text(json.dumps(_json_safe(metrics), indent=2))
            except OSError as err:
                raise InputError(f"--output {cfg['output']}: cannot write it ({err.strerror or err})") from err
    return metrics
