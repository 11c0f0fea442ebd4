"""Per-epoch logs of a run: CSV rows, TensorBoard events (when installed), curves PNG, summary JSON."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

from pointcoc.engine.checkpoint import write_text_atomic

__all__ = ["RunLogger"]

log = logging.getLogger(__name__)


class RunLogger:
    """Write one row per epoch to ``<dir>/metrics.csv`` (and TensorBoard when installed).

    Only the main process should create one. ``start_epoch`` is the number of completed
    epochs; on a resume their rows in ``metrics.csv`` are kept and later ones dropped
    (they are redone).
    """

    def __init__(self, out_dir: str | Path, start_epoch: int = 0, tensorboard: bool = True) -> None:
        self.dir = Path(out_dir)
        self.csv_path = self.dir / "metrics.csv"
        self.rows: list[dict[str, Any]] = []
        if start_epoch > 0 and self.csv_path.is_file():
            with self.csv_path.open() as fh:
                # rows count completed epochs from 1: keep those up to the checkpoint's
                self.rows = [self._parse(r) for r in csv.DictReader(fh) if int(r["epoch"]) <= start_epoch]
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                log.info("tensorboard is not installed; no TensorBoard events")
            else:
                self.writer = SummaryWriter(str(self.dir / "tb"), purge_step=start_epoch + 1)  # steps are epochs from 1

    @staticmethod
    def _parse(row: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in row.items():
            try:
                out[k] = int(v) if k == "epoch" else float(v)
            except (TypeError, ValueError):
                out[k] = v
        return out

    def log_epoch(self, row: dict[str, Any]) -> None:
        """Append ``row`` (must hold ``epoch``; scalar values) and rewrite the CSV."""
        self.rows.append(row)
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(text.getvalue(), self.csv_path)
        if self.writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)) and math.isfinite(v):
                    self.writer.add_scalar(k.replace("_", "/", 1), v, row["epoch"])
            self.writer.flush()

    def plot(self, path: str | Path | None = None) -> Path:
        """Training curves (loss, accuracies, learning rate against epoch) as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path) if path else self.dir / "curves.png"
        epochs = [r["epoch"] for r in self.rows]
        groups = {"loss": [k for k in self.rows[0] if k.endswith("loss")] if self.rows else [],
                  "accuracy (%)": [k for k in self.rows[0] if k.split("_")[-1] in ("acc", "oa", "macc", "top1", "top5")]
                  if self.rows else [],
                  "learning rate": ["lr"] if self.rows and "lr" in self.rows[0] else []}
        groups = {name: keys for name, keys in groups.items() if keys}
        fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(5 * max(len(groups), 1), 3.5), squeeze=False)
        for ax, (name, keys) in zip(axes[0], groups.items()):
            for k in keys:
                ax.plot(epochs, [r.get(k, float("nan")) for r in self.rows], marker="o", label=k)
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def write_summary(self, summary: dict[str, Any]) -> Path:
        """``<dir>/summary.json``."""
        path = self.dir / "summary.json"
        write_text_atomic(json.dumps(summary, indent=2, sort_keys=True), path)
        return path
