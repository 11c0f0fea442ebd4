"""Metrics that reduce exactly across processes: classification (OA, mAcc, per-class accuracy, top-k),
part segmentation (instance / class mIoU, per-category IoU) and semantic segmentation (mIoU, OA, mAcc,
per-class IoU from a confusion matrix)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pointcoc.engine.distributed import all_reduce_sum

__all__ = ["ClassificationMeter", "PartSegMeter", "SemSegMeter"]


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


class PartSegMeter:
    """Part-segmentation IoUs in the standard protocol (PointNet++ / PointMLP / PointNeXt test scripts).

    * a point is predicted only among its shape's category's parts (the other parts' logits are ignored);
    * a shape's IoU is the mean over its category's parts of ``|pred & gt| / |pred | gt|``, a part
      absent from both prediction and ground truth counting 1;
    * instance mIoU is the mean over shapes, class mIoU the mean over the categories that occur of
      their shapes' mean IoU.

    Sums (not means) are kept per category, so :meth:`reduce` over processes is exact.

    Args:
        part_mask: ``[K, P]`` bool, which of the ``P`` parts belong to each of the ``K`` categories
            (:meth:`pointcoc.data.PartCategories.part_mask`).
    """

    def __init__(self, part_mask: Tensor) -> None:
        if part_mask.dim() != 2 or part_mask.dtype != torch.bool or not bool(part_mask.any(1).all()):
            raise ValueError(f"`part_mask` must be a [categories, parts] bool tensor with a part in every row, got "
                             f"{tuple(part_mask.shape)} {part_mask.dtype}")
        self.part_mask = part_mask.cpu()
        K = part_mask.shape[0]
        self.iou_sum = torch.zeros(K, dtype=torch.float64)
        self.shapes = torch.zeros(K, dtype=torch.float64)
        self.points = torch.zeros(2, dtype=torch.float64)  # correct, total
        self.loss_sum = torch.zeros(1, dtype=torch.float64)

    def predict(self, logits: Tensor, category: Tensor) -> Tensor:
        """``logits [B, N, P]``, ``category [B]`` -> ``[B, N]`` parts, each among its category's parts."""
        allowed = self.part_mask.to(logits.device)[category]  # [B, P]
        return logits.masked_fill(~allowed[:, None, :], float("-inf")).argmax(-1)

    def update(self, logits: Tensor, category: Tensor, target: Tensor, loss: float | None = None) -> Tensor:
        """Add a batch: ``logits [B, N, P]`` (or log-probabilities), ``category [B]``, ``target [B, N]`` parts.

        Shapes of different sizes go in one at a time (``B = 1``). Returns the shapes' IoUs ``[B]``.
        """
        if logits.dim() != 3 or logits.shape[-1] != self.part_mask.shape[1] or target.shape != logits.shape[:2] \
                or category.shape != logits.shape[:1]:
            raise ValueError(f"expected logits [B, N, {self.part_mask.shape[1]}], category [B], target [B, N]; got "
                             f"{tuple(logits.shape)}, {tuple(category.shape)}, {tuple(target.shape)}")
        logits, category, target = logits.detach().float().cpu(), category.detach().long().cpu(), target.detach().cpu()
        pred, target = self.predict(logits, category), target.long()
        B, P = pred.shape[0], self.part_mask.shape[1]
        # per (shape, part) counts by bincount over shape * P + part: O(B N), no [B, N, P] one-hots
        key = torch.arange(B)[:, None] * P

        def counts(ids: Tensor) -> Tensor:
            return torch.bincount(ids.reshape(-1), minlength=B * P).view(B, P).double()

        inter = counts((key + target)[pred == target])
        union = counts(key + pred) + counts(key + target) - inter
        iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
        own = self.part_mask[category].double()  # [B, P]: the category's parts only
        shape_iou = (iou * own).sum(1) / own.sum(1)
        self.iou_sum.index_add_(0, category, shape_iou)
        self.shapes.index_add_(0, category, torch.ones_like(shape_iou))
        self.points += torch.tensor([float((pred == target).sum()), float(target.numel())], dtype=torch.float64)
        if loss is not None:
            self.loss_sum += float(loss) * category.numel()
        return shape_iou

    def reduce(self) -> PartSegMeter:
        """Sum over all processes (in place); returns self."""
        K = self.iou_sum.numel()
        flat = all_reduce_sum(torch.cat([self.iou_sum, self.shapes, self.points, self.loss_sum]))
        self.iou_sum, self.shapes = flat[:K], flat[K:2 * K]
        self.points, self.loss_sum = flat[2 * K:2 * K + 2], flat[-1:]
        return self

    def compute(self) -> dict[str, float | list[float]]:
        """``instance_miou``, ``class_miou``, ``per_category`` IoU (NaN where no shape occurred), point
        ``accuracy`` and mean ``loss`` per shape; in percent."""
        n = float(self.shapes.sum())
        present = self.shapes > 0
        per_cat = torch.where(present, self.iou_sum / self.shapes.clamp_min(1), torch.full_like(self.shapes, math.nan))
        return {
            "instance_miou": 100.0 * float(self.iou_sum.sum()) / max(n, 1.0),
            "class_miou": 100.0 * float(per_cat[present].mean()) if bool(present.any()) else 0.0,
            "per_category": [100.0 * float(v) for v in per_cat],
            "accuracy": 100.0 * float(self.points[0]) / max(float(self.points[1]), 1.0),
            "loss": float(self.loss_sum) / max(n, 1.0),
        }


class SemSegMeter:
    """Semantic-segmentation metrics from a confusion matrix (the S3DIS / ScanNet protocol).

    * ``confusion[t, p]`` counts the points of ground-truth class ``t`` predicted as ``p``; points with a
      negative label (ignored) are not counted;
    * a class's IoU is ``tp / (tp + fp + fn)``; mIoU is the mean over the classes that occur in the ground
      truth or the predictions (a class absent from both has no IoU, NaN, and is left out);
    * OA is ``sum tp / points``; mAcc the mean over the classes that occur in the ground truth of ``tp / gt``.

    Args:
        num_classes: ``C``.
        class_names: optional names for :meth:`compute`'s ``per_class_named``.
    """

    def __init__(self, num_classes: int, class_names: list[str] | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"`num_classes` must be >= 1, got {num_classes}")
        self.num_classes, self.class_names = num_classes, class_names
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64)
        self.loss_sum = torch.zeros(2, dtype=torch.float64)  # loss * points, points
        self.skipped = 0

    def skip(self, count: int) -> None:
        self.skipped += count

    @property
    def count(self) -> int:
        """Points counted so far."""
        return int(self.confusion.sum())

    def update(self, logits: Tensor, target: Tensor, loss: float | None = None) -> None:
        """``logits [M, C]`` (or predicted labels ``[M]``), ``target [M]`` (negative = ignored); ``loss`` the batch
        mean."""
        target = target.detach().reshape(-1).long().cpu()
        pred = logits.detach().argmax(-1) if logits.is_floating_point() else logits.detach()
        pred = pred.reshape(-1).long().cpu()
        if pred.shape != target.shape:
            raise ValueError(f"predictions {tuple(pred.shape)} and targets {tuple(target.shape)} differ in length")
        keep = target >= 0
        if bool((target[keep] >= self.num_classes).any()) or bool(((pred[keep] < 0) | (pred[keep] >= self.num_classes))
                                                                   .any()):
            raise ValueError(f"labels and predictions must be < num_classes ({self.num_classes})")
        C = self.num_classes
        self.confusion += torch.bincount(target[keep] * C + pred[keep], minlength=C * C).view(C, C).double()
        if loss is not None:
            n = float(keep.sum())
            self.loss_sum += torch.tensor([float(loss) * n, n], dtype=torch.float64)

    def reduce(self) -> SemSegMeter:
        """Sum over all processes (in place); returns self."""
        C = self.num_classes
        flat = all_reduce_sum(torch.cat([self.confusion.view(-1), self.loss_sum,
                                         torch.tensor([float(self.skipped)], dtype=torch.float64)]))
        self.confusion, self.loss_sum, self.skipped = flat[:C * C].view(C, C), flat[C * C:C * C + 2], int(flat[-1])
        return self

    def compute(self) -> dict[str, float | int | list[float]]:
        """``miou``, ``oa``, ``macc``, ``per_class`` IoU (NaN for a class absent from ground truth and
        predictions), ``per_class_acc``, ``loss`` and ``skipped``; in percent."""
        cm = self.confusion
        tp, gt, pred = cm.diag(), cm.sum(1), cm.sum(0)
        union = gt + pred - tp
        iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, math.nan))
        acc = torch.where(gt > 0, tp / gt.clamp_min(1), torch.full_like(tp, math.nan))
        has_iou, has_gt = union > 0, gt > 0
        return {
            "miou": 100.0 * float(iou[has_iou].mean()) if bool(has_iou.any()) else 0.0,
            "oa": 100.0 * float(tp.sum()) / max(float(cm.sum()), 1.0),
            "macc": 100.0 * float(acc[has_gt].mean()) if bool(has_gt.any()) else 0.0,
            "per_class": [100.0 * float(v) for v in iou],
            "per_class_acc": [100.0 * float(v) for v in acc],
            "loss": float(self.loss_sum[0]) / max(float(self.loss_sum[1]), 1.0),
            "skipped": int(self.skipped),
        }
