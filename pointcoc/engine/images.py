"""Image classification with the upstream CoC recipe, through timm's building blocks.

Upstream (https://github.com/ma-xu/Context-Cluster, README "Train") trains with
timm's ``train.py``: AdamW, lr 1e-3 per 1024 images, weight decay 0.05, cosine
schedule to 1e-6 with 5 warm-up epochs from 1e-6, 300 epochs, RandAugment
``rand-m9-mstd0.5-inc1``, colour jitter 0.4, random erasing 0.25 (pixel mode),
random interpolation, Mixup 0.8 / CutMix 1.0, label smoothing 0.1, drop path
0.1 for the tiny model, optional model EMA. None of it is rewritten here:
``create_transform``, ``Mixup``, ``SoftTargetCrossEntropy``,
``create_optimizer_v2``, ``CosineLRScheduler`` and ``ModelEmaV3`` come from timm.
"""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image, ImageOps
from timm.data import Mixup, auto_augment, create_transform, resolve_data_config
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from torch import Tensor, nn

from pointcoc import data as pdata
from pointcoc.engine.cli import add_common_args, add_ema_args
from pointcoc.engine.config import fraction, nonnegative_float, nonnegative_int, positive_int
from pointcoc.engine.distributed import DistInfo
from pointcoc.engine.trainer import DataBundle, Task
from pointcoc.errors import InputError
from pointcoc.models import create_model, list_models

log = logging.getLogger("pointcoc.train")

__all__ = ["ImageTask", "build_parser", "add_bad_images_arg", "eval_image_transform", "image_transforms", "posterize",
           "safe_posterize_ops"]


def posterize(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """timm's posterize op, defined for every level it draws: keep the ``bits_to_keep`` high bits per channel.

    timm's increasing RandAugment levels (``inc1``) ask for 0 bits at magnitude 10, and its
    ``Posterize`` op for 0 bits at magnitudes below 2.5. Pillow < 13 returned an all-black image for
    0 bits (mask ``~255``); Pillow 13 raises ``ValueError: bits must be between or equal to 1 and 8``.
    This gives Pillow < 13's result on every Pillow, so the upstream recipe trains as it did.
    """
    if bits_to_keep >= 8:
        return img
    if bits_to_keep >= 1:
        return ImageOps.posterize(img, bits_to_keep)
    return Image.new(img.mode, img.size)  # no bit kept: every channel 0, as Pillow < 13


def safe_posterize_ops(transform: Any) -> int:
    """Point every timm posterize op inside ``transform`` (RandAugment, AutoAugment, AugMix, through Compose)
    at :func:`posterize`; returns how many ops it changed. Only this transform object changes, not timm."""
    changed = 0
    pending = [transform]
    while pending:
        t = pending.pop()
        if isinstance(t, (list, tuple)):  # AutoAugment's sub-policies are lists of ops
            pending.extend(t)
            continue
        if getattr(t, "aug_fn", None) is auto_augment.posterize:
            t.aug_fn = posterize
            changed += 1
        for attr in ("transforms", "ops", "policy"):  # Compose, RandAugment / AugMix, AutoAugment sub-policies
            children = getattr(t, attr, None)
            if isinstance(children, (list, tuple)):
                pending.extend(children)
    return changed


def eval_image_transform(img_size: int, model: nn.Module | None = None) -> tuple[Any, dict[str, Any]]:
    """The evaluation transform (resize, centre crop by the model's ``crop_pct``, normalise) and timm's
    data config it was built from (``mean``, ``std``, ``interpolation``, ``crop_pct``)."""
    data_cfg = resolve_data_config({"input_size": (3, img_size, img_size)}, model=model)
    transform = create_transform(img_size, is_training=False, interpolation=data_cfg["interpolation"],
                                 mean=data_cfg["mean"], std=data_cfg["std"], crop_pct=data_cfg["crop_pct"])
    return transform, data_cfg


def image_transforms(cfg: dict[str, Any], model: nn.Module | None = None) -> tuple[Any, Any]:
    """``(train, eval)`` transforms: the upstream recipe via timm, sized by ``cfg["img_size"]``."""
    val, data_cfg = eval_image_transform(cfg["img_size"], model)
    train = create_transform(cfg["img_size"], is_training=True, auto_augment=cfg["aa"] or None,
                             color_jitter=cfg["color_jitter"], re_prob=cfg["reprob"], re_mode="pixel", re_count=1,
                             interpolation="random", mean=data_cfg["mean"], std=data_cfg["std"])
    safe_posterize_ops(train)  # timm's posterize meets Pillow 13 (see `posterize`)
    return train, val


class ImageTask(Task):
    """ImageNet-style classification: top-1 / top-5, Mixup/CutMix, AdamW + cosine with warm-up."""

    best_key = "top1"
    topk = (1, 5)
    counts_skipped = True  # damaged images are skipped (or refused: --bad-images error)

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        # Only skipping empties a batch: training batches are full (drop_last) and even when Mixup pairs them.
        self.steps_may_be_empty = cfg.get("bad_images") == "skip"
        self.mixup: Mixup | None = None
        self.loss_fn: nn.Module = nn.CrossEntropyLoss()

    def build_data(self, cfg: dict[str, Any], dist: DistInfo) -> DataBundle:
        root = cfg["data_dir"]
        if root is None:
            raise InputError("--data-dir is required (an ImageNet-style folder with train/ and val/, or 'demo')")
        if root == "demo":  # written on first use, safe with concurrent processes
            root = str(pdata.ensure_demo_data("data/demo") / "images")
        probe = create_model(cfg["model"], num_classes=1)
        train_tf, val_tf = image_transforms(cfg, probe)
        train = pdata.image_folder(root, "train", train_tf, bad_images=cfg["bad_images"])
        val = pdata.image_folder(root, "val", val_tf, bad_images=cfg["bad_images"])
        if list(train.classes) != list(val.classes):
            raise InputError(f"{root}: train/ and val/ have different class folders")
        num_classes = len(train.classes)
        mixup_on = cfg["mixup"] > 0 or cfg["cutmix"] > 0
        if mixup_on and cfg["batch_size"] % 2:
            raise InputError(f"Mixup/CutMix need an even --batch-size, got {cfg['batch_size']}")
        if mixup_on:
            self.mixup = Mixup(mixup_alpha=cfg["mixup"], cutmix_alpha=cfg["cutmix"], label_smoothing=cfg["smoothing"],
                               num_classes=num_classes)
            self.loss_fn = SoftTargetCrossEntropy()
        elif cfg["smoothing"] > 0:
            self.loss_fn = LabelSmoothingCrossEntropy(cfg["smoothing"])
        return DataBundle(train, val, num_classes, list(train.classes))

    def build_model(self, cfg: dict[str, Any], data: DataBundle) -> nn.Module:
        return create_model(cfg["model"], num_classes=data.num_classes, drop_path_rate=cfg["drop_path"])

    def build_optimizer(self, cfg: dict[str, Any], model: nn.Module, dist: DistInfo) -> torch.optim.Optimizer:
        lr = cfg["lr"] if cfg["lr"] is not None else cfg["lr_base"] * cfg["batch_size"] * dist.world_size / 1024
        log.info("AdamW lr %.3g", lr)
        return create_optimizer_v2(model, "adamw", lr=lr, weight_decay=cfg["weight_decay"])

    def collate(self, train: bool = False) -> Any:
        """Leave damaged images out of a batch (and keep a training batch even for Mixup/CutMix)."""
        return functools.partial(pdata.collate_skipping, even=train and self.mixup is not None)

    def unpack(self, batch: Any) -> tuple[Any, int]:
        return batch  # collate_skipping already yields (batch or None, samples skipped)

    def train_loss(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        images, target = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        soft = target
        if self.mixup is not None:
            images, soft = self.mixup(images, target)
        logits = model(images)
        return self.loss_fn(logits.float(), soft), logits, target

    def eval_logits(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[Tensor, Tensor]:
        return model(batch[0].to(device)), batch[1].to(device)

    def summary(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        best = max(history, key=lambda r: r["val_top1"])
        return {"best_top1": best["val_top1"], "best_top5": max(r.get("val_top5", 0.0) for r in history),
                "best_epoch": best["epoch"], "final_top1": history[-1]["val_top1"],
                "final_top5": history[-1].get("val_top5", 0.0),
                "final_train_skipped": int(history[-1].get("train_skipped", 0)),
                "final_val_skipped": int(history[-1].get("val_skipped", 0))}


def add_bad_images_arg(p: argparse.ArgumentParser) -> None:
    """``--bad-images skip|error``: what a damaged image file does (see :mod:`pointcoc.data.images`)."""
    p.add_argument("--bad-images", choices=pdata.BAD_IMAGE_POLICIES, default="skip",
                   help="a damaged image (does not decode, or a JPEG with corrupt data): skip it with a warning "
                        "naming the file (counted as train_skipped/val_skipped in metrics.csv), or stop with an error")


def build_parser() -> argparse.ArgumentParser:
    """Command line of ``scripts/train_imagenet.py``."""
    p = argparse.ArgumentParser(description="Train an image classifier (ImageNet-style folders or the demo set).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", help="YAML file of option values (the command line overrides it)")
    p.add_argument("--data-dir", help="folder with train/<class>/* and val/<class>/*, or 'demo'")
    p.add_argument("--model", default="coc_tiny", choices=list_models("image"))
    p.add_argument("--img-size", type=positive_int, default=224)
    p.add_argument("--epochs", type=positive_int, default=300)
    p.add_argument("--batch-size", type=positive_int, default=128, help="per process")
    p.add_argument("--eval-batch-size", type=positive_int)
    p.add_argument("--lr", type=nonnegative_float,
                   help="absolute learning rate (default: --lr-base * global batch / 1024)")
    p.add_argument("--lr-base", type=nonnegative_float, default=1e-3, help="learning rate per 1024 images")
    p.add_argument("--min-lr", type=nonnegative_float, default=1e-6)
    p.add_argument("--warmup-epochs", type=nonnegative_int, default=5)
    p.add_argument("--warmup-lr", type=nonnegative_float, default=1e-6)
    p.add_argument("--weight-decay", type=nonnegative_float, default=0.05)
    p.add_argument("--drop-path", type=fraction, default=0.1)
    p.add_argument("--aa", default="rand-m9-mstd0.5-inc1", help="timm auto-augment policy ('' for none)")
    p.add_argument("--color-jitter", type=nonnegative_float, default=0.4)
    p.add_argument("--reprob", type=fraction, default=0.25, help="random erasing probability")
    p.add_argument("--mixup", type=nonnegative_float, default=0.8)
    p.add_argument("--cutmix", type=nonnegative_float, default=1.0)
    p.add_argument("--smoothing", type=fraction, default=0.1)
    add_bad_images_arg(p)
    add_ema_args(p, 0.9998)
    add_common_args(p)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``scripts/train_imagenet.py``."""
    from pointcoc.engine.cli import run

    return run(build_parser(), argv, lambda cfg: cfg, ImageTask)
