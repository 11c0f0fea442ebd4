"""The training loop shared by the image and point scripts.

A :class:`Task` says what differs (data, loss, optimiser, schedule, metric);
:func:`fit` does the rest: seeding, DistributedDataParallel under torchrun,
AMP, gradient clipping, EMA, an atomic checkpoint every epoch with exact
resume, best checkpoint, progress bars, CSV/TensorBoard logs, curves and a
summary.
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.scheduler import CosineLRScheduler
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from pointcoc.engine.checkpoint import copy_atomic, rng_state, save_atomic, set_rng_state, stale_temporaries
from pointcoc.engine.config import save_config
from pointcoc.engine.distributed import DistInfo, all_reduce_sum, cleanup_distributed, init_distributed
from pointcoc.engine.logger import RunLogger
from pointcoc.engine.metrics import ClassificationMeter
from pointcoc.engine.runtime import trim_freed_memory
from pointcoc.errors import InputError
from pointcoc.models import architecture_from_state, load_state_dict_strictly, read_checkpoint, training_config

__all__ = ["Task", "DataBundle", "fit", "evaluate", "ShardSampler", "RUN_FILES", "autocast_context", "make_loader",
           "read_resume_checkpoint", "remove_stale_temporaries"]

log = logging.getLogger("pointcoc.train")

RUN_FILES = ("last.pt", "best.pt", "config.yaml", "metrics.csv", "summary.json")


@dataclass
class DataBundle:
    """The datasets of a run and what the model needs to know about them."""

    train: Dataset
    val: Dataset
    num_classes: int
    class_names: list[str]
    #: what else the task knows about the data (e.g. the part table of a part-segmentation set)
    info: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """The parts of training that differ between images and point clouds."""

    #: the validation metric that selects ``best.pt`` (higher is better)
    best_key: str = "oa"
    #: extra top-k accuracies to report
    topk: tuple[int, ...] = (1,)
    #: the loaders may skip damaged samples; their counts go to ``train_skipped`` / ``val_skipped``
    counts_skipped: bool = False
    #: a training batch may come out empty (every sample skipped), so DDP ranks must agree on each step
    steps_may_be_empty: bool = False

    @abstractmethod
    def build_data(self, cfg: dict[str, Any], dist: DistInfo) -> DataBundle: ...

    @abstractmethod
    def build_model(self, cfg: dict[str, Any], data: DataBundle) -> nn.Module: ...

    @abstractmethod
    def build_optimizer(self, cfg: dict[str, Any], model: nn.Module, dist: DistInfo) -> torch.optim.Optimizer: ...

    def build_scheduler(self, cfg: dict[str, Any], optimizer: torch.optim.Optimizer) -> Any:
        """timm's per-epoch cosine schedule to ``min_lr`` after ``warmup_epochs`` of linear warm-up from
        ``warmup_lr`` (without warm-up it is ``torch.optim.lr_scheduler.CosineAnnealingLR``)."""
        return CosineLRScheduler(optimizer, t_initial=cfg["epochs"], lr_min=cfg["min_lr"],
                                 warmup_t=cfg.get("warmup_epochs") or 0, warmup_lr_init=cfg.get("warmup_lr") or 0.0)

    def step_scheduler(self, scheduler: Any, epoch: int) -> None:
        """Advance the schedule after ``epoch`` (0-based) ends."""
        scheduler.step(epoch + 1)

    @abstractmethod
    def train_loss(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """``(loss, logits [B, C], hard targets [B])`` of one training batch."""

    @abstractmethod
    def eval_logits(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(logits [B, C], targets [B])`` of one evaluation batch."""

    def eval_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(logits.float(), target)

    def make_meter(self, num_classes: int, train: bool) -> Any:
        """The metric accumulator of an epoch: ``skip(n)``, ``update(logits, target, loss)``, ``count``,
        ``reduce()`` and ``compute()`` (a dict with ``oa``, ``per_class``, ``loss``, ``skipped`` and
        :attr:`best_key`); :class:`~pointcoc.engine.metrics.ClassificationMeter` by default."""
        return ClassificationMeter(num_classes, (1,) if train else self.topk)

    def collate(self, train: bool = False) -> Any:
        """The loaders' ``collate_fn`` (None: PyTorch's default)."""
        return None

    def unpack(self, batch: Any) -> tuple[Any, int]:
        """``(batch, samples the loader skipped)`` of what the loader yielded; ``batch`` None when none is left."""
        return batch, 0

    def checkpoint_extras(self, data: DataBundle) -> dict[str, Any]:
        """Plain values saved in every checkpoint beside the weights (e.g. a segmenter's part table), so that
        inference (``scripts/predict.py``) knows what the model predicts."""
        return {}

    def final_extras(self, cfg: dict[str, Any], model: nn.Module, data: DataBundle, dist: DistInfo) -> dict[str, Any]:
        """Extra final metrics (e.g. voting); runs on every rank (collective), returns them on rank 0."""
        return {}

    def summary(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        """Final and best metrics from the per-epoch rows."""
        best = max(history, key=lambda r: r[f"val_{self.best_key}"])
        return {f"best_{self.best_key}": best[f"val_{self.best_key}"], "best_epoch": best["epoch"],
                f"final_{self.best_key}": history[-1][f"val_{self.best_key}"]}


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...``: every sample evaluated exactly once over all ranks (no padding)."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed every RNG from (seed, epoch, rank): an epoch replays identically after a resume."""
    s = (seed * 1_000_003 + epoch * 1_009 + rank) % 2**31
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def make_loader(ds: Dataset, cfg: dict[str, Any], dist: DistInfo, epoch: int, train: bool,
                collate: Any = None) -> DataLoader:
    """A loader whose order and worker seeds depend only on (seed, epoch, rank): training shuffles
    (distributed: ``DistributedSampler``, incomplete batches dropped); evaluation shards the
    samples over the ranks without padding, so every sample counts once."""
    gen = torch.Generator().manual_seed((cfg["seed"] * 7919 + epoch * 104_729 + dist.rank) % 2**31)
    if train:
        sampler: Sampler[int] = (DistributedSampler(ds, dist.world_size, dist.rank, shuffle=True, seed=cfg["seed"],
                                                    drop_last=True) if dist.distributed else
                                 torch.utils.data.RandomSampler(ds, generator=gen))
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        batch_size = cfg["batch_size"]
    else:
        sampler = ShardSampler(len(ds), dist.rank, dist.world_size)
        batch_size = cfg.get("eval_batch_size") or cfg["batch_size"]
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=cfg["workers"], drop_last=train,
                      generator=gen, worker_init_fn=_seed_worker, pin_memory=dist.device.type == "cuda",
                      persistent_workers=False, collate_fn=collate)


def autocast_context(amp: str, device: torch.device) -> Any:
    """``torch.autocast`` for ``amp`` in {"none", "fp16", "bf16"} on ``device``."""
    if amp == "none":
        return nullcontext()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[amp]
    return torch.autocast(device_type=device.type, dtype=dtype)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _progress(iterable: Any, desc: str, dist: DistInfo, total: int) -> Any:
    if isinstance(iterable, DataLoader) and iterable.num_workers > 0:
        trim_freed_memory()  # the workers start when iteration begins; do not let them pin the kept memory
    enabled = dist.is_main and sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, disable=not enabled, dynamic_ncols=True, leave=False)


def train_one_epoch(task: Task, model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler | None, ema: Any, cfg: dict[str, Any], dist: DistInfo,
                    num_classes: int, epoch: int) -> dict[str, float]:
    model.train()
    meter = task.make_meter(num_classes, True)
    start = time.perf_counter()
    bar = _progress(loader, f"train {epoch + 1}/{cfg['epochs']}", dist, len(loader))
    for batch in bar:
        batch, skipped = task.unpack(batch)
        meter.skip(skipped)
        empty = batch is None  # nothing left: every sample was damaged (or Mixup's evening dropped the last one)
        if dist.distributed and task.steps_may_be_empty:  # DDP in lockstep: a step is skipped on every rank or none
            empty = bool(all_reduce_sum(torch.tensor([float(empty)])).item())
            if empty and dist.is_main:
                log.warning("epoch %d: skipped a training step on every rank: a rank's batch held only damaged "
                            "samples", epoch + 1)
        if empty:
            continue
        with autocast_context(cfg["amp"], dist.device):
            loss, logits, target = task.train_loss(model, batch, dist.device)
        loss_value = loss.item()  # a device sync (the meter below copies logits to the CPU: another)
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"training loss is {loss_value} at epoch {epoch + 1}; lower --lr or use "
                                     "--clip-grad")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if cfg.get("clip_grad"):
            nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_grad"])
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if ema is not None:
            ema.update(_unwrap(model))
        meter.update(logits, target, loss_value)
        if not bar.disable:  # the progress text only where a bar is shown
            rate = meter.count * dist.world_size / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(loss=f"{loss_value:.3f}", acc=f"{meter.compute()['oa']:.1f}", samples_s=f"{rate:.1f}")
    stats = meter.reduce().compute()
    elapsed = time.perf_counter() - start
    out = {"train_loss": stats["loss"], "train_acc": stats["oa"], "train_samples_s": meter.count / elapsed,
           "train_time": elapsed}
    if task.counts_skipped:
        out["train_skipped"] = stats["skipped"]
    return out


@torch.no_grad()
def evaluate(task: Task, model: nn.Module, loader: DataLoader, dist: DistInfo, num_classes: int,
             amp: str = "none") -> dict[str, Any]:
    """Metrics of ``model`` over ``loader`` (summed over ranks): ``oa``, ``macc``, ``per_class``, ``top{k}``, ``loss``
    and ``skipped`` (damaged samples the loader left out)."""
    model.eval()
    meter = task.make_meter(num_classes, False)
    for batch in _progress(loader, "eval", dist, len(loader)):
        batch, skipped = task.unpack(batch)
        meter.skip(skipped)
        if batch is None:
            continue
        with autocast_context(amp, dist.device):
            logits, target = task.eval_logits(model, batch, dist.device)
        meter.update(logits, target, task.eval_loss(logits, target).item())
    return meter.reduce().compute()


def _check_output_dir(out: Path, resume: str | None) -> Path | None:
    """The checkpoint to resume from, or None; refuses to overwrite another run or to write into a file."""
    for folder in (out, *out.parents):  # the nearest existing ancestor must be a writable folder
        if folder.exists():
            if not folder.is_dir():
                what = "is an existing file" if folder == out else f"is inside {folder}, which is a file"
                raise InputError(f"--output-dir {out} {what}, not a folder; choose another --output-dir "
                                 "(nothing was touched)")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise InputError(f"--output-dir {out}: {folder} is not writable; choose another --output-dir")
            break
    if resume:
        path = out / "last.pt" if resume == "auto" else Path(resume)
        if not path.is_file():
            raise InputError(f"--resume: no checkpoint at {path}; nothing to resume")
        return path
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if existing:
        raise InputError(f"--output-dir {out} holds another run ({', '.join(existing)}); pass --resume to continue "
                         "it or choose another --output-dir (nothing was overwritten)")
    return None


#: what a checkpoint needs for ``--resume`` (``last.pt`` / ``best.pt`` of a pointcoc training run)
RESUME_KEYS = ("model", "optimizer", "scheduler", "epoch", "best_metric", "rng")


def read_resume_checkpoint(path: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint at ``path``, checked to be a pointcoc training checkpoint of ``cfg["model"]``.

    Raises:
        InputError: an unreadable file (see :func:`read_checkpoint`), a file that is not a pointcoc
            training checkpoint, or a checkpoint of another model.
    """
    ckpt = read_checkpoint(path)
    missing = [k for k in RESUME_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise InputError(f"--resume {path}: not a pointcoc training checkpoint (it lacks {', '.join(missing)}); "
                         "--resume continues a run of the training scripts from its last.pt or best.pt")
    saved = training_config(ckpt).get("model")
    if saved is not None and saved != cfg["model"]:
        raise InputError(f"--resume {path}: the checkpoint is a run of model {saved}, but this run builds "
                         f"{cfg['model']}; pass --model {saved} to continue it, or start a new run in another "
                         "--output-dir (nothing was touched)")
    return ckpt


def _load_resume_state(path: Path, ckpt: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
                       scheduler: Any, scaler: torch.amp.GradScaler | None, ema: Any) -> None:
    """Load the training state of ``ckpt`` strictly; a mismatch is an :class:`InputError` naming the file."""
    load_state_dict_strictly(model, ckpt["model"], source=f"--resume {path}")  # no conversion; lists mismatches
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        if ema is not None and ckpt.get("ema"):
            ema.load_state_dict(ckpt["ema"])
    except (ValueError, KeyError, RuntimeError) as err:
        raise InputError(f"--resume {path}: its optimizer, schedule or EMA state does not fit this run "
                         f"({type(err).__name__}: {str(err).strip() or 'no detail'}); resume with the options the "
                         "run was started with (its config.yaml: --config <output-dir>/config.yaml)") from err


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Delete the temporary files that writes killed mid-way left in ``out`` (``.last.pt.*.tmp``, ...).

    Checkpoints and logs are written to a temporary file and renamed into place
    (:func:`~pointcoc.engine.checkpoint.save_atomic`); a process killed during a write leaves
    the temporary file. Returns the removed paths.
    """
    removed = stale_temporaries(out, RUN_FILES)
    for f in removed:
        f.unlink(missing_ok=True)
    if removed:
        log.info("removed %d temporary file(s) left by interrupted writes: %s", len(removed),
                 ", ".join(f.name for f in removed))
    return removed


def fit(cfg: dict[str, Any], task: Task) -> dict[str, Any]:
    """Train and evaluate as ``cfg`` says; returns the summary (also written to ``summary.json``).

    Raises:
        InputError (a ValueError): bad configuration (unknown model, missing data, batch larger than
            the dataset, an output directory holding another run or that is a file, a checkpoint to
            resume that is unreadable or of another model, ...). Nothing is touched.
    """
    wall = time.perf_counter()
    dist = init_distributed(cfg["device"])
    try:
        return _fit(cfg, task, dist, wall)
    finally:
        cleanup_distributed()


def _fit(cfg: dict[str, Any], task: Task, dist: DistInfo, wall: float) -> dict[str, Any]:
    out = Path(cfg["output_dir"])
    resume = _check_output_dir(out, cfg.get("resume"))
    if cfg["amp"] == "fp16" and dist.device.type == "cpu":
        raise InputError("--amp fp16 needs CUDA; on CPU use --amp bf16 (slow without native bf16) or none")
    ckpt = read_resume_checkpoint(resume, cfg) if resume is not None else None
    seed_epoch(cfg["seed"], 0, dist.rank)
    data = task.build_data(cfg, dist)
    per_rank = len(data.train) // dist.world_size
    if per_rank < cfg["batch_size"]:
        raise InputError(f"--batch-size {cfg['batch_size']} is larger than the {per_rank} training samples per "
                         f"process ({len(data.train)} in all); batches are dropped when incomplete, so no step "
                         "would run: lower --batch-size")
    # a resumed run builds what its weights were made with (a segmenter's older head context); cfg itself is saved
    arch = architecture_from_state(cfg["model"], ckpt["model"]) if ckpt is not None else {}
    model = task.build_model({**cfg, "model_kwargs": arch}, data).to(dist.device)
    optimizer = task.build_optimizer(cfg, model, dist)
    scheduler = task.build_scheduler(cfg, optimizer)
    scaler = torch.amp.GradScaler("cuda") if cfg["amp"] == "fp16" else None
    ema = None
    if cfg.get("model_ema"):
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=cfg["model_ema_decay"])
    start_epoch, best, elapsed_before = 0, -math.inf, 0.0
    per_class: list[float] = []
    if ckpt is not None:
        assert resume is not None
        _load_resume_state(resume, ckpt, model, optimizer, scheduler, scaler, ema)
        start_epoch, best = ckpt["epoch"] + 1, ckpt["best_metric"]
        elapsed_before = ckpt.get("elapsed", 0.0)
        per_class = ckpt.get("per_class", [])
        set_rng_state(ckpt["rng"])
        if dist.is_main:
            log.info("resumed from %s at epoch %d (best %s %.3f)", resume, start_epoch, task.best_key, best)
    net: nn.Module = model
    if dist.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dist.device.index] if dist.device.type == "cuda"
                                                  else None)
    logger = None
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)  # every check passed: now the run may touch its folder
        save_config(cfg, out / "config.yaml")
        logger = RunLogger(out, start_epoch, tensorboard=cfg.get("tensorboard", True))
        log.info("%s: %s parameters, %d training / %d validation samples, %d classes, %d process(es) on %s",
                 cfg["model"], f"{sum(p.numel() for p in model.parameters()):,}", len(data.train), len(data.val),
                 data.num_classes, dist.world_size, dist.device)
    stop_after = cfg.get("stop_after_epoch")
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg["epochs"]):
        seed_epoch(cfg["seed"], epoch, dist.rank)
        lr = optimizer.param_groups[0]["lr"]
        train_stats = train_one_epoch(task, net, make_loader(data.train, cfg, dist, epoch, True, task.collate(True)),
                                      optimizer, scaler, ema, cfg, dist, data.num_classes, epoch)
        task.step_scheduler(scheduler, epoch)
        val_loader = make_loader(data.val, cfg, dist, epoch, False, task.collate(False))
        val = evaluate(task, model, val_loader, dist, data.num_classes, cfg["amp"])
        not_logged = ("loss", "per_class", "skipped")
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, **train_stats, "val_loss": val["loss"],
                               **{f"val_{k}": v for k, v in val.items() if k not in not_logged}}
        if task.counts_skipped:
            row["val_skipped"] = val["skipped"]
        if ema is not None:
            ema_val = evaluate(task, ema.module, val_loader, dist, data.num_classes, cfg["amp"])
            row.update({f"ema_{k}": v for k, v in ema_val.items() if k not in not_logged})
        if dist.is_main and (row.get("train_skipped") or row.get("val_skipped")):
            log.warning("epoch %d: skipped %d damaged sample(s) in training and %d in validation (named in the "
                        "warnings above)", epoch + 1, row["train_skipped"], row["val_skipped"])
        per_class = val["per_class"]
        metric = row[f"val_{task.best_key}"]
        is_best = metric > best
        best = max(best, metric)
        if dist.is_main:
            assert logger is not None
            logger.log_epoch(row)
            ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                    "ema": ema.state_dict() if ema is not None else None, "epoch": epoch, "best_metric": best,
                    "rng": rng_state(), "config": cfg, "class_names": data.class_names,
                    "per_class": val["per_class"], "elapsed": elapsed_before + time.perf_counter() - wall,
                    **task.checkpoint_extras(data)}
            save_atomic(ckpt, out / "last.pt")
            if is_best:
                copy_atomic(out / "last.pt", out / "best.pt")
            log.info("epoch %d/%d  lr %.3g  train loss %.4f acc %.2f  val %s %.2f (best %.2f)  %.1f samples/s",
                     epoch + 1, cfg["epochs"], lr, row["train_loss"], row["train_acc"], task.best_key, metric, best,
                     row["train_samples_s"])
        if stop_after is not None and epoch + 1 >= stop_after and epoch + 1 < cfg["epochs"]:
            if dist.is_main:
                log.info("stopping after epoch %d as asked (--stop-after-epoch); continue with --resume", epoch + 1)
            return {"stopped_after_epoch": epoch + 1}
    summary: dict[str, Any] = {}
    if dist.is_main:
        assert logger is not None
        history = logger.rows
        summary = task.summary(history) if history else {}
        summary.update(task.final_extras(cfg, model, data, dist))
        if per_class:
            summary["final_per_class"] = dict(zip(data.class_names, per_class))
        summary["wall_time_s"] = elapsed_before + time.perf_counter() - wall
        summary["epochs"] = cfg["epochs"]
        logger.write_summary(summary)
        if history:
            logger.plot()
        logger.close()
        log.info("summary: %s", {k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()})
    else:
        task.final_extras(cfg, model, data, dist)  # collective evaluation: every rank takes part
    return summary
