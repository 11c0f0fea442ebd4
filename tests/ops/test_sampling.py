"""pointcoc.ops.fps / knn (torch-cluster) against the naive references, and their errors."""

from __future__ import annotations

import math

import pytest
import torch

from pointcoc.ops import canonical_order, fps, gather, knn

from reference import naive_fps, naive_knn


def ragged(sizes: list[int], dim: int = 3, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    pos = torch.randn(sum(sizes), dim, dtype=dtype)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return pos, batch


@pytest.mark.parametrize("B,N,S,D", [(1, 10, 1, 3), (3, 100, 17, 3), (2, 64, 64, 2), (2, 257, 100, 3)])
def test_fps_dense_matches_naive(B: int, N: int, S: int, D: int) -> None:
    pos = torch.randn(B, N, D, dtype=torch.float64)
    idx = fps(pos, S)
    assert idx.shape == (B, S) and idx.dtype == torch.long
    for b in range(B):
        assert torch.equal(idx[b], naive_fps(pos[b], S))


def test_fps_flat_ragged_matches_naive() -> None:
    sizes = [20, 35, 7]
    pos, batch = ragged(sizes)
    samples = torch.tensor([5, 9, 7])
    idx = fps(pos, samples, batch)
    assert idx.shape == (21,)
    start = 0
    for b, n in enumerate(sizes):
        mine = idx[samples[:b].sum(): samples[: b + 1].sum()] - start
        assert torch.equal(mine, naive_fps(pos[start:start + n], int(samples[b])))
        start += n


@pytest.mark.parametrize("N", [3, 10, 100, 1000, 4096])
def test_fps_count_is_exact(N: int) -> None:
    """torch-cluster's ratio gives ceil(N * ratio); fps must return exactly S for every S."""
    pos = torch.rand(2, N, 3)
    for S in sorted({1, 2, N // 3, N // 2, N - 1, N, math.ceil(N * 0.3), 333 % N + 1}):
        if S < 1:
            continue
        idx = fps(pos, S)
        assert idx.shape == (2, S)
        assert all(idx[b].unique().numel() == S for b in range(2))


def test_fps_random_start_is_seeded_and_valid() -> None:
    pos = torch.randn(2, 80, 3, dtype=torch.float64)
    torch.manual_seed(1)
    a = fps(pos, 10, random_start=True)
    torch.manual_seed(1)
    b = fps(pos, 10, random_start=True)
    assert torch.equal(a, b)
    starts = {int(fps(pos, 10, random_start=True)[0, 0]) for _ in range(20)}
    assert len(starts) > 1, "random start never moved"
    for row in range(2):  # every random run is an FPS from its own start
        assert torch.equal(a[row], naive_fps(pos[row], 10, start=int(a[row, 0])))


@pytest.mark.parametrize("k", [1, 5, 16])
def test_knn_dense_matches_naive(k: int) -> None:
    pos = torch.randn(3, 60, 3, dtype=torch.float64)
    query = torch.randn(3, 11, 3, dtype=torch.float64)
    idx = knn(pos, query, k)
    assert idx.shape == (3, 11, k)
    for b in range(3):
        assert torch.equal(idx[b], naive_knn(pos[b], query[b], k))  # same sets, nearest first


def test_knn_flat_pairs() -> None:
    sizes, qsizes = [30, 12, 50], [4, 2, 5]
    pos, batch = ragged(sizes, dtype=torch.float64)
    query, bq = ragged(qsizes, dtype=torch.float64)
    k = 6
    pairs = knn(pos, query, k, batch, bq)
    assert pairs.shape == (2, sum(qsizes) * k)
    assert torch.equal(pairs[0], torch.arange(sum(qsizes)).repeat_interleave(k))
    col = pairs[1].view(-1, k)
    ps, qs = 0, 0
    for n, m in zip(sizes, qsizes):
        ref = naive_knn(pos[ps:ps + n], query[qs:qs + m], k) + ps
        assert torch.equal(col[qs:qs + m], ref)
        ps, qs = ps + n, qs + m


def test_knn_single_flat_cloud() -> None:
    pos, query = torch.randn(40, 3), torch.randn(5, 3)
    pairs = knn(pos, query, 3)
    assert torch.equal(pairs[1].view(5, 3), naive_knn(pos, query, 3))


def test_gather_and_canonical_order() -> None:
    x = torch.randn(2, 10, 4)
    idx = torch.tensor([[[1, 2], [3, 4]], [[0, 0], [9, 8]]])
    out = gather(x, idx)
    assert out.shape == (2, 2, 2, 4)
    assert torch.equal(out[1, 1, 0], x[1, 9])
    pos = torch.randn(2, 50, 3)
    perm = torch.randperm(50)
    sorted_a = gather(pos, canonical_order(pos))
    sorted_b = gather(pos[:, perm], canonical_order(pos[:, perm]))
    assert torch.equal(sorted_a, sorted_b)
    assert bool((sorted_a[:, 1:, 0] >= sorted_a[:, :-1, 0]).all())
    flat, batch = ragged([7, 9])
    order = canonical_order(flat, batch)
    assert torch.equal(batch[order], batch)


def test_canonical_fps_is_permutation_invariant() -> None:
    pos = torch.randn(1, 200, 3)
    perm = torch.randperm(200)
    a = gather(pos, canonical_order(pos))
    b = gather(pos[:, perm], canonical_order(pos[:, perm]))
    assert torch.equal(gather(a, fps(a, 20)), gather(b, fps(b, 20)))


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: knn(torch.randn(2, 5, 3), torch.randn(2, 3, 3), 6), r"`k`=6 is larger than the cloud.*5 points"),
        (lambda: knn(torch.randn(2, 5, 3), torch.randn(2, 3, 3), 0), r"`k` must be a positive int"),
        (lambda: fps(torch.randn(2, 0, 3), 1), r"empty"),
        (lambda: fps(torch.randn(0, 3), 1), r"empty"),
        (lambda: fps(torch.tensor([[0.0, float("nan"), 0.0]]), 1), r"NaN or inf"),
        (lambda: knn(torch.randn(4, 3), torch.tensor([[float("inf"), 0.0, 0.0]]), 1), r"`query`.*NaN or inf"),
        (lambda: fps(torch.randint(0, 5, (2, 10, 3)), 2), r"floating.*int64"),
        (lambda: fps(torch.randn(2, 10, 3), 11), r"more samples than points.*10 points"),
        (lambda: fps(torch.randn(10, 3), torch.tensor([3, 20]), torch.tensor([0] * 5 + [1] * 5)),
         r"more samples than points: cloud 1"),
        (lambda: knn(torch.randn(2, 10, 3), torch.randn(3, 4, 3), 2), r"batch sizes differ"),
        (lambda: fps(torch.randn(10, 3), 2, torch.zeros(9, dtype=torch.long)), r"`batch` has 9 entries.*10 points"),
        (lambda: knn(torch.randn(10, 3), torch.randn(4, 3), 2, torch.zeros(10, dtype=torch.long),
                     torch.tensor([0, 1, 1, 2])), r"mismatched batch sizes"),
        (lambda: fps(torch.randn(6, 3), 1, torch.tensor([0, 0, 2, 2, 2, 2])), r"empty cloud"),
        (lambda: fps(torch.randn(4, 3), 1, torch.tensor([1, 0, 0, 0])), r"sorted"),
        (lambda: knn(torch.randn(2, 10, 3), torch.randn(2, 4, 2), 2), r"differ in dimension"),
        (lambda: fps(torch.randn(10), 2), r"`pos` must be 2-D or 3-D"),
    ],
)
def test_errors_name_the_problem(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_kdtree_search_for_large_cpu_clouds_finds_torch_clusters_neighbours() -> None:
    """Above KDTREE_MIN_POINTS the CPU search is scipy's cKDTree: the same neighbours, in the same order."""
    from pointcoc.ops import Points, knn_points

    g = torch.Generator().manual_seed(0)
    sizes = [3000, 40, 1500]
    source = Points(torch.rand(sum(sizes), 3, generator=g), batch=torch.repeat_interleave(torch.arange(3),
                                                                                          torch.tensor(sizes)))
    query = torch.rand(700, 3, generator=g)
    qbatch = torch.repeat_interleave(torch.tensor([0, 2]), torch.tensor([400, 300]))  # cloud 1 has no queries
    ref = knn_points(source, query, qbatch, 16)  # torch-cluster: these clouds are below the threshold
    got = knn_points(source, query, qbatch, 16, kdtree=True)
    assert torch.equal(got, ref)
    big = Points(torch.rand(70_000, 3, generator=g))  # above KDTREE_MIN_POINTS: cKDTree by default
    q = torch.rand(50, 3, generator=g)
    zeros = torch.zeros(50, dtype=torch.long)
    assert torch.equal(knn_points(big, q, zeros, 8), knn_points(big, q, zeros, 8, kdtree=False))
    assert (source.batch[got] == qbatch[:, None]).all()
