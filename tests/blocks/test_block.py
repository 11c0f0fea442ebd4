"""ClusterBlock and the per-sample layers (SampleNorm, DropPath)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch, Data

from pointcoc.blocks import ClusterBlock, ClusterStage, DropPath, SampleNorm
from pointcoc.ops import Points


def test_sample_norm_is_groupnorm_1() -> None:
    norm = SampleNorm(6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    gn = nn.GroupNorm(1, 6)
    gn.load_state_dict(norm.state_dict())
    x = torch.randn(3, 5, 7, 6)
    torch.testing.assert_close(norm(x), gn(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1), rtol=1e-5, atol=1e-5)


def test_sample_norm_flat_is_per_cloud() -> None:
    norm = SampleNorm(4)
    clouds = [torch.randn(n, 4) * s + s for n, s in ((10, 1.0), (25, 3.0), (7, 0.2))]
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor([10, 25, 7]))
    out = norm(torch.cat(clouds), batch)
    torch.testing.assert_close(out, torch.cat([norm(c) for c in clouds]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[10:35], norm(clouds[1][None])[0], rtol=1e-5, atol=1e-5)


def test_drop_path_drops_whole_clouds() -> None:
    layer = DropPath(0.5).train()
    batch = torch.repeat_interleave(torch.arange(40), 5)
    out = layer(torch.ones(200, 3), batch)
    per_cloud = out.view(40, 15)
    assert bool(((per_cloud == 0).all(1) | (per_cloud == 2).all(1)).all())
    assert 0 < int((per_cloud[:, 0] == 0).sum()) < 40
    assert torch.equal(layer.eval()(torch.ones(4, 3)), torch.ones(4, 3))


def test_drop_path_of_one_drops_everything_without_nan() -> None:
    """Before: p = 1 returned NaN (a mask of 0 divided by a keep probability of 0)."""
    for x, batch in ((torch.ones(6, 4, 3), None), (torch.ones(10, 3), torch.tensor([0] * 4 + [1] * 6))):
        out = DropPath(1.0).train()(x, batch)
        assert torch.equal(out, torch.zeros_like(x))
    with pytest.raises(ValueError, match=r"in \[0, 1\], got 1.5"):
        DropPath(1.5)


def test_block_equals_its_definition() -> None:
    blk = ClusterBlock(16, mlp_ratio=2, num_heads=2, head_dim=8, centers=(2, 2), regions=(2, 2),
                       layer_scale_init_value=0.5).eval()
    x = torch.randn(2, 8, 8, 16)
    y = x + blk.layer_scale_1 * blk.token_mixer(blk.norm1(x))
    y = y + blk.layer_scale_2 * blk.mlp.fc2(blk.mlp.act(blk.mlp.fc1(blk.norm2(y))))
    torch.testing.assert_close(blk(x), y)


@pytest.mark.parametrize("layer_scale", [1e-5, None])
def test_block_layouts_and_backward(layer_scale) -> None:
    blk = ClusterBlock(16, num_heads=2, head_dim=8, centers=(2, 2), regions=(2, 2), drop_path=0.1,
                       layer_scale_init_value=layer_scale)
    assert hasattr(blk, "layer_scale_1") == (layer_scale is not None)
    img = torch.randn(2, 8, 8, 16, requires_grad=True)
    pts = torch.randn(2, 100, 16, requires_grad=True)
    out_img, out_pts = blk(img), blk(pts, torch.randn(2, 100, 3))
    assert out_img.shape == img.shape and out_pts.shape == pts.shape
    (out_img.sum() + out_pts.sum()).backward()
    assert img.grad is not None and pts.grad is not None
    assert all(p.grad is not None for p in blk.parameters())


def test_block_pyg_batch_cloud_by_cloud() -> None:
    blk = ClusterBlock(16, num_heads=2, head_dim=8, centers=4, regions=2, layer_scale_init_value=1.0).eval()
    clouds = [Data(x=torch.randn(n, 16), pos=torch.randn(n, 3)) for n in (40, 73, 55)]
    data = Batch.from_data_list(clouds)
    part = blk.partition(data.pos, data.batch)
    out = blk(data.x, data.pos, data.batch, part)
    torch.testing.assert_close(out, torch.cat([blk(c.x, c.pos) for c in clouds]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(blk(data.x, data.pos, data.batch), out)


def _stage(depth: int, **kwargs) -> ClusterStage:
    cfg = dict(num_heads=2, head_dim=8, centers=4, regions=3, layer_scale_init_value=0.5) | kwargs
    return ClusterStage([ClusterBlock(16, **cfg) for _ in range(depth)]).eval()


def test_stage_keys_are_those_of_a_plain_module_list() -> None:
    blocks = [ClusterBlock(16, num_heads=2, head_dim=8) for _ in range(3)]
    assert list(ClusterStage(blocks).state_dict()) == list(nn.ModuleList(blocks).state_dict())
    assert isinstance(ClusterStage(blocks), nn.ModuleList)


def test_stage_forms_agree() -> None:
    """forward_points, the dense and flat compatibility forms and block-by-block runs give one result."""
    stage = _stage(3)
    clouds = [Data(x=torch.randn(n, 16), pos=torch.randn(n, 3)) for n in (40, 73, 55)]
    data = Batch.from_data_list(clouds)
    points = Points.from_pyg(data)
    out = stage.forward_points(points)
    assert out.pos is points.pos and out.sizes == points.sizes
    torch.testing.assert_close(stage(data.x, data.pos, data.batch), out.x)
    by_block = data.x
    for blk in stage:
        by_block = blk(by_block, data.pos, data.batch)
    torch.testing.assert_close(by_block, out.x, rtol=1e-5, atol=1e-5)
    alone = torch.cat([stage.forward_points(Points(c.pos, c.x)).x for c in clouds])
    torch.testing.assert_close(out.x, alone, rtol=1e-5, atol=1e-5)
    x, pos = torch.randn(2, 50, 16), torch.randn(2, 50, 3)
    torch.testing.assert_close(stage(x, pos), stage.forward_points(Points.from_dense(pos, x)).x.view(2, 50, 16))
    img = torch.randn(2, 6, 6, 16)
    grid_stage = _stage(2, centers=(2, 2), regions=(3, 3))
    torch.testing.assert_close(grid_stage(img), grid_stage[1](grid_stage[0](img)))


def test_stage_computes_one_partition(monkeypatch) -> None:
    from pointcoc.blocks import cluster

    calls = []
    real = cluster.point_partition
    monkeypatch.setattr(cluster, "point_partition", lambda *a, **k: calls.append(1) or real(*a, **k))
    stage = _stage(3)
    points = Points.from_dense(torch.randn(2, 60, 3), torch.randn(2, 60, 16))
    out = stage.forward_points(points)
    assert len(calls) == 1 and list(points._cache) == [stage[0].token_mixer.partition_key]
    stage.forward_points(out)  # new features, the same geometry: the cached partition again
    assert len(calls) == 1
    stage.forward_points(Points.from_dense(torch.randn(2, 60, 3), torch.randn(2, 60, 16)))  # new geometry
    assert len(calls) == 2
