"""Run configuration: command line over an optional YAML file; the resolved config is saved with the run."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["parse_config", "save_config"]


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
        for action in parser._actions:  # set_defaults skips argparse's own `choices` check
            if action.choices is not None and action.dest in values and values[action.dest] not in action.choices:
                parser.error(f"--config {path}: {action.dest} must be one of {list(action.choices)}, "
                             f"got {values[action.dest]!r}")
        parser.set_defaults(**values)
    args = parser.parse_args(argv)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def save_config(config: dict[str, Any], path: str | Path) -> None:
    """Write the resolved config as YAML (loadable again with ``--config``)."""
    Path(path).write_text(yaml.safe_dump(config, sort_keys=True))
