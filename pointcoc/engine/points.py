"""Point-cloud classification: ModelNet40, ScanObjectNN and the demo set, with PointMLP's recipe.

Defaults (``RECIPES``) follow PointMLP's published training scripts
(https://github.com/ma-xu/pointMLP-pytorch, ``classification_ModelNet40/main.py`` and
``classification_ScanObjectNN/main.py``): SGD with momentum 0.9, cosine annealing
per epoch, batch 32, 1024 points, label smoothing 0.2 in PointMLP's form,
scale + translate augmentation and shuffling.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

import torch
from timm.optim import create_optimizer_v2
from torch import Tensor, nn

from pointcoc import data as pdata
from pointcoc.engine.cli import add_common_args, add_optimizer_args
from pointcoc.engine.config import fraction, nonnegative_int, positive_int
from pointcoc.engine.distributed import DistInfo
from pointcoc.engine.losses import smooth_cross_entropy
from pointcoc.engine.trainer import DataBundle, Task, evaluate, make_loader
from pointcoc.errors import InputError
from pointcoc.models import create_model, list_models

__all__ = ["PointTask", "RECIPES", "build_parser", "point_datasets", "point_split"]

log = logging.getLogger("pointcoc.train")

#: dataset -> defaults; every value can be overridden on the command line or in --config
RECIPES: dict[str, dict[str, Any]] = {
    # PointMLP classification_ModelNet40/main.py: lr 0.1, min_lr 0.005, weight_decay 2e-4, 300 epochs
    "modelnet40": dict(epochs=300, batch_size=32, opt="sgd", lr=0.1, min_lr=0.005, weight_decay=2e-4,
                       warmup_epochs=0, num_points=1024),
    # PointMLP classification_ScanObjectNN/main.py: lr 0.01, cosine to lr / 100, weight_decay 1e-4, 200 epochs
    "scanobjectnn": dict(epochs=200, batch_size=32, opt="sgd", lr=0.01, weight_decay=1e-4,
                         warmup_epochs=0, num_points=1024),
    # the built-in synthetic set: a short AdamW schedule for `make demo` (CoC blocks train best with AdamW)
    "demo": dict(epochs=12, batch_size=32, opt="adamw", lr=2e-3, min_lr=1e-5, weight_decay=0.05, warmup_epochs=0,
                 num_points=512),
}
DEFAULT_ROOTS = {"modelnet40": "data/modelnet40_ply_hdf5_2048", "scanobjectnn": "data/h5_files",
                 "demo": "data/demo"}


def point_split(cfg: dict[str, Any], split: str, transform: Any = None) -> Any:
    """One split of ``cfg["dataset"]`` under ``cfg["data_dir"]`` (default: :data:`DEFAULT_ROOTS`).

    The demo data is written on first use (safe with concurrent processes, e.g. under torchrun)."""
    name, root = cfg["dataset"], cfg.get("data_dir") or DEFAULT_ROOTS[cfg["dataset"]]
    if name == "scanobjectnn":
        return pdata.scanobjectnn(root, split, cfg["variant"], cfg["num_points"], transform)
    if name == "demo":
        root = pdata.ensure_demo_data(root) / "points"
    return pdata.modelnet40(root, split, cfg["num_points"], transform)


def point_datasets(cfg: dict[str, Any], train_transform: bool = True) -> tuple[Any, Any]:
    """``(train, test)`` datasets of ``cfg["dataset"]``; the training split augmented by default."""
    tf = pdata.default_train_transform(cfg["dataset"]) if train_transform else None
    return point_split(cfg, "train", tf), point_split(cfg, "test")


class PointTask(Task):
    """Point-cloud classification with OA / mAcc / per-class accuracy and optional voting."""

    best_key = "oa"

    def __init__(self, smoothing: float = 0.2, vote: int = 0) -> None:
        self.smoothing = smoothing
        self.vote = vote

    def build_data(self, cfg: dict[str, Any], dist: DistInfo) -> DataBundle:
        train, test = point_datasets(cfg)
        if train.num_classes != test.num_classes:
            raise InputError(f"train and test splits disagree on the classes ({train.num_classes} vs "
                             f"{test.num_classes})")
        return DataBundle(train, test, train.num_classes, list(train.classes))

    def build_model(self, cfg: dict[str, Any], data: DataBundle) -> nn.Module:
        return create_model(cfg["model"], num_classes=data.num_classes)

    def build_optimizer(self, cfg: dict[str, Any], model: nn.Module, dist: DistInfo) -> torch.optim.Optimizer:
        if cfg["opt"] == "adamw":
            return create_optimizer_v2(model, "adamw", lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        return torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=0.9, weight_decay=cfg["weight_decay"])

    def train_loss(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        points, target = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        logits = model(points)
        return smooth_cross_entropy(logits.float(), target, self.smoothing), logits, target

    def eval_logits(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[Tensor, Tensor]:
        points, target = batch[0].to(device), batch[1].to(device)
        return model(points), target

    def eval_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return smooth_cross_entropy(logits.float(), target, self.smoothing)

    def summary(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        best = max(history, key=lambda r: r["val_oa"])
        return {"best_oa": best["val_oa"], "best_macc": max(r["val_macc"] for r in history),
                "best_epoch": best["epoch"], "final_oa": history[-1]["val_oa"], "final_macc": history[-1]["val_macc"]}

    def final_extras(self, cfg: dict[str, Any], model: nn.Module, data: DataBundle, dist: DistInfo) -> dict:
        if not self.vote:
            return {}
        loader = make_loader(data.val, cfg, dist, cfg["epochs"], False, None)
        res = evaluate(VotingTask(self, self.vote), model, loader, dist, data.num_classes, cfg["amp"])
        return {"final_vote_oa": res["oa"], "final_vote_macc": res["macc"], "vote": self.vote}


class VotingTask(PointTask):
    """Evaluation with test-time voting: softmax averaged over ``votes`` randomly scaled copies."""

    def __init__(self, base: PointTask, votes: int) -> None:
        super().__init__(base.smoothing, 0)
        self.votes = votes

    def eval_logits(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[Tensor, Tensor]:
        points, target = batch[0].to(device), batch[1].to(device)
        probs = model(points).float().softmax(-1)
        for _ in range(self.votes - 1):
            probs = probs + model(pdata.vote_scales(points)).float().softmax(-1)
        return (probs / self.votes).log(), target


def build_parser() -> argparse.ArgumentParser:
    """Command line of ``scripts/train_modelnet.py`` (defaults per dataset come from :data:`RECIPES`)."""
    p = argparse.ArgumentParser(
        description="Train a point-cloud classifier (ModelNet40, ScanObjectNN or the demo set).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", help="YAML file of option values (the command line overrides it)")
    p.add_argument("--dataset", choices=sorted(RECIPES), default="modelnet40")
    p.add_argument("--variant", choices=sorted(pdata.SCANOBJECTNN_VARIANTS), default="pb_t50_rs",
                   help="ScanObjectNN variant")
    p.add_argument("--data-dir", help="dataset root (default: data/modelnet40_ply_hdf5_2048, data/h5_files or "
                                      "data/demo)")
    p.add_argument("--model", default="pointmlp", choices=list_models("point"))
    add_optimizer_args(p, ["sgd", "adamw"], warmup_lr=1e-5, opt_help="SGD (momentum 0.9) or AdamW")
    p.add_argument("--smoothing", type=fraction, default=0.2, help="label smoothing, PointMLP's form")
    p.add_argument("--num-points", type=positive_int)
    p.add_argument("--vote", type=nonnegative_int, default=0,
                   help="after training, evaluate with N-vote scale augmentation")
    add_common_args(p)
    return p


def resolve_point_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Fill unset values from the dataset's recipe."""
    recipe = RECIPES[cfg["dataset"]]
    out = dict(cfg)
    for key, value in recipe.items():
        if out.get(key) is None:
            out[key] = value
    if out.get("min_lr") is None:  # ScanObjectNN: cosine to lr / 100
        out["min_lr"] = out["lr"] / 100
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``scripts/train_modelnet.py``."""
    from pointcoc.engine.cli import run

    return run(build_parser(), argv, resolve_point_config,
               lambda cfg: PointTask(cfg["smoothing"], cfg["vote"]))
