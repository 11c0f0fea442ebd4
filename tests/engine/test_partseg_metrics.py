"""PartSegMeter against hand-computed IoUs in the standard protocol."""

from __future__ import annotations

import math

import pytest
import torch

from pointcoc.engine import PartSegMeter

# two categories: 0 has parts {0, 1}, 1 has parts {2, 3, 4}
MASK = torch.tensor([[True, True, False, False, False], [False, False, True, True, True]])


def logits_for(pred: list[list[int]], parts: int = 5) -> torch.Tensor:
    """Logits whose argmax is ``pred`` (one-hot, scaled)."""
    return torch.nn.functional.one_hot(torch.tensor(pred), parts).float() * 5


def test_hand_computed_ious() -> None:
    meter = PartSegMeter(MASK)
    # shape A (category 0), 4 points: gt [0, 0, 1, 1], pred [0, 1, 1, 1]
    #   part 0: I 1, U 2 -> 0.5; part 1: I 2, U 3 -> 2/3; shape IoU (0.5 + 2/3) / 2 = 7/12
    # shape B (category 1), 4 points: gt [2, 2, 3, 3], pred [2, 2, 3, 3]
    #   parts 2, 3: 1; part 4 absent from both: 1; shape IoU 1
    ious = meter.update(logits_for([[0, 1, 1, 1], [2, 2, 3, 3]]), torch.tensor([0, 1]),
                        torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3]]))
    torch.testing.assert_close(ious, torch.tensor([7 / 12, 1.0], dtype=torch.float64))
    # shape C (category 1): gt [4, 4, 4, 2], pred [3, 3, 4, 2]
    #   part 2: 1; part 3: I 0, U 2 -> 0; part 4: I 1, U 3 -> 1/3; shape IoU (1 + 0 + 1/3) / 3 = 4/9
    meter.update(logits_for([[3, 3, 4, 2]]), torch.tensor([1]), torch.tensor([[4, 4, 4, 2]]))
    out = meter.compute()
    assert out["instance_miou"] == pytest.approx(100 * (7 / 12 + 1 + 4 / 9) / 3)
    assert out["per_category"] == pytest.approx([100 * 7 / 12, 100 * (1 + 4 / 9) / 2])
    assert out["class_miou"] == pytest.approx(100 * (7 / 12 + (1 + 4 / 9) / 2) / 2)
    assert out["accuracy"] == pytest.approx(100 * (3 + 4 + 2) / 12)


def test_prediction_is_restricted_to_the_category_parts() -> None:
    meter = PartSegMeter(MASK)
    logits = torch.tensor([[[0.0, 1.0, 9.0, 0.0, 0.0], [2.0, 1.0, 0.0, 9.0, 9.0]]])  # part 2/3 win overall
    assert meter.predict(logits, torch.tensor([0])).tolist() == [[1, 0]]  # among {0, 1} only
    meter.update(logits, torch.tensor([0]), torch.tensor([[1, 0]]))
    assert meter.compute()["instance_miou"] == pytest.approx(100.0)


def test_absent_category_is_nan_and_excluded() -> None:
    meter = PartSegMeter(MASK)
    meter.update(logits_for([[0, 0]]), torch.tensor([0]), torch.tensor([[0, 0]]))
    out = meter.compute()
    assert math.isnan(out["per_category"][1]) and out["class_miou"] == pytest.approx(100.0)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="part in every row"):
        PartSegMeter(torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="expected logits"):
        PartSegMeter(MASK).update(torch.zeros(1, 4, 3), torch.tensor([0]), torch.zeros(1, 4, dtype=torch.long))
