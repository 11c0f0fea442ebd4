"""Classification metrics that reduce exactly across processes: OA, mAcc, per-class accuracy, top-k."""

from __future__ import annotations

import torch
from torch import Tensor

from pointcoc.engine.distributed import all_reduce_sum

__all__ = ["ClassificationMeter"]


class ClassificationMeter:
    """Accumulate per-class hits and counts (and top-k hits) over batches; sum them over ranks.

    Args:
        num_classes: number of classes ``C``.
        topk: the ``k`` of top-k accuracy to track; with fewer than ``k`` classes every
            class counts (as timm's ``accuracy``), so top-5 of a 3-class task is 100%.
    """

    def __init__(self, num_classes: int, topk: tuple[int, ...] = (1,)) -> None:
        self.num_classes = num_classes
        self.topk = tuple(topk)
        self.correct = torch.zeros(num_classes, dtype=torch.float64)
        self.total = torch.zeros(num_classes, dtype=torch.float64)
        self.topk_hits = torch.zeros(len(self.topk), dtype=torch.float64)
        self.loss_sum = torch.zeros(1, dtype=torch.float64)
        self.skipped = torch.zeros(1, dtype=torch.float64)

    def skip(self, count: int) -> None:
        """Count ``count`` samples that the loader left out (damaged files)."""
        self.skipped += count

    def update(self, logits: Tensor, target: Tensor, loss: float | None = None) -> None:
        """``logits [B, C]``, ``target [B]`` hard labels; ``loss`` the batch mean (weighted by B)."""
        logits, target = logits.detach().float().cpu(), target.detach().cpu()
        pred = logits.argmax(dim=1)
        self.total += torch.bincount(target, minlength=self.num_classes).double()
        self.correct += torch.bincount(target[pred == target], minlength=self.num_classes).double()
        if self.topk:
            top = logits.topk(min(max(self.topk), self.num_classes), dim=1).indices
            for i, k in enumerate(self.topk):
                self.topk_hits[i] += (top[:, :k] == target[:, None]).any(dim=1).sum().double()
        if loss is not None:
            self.loss_sum += float(loss) * target.numel()

    def reduce(self) -> ClassificationMeter:
        """Sum the counts over all processes (in place); returns self."""
        flat = torch.cat([self.correct, self.total, self.topk_hits, self.loss_sum, self.skipped])
        flat = all_reduce_sum(flat)
        c = self.num_classes
        self.correct, self.total = flat[:c], flat[c:2 * c]
        self.topk_hits, self.loss_sum, self.skipped = flat[2 * c:2 * c + len(self.topk)], flat[-2:-1], flat[-1:]
        return self

    @property
    def count(self) -> int:
        return int(self.total.sum())

    def compute(self) -> dict[str, float | int | list[float]]:
        """``oa``, ``macc`` (mean over classes that occur), ``per_class`` accuracies (NaN for absent
        classes), ``top{k}``, ``loss`` and ``skipped`` (samples left out); accuracies in percent."""
        n = max(self.count, 1)
        present = self.total > 0
        per_class = torch.where(present, self.correct / self.total.clamp_min(1),
                                torch.full_like(self.total, float("nan")))
        out: dict[str, float | int | list[float]] = {
            "oa": 100.0 * float(self.correct.sum()) / n,
            "macc": 100.0 * float(per_class[present].mean()) if bool(present.any()) else 0.0,
            "per_class": [100.0 * float(v) for v in per_class],
            "loss": float(self.loss_sum) / n,
            "skipped": int(self.skipped),
        }
        for k, hits in zip(self.topk, self.topk_hits):
            out[f"top{k}"] = 100.0 * float(hits) / n
        return out
