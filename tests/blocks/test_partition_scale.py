"""Context-cluster partition at scale: regions as windows along a space-filling curve."""

from __future__ import annotations

import pytest
import torch

import pointcoc
from pointcoc.blocks import (
    ClusterBlock,
    ClusterStage,
    ContextCluster,
    PointReducer,
    point_partition,
    record_assignments,
)
from pointcoc.ops import Points, serial_order


def ragged(sizes: list[int], channels: int = 8, seed: int = 0) -> Points:
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(sum(sizes), 3, generator=g)
    return Points(pos, torch.randn(sum(sizes), channels, generator=g),
                  torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)))


@pytest.mark.parametrize("curve", ["morton", "hilbert"])
def test_windows_are_consecutive_balanced_and_cover_every_point_once(curve: str) -> None:
    points = ragged([100, 7, 64, 250])
    size = 16
    part = point_partition(points, num_centers=4, region_mode=curve, region_size=size)
    windows = [-(-n // size) for n in points.sizes]
    assert part.index.shape[0] == sum(windows) and part.index.shape[1] <= size
    members = part.index[part.mask]
    assert torch.equal(members.sort().values, torch.arange(points.num_points))  # every point exactly once
    assert torch.equal(members, serial_order(points, curve))  # windows are consecutive runs of the curve order
    sizes = part.mask.sum(1)
    g = 0
    for n, w in zip(points.sizes, windows):  # balanced: sizes differ by at most one inside a cloud
        s = sizes[g:g + w]
        assert int(s.sum()) == n and int(s.max() - s.min()) <= 1
        assert part.local_region[g:g + w].tolist() == list(range(w))
        g += w
    # every point's slot, and the proposals: averaging weights over real members only
    assert torch.equal(part.index.flatten()[part.inverse], torch.arange(points.num_points))
    torch.testing.assert_close(part.proposal.sum(-1)[part.center_mask], torch.ones(int(part.center_mask.sum())))
    assert (part.proposal * ~part.mask[:, None, :]).abs().sum() == 0


def test_centres_are_means_around_evenly_spaced_anchors() -> None:
    """A window of 12 points along a line: anchors at slots 1, 4, 7, 10; each centre the mean of 3 nearest."""
    pos = torch.stack([torch.arange(12.0), torch.zeros(12), torch.zeros(12)], 1)
    part = point_partition(Points(pos), num_centers=4, region_mode="morton", region_size=12)
    assert part.index.tolist() == [list(range(12))]
    centre = part.proposal[0] @ pos[part.index[0]]
    # nearest 3 of slot 1: 0,1,2 -> 1; of 4: 3,4,5 (ties to the lower index) -> 4; 7 -> 7; 10 -> 10
    torch.testing.assert_close(centre[:, 0], torch.tensor([1.0, 4.0, 7.0, 10.0]))


def test_small_windows_have_fewer_centres() -> None:
    points = ragged([3, 20])
    part = point_partition(points, num_centers=4, region_mode="hilbert", region_size=16)
    sizes = part.mask.sum(1)
    assert torch.equal(part.center_mask.sum(1), sizes.clamp(max=4))


def test_windows_ignore_the_input_order() -> None:
    points = ragged([500], seed=2)
    perm = torch.randperm(500, generator=torch.Generator().manual_seed(3))
    shuffled = Points(points.pos[perm])

    def windows_and_centres(pts: Points) -> tuple[list[torch.Tensor], torch.Tensor]:
        part = point_partition(pts, num_centers=4, region_mode="hilbert", region_size=32)
        return [pts.pos[row[m]] for row, m in zip(part.index, part.mask)], part.proposal @ pts.pos[part.index]

    (wa, ca), (wb, cb) = windows_and_centres(points), windows_and_centres(shuffled)
    assert len(wa) == len(wb) == 16 and all(torch.equal(a, b) for a, b in zip(wa, wb))
    torch.testing.assert_close(ca, cb)


def test_block_flat_equals_each_cloud_alone_and_records() -> None:
    torch.manual_seed(0)
    block = ClusterBlock(8, num_heads=2, head_dim=4, centers=4, region_mode="hilbert", region_size=16).eval()
    points = ragged([90, 40, 33])
    with torch.no_grad(), record_assignments(block) as records:
        out = block.forward_points(points).x
    alone = [block.forward_points(Points(p, x)).x for p, x in zip(points.split(), points.split(points.x))]
    torch.testing.assert_close(out, torch.cat(alone), rtol=1e-5, atol=1e-5)
    (_, rec), = records[:1]
    assert rec.clusters.shape == (points.num_points, 2)
    assert rec.num_clusters == 6 * 4  # ceil(90 / 16) windows, 4 centres each
    assert int(rec.clusters.max()) < rec.num_clusters


def test_stage_shares_one_partition() -> None:
    stage = ClusterStage(ClusterBlock(8, num_heads=2, head_dim=4, centers=4, region_mode="morton", region_size=8)
                         for _ in range(3))
    points = ragged([64])
    stage.forward_points(points)
    keys = [k for k in points._cache if isinstance(k, tuple) and k[0] == "context-cluster partition"]
    assert len(keys) == 1


@pytest.mark.parametrize("kwargs,match", [
    (dict(region_mode="zorder", region_size=8), "`region_mode` must be one of"),
    (dict(region_mode="hilbert"), "needs `region_size`, a positive int"),
    (dict(region_mode="hilbert", region_size=0), "needs `region_size`, a positive int"),
    (dict(region_mode="morton", region_size=8, regions=4), "leave `regions` at 1"),
    (dict(region_size=8), "`region_size` is for the curve region modes"),
])
def test_bad_region_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ContextCluster(8, num_heads=2, head_dim=4, centers=4, **kwargs)


def test_reducer_samplers() -> None:
    points = ragged([100, 37])
    for sampler in ("hilbert", "morton"):
        red = PointReducer(8, 16, num_neighbors=8, reduction=4, sampler=sampler, aggregation="max")
        out = red.forward_points(points)
        assert out.sizes == (25, 10) and out.x.shape == (35, 16)
        idx = serial_order(points, sampler)
        assert torch.isin(out.pos, points.pos[idx]).all()
    with pytest.raises(ValueError, match="`sampler` must be one of"):
        PointReducer(8, 16, num_neighbors=8, reduction=4, sampler="grid")


def test_scale_preset_flat_equals_alone_and_is_cheap_on_host() -> None:
    model = pointcoc.create_model("pointcoc_scale_tiny", num_classes=5).eval()
    clouds = [torch.rand(n, 3) for n in (3000, 1100)]
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor([3000, 1100]))
    with torch.no_grad():
        flat = model(torch.cat(clouds), batch=batch)
        alone = torch.cat([model(c[None]) for c in clouds])
    torch.testing.assert_close(flat, alone, rtol=1e-5, atol=1e-5)
    assert all(r.sampler == "window_fps" for r in model.reducers)
    assert all(b.token_mixer.region_mode == "hilbert" for s in model.stages for b in s)


def test_object_models_keep_fps() -> None:
    for name in ("pointcoc_nano", "pointcoc_tiny", "pointcoc_small"):
        model = pointcoc.create_model(name)
        assert all(r.sampler == "fps" for r in model.reducers)
        assert all(b.token_mixer.region_mode == "fps" for s in model.stages for b in s)


def test_scale_preset_runs_a_100k_point_cloud() -> None:
    """The issue's bar: a 10^5-point input runs (forward ~1-2 s here; memory linear in N)."""
    model = pointcoc.create_model("pointcoc_scale_tiny", num_classes=5).eval()
    pos = torch.rand(1, 100_000, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        stages = model.forward_features(model.prepare(pos))
        logits = model.forward_head(stages)
    assert [s.num_points for s in stages] == [25_000, 6_250, 1_563]
    assert logits.shape == (1, 5) and torch.isfinite(logits).all()


def test_random_start_needs_fps() -> None:
    with pytest.raises(ValueError, match="`random_start` is for sampler='fps'"):
        PointReducer(8, 16, num_neighbors=8, reduction=4, sampler="window_fps", random_start=True)
