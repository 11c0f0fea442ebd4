"""pointcoc.ops.samplers: curves, serial and grid sampling, FPS by name, against naive references."""

from __future__ import annotations

import itertools

import pytest
import torch

from pointcoc.ops import (
    Points,
    curve_codes,
    fps,
    grid_pool,
    grid_sample,
    group_padded,
    serial_order,
    serial_windows,
    subsample,
    window_fps,
)
from pointcoc.ops.samplers import _hilbert_transpose, _interleave

from reference import naive_curve_cells, naive_fps, naive_grid, naive_morton, naive_serial_sample


def ragged_points(sizes: list[int], dim: int = 3, seed: int = 0) -> Points:
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(sum(sizes), dim, generator=g, dtype=torch.float64) * 10 - 3
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return Points(pos, torch.randn(sum(sizes), 4, generator=g, dtype=torch.float64), batch)


def clouds(points: Points) -> list[torch.Tensor]:
    return list(points.pos.split(list(points.sizes)))


# ----------------------------------------------------------------------------- curves
@pytest.mark.parametrize("dim,bits", [(3, 16), (2, 16), (3, 5), (4, 7), (1, 9)])
def test_morton_codes_match_naive_per_cloud(dim: int, bits: int) -> None:
    points = ragged_points([40, 1, 73], dim)
    codes = curve_codes(points, "morton", bits).split(list(points.sizes))
    for pos, got in zip(clouds(points), codes):
        # a one-point cloud has a zero-size cube: its only cell is 0
        want = [naive_morton(c, bits) for c in naive_curve_cells(pos, bits)] if pos.shape[0] > 1 else [0]
        assert got.tolist() == want


@pytest.mark.parametrize("dim,bits", [(2, 1), (2, 4), (3, 3), (4, 2), (1, 5)])
def test_hilbert_is_a_walk_through_face_neighbours(dim: int, bits: int) -> None:
    """On a full grid the Hilbert codes are a permutation of 0..2^(bits D)-1 and consecutive cells touch."""
    n = 1 << bits
    q = torch.tensor(list(itertools.product(range(n), repeat=dim)))
    code = _interleave(_hilbert_transpose(q, bits), bits)
    assert sorted(code.tolist()) == list(range(n ** dim))
    walk = q[code.argsort()]
    assert (walk[1:] - walk[:-1]).abs().sum(1).eq(1).all()
    assert walk[0].tolist() == [0] * dim  # starts in the corner cell


def test_hilbert_codes_nest_and_ignore_placement() -> None:
    """Points sharing a coarse cell share the code's top bits; a shifted, scaled cloud has the same codes."""
    points = ragged_points([500], 3, seed=1)
    bits = 8
    codes = curve_codes(points, "hilbert", bits)
    coarse = torch.tensor(naive_curve_cells(points.pos, 2))
    for cell in coarse.unique(dim=0):
        members = (coarse == cell).all(1)
        assert codes[members].div(1 << (3 * (bits - 2)), rounding_mode="floor").unique().numel() == 1
    moved = Points(points.pos * 4 + 1024)  # powers of two: the same cells without rounding
    assert torch.equal(curve_codes(moved, "hilbert", bits), codes)


def test_codes_of_each_cloud_ignore_the_others() -> None:
    points = ragged_points([30, 50, 20])
    for curve in ("morton", "hilbert"):
        together = curve_codes(points, curve).split(list(points.sizes))
        for pos, got in zip(clouds(points), together):
            assert torch.equal(got, curve_codes(Points(pos), curve))


def test_serial_order_sorts_each_cloud_and_keeps_clouds() -> None:
    points = ragged_points([64, 9, 100])
    for curve in ("morton", "hilbert"):
        order = serial_order(points, curve)
        assert torch.equal(points.batch[order], points.batch)
        codes = curve_codes(points, curve)[order]
        for c in codes.split(list(points.sizes)):
            assert (c[1:] >= c[:-1]).all()
        assert serial_order(points, curve) is order  # cached on the Points


# ----------------------------------------------------------------------------- serial sampling
@pytest.mark.parametrize("curve", ["morton", "hilbert"])
def test_serial_sample_matches_naive_with_exact_counts(curve: str) -> None:
    points = ragged_points([97, 5, 256, 33])
    samples = [24, 5, 64, 1]
    out = subsample(points, curve, samples)
    assert out.sizes == tuple(samples) and out.index.numel() == sum(samples)
    assert torch.equal(points.batch[out.index], torch.repeat_interleave(torch.arange(4), torch.tensor(samples)))
    codes = curve_codes(points, curve).split(list(points.sizes))
    starts = points.ptr[:-1].tolist()
    for b, (pos, s) in enumerate(zip(clouds(points), samples)):
        want = [starts[b] + i for i in naive_serial_sample(pos, s, codes[b].tolist())]
        assert out.index[sum(samples[:b]):sum(samples[:b + 1])].tolist() == want
    assert torch.equal(subsample(points, curve, samples).index, out.index)  # deterministic


@pytest.mark.parametrize("method", ["morton", "hilbert", "fps", "window_fps"])
def test_flat_equals_dense_and_every_cloud_alone(method: str) -> None:
    pos = torch.rand(3, 80, 3, generator=torch.Generator().manual_seed(2))
    dense = subsample(Points.from_dense(pos), method, 20)
    flat = subsample(Points(pos.reshape(-1, 3), batch=torch.arange(3).repeat_interleave(80)), method, 20)
    assert torch.equal(dense.index, flat.index)
    for b in range(3):
        alone = subsample(Points(pos[b]), method, 20).index
        assert torch.equal(flat.index[20 * b:20 * (b + 1)] - 80 * b, alone)


@pytest.mark.parametrize("method", ["morton", "hilbert", "window_fps"])
def test_serial_sample_ignores_the_input_order(method: str) -> None:
    points = ragged_points([300], seed=3)  # 300 random points fall in 300 distinct cells of 2^48
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(0))
    a = points.pos[subsample(points, method, 75).index]
    b = points.pos[perm][subsample(Points(points.pos[perm]), method, 75).index]
    assert torch.equal(a, b)


def test_fps_by_name_is_torch_cluster_fps() -> None:
    points = ragged_points([50, 70])
    out = subsample(points, "fps", [10, 7])
    assert torch.equal(out.index, fps(points.pos, torch.tensor([10, 7]), points.batch))


def test_fpsample_counts_and_determinism() -> None:
    pytest.importorskip("fpsample", reason="fpsample (pointcoc[fpsample]) is not installed")
    points = ragged_points([2000, 300, 64])
    out = subsample(points, "fpsample", [500, 300, 16])
    assert out.sizes == (500, 300, 16)
    for b, idx in enumerate(out.index.split([500, 300, 16])):
        assert idx.unique().numel() == idx.numel()
        assert (points.batch[idx] == b).all()
    assert torch.equal(subsample(points, "fpsample", [500, 300, 16]).index, out.index)
    # the bucket FPS spreads its samples like FPS: its covering radius is close to exact FPS's
    pos = points.pos[:2000]
    exact = torch.cdist(pos, pos[fps(pos, 500)]).min(1).values.max()
    bucket = torch.cdist(pos, pos[out.index[:500]]).min(1).values.max()
    assert bucket < 1.5 * exact


# ----------------------------------------------------------------------------- grid
@pytest.mark.parametrize("voxel", [0.5, 1.7, 100.0])
def test_grid_sample_matches_naive(voxel: float) -> None:
    points = ragged_points([200, 1, 150])
    out = grid_sample(points, voxel)
    starts = points.ptr[:-1].tolist()
    got = out.index.split(list(out.sizes))
    for b, pos in enumerate(clouds(points)):
        vox = naive_grid(pos, voxel)
        assert out.sizes[b] == len(vox)
        lo = pos.min(0).values
        want = []
        for cell in sorted(vox):  # voxel order: by cell, coordinate 0 first
            centre = lo + (torch.tensor(cell, dtype=pos.dtype) + 0.5) * voxel
            dist = [float((pos[i] - centre).pow(2).sum()) for i in vox[cell]]
            want.append(starts[b] + vox[cell][dist.index(min(dist))])
        assert got[b].tolist() == want
    # every point is mapped to its voxel's sample
    assert out.cluster.shape == (points.num_points,)
    same = points.batch[out.index[out.cluster]] == points.batch
    cell_of = ((points.pos - torch.stack([p.min(0).values for p in clouds(points)])[points.batch]) // voxel).long()
    assert same.all() and torch.equal(cell_of[out.index[out.cluster]], cell_of)


def test_grid_sample_ignores_the_input_order() -> None:
    points = ragged_points([400], seed=4)
    perm = torch.randperm(400, generator=torch.Generator().manual_seed(1))
    a = points.pos[grid_sample(points, 0.9).index]
    b = points.pos[perm][grid_sample(Points(points.pos[perm]), 0.9).index]
    assert torch.equal(a, b)


def test_grid_pool_means_match_naive() -> None:
    points = ragged_points([120, 80])
    pooled, cluster = grid_pool(points, 2.0)
    assert pooled.num_clouds == 2 and pooled.x.shape == (pooled.num_points, 4)
    means, point_means = [], torch.empty_like(points.pos)
    for b, (pos, x) in enumerate(zip(clouds(points), points.x.split(list(points.sizes)))):
        vox = naive_grid(pos, 2.0)
        assert pooled.sizes[b] == len(vox)
        means += [(pos[v].mean(0), x[v].mean(0)) for _, v in sorted(vox.items())]
        for v in vox.values():  # every point's own voxel mean
            point_means[int(points.ptr[b]) + torch.tensor(v)] = pos[v].mean(0)
    torch.testing.assert_close(pooled.pos, torch.stack([m[0] for m in means]), rtol=0, atol=1e-12)
    torch.testing.assert_close(pooled.x, torch.stack([m[1] for m in means]), rtol=0, atol=1e-12)
    torch.testing.assert_close(pooled.pos[cluster], point_means, rtol=0, atol=1e-12)  # cluster: each point's voxel
    assert torch.equal(pooled.batch[cluster], points.batch)


def test_grid_per_axis_voxel_size() -> None:
    points = ragged_points([300], dim=2)
    out = grid_sample(points, [0.5, 5.0])
    cell = ((points.pos - points.pos.min(0).values) / torch.tensor([0.5, 5.0], dtype=torch.float64)).floor()
    assert out.sizes[0] == cell.unique(dim=0).shape[0]


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call,match", [
    (lambda p: subsample(p, "poisson", 3), "unknown sampler 'poisson'"),
    (lambda p: subsample(p, "morton"), "takes `num_samples`"),
    (lambda p: subsample(p, "hilbert", 3, voxel_size=0.1), "takes `num_samples`"),
    (lambda p: subsample(p, "grid", 3), "takes `voxel_size`"),
    (lambda p: subsample(p, "grid"), "takes `voxel_size`"),
    (lambda p: subsample(p, "morton", 11), "cloud 1, which has 10 points"),
    (lambda p: subsample(p, "morton", 0), "each must be in 1..20"),
    (lambda p: subsample(p, "morton", [1, 2, 3]), "one int per cloud \\(2\\)"),
    (lambda p: subsample(p, "fps", 2.5), "one int per cloud"),
    (lambda p: grid_sample(p, 0.0), "positive finite"),
    (lambda p: grid_sample(p, float("nan")), "positive finite"),
    (lambda p: grid_sample(p, [0.1, 0.1]), "one per coordinate, 3"),
    (lambda p: grid_sample(p, 1e-18), "more than an int64 key holds"),
    (lambda p: curve_codes(p, "peano"), "`curve` must be one of"),
    (lambda p: curve_codes(p, "morton", 21), "bits \\* D <= 62"),
    (lambda p: curve_codes(p, "morton", 0), "1 <= bits"),
])
def test_bad_input(call, match: str) -> None:
    points = ragged_points([20, 10])
    with pytest.raises(ValueError, match=match):
        call(points)


def test_single_point_and_duplicate_clouds() -> None:
    """A cloud of one point (or all in one place) has a zero-size bounding cube: code 0, no NaN."""
    points = Points(torch.zeros(5, 3), batch=torch.tensor([0, 1, 1, 1, 1]))
    for curve in ("morton", "hilbert"):
        assert curve_codes(points, curve).tolist() == [0] * 5
        assert subsample(points, curve, [1, 2]).index.tolist() == [0, 2, 4]  # duplicates: the input order decides
    assert grid_sample(points, 0.1).index.tolist() == [0, 1]


# ----------------------------------------------------------------------------- windows, window FPS
def test_serial_windows_are_balanced_runs_of_the_curve_order() -> None:
    points = ragged_points([50, 7, 64])
    order, window, sizes, local = serial_windows(points, "hilbert", [4, 3, 1])
    assert torch.equal(order, serial_order(points, "hilbert"))
    assert sizes.tolist() == [13, 12, 13, 12, 3, 2, 2, 64] and local.tolist() == [0, 1, 2, 3, 0, 1, 2, 0]
    assert torch.equal(window, torch.repeat_interleave(torch.arange(8), sizes))
    index, mask, slot = group_padded(order, window, sizes, 64)
    assert torch.equal(index[mask], order) and mask.sum(1).tolist() == sizes.tolist()
    assert torch.equal(index[window, slot], order)


def test_window_fps_matches_naive_fps_in_each_window() -> None:
    points = ragged_points([300, 90, 17, 40])
    samples = [75, 30, 17, 39]
    per_window = 8
    got = window_fps(points, samples, per_window=per_window)
    assert got.numel() == sum(samples) and got.unique().numel() == got.numel()
    order = serial_order(points, "hilbert")
    want, start = [], 0
    for n, s in zip(points.sizes, samples):
        # rank r -> window floor(floor(r s / n) / per_window): per_window of the s evenly spaced slots each
        window = [(r * s // n) // per_window for r in range(n)]
        ranks = order[start:start + n]
        for w in range(max(window) + 1):
            members = ranks[[r for r in range(n) if window[r] == w]]
            want += members[naive_fps(points.pos[members], min(per_window, s - w * per_window))].tolist()
        start += n
    assert got.tolist() == want
    assert torch.equal(subsample(points, "window_fps", samples).index, window_fps(points, samples))


def test_window_fps_covers_almost_like_fps() -> None:
    """Covering radius (the largest distance to the nearest sample) on 4,000 uniform points, 1,000 samples."""
    pos = torch.rand(4000, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)

    def cover(idx: torch.Tensor) -> float:
        return float(torch.cdist(pos, pos[idx]).min(1).values.max())

    exact, windowed = cover(fps(pos, 1000)), cover(subsample(Points(pos), "window_fps", 1000).index)
    curve = cover(subsample(Points(pos), "hilbert", 1000).index)
    assert exact < windowed < 1.5 * exact < curve


def test_half_precision_positions_keep_their_cells() -> None:
    """float16 / bfloat16 clouds quantise like the same values in float32 (cells / side must not overflow)."""
    pos = torch.rand(500, 3, generator=torch.Generator().manual_seed(6))
    for dtype in (torch.float16, torch.bfloat16):
        low = pos.to(dtype)
        for curve in ("morton", "hilbert"):
            codes = curve_codes(Points(low), curve)
            assert torch.equal(codes, curve_codes(Points(low.float()), curve)) and codes.unique().numel() > 400
        pooled, _ = grid_pool(Points(low), 10.0)  # one voxel: the mean of all 500 points
        torch.testing.assert_close(pooled.pos[0].double(), low.double().mean(0), rtol=0, atol=1e-2)


def test_window_fps_with_very_different_ratios_pads_cloud_by_cloud() -> None:
    points = ragged_points([400, 400])
    got = window_fps(points, [3, 200], per_window=16)
    assert got.numel() == 203
    for b, (s, idx) in enumerate(zip([3, 200], got.split([3, 200]))):
        alone = window_fps(Points(points.pos[400 * b:400 * (b + 1)]), [s], per_window=16)
        assert torch.equal(idx - 400 * b, alone)


@pytest.mark.parametrize("call,match", [
    (lambda p: grid_sample(p, "0.1"), "positive finite"),
    (lambda p: grid_sample(p, 1e-300), "more than an int64 key holds"),
    (lambda p: serial_windows(p, "hilbert", [30, 1]), "1..N_b windows"),
    (lambda p: serial_windows(p, "hilbert", [1]), "1..N_b windows"),
])
def test_more_bad_input(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(ragged_points([20, 10]))
