"""Run configuration: command line over an optional YAML file; the resolved config is saved with the run."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["parse_config", "save_config", "positive_int", "nonnegative_int", "positive_float", "nonnegative_float",
           "fraction"]


def _number(kind: type, text: str, what: str) -> float:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if isinstance(value, float) and value != value:  # NaN
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a batch size, a number of epochs or points)."""
    value = int(_number(int, text, "a positive integer"))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0 (data-loader workers, warm-up epochs, votes)."""
    value = int(_number(int, text, "an integer >= 0"))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (a gradient-norm clip)."""
    value = float(_number(float, text, "a number > 0"))
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (a learning rate, weight decay, Mixup alpha)."""
    value = float(_number(float, text, "a number >= 0"))
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1] (a probability, label smoothing, an EMA decay)."""
    value = float(_number(float, text, "a number in [0, 1]"))
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def parse_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``; values from ``--config FILE.yaml`` become defaults that the command line overrides.

    The parser must define ``--config``. Unknown YAML keys are an error (exit code 2).
    """
    first, _ = parser.parse_known_args(argv)
    path = getattr(first, "config", None)
    if path:
        file = Path(path)
        if not file.is_file():
            parser.error(f"--config {path}: no such file")
        try:
            values = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as err:
            parser.error(f"--config {path}: not valid YAML ({err})")
        if not isinstance(values, dict):
            parser.error(f"--config {path}: expected a mapping of option names to values")
        known = {a.dest for a in parser._actions}
        unknown = sorted(k for k in (key.replace("-", "_") for key in values) if k not in known)
        if unknown:
            parser.error(f"--config {path}: unknown keys {unknown}")
        values = {k.replace("-", "_"): v for k, v in values.items()}
        for action in parser._actions:  # set_defaults skips argparse's own `type` and `choices` checks
            if action.dest not in values or values[action.dest] is None:
                continue
            if callable(action.type):
                value = values[action.dest]
                try:
                    values[action.dest] = ([action.type(str(v)) for v in value] if isinstance(value, list)
                                           else action.type(str(value)))
                except (argparse.ArgumentTypeError, TypeError, ValueError) as err:
                    parser.error(f"--config {path}: {action.dest} {err}")
            if action.choices is not None and values[action.dest] not in action.choices:
                parser.error(f"--config {path}: {action.dest} must be one of {list(action.choices)}, "
                             f"got {values[action.dest]!r}")
        parser.set_defaults(**values)
    args = parser.parse_args(argv)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def save_config(config: dict[str, Any], path: str | Path) -> None:
    """Write the resolved config as YAML (loadable again with ``--config``)."""
    Path(path).write_text(yaml.safe_dump(config, sort_keys=True))
