"""Scene semantic segmentation: S3DIS, ScanNet-style scene folders, any labelled scene folders and the demo rooms,
on the shared engine.

Recipes (``RECIPES``; every value can be overridden on the command line or in ``--config``):

* ``s3dis`` follows PointNeXt's ``cfgs/s3dis/default.yaml`` (https://github.com/guochengqian/PointNeXt):
  AdamW (lr 0.01, weight decay 1e-4), cosine to 1e-5, 100 epochs, batch 32, voxel 0.04 m, crops of 24,000
  points, each room 30 times per epoch (``loop``), label smoothing 0.2, gradient clipping at 10, colour and
  height features, its augmentation (scaling U[0.9, 1.1], rotation about z, jitter sigma 0.005 clip 0.02,
  colour auto-contrast p 0.2, colour drop p 0.2), Area 5 for validation and test. Deviation: the colours
  are scaled to 0..1 (PointNeXt normalises them by the dataset's mean and std).
* ``scannet``: the same recipe on ScanNet v2's 20 classes (``segment20.npy``) with Pointcept's 0.02 m grid.
* ``demo``: the built-in synthetic rooms, a short AdamW cosine schedule (15 epochs, lr 0.004, weight decay
  0.05) at a coarser grid (0.08 m), crops of 4,000 points in batches of 2, each room 8 times per epoch,
  class weights 1/sqrt(frequency), so that it trains in minutes on a CPU.

Per-epoch validation runs on one deterministic crop of each validation scene (the voxel points); after
training the test split is predicted on every original point of each scene, in overlapping tiles
(:mod:`pointcoc.engine.scene_infer`), with ``--vote N`` rotations optionally, and its confusion matrix is
saved (``confusion_<split>.csv``).
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from torch import Tensor, nn

from pointcoc.data.scene_sets import CROPS, SceneAugment, SceneCrops, collate_scenes, feature_channels
from pointcoc.data.scenes import load_scene, scene_folders
from pointcoc.engine.checkpoint import write_text_atomic
from pointcoc.engine.cli import add_common_args, add_ema_args, add_optimizer_args
from pointcoc.engine.config import fraction, nonnegative_float, nonnegative_int, positive_float, positive_int
from pointcoc.engine.distributed import DistInfo
from pointcoc.engine.metrics import SemSegMeter
from pointcoc.engine.scene_infer import predict_scene, tile_config
from pointcoc.engine.trainer import DataBundle, Task
from pointcoc.errors import InputError
from pointcoc.models import create_model, list_models

__all__ = ["SemSegTask", "RECIPES", "build_parser", "main", "scene_split", "evaluate_scenes", "SCANNET20_CLASSES",
           "segmenter_models", "write_confusion"]

log = logging.getLogger("pointcoc.train")

#: ScanNet v2's 20 benchmark classes, in the order of Pointcept's ``segment20`` labels
SCANNET20_CLASSES = ("wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
                     "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
                     "bathtub", "otherfurniture")

_S3DIS = dict(epochs=100, batch_size=32, opt="adamw", lr=0.01, weight_decay=1e-4, min_lr=1e-5, warmup_epochs=0,
              voxel_size=0.04, num_points=24_000, loops=30, smoothing=0.2, clip_grad=10.0, augment="pointnext",
              features="color,height", train_split="train", val_split="val", test_split="test",
              tile_size=3.0, tile_margin=0.5, tile_points=60_000, height_ref="scene", class_weights="none")
#: recipe -> defaults (see the module docstring for the sources)
RECIPES: dict[str, dict[str, Any]] = {
    "s3dis": _S3DIS,
    "scannet": {**_S3DIS, "voxel_size": 0.02},
    # 15 epochs of crops of 4,000 points, batch 2, each room 8 times per epoch, sqrt class weights: 82.5 test mIoU
    # in 435 s on the CPU; crops of 8,000 at batch 4 and 4 loops, unweighted, gave 64.1 (door IoU 0) in 464 s
    "demo": {**_S3DIS, "epochs": 15, "batch_size": 2, "lr": 4e-3, "weight_decay": 0.05, "voxel_size": 0.08,
             "num_points": 4_000, "loops": 8, "smoothing": 0.0, "class_weights": "sqrt", "tile_size": 4.0,
             "tile_margin": 0.5, "tile_points": 20_000},
}
DEFAULT_ROOTS = {"s3dis": "data/s3dis", "scannet": "data/scannet", "folder": "data/scenes", "demo": "data/demo"}
AUGMENTS = ("none", "pointnext")
CLASS_WEIGHTS = ("none", "inverse", "sqrt")


def segmenter_models() -> list[str]:
    """The registered models that segment scenes (per-point models without categories)."""
    return [m for m in list_models("partseg") if m.startswith("pointcoc_seg")]


def _read_classes(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: no class table; write one class name per line, in label order")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names or len(set(names)) != len(names):
        raise InputError(f"{path}: the class table must list distinct names, one per line")
    return names


def scene_split(cfg: dict[str, Any], split: str) -> tuple[list[Path], list[str]]:
    """The scene folders of ``split`` of ``cfg["dataset"]`` under ``cfg["data_dir"]`` and the class names.

    * ``s3dis``: the preprocessed layout ``<root>/Area_<i>/<room>`` (``scripts/prepare_s3dis.py``), Area 5 for
      val and test;
    * ``scannet``: ``<root>/<split>/<scene>`` with ``segment20.npy`` (Pointcept's layout), 20 classes;
    * ``folder``: ``<root>/<split>/`` holding scene folders and/or single scene files (``.ply``, ``.npy``, ``.npz``,
      text with a label column, ``.las``/``.laz`` with ``--las-map``), and ``<root>/classes.txt``;
    * ``demo``: the built-in rooms (written on first use), a ``folder`` set.
    """
    name, root = cfg["dataset"], Path(cfg.get("data_dir") or DEFAULT_ROOTS[cfg["dataset"]])
    if name == "s3dis":
        from pointcoc.data.s3dis import S3DIS_CLASSES, s3dis_scenes

        return list(s3dis_scenes(root, split)), list(S3DIS_CLASSES)
    if name == "demo":
        from pointcoc.data.demo_rooms import ensure_room_demo

        root = Path(ensure_room_demo(root))
    if name == "scannet":
        classes = list(SCANNET20_CLASSES)
    else:
        classes = _read_classes(root / "classes.txt")
    if not (root / split).is_dir():
        raise InputError(f"{root}: no '{split}' folder of scenes (expected {root}/{split}/<scene>/coord.npy)")
    folders = scene_folders(root, [split], files=name == "folder")
    if not folders:
        raise InputError(f"{root / split}: no scenes (scene folders holding coord.npy, color.npy and segment.npy"
                         f"{', or labelled point files' if name == 'folder' else ''})")
    return folders, classes


def augmentation(name: str) -> SceneAugment | None:
    """``none`` or PointNeXt's S3DIS augmentation (:class:`~pointcoc.data.scene_sets.SceneAugment`'s defaults)."""
    return None if name == "none" else SceneAugment()


def features_of(cfg: dict[str, Any]) -> tuple[str, ...]:
    """``--features`` as a tuple ("" or "none": no features, positions only)."""
    spec = cfg["features"]
    names = tuple(f.strip() for f in spec.split(",") if f.strip()) if spec and spec != "none" else ()
    feature_channels(names)
    return names


def class_weights(folders: Sequence[Path], num_classes: int, mode: str, label_map: Any = None) -> Tensor | None:
    """Loss weights per class from the training scenes' label counts: ``inverse`` (1 / frequency) or ``sqrt``
    (1 / sqrt(frequency)), normalised to mean 1; classes that never occur get weight 0."""
    if mode == "none":
        return None
    counts = np.zeros(num_classes)
    for folder in folders:
        seg = load_scene(folder, num_classes=num_classes, label_map=label_map).segment
        if seg is not None:
            counts += np.bincount(seg[seg >= 0], minlength=num_classes)
    freq = counts / max(counts.sum(), 1)
    w = np.where(freq > 0, 1 / np.maximum(freq, 1e-12) ** (1.0 if mode == "inverse" else 0.5), 0.0)
    w = w / w[w > 0].mean()
    return torch.tensor(w, dtype=torch.float32)


class SemSegEpochMeter:
    """:class:`~pointcoc.engine.metrics.SemSegMeter` in the engine's meter protocol: ``target = (labels [M],
    crops)``, ``count`` in crops (the engine's samples/s), ``compute()`` with ``miou``, ``oa``, ``macc`` and
    ``per_class`` IoU."""

    def __init__(self, num_classes: int) -> None:
        self.meter = SemSegMeter(num_classes)
        self.crops = 0

    def skip(self, count: int) -> None:
        self.meter.skip(count)

    @property
    def count(self) -> int:
        return self.crops

    def update(self, logits: Tensor, target: tuple[Tensor, int], loss: float | None = None) -> None:
        labels, crops = target
        self.meter.update(logits, labels, loss)
        self.crops += crops

    def reduce(self) -> SemSegEpochMeter:
        self.meter.reduce()
        return self

    def compute(self) -> dict[str, Any]:
        out = self.meter.compute()
        return {"miou": out["miou"], "oa": out["oa"], "macc": out["macc"], "per_class": out["per_class"],
                "loss": out["loss"], "skipped": out["skipped"]}


def write_confusion(path: Path, confusion: Tensor, class_names: Sequence[str]) -> Path:
    """The confusion matrix as CSV (rows: ground truth, columns: prediction, point counts), atomically."""
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(["truth \\ predicted", *class_names])
    for name, row in zip(class_names, confusion.long().tolist()):
        w.writerow([name, *row])
    write_text_atomic(text.getvalue(), path)
    return path


@torch.no_grad()
def evaluate_scenes(model: nn.Module, folders: Sequence[Path], class_names: Sequence[str], cfg: dict[str, Any],
                    dist: DistInfo, features: Sequence[str]) -> tuple[dict[str, Any], Tensor]:
    """Metrics on every original point of the scenes (``folders``; this process takes every
    ``world_size``-th), predicted in tiles (:func:`~pointcoc.engine.scene_infer.predict_scene`); the sums are
    reduced over processes. Returns the metrics (``miou``, ``oa``, ``macc``, ``per_class``, ``points``,
    ``scenes``) and the confusion matrix ``[C, C]``."""
    model.eval()
    tiles = tile_config(cfg, features)
    meter = SemSegMeter(len(class_names))
    for folder in list(folders)[dist.rank::dist.world_size]:
        scene = load_scene(folder, num_classes=len(class_names), label_map=cfg.get("las_map"))
        if scene.segment is None:
            raise InputError(f"{folder}: no labels (segment.npy, a label field, or --las-map for LAS) to evaluate "
                             "against")
        probs = predict_scene(model, scene.coord, tiles, color=scene.color, normal=scene.normal, device=dist.device,
                              num_classes=len(class_names))
        meter.update(torch.from_numpy(probs.argmax(1)), torch.from_numpy(scene.segment))
    meter.reduce()
    out = meter.compute()
    del out["loss"], out["skipped"]
    out["points"] = meter.count
    out["scenes"] = len(folders)
    return out, meter.confusion


class SemSegTask(Task):
    """Scene segmentation: per-point cross entropy (ignored labels left out), mIoU / OA / mAcc, whole-scene test."""

    best_key = "miou"

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.features = features_of(cfg)
        self.smoothing = cfg["smoothing"]
        self.weight: Tensor | None = None

    def build_data(self, cfg: dict[str, Any], dist: DistInfo) -> DataBundle:
        train_folders, classes = scene_split(cfg, cfg["train_split"])
        val_folders, val_classes = scene_split(cfg, cfg["val_split"])
        C = len(classes)
        if cfg.get("las_map"):
            from pointcoc.data.las import LasLabelMap

            names = LasLabelMap.parse(cfg["las_map"]).names
            if len(names) != C:
                raise InputError(f"--las-map names {len(names)} classes ({', '.join(names)}), the class table has {C} "
                                 f"({', '.join(classes)}); give one entry per class, in its order")
        common = dict(voxel_size=cfg["voxel_size"] or None, num_points=cfg["num_points"], features=self.features,
                      label_map=cfg.get("las_map"), crop=cfg.get("crop") or "sphere")
        train = SceneCrops(train_folders, C, augment=augmentation(cfg["augment"]), loops=cfg["loops"], train=True,
                           **common)
        val = SceneCrops(val_folders, C, train=False, seed=cfg["seed"], **common)
        self.weight = class_weights(train_folders, C, cfg["class_weights"], cfg.get("las_map"))
        return DataBundle(train, val, C, classes, info={"test_split": cfg["test_split"]})

    def build_model(self, cfg: dict[str, Any], data: DataBundle) -> nn.Module:
        if cfg["model"] not in segmenter_models():
            raise InputError(f"--model {cfg['model']} is not a scene segmenter; choose one of {segmenter_models()}")
        kwargs: dict[str, Any] = dict(num_classes=data.num_classes, num_categories=0,
                                      in_chans=feature_channels(self.features))
        if cfg.get("sampler"):
            kwargs["sampler"] = cfg["sampler"]
        model = create_model(cfg["model"], **kwargs, **(cfg.get("model_kwargs") or {}))  # + a resumed run's
        need = model.min_points()
        if cfg["num_points"] < need:
            raise InputError(f"--num-points {cfg['num_points']} is below what {cfg['model']} needs ({need}); raise it")
        return model

    def build_optimizer(self, cfg: dict[str, Any], model: nn.Module, dist: DistInfo) -> torch.optim.Optimizer:
        return create_optimizer_v2(model, cfg["opt"], lr=cfg["lr"], weight_decay=cfg["weight_decay"])

    def make_meter(self, num_classes: int, train: bool) -> SemSegEpochMeter:
        return SemSegEpochMeter(num_classes)

    def collate(self, train: bool = False) -> Any:
        return collate_scenes

    def _logits(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[Tensor, tuple[Tensor, int]]:
        pos, x, label, index = (t.to(device, non_blocking=True) for t in batch)
        crops = int(index[-1]) + 1 if index.numel() else 0
        return model(pos, x if x.shape[1] else None, batch=index), (label, crops)

    def train_loss(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[Tensor, Tensor, Any]:
        logits, target = self._logits(model, batch, device)
        return self.eval_loss(logits, target), logits, target

    def eval_logits(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[Tensor, Any]:
        return self._logits(model, batch, device)

    def eval_loss(self, logits: Tensor, target: Any) -> Tensor:
        """Per-point cross entropy over the labelled points (``-1`` ignored), with ``--smoothing`` and
        ``--class-weights``."""
        labels = target[0]
        weight = None if self.weight is None else self.weight.to(logits.device)
        return F.cross_entropy(logits.float(), labels, weight=weight, ignore_index=-1, label_smoothing=self.smoothing)

    def summary(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        best = max(history, key=lambda r: r["val_miou"])
        return {"best_miou": best["val_miou"], "best_oa": best["val_oa"], "best_macc": best["val_macc"],
                "best_epoch": best["epoch"], "final_miou": history[-1]["val_miou"],
                "final_oa": history[-1]["val_oa"]}

    def checkpoint_extras(self, data: DataBundle) -> dict[str, Any]:
        """``task: "semseg"`` and what inference needs: the classes and the input features."""
        return {"task": "semseg", "classes": list(data.class_names), "features": list(self.features)}

    def final_extras(self, cfg: dict[str, Any], model: nn.Module, data: DataBundle, dist: DistInfo) -> dict:
        """The test split on every original point of each scene; the confusion matrix goes to
        ``confusion_<split>.csv`` in the run's folder."""
        split = cfg["test_split"]
        folders, classes = scene_split(cfg, split)
        res, confusion = evaluate_scenes(model, folders, classes, cfg, dist, self.features)
        out: dict[str, Any] = {"full_split": split, "full_points": res["points"], "full_scenes": res["scenes"]}
        out.update({f"final_full_{k}": res[k] for k in ("miou", "oa", "macc")})
        out["final_full_per_class"] = dict(zip(classes, res["per_class"]))
        if cfg.get("vote", 0) > 1:
            out["vote"] = cfg["vote"]
        if dist.is_main:
            write_confusion(Path(cfg["output_dir"]) / f"confusion_{split}.csv", confusion, classes)
        return out


def build_parser() -> argparse.ArgumentParser:
    """Command line of ``scripts/train_semseg.py`` (defaults come from :data:`RECIPES`)."""
    p = argparse.ArgumentParser(description="Train a scene segmenter (S3DIS, ScanNet, scene folders or the demo "
                                            "rooms).", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", help="YAML file of option values (the command line overrides it)")
    p.add_argument("--dataset", choices=sorted(DEFAULT_ROOTS), default="s3dis")
    p.add_argument("--data-dir", help="dataset root (default: data/<dataset>; data/demo for the demo rooms)")
    p.add_argument("--model", default="pointcoc_seg_tiny", choices=segmenter_models())
    p.add_argument("--recipe", choices=sorted(RECIPES), help="default: demo for the demo rooms, scannet for "
                                                             "scannet, else s3dis")
    add_optimizer_args(p, ["sgd", "adam", "adamw"], warmup_lr=1e-6)
    p.add_argument("--smoothing", type=fraction, help="label smoothing of the per-point loss")
    p.add_argument("--class-weights", choices=CLASS_WEIGHTS,
                   help="loss weights from the training labels' frequencies (1/f or 1/sqrt(f))")
    p.add_argument("--augment", choices=AUGMENTS, help="training augmentation")
    p.add_argument("--voxel-size", type=nonnegative_float, help="grid subsampling in metres (0: none)")
    p.add_argument("--num-points", type=positive_int, help="points per training / validation crop")
    p.add_argument("--loops", type=positive_int, help="crops per scene per epoch")
    p.add_argument("--crop", choices=CROPS, default="sphere",
                   help="crop shape: the nearest points in 3D (sphere) or by max(|dx|, |dy|) (box: a square column)")
    p.add_argument("--features", help="comma-separated input features among color, height, normal ('none': xyz)")
    p.add_argument("--sampler", help="the model's point sampler (default: the model's, FPS)")
    p.add_argument("--las-map", help="LAS/LAZ scenes of --dataset folder: classes from classification codes, e.g. "
                                     "'ground:2;vegetation:3-5;building:6' (in the order of classes.txt)")
    p.add_argument("--train-split")
    p.add_argument("--val-split")
    p.add_argument("--test-split", help="after training: predicted on every original point of each scene")
    p.add_argument("--tile-size", type=positive_float, help="whole-scene inference: tile side in metres")
    p.add_argument("--tile-margin", type=nonnegative_float, help="whole-scene inference: context around a tile")
    p.add_argument("--tile-points", type=positive_int, help="whole-scene inference: most voxels per model call")
    p.add_argument("--height-ref", choices=["scene", "tile"], help="heights from the scene's or the tile's lowest z")
    p.add_argument("--vote", type=nonnegative_int, default=0, help="whole-scene test: average N rotations about z")
    add_ema_args(p, 0.999)
    add_common_args(p)
    return p


def recipe_name(dataset: str) -> str:
    """The recipe of ``dataset``."""
    return {"demo": "demo", "scannet": "scannet"}.get(dataset, "s3dis")


def resolve_semseg_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Fill unset values from the dataset's recipe and check the features."""
    out = dict(cfg)
    out["recipe"] = out.get("recipe") or recipe_name(out["dataset"])
    for key, value in RECIPES[out["recipe"]].items():
        if out.get(key) is None:
            out[key] = value
    out["sched"] = "cosine"
    features_of(out)
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``scripts/train_semseg.py``."""
    from pointcoc.engine.cli import run

    return run(build_parser(), argv, resolve_semseg_config, SemSegTask)

