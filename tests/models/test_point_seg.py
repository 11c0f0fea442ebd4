"""The context-cluster U-Net (pointcoc_seg_*): shapes, batching, order invariance, conditioning, partitions."""

from __future__ import annotations

import pytest
import torch

import pointcoc.blocks.cluster as cluster_mod
from pointcoc.models import (
    PointCoCSeg,
    context_kwargs_from_state,
    create_model,
    list_models,
    load_upstream_state_dict,
    model_kind,
)
from pointcoc.ops import Points, knn_interpolate_points


def nano(**kwargs) -> PointCoCSeg:
    torch.manual_seed(0)
    return create_model("pointcoc_seg_nano", num_classes=6, num_categories=3, **kwargs).eval()


def inputs(B: int = 2, N: int = 128) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(B, N, 3, generator=g), torch.randn(B, N, 3, generator=g), torch.arange(B) % 3


def test_registered_as_part_segmenters() -> None:
    names = list_models("partseg")
    for v in ("nano", "tiny", "small"):
        assert f"pointcoc_seg_{v}" in names and model_kind(f"pointcoc_seg_{v}") == "partseg"


@pytest.mark.parametrize("name", ["pointcoc_seg_tiny", "pointcoc_seg_small"])
def test_full_size_models_at_2048_points(name: str) -> None:
    model = create_model(name).eval()
    pos, normals = torch.randn(2, 2048, 3), torch.randn(2, 2048, 3)
    with torch.no_grad():
        out = model(pos, normals, torch.tensor([0, 15]))
    assert out.shape == (2, 2048, 50) and torch.isfinite(out).all()


@pytest.mark.parametrize("context", ["deepest", "all"])
def test_dense_flat_and_each_cloud_alone_agree(context: str) -> None:
    model = nano(global_context=context)
    pos, x, cat = inputs(3, 96)
    with torch.no_grad():
        dense = model(pos, x, cat)
        flat = model(pos.reshape(-1, 3), x.reshape(-1, 3), cat, batch=torch.arange(3).repeat_interleave(96))
        alone = torch.stack([model(pos[b:b + 1], x[b:b + 1], cat[b:b + 1])[0] for b in range(3)])
    assert dense.shape == (3, 96, 6) and flat.shape == (3 * 96, 6)
    torch.testing.assert_close(flat.view(3, 96, 6), dense, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone, dense, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("context", ["deepest", "all"])
def test_ragged_flat_batch_matches_clouds_alone(context: str) -> None:
    model = nano(global_context=context)
    sizes = [70, 130]
    pos, x = torch.randn(sum(sizes), 3), torch.randn(sum(sizes), 3)
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor(sizes))
    cat = torch.tensor([2, 0])
    with torch.no_grad():
        flat = model(Points(pos, x, batch), category=cat)
        first = model(pos[:70], x[:70], cat[:1], batch=torch.zeros(70, dtype=torch.long))
        second = model(pos[70:], x[70:], cat[1:], batch=torch.zeros(130, dtype=torch.long))
    torch.testing.assert_close(flat, torch.cat([first, second]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("context", ["deepest", "all"])
def test_logits_follow_the_points_when_they_are_reordered(context: str) -> None:
    model = nano(global_context=context)
    pos, x, cat = inputs(2, 128)
    perm = torch.randperm(128, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(pos, x, cat)
        shuffled = model(pos[:, perm], x[:, perm], cat)
    torch.testing.assert_close(shuffled, ref[:, perm], rtol=1e-5, atol=1e-5)


def test_category_indices_and_one_hot_agree_and_change_the_output() -> None:
    model = nano()
    pos, x, cat = inputs(2, 64)
    with torch.no_grad():
        by_index = model(pos, x, cat)
        by_one_hot = model(pos, x, torch.nn.functional.one_hot(cat, 3).float())
        other = model(pos, x, (cat + 1) % 3)
    torch.testing.assert_close(by_index, by_one_hot)
    assert not torch.allclose(by_index, other)


def test_bad_categories_and_small_clouds_are_refused() -> None:
    model = nano()
    pos, x, cat = inputs(2, 64)
    with pytest.raises(ValueError, match="`category` is required"):
        model(pos, x)
    with pytest.raises(ValueError, match="out of range"):
        model(pos, x, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"must be \[B\]"):
        model(pos, x, torch.tensor([0]))
    need = model.min_points()
    with pytest.raises(ValueError, match=f"needs at least {need}"):
        model(pos[:, :need - 1], x[:, :need - 1], cat)
    assert model(pos[:, :need], x[:, :need], cat).shape == (2, need, 6)
    scenes = create_model("pointcoc_seg_nano", num_classes=4, num_categories=0, in_chans=0).eval()
    assert scenes(pos).shape == (2, 64, 4)
    with pytest.raises(ValueError, match="no categories"):
        scenes(pos, category=cat)


@pytest.mark.parametrize("context", ["deepest", "all"])
def test_backward_reaches_every_parameter(context: str) -> None:
    model = nano(global_context=context).train()
    pos, x, cat = inputs(2, 96)
    model(pos, x, cat).logsumexp(-1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_every_level_context_reads_every_level_and_bad_settings_are_refused() -> None:
    model = nano(global_context="all", context_dim=24)
    assert len(model.context_maps) == 3 and not hasattr(model, "context_norm")  # the embedding and two stages
    assert model.head[0].normalized_shape == (16 + 24 + 16,)  # embed_dim + context_dim + category_dim
    pos, x, cat = inputs(2, 96)
    with torch.no_grad():
        ref = model(pos, x, cat)
        for level in range(3):  # each level's pooled map reaches the logits
            weight = model.context_maps[level][1].weight
            saved = weight.clone()
            weight.mul_(3.0)
            assert not torch.allclose(model(pos, x, cat), ref), f"level {level} does not reach the output"
            weight.copy_(saved)
        torch.testing.assert_close(model(pos, x, cat), ref)
    assert create_model("pointcoc_seg_tiny").global_context == "all"
    with pytest.raises(ValueError, match="`global_context` must be 'deepest' or 'all', got 'mean'"):
        nano(global_context="mean")
    with pytest.raises(ValueError, match="`context_dim` must be a positive"):
        nano(global_context="all", context_dim=0)


def test_decoder_blocks_reuse_the_encoder_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = cluster_mod.point_partition

    def counting(points, *args, **kwargs):
        calls.append(points.num_points)
        return real(points, *args, **kwargs)

    monkeypatch.setattr(cluster_mod, "point_partition", counting)
    model = nano()
    pos, x, cat = inputs(2, 128)
    with torch.no_grad():
        model(pos, x, cat)
    # two stages with encoder and decoder blocks: one partition per level (32 and 8 points per cloud), not two
    assert sorted(calls) == [16, 64]


def test_knn_interpolate_points_matches_the_formula() -> None:
    g = torch.Generator().manual_seed(0)
    src = Points(torch.rand(30, 3, generator=g, dtype=torch.float64), None,
                 torch.tensor([0] * 12 + [1] * 18))
    qry = Points(torch.rand(50, 3, generator=g, dtype=torch.float64), None, torch.tensor([0] * 20 + [1] * 30))
    feats = torch.randn(30, 4, generator=g, dtype=torch.float64)
    out = knn_interpolate_points(feats, src, qry, k=3)
    expected = torch.empty_like(out)
    for q in range(50):
        b = int(qry.batch[q])
        members = (src.batch == b).nonzero().flatten()
        d2 = (src.pos[members] - qry.pos[q]).pow(2).sum(-1)
        near = members[d2.argsort()[:3]]
        w = 1.0 / (src.pos[near] - qry.pos[q]).pow(2).sum(-1)
        expected[q] = (feats[near] * w[:, None]).sum(0) / w.sum()
    torch.testing.assert_close(out, expected)
    # a query on a source point takes that point's features
    on = knn_interpolate_points(feats, src, Points(src.pos[:5], None, torch.zeros(5, dtype=torch.long)), k=3)
    torch.testing.assert_close(on, feats[:5])


def test_stem_needs_its_neighbours_and_changes_the_output() -> None:
    torch.manual_seed(0)
    wide = create_model("pointcoc_seg_nano", num_classes=6, num_categories=3, stem_neighbors=40).eval()
    assert wide.min_points() == 40  # the stem's k, above the encoder's 33
    with pytest.raises(ValueError, match="needs at least 40"):
        wide(*inputs(2, 39))
    plain = create_model("pointcoc_seg_nano", num_classes=6, num_categories=3, stem_neighbors=0).eval()
    assert plain.stem is None and plain.min_points() == 33
    pos, x, cat = inputs(2, 64)
    with torch.no_grad():
        torch.manual_seed(0)
        a = create_model("pointcoc_seg_nano", num_classes=6, num_categories=3).eval()
        state = {k: v for k, v in a.state_dict().items() if not k.startswith("stem")}
        plain.load_state_dict(state)
        assert not torch.allclose(a(pos, x, cat), plain(pos, x, cat))  # the stem takes part


@pytest.mark.parametrize(("name", "context"), [("pointcoc_seg_tiny", "deepest"), ("pointcoc_seg_nano", "all")])
def test_checkpoints_load_with_the_context_they_were_trained_with(tmp_path, name: str, context: str) -> None:
    from pointcoc.engine.predict import load_predictor

    torch.manual_seed(0)
    trained = create_model(name, global_context=context, context_dim=32).eval()  # not the variant's context
    assert context_kwargs_from_state(trained.state_dict()) == (
        {"global_context": "deepest"} if context == "deepest" else {"global_context": "all", "context_dim": 32})
    path = tmp_path / "model.pt"
    torch.save({"model": {f"module.{k}": v for k, v in trained.state_dict().items()}}, path)  # DDP-style keys
    loaded = load_predictor(path, name, "cpu").model
    assert loaded.global_context == context
    pos, x = torch.randn(1, 256, 3), torch.randn(1, 256, 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pos, x, torch.tensor([3])), trained(pos, x, torch.tensor([3])))
    with pytest.raises(ValueError, match="does not fit PointCoCSeg"):  # the variant's own context does not fit
        load_upstream_state_dict(create_model(name), torch.load(path, weights_only=True))
