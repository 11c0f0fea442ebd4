"""Part segmentation: ShapeNetPart and the demo part set, on the shared engine.

Recipes (``RECIPES``; every value can be overridden on the command line or in ``--config``):

* ``pointmlp_partseg`` follows PointMLP's ``part_segmentation/main.py``
  (https://github.com/ma-xu/pointMLP-pytorch): Adam (lr 0.003, no weight decay), the step schedule
  (x0.5 every 40 epochs), 350 epochs, batch 32, 2,048 points with normals, no augmentation, trained on
  ``trainval`` and validated on ``test``, per-point NLL (plain cross entropy on its log-probabilities);
* ``pointcoc_seg_*`` follow PointNeXt's ``cfgs/shapenetpart/pointnext-s.yaml``
  (https://github.com/guochengqian/PointNeXt): AdamW (lr 0.001, weight decay 1e-4), 300 epochs with the
  learning rate x0.1 at epochs 210 and 270, scaling U[0.8, 1.2] per axis, re-normalisation and jitter
  (sigma 0.001, clip 0.005). Deviations: the loss is cross entropy (PointNeXt's is Poly-1 focal), the batch
  is PointMLP's 32, and the features are the normals (PointNeXt adds the height).
* ``demo``: the built-in synthetic part set, one short AdamW cosine schedule for every model (so the models
  compare on equal terms), PointNeXt's augmentation.

Validation reports instance mIoU (the best-checkpoint metric), class mIoU, per-category IoU and point
accuracy on the sampled points. After training the test split is also evaluated on every stored point
of each shape (the standard protocol; ``final_full_*``) and, with ``--vote N``, with N scaled copies
averaged (``final_vote_*``, reported separately).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler, MultiStepLRScheduler, StepLRScheduler
from torch import Tensor, nn

from pointcoc import data as pdata
from pointcoc.engine.cli import add_common_args, add_ema_args, add_optimizer_args
from pointcoc.engine.config import fraction, nonnegative_int, positive_int
from pointcoc.engine.distributed import DistInfo
from pointcoc.engine.metrics import PartSegMeter
from pointcoc.engine.trainer import DataBundle, Task, autocast_context, make_loader
from pointcoc.errors import InputError
from pointcoc.models import create_model, list_models

__all__ = ["PartSegTask", "PartSegEpochMeter", "RECIPES", "build_parser", "main", "partseg_split",
           "evaluate_shapes", "ShapeCollate", "recipe_name"]

log = logging.getLogger("pointcoc.train")

#: recipe -> defaults (see the module docstring for the sources)
RECIPES: dict[str, dict[str, Any]] = {
    "pointmlp": dict(epochs=350, batch_size=32, opt="adam", lr=0.003, weight_decay=0.0, sched="step",
                     decay_epochs=[40], decay_rate=0.5, min_lr=0.0, warmup_epochs=0, augment="none",
                     num_points=2048, train_split="trainval", val_split="test"),
    "pointnext": dict(epochs=300, batch_size=32, opt="adamw", lr=0.001, weight_decay=1e-4, sched="multistep",
                      decay_epochs=[210, 270], decay_rate=0.1, min_lr=0.0, warmup_epochs=0, augment="pointnext",
                      num_points=2048, train_split="trainval", val_split="test"),
    "demo": dict(epochs=10, batch_size=16, opt="adamw", lr=4e-3, weight_decay=0.05, sched="cosine", min_lr=1e-5,
                 decay_epochs=[], decay_rate=1.0, warmup_epochs=0, augment="pointnext", num_points=2048,
                 train_split="train", val_split="val"),
}
DEFAULT_ROOTS = {"shapenetpart": "data", "demo": "data/demo"}
SCHEDULES = ("cosine", "step", "multistep")
AUGMENTS = ("none", "pointnext")


def recipe_name(dataset: str, model: str) -> str:
    """The recipe of ``model`` on ``dataset``: ``demo`` on the demo set, else PointMLP's or PointNeXt's."""
    if dataset == "demo":
        return "demo"
    return "pointmlp" if model.startswith("pointmlp") else "pointnext"


def train_transform(augment: str) -> Any:
    """``none`` or PointNeXt's ShapeNetPart augmentation: scale U[0.8, 1.2] per axis, unit sphere, jitter."""
    if augment == "none":
        return None
    return pdata.Compose([pdata.ScaleTranslate(scale=(0.8, 1.2), shift=0.0), pdata.NormalizeUnitSphere(),
                          pdata.Jitter(sigma=0.001, clip=0.005)])


def partseg_split(cfg: dict[str, Any], split: str, num_points: int | None, transform: Any = None
                  ) -> pdata.ShapeNetPart:
    """``split`` of ``cfg["dataset"]`` under ``cfg["data_dir"]``; the demo set is written on first use."""
    name, root = cfg["dataset"], cfg.get("data_dir") or DEFAULT_ROOTS[cfg["dataset"]]
    if name == "demo":
        root = str(pdata.ensure_partseg_demo(root))
    return pdata.ShapeNetPart(root, split, num_points=num_points, use_normals=cfg["use_normals"],
                              transform=transform)


def model_inputs(points: Tensor, use_normals: bool) -> tuple[Tensor, Tensor | None]:
    """``points [..., 3 or 6]`` -> ``(pos [..., 3], normals [..., 3] or None)``."""
    return points[..., :3], (points[..., 3:6] if use_normals else None)


class PartSegEpochMeter:
    """:class:`~pointcoc.engine.metrics.PartSegMeter` in the engine's meter protocol (``update(logits, target,
    loss)`` with ``target = (category [B], parts [B, N])``; ``compute()`` with ``oa``, the point accuracy,
    and ``per_class``, the per-category IoU)."""

    def __init__(self, part_mask: Tensor) -> None:
        self.meter = PartSegMeter(part_mask)
        self.skipped = 0

    def skip(self, count: int) -> None:
        self.skipped += count

    @property
    def count(self) -> int:
        return int(self.meter.shapes.sum())

    def update(self, logits: Tensor, target: tuple[Tensor, Tensor], loss: float | None = None) -> None:
        category, parts = target
        self.meter.update(logits, category, parts, loss)

    def reduce(self) -> PartSegEpochMeter:
        self.meter.reduce()
        return self

    def compute(self) -> dict[str, Any]:
        out = self.meter.compute()
        return {"instance_miou": out["instance_miou"], "class_miou": out["class_miou"], "oa": out["accuracy"],
                "per_class": out["per_category"], "loss": out["loss"], "skipped": self.skipped}


class ShapeCollate:
    """A ``collate_fn`` for whole shapes of different sizes: one flat batch (picklable, for loader workers).

    Returns ``(points [sum N', C], batch [sum N'], category [B], parts [sum N'], keep [sum N'])``: a shape
    with fewer than ``min_points`` points (the model's minimum) is padded with repeats of its own points,
    drawn with a generator seeded by ``seed`` and the shape's size, and ``keep`` marks the original points
    (the first ``N`` of each shape), whose predictions are the shape's.
    """

    def __init__(self, min_points: int, seed: int = 0) -> None:
        self.min_points, self.seed = min_points, seed

    def __call__(self, items: list[tuple[Tensor, int, Tensor]]) -> tuple[Tensor, ...]:
        pts, batch, cats, parts, keep = [], [], [], [], []
        for b, (p, c, s) in enumerate(items):
            n = p.shape[0]
            mask = torch.ones(max(n, self.min_points), dtype=torch.bool)
            if n < self.min_points:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + n)
                extra = torch.randint(0, n, (self.min_points - n,), generator=g)
                p, s = torch.cat([p, p[extra]]), torch.cat([s, s[extra]])
                mask[n:] = False
            pts.append(p)
            parts.append(s)
            keep.append(mask)
            batch.append(torch.full((p.shape[0],), b, dtype=torch.long))
            cats.append(int(c))
        return torch.cat(pts), torch.cat(batch), torch.tensor(cats), torch.cat(parts), torch.cat(keep)


def _vote_view(points: Tensor, batch: Tensor, num_clouds: int, generator: torch.Generator) -> Tensor:
    """One voting copy of a flat batch: every cloud scaled per axis by ``U[0.8, 1.2]`` (the training range)
    and re-normalised to the unit sphere; normals follow the inverse scale."""
    scale = (0.8 + 0.4 * torch.rand(num_clouds, 3, generator=generator, dtype=torch.float64)).to(points)[batch]
    out = points.clone()
    xyz = points[:, :3] * scale
    center = torch.zeros(num_clouds, 3, dtype=xyz.dtype, device=xyz.device).index_add_(0, batch, xyz)
    center = center / torch.bincount(batch, minlength=num_clouds).clamp_min(1).to(xyz)[:, None]
    xyz = xyz - center[batch]
    radius = torch.zeros(num_clouds, dtype=xyz.dtype, device=xyz.device).scatter_reduce_(
        0, batch, xyz.norm(dim=1), "amax", include_self=True)
    out[:, :3] = xyz / radius.clamp_min(1e-12)[batch, None]
    if points.shape[1] >= 6:
        n = points[:, 3:6] / scale
        out[:, 3:6] = n / n.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return out


@torch.no_grad()
def evaluate_shapes(model: nn.Module, dataset: pdata.ShapeNetPart, cfg: dict[str, Any], dist: DistInfo,
                    votes: int = 0, amp: str = "none") -> dict[str, Any]:
    """Part-seg metrics on whole shapes (every point ``dataset`` stores; build it with ``num_points=None``).

    Shapes go through the model in flat batches of different sizes. With ``votes > 1`` the model's
    probabilities over ``votes`` copies are averaged, the first copy unscaled, the others scaled
    (:func:`_vote_view`; their generator is seeded by ``cfg["seed"]``). Each process evaluates its shard;
    the sums are reduced over processes.
    """
    model.eval()
    min_points = model.min_points() if hasattr(model, "min_points") else 1
    loader = make_loader(dataset, {**cfg, "batch_size": cfg.get("eval_batch_size") or cfg["batch_size"]}, dist, 0,
                         False, ShapeCollate(min_points, cfg["seed"]))
    meter = PartSegMeter(dataset.categories.part_mask())
    g = torch.Generator().manual_seed(cfg["seed"])
    use_normals = cfg["use_normals"]
    for points, batch, category, parts, keep in loader:
        points, batch = points.to(dist.device), batch.to(dist.device)
        category = category.to(dist.device)
        num = category.numel()
        probs = None
        for v in range(max(votes, 1)):
            view = points if v == 0 else _vote_view(points, batch, num, g)
            pos, normals = model_inputs(view, use_normals)
            with autocast_context(amp, dist.device):
                logits = model(pos, normals, category, batch=batch)
            p = logits.float().softmax(-1)
            probs = p if probs is None else probs + p
        assert probs is not None
        probs, keep_d = probs.cpu(), keep
        sizes = torch.bincount(batch.cpu()[keep_d], minlength=num).tolist()
        for c, pr, tg in zip(category.cpu(), torch.split(probs[keep_d], sizes), torch.split(parts[keep_d], sizes)):
            meter.update(pr[None], c[None], tg[None])
    out = meter.reduce().compute()
    del out["loss"]  # no loss is computed on whole shapes
    out["points"] = int(meter.points[1])
    return out


class PartSegTask(Task):
    """Part segmentation: per-point cross entropy, instance / class mIoU, full-shape test and voting."""

    best_key = "instance_miou"

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.smoothing = cfg["smoothing"]
        self.vote = cfg["vote"]
        self.use_normals = cfg["use_normals"]
        self.part_mask: Tensor | None = None

    def build_data(self, cfg: dict[str, Any], dist: DistInfo) -> DataBundle:
        train = partseg_split(cfg, cfg["train_split"], cfg["num_points"], train_transform(cfg["augment"]))
        val = partseg_split(cfg, cfg["val_split"], cfg["num_points"])
        if train.categories != val.categories:
            raise InputError(f"the {cfg['train_split']} and {cfg['val_split']} splits disagree on the categories "
                             f"({train.categories.names} vs {val.categories.names})")
        self.part_mask = train.categories.part_mask()
        cats = train.categories
        return DataBundle(train, val, cats.num_parts, list(cats.names),
                          info={"categories": cats, "num_categories": cats.num_categories})

    def build_model(self, cfg: dict[str, Any], data: DataBundle) -> nn.Module:
        kwargs: dict[str, Any] = dict(num_classes=data.num_classes, num_categories=data.info["num_categories"])
        if not self.use_normals:
            if cfg["model"].startswith("pointmlp"):
                raise InputError(f"{cfg['model']} reads xyz and normals together (upstream); drop --no-normals")
            kwargs["in_chans"] = 0
        model = create_model(cfg["model"], **kwargs, **(cfg.get("model_kwargs") or {}))  # + a resumed run's
        need = model.min_points() if hasattr(model, "min_points") else 1
        if cfg["num_points"] < need:
            raise InputError(f"--num-points {cfg['num_points']} is below what {cfg['model']} needs ({need} points per "
                             "shape); raise --num-points")
        return model

    def build_optimizer(self, cfg: dict[str, Any], model: nn.Module, dist: DistInfo) -> torch.optim.Optimizer:
        if cfg["opt"] == "sgd":
            return torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=0.9, weight_decay=cfg["weight_decay"])
        if cfg["opt"] == "adam":  # PointMLP: Adam, betas (0.9, 0.999), eps 1e-8
            return torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        return create_optimizer_v2(model, "adamw", lr=cfg["lr"], weight_decay=cfg["weight_decay"])

    def build_scheduler(self, cfg: dict[str, Any], optimizer: torch.optim.Optimizer) -> Any:
        warm = dict(warmup_t=cfg.get("warmup_epochs") or 0, warmup_lr_init=cfg.get("warmup_lr") or 0.0)
        if cfg["sched"] == "step":
            return StepLRScheduler(optimizer, decay_t=cfg["decay_epochs"][0], decay_rate=cfg["decay_rate"], **warm)
        if cfg["sched"] == "multistep":
            return MultiStepLRScheduler(optimizer, decay_t=list(cfg["decay_epochs"]), decay_rate=cfg["decay_rate"],
                                        **warm)
        return CosineLRScheduler(optimizer, t_initial=cfg["epochs"], lr_min=cfg["min_lr"], **warm)

    def make_meter(self, num_classes: int, train: bool) -> PartSegEpochMeter:
        assert self.part_mask is not None, "build_data first"
        return PartSegEpochMeter(self.part_mask)

    def _logits(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        points, category, parts = (t.to(device, non_blocking=True) for t in batch)
        pos, normals = model_inputs(points, self.use_normals)
        return model(pos, normals, category), (category, parts)

    def train_loss(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[Tensor, Tensor, Any]:
        logits, target = self._logits(model, batch, device)
        return self.eval_loss(logits, target), logits, target

    def eval_logits(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[Tensor, Any]:
        return self._logits(model, batch, device)

    def eval_loss(self, logits: Tensor, target: Any) -> Tensor:
        """Per-point cross entropy (with ``--smoothing``, PyTorch's label smoothing), mean over points."""
        parts = target[1]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), parts.reshape(-1),
                               label_smoothing=self.smoothing)

    def summary(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        best = max(history, key=lambda r: r["val_instance_miou"])
        return {"best_instance_miou": best["val_instance_miou"],
                "best_class_miou": max(r["val_class_miou"] for r in history),
                "best_epoch": best["epoch"], "final_instance_miou": history[-1]["val_instance_miou"],
                "final_class_miou": history[-1]["val_class_miou"]}

    def checkpoint_extras(self, data: DataBundle) -> dict[str, Any]:
        """``task: "partseg"`` and the part table (``categories``: names, synsets, parts, num_parts)."""
        cats = data.info["categories"]
        return {"task": "partseg", "categories": {"names": list(cats.names), "synsets": list(cats.synsets),
                                                  "parts": [list(p) for p in cats.parts],
                                                  "num_parts": cats.num_parts}}

    def final_extras(self, cfg: dict[str, Any], model: nn.Module, data: DataBundle, dist: DistInfo) -> dict:
        """The test split on every stored point of each shape, without and (``--vote N``) with voting."""
        test = partseg_split(cfg, cfg["test_split"], None)
        out: dict[str, Any] = {"full_split": cfg["test_split"]}
        runs = [("full", 0)] + ([("vote", self.vote)] if self.vote > 1 else [])
        for name, votes in runs:
            res = evaluate_shapes(model, test, cfg, dist, votes, cfg["amp"])
            out.update({f"final_{name}_instance_miou": res["instance_miou"],
                        f"final_{name}_class_miou": res["class_miou"], f"final_{name}_accuracy": res["accuracy"],
                        f"final_{name}_per_category": dict(zip(data.class_names, res["per_category"]))})
            out["full_points"] = res["points"]
        if self.vote > 1:
            out["vote"] = self.vote
        return out


def build_parser() -> argparse.ArgumentParser:
    """Command line of ``scripts/train_partseg.py`` (defaults come from :data:`RECIPES`)."""
    p = argparse.ArgumentParser(description="Train a part segmenter (ShapeNetPart or the demo part set).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", help="YAML file of option values (the command line overrides it)")
    p.add_argument("--dataset", choices=sorted(DEFAULT_ROOTS), default="shapenetpart")
    p.add_argument("--data-dir", help="dataset root: a ShapeNetPart release folder or a folder holding one "
                                      "(default: data, or data/demo)")
    p.add_argument("--model", default="pointcoc_seg_tiny", choices=list_models("partseg"))
    p.add_argument("--recipe", choices=sorted(RECIPES), help="default: demo on the demo set, else pointmlp for "
                                                             "pointmlp_partseg and pointnext for the others")
    add_optimizer_args(p, ["sgd", "adam", "adamw"], warmup_lr=1e-6)
    p.add_argument("--sched", choices=SCHEDULES, help="cosine, step (every --decay-epochs) or multistep")
    p.add_argument("--decay-epochs", type=positive_int, nargs="+", help="step: the period; multistep: milestones")
    p.add_argument("--decay-rate", type=fraction, help="learning-rate factor at each decay")
    p.add_argument("--smoothing", type=fraction, default=0.0, help="label smoothing of the per-point loss")
    p.add_argument("--augment", choices=AUGMENTS, help="training augmentation")
    p.add_argument("--num-points", type=positive_int, help="points sampled per shape in training and validation")
    p.add_argument("--no-normals", dest="use_normals", action="store_false", help="xyz only")
    p.add_argument("--train-split", choices=["train", "trainval"])
    p.add_argument("--val-split", choices=["val", "test"])
    p.add_argument("--test-split", default="test", choices=["val", "test"],
                   help="after training: evaluated on every stored point of each shape")
    p.add_argument("--vote", type=nonnegative_int, default=0, help="after training, also evaluate with N votes")
    add_ema_args(p, 0.999)
    add_common_args(p)
    return p


def resolve_partseg_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Fill unset values from the recipe of the dataset and model."""
    out = dict(cfg)
    out["recipe"] = out.get("recipe") or recipe_name(out["dataset"], out["model"])
    for key, value in RECIPES[out["recipe"]].items():
        if out.get(key) is None:
            out[key] = value
    if out["sched"] in ("step", "multistep") and not out["decay_epochs"]:
        raise InputError(f"--sched {out['sched']} needs --decay-epochs")
    if out["sched"] == "step" and len(out["decay_epochs"]) != 1:
        raise InputError(f"--sched step decays every --decay-epochs N epochs: give one N, got {out['decay_epochs']} "
                         "(milestones are --sched multistep)")
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``scripts/train_partseg.py``."""
    from pointcoc.engine.cli import run

    return run(build_parser(), argv, resolve_partseg_config, PartSegTask)
