"""The command-line wrapper of the training scripts: config, logging, clean errors (exit code 2)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pointcoc.engine.config import (
    fraction,
    nonnegative_float,
    nonnegative_int,
    parse_config,
    positive_float,
    positive_int,
)
from pointcoc.engine.runtime import CPU_ALLOCATORS, apply_cpu_allocator
from pointcoc.engine.trainer import Task, fit
from pointcoc.errors import InputError, input_error_message

__all__ = ["run", "setup_logging", "add_common_args", "add_allocator_arg", "add_optimizer_args", "add_ema_args",
           "exit_on_input_error"]

log = logging.getLogger("pointcoc.train")


def add_common_args(p: argparse.ArgumentParser) -> None:
    """Options every training script shares (seed, workers, output, resume, device, AMP, ...)."""
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=nonnegative_int, default=4)
    p.add_argument("--output-dir", default="runs/train")
    p.add_argument("--resume", nargs="?", const="auto", help="continue the run in --output-dir (or from a file)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--amp", choices=["none", "fp16", "bf16"], default="none", help="mixed precision")
    p.add_argument("--clip-grad", type=positive_float, help="clip the gradient norm to this value")
    p.add_argument("--no-tensorboard", dest="tensorboard", action="store_false")
    p.add_argument("--stop-after-epoch", type=positive_int, help="end this process after that epoch (resume later)")
    add_allocator_arg(p)


def add_optimizer_args(p: argparse.ArgumentParser, opts: Sequence[str], warmup_lr: float,
                       opt_help: str | None = None) -> None:
    """The schedule and optimiser options of the point-cloud training scripts (``--epochs``, ``--batch-size``,
    ``--eval-batch-size``, ``--lr``, ``--min-lr``, ``--weight-decay``, ``--opt`` among ``opts``,
    ``--warmup-epochs``, ``--warmup-lr``); unset values come from the task's recipe."""
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--eval-batch-size", type=positive_int, help="default: --batch-size")
    p.add_argument("--lr", type=nonnegative_float)
    p.add_argument("--min-lr", type=nonnegative_float, help="end of the cosine schedule")
    p.add_argument("--weight-decay", type=nonnegative_float)
    p.add_argument("--opt", choices=list(opts), help=opt_help)
    p.add_argument("--warmup-epochs", type=nonnegative_int, help="linear warm-up epochs before the schedule")
    p.add_argument("--warmup-lr", type=nonnegative_float, default=warmup_lr,
                   help="learning rate at the start of the warm-up")


def add_ema_args(p: argparse.ArgumentParser, decay: float) -> None:
    """``--model-ema`` (an EMA of the weights, timm ``ModelEmaV3``) and ``--model-ema-decay``."""
    p.add_argument("--model-ema", action="store_true", help="keep an EMA of the weights (timm ModelEmaV3)")
    p.add_argument("--model-ema-decay", type=fraction, default=decay)


def add_allocator_arg(p: argparse.ArgumentParser) -> None:
    """``--cpu-allocator``: keep freed memory for reuse (default, faster on CPU) or leave malloc as is."""
    p.add_argument("--cpu-allocator", choices=CPU_ALLOCATORS, default="reuse",
                   help="reuse: keep freed memory in the process (20-40%% faster CPU steps, a little more "
                        "resident memory); system: the C library's default (see pointcoc.engine.runtime)")


def setup_logging() -> None:
    """INFO on rank 0, warnings only on the other ranks."""
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)


@contextmanager
def exit_on_input_error(logger: logging.Logger = log) -> Iterator[None]:
    """Report an :class:`~pointcoc.errors.InputError` as one ``error: ...`` line and exit with code 2.

    Only input errors (bad arguments, files, datasets, checkpoints) get this treatment; any other
    exception, a ``ValueError`` from a bug included, propagates with its traceback. Set
    ``POINTCOC_DEBUG=1`` to see the traceback of an input error too.
    """
    try:
        yield
    except InputError as err:
        logger.error("error: %s", input_error_message(err), exc_info=bool(os.environ.get("POINTCOC_DEBUG")))
        sys.exit(2)


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
        resolve: Callable[[dict[str, Any]], dict[str, Any]], make_task: Callable[[dict[str, Any]], Task]
        ) -> dict[str, Any]:
    """Parse, resolve and train; an input error prints one line and exits with code 2."""
    cfg = parse_config(parser, argv)
    setup_logging()
    with exit_on_input_error():
        cfg = resolve(cfg)
        apply_cpu_allocator(cfg["cpu_allocator"])
        return fit(cfg, make_task(cfg))
