"""fps_padded / knn_padded (many small groups at once) against the naive references."""

from __future__ import annotations

import pytest
import torch

from pointcoc.ops import fps, fps_padded, knn, knn_padded

from reference import naive_fps, naive_knn


def padded_groups(sizes: list[int], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    pos = torch.randn(len(sizes), n, 3, dtype=torch.float64)
    mask = torch.arange(n) < torch.tensor(sizes)[:, None]
    pos = pos.masked_fill(~mask[..., None], 1e3)  # padding far away must still never be picked
    return pos, mask


def test_fps_padded_matches_naive_and_torch_cluster() -> None:
    sizes = [12, 5, 3, 12]
    pos, mask = padded_groups(sizes, 12)
    idx, valid = fps_padded(pos, 4, mask)
    assert idx.shape == valid.shape == (4, 4)
    assert valid.tolist() == [[True] * 4, [True] * 4, [True, True, True, False], [True] * 4]
    for g, n in enumerate(sizes):
        m = min(4, n)
        assert torch.equal(idx[g, :m], naive_fps(pos[g, :n], m))
        assert bool((idx[g] < n).all()), "a padding entry was sampled"
    full, _ = fps_padded(pos[:1], 6)
    assert torch.equal(full, fps(pos[:1], 6))


@pytest.mark.parametrize("k", [1, 3, 7])
def test_knn_padded_matches_naive(k: int) -> None:
    sizes = [7, 4, 9]
    pos, mask = padded_groups(sizes, 9)
    query = torch.randn(3, 2, 3, dtype=torch.float64)
    idx, valid = knn_padded(pos, query, k, mask)
    assert idx.shape == (3, 2, k)
    for g, n in enumerate(sizes):
        kk = min(k, n)
        assert torch.equal(idx[g, :, :kk], naive_knn(pos[g, :n], query[g], kk))
        assert bool(valid[g, :, :kk].all()) and not bool(valid[g, :, kk:].any())
    unmasked, _ = knn_padded(pos[:1, :7], query[:1], k)
    assert torch.equal(unmasked, knn(pos[:1, :7], query[:1], k))


def test_padded_errors() -> None:
    with pytest.raises(ValueError, match="`mask` must be a bool tensor of shape"):
        fps_padded(torch.randn(2, 5, 3), 2, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="`k`=6 must be in 1..5"):
        knn_padded(torch.randn(2, 5, 3), torch.randn(2, 1, 3), 6)
