"""Losses of the training recipes."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["smooth_cross_entropy"]


def smooth_cross_entropy(logits: Tensor, target: Tensor, smoothing: float = 0.2) -> Tensor:
    """Cross entropy with PointMLP's label smoothing.

    The gold class gets ``1 - smoothing`` and every other class ``smoothing / (C - 1)``
    (PyTorch's ``label_smoothing`` instead gives the gold class ``1 - smoothing + smoothing / C``).

    Args:
        logits: ``[B, C]``.
        target: ``[B]`` class indices.
        smoothing: the mass moved off the gold class (0: plain cross entropy).

    Returns:
        the mean loss (scalar).
    """
    if smoothing == 0:
        return F.cross_entropy(logits, target)
    C = logits.shape[1]
    soft = logits.new_full(logits.shape, smoothing / (C - 1))
    soft.scatter_(1, target[:, None], 1.0 - smoothing)
    return -(soft * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
