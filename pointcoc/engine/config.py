"""Run configuration: command line over an optional YAML file; the resolved config is saved with the run."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from pointcoc.engine.checkpoint import write_text_atomic

__all__ = ["parse_config", "save_config", "positive_int", "nonnegative_int", "positive_float", "nonnegative_float",
           "fraction"]


def _checked(kind: type, what: str, ok: Callable[[float], bool]) -> Callable[[str], Any]:
    """An argparse ``type``: ``kind(text)``, refused with ``must be <what>`` unless it parses, is not NaN and
    is ``ok``."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if value != value or not ok(value):  # value != value: NaN
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


_INF = float("inf")
#: an integer >= 1 (a batch size, a number of epochs or points)
positive_int = _checked(int, "a positive integer", lambda v: v >= 1)
#: an integer >= 0 (data-loader workers, warm-up epochs, votes)
nonnegative_int = _checked(int, "an integer >= 0", lambda v: v >= 0)
#: a finite number > 0 (a gradient-norm clip)
positive_float = _checked(float, "a number > 0", lambda v: 0 < v < _INF)
#: a finite number >= 0 (a learning rate, weight decay, Mixup alpha)
nonnegative_float = _checked(float, "a number >= 0", lambda v: 0 <= v < _INF)
#: a number in [0, 1] (a probability, label smoothing, an EMA decay)
fraction = _checked(float, "a number in [0, 1]", lambda v: 0 <= v <= 1)


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
    write_text_atomic(yaml.safe_dump(config, sort_keys=True), path)
