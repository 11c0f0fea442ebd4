"""PointMLP / PointMLP-CoC: upstream parity, FPS/kNN against upstream's choices, zoo, batches, invariance."""

from __future__ import annotations

import json

import pytest
import torch

from pointcoc.models import (
    PointMLP,
    build_from_upstream_config,
    create_model,
    list_models,
    load_checkpoint,
    load_upstream_state_dict,
)

from reference import assert_fps_knn_records

FIXTURES = ["point_pointmlp_coc_small.pt", "point_pointmlp_small.pt"]
POINT_ZOO = ["pointmlp", "pointmlp_elite", "pointmlp_coc", "pointcoc_tiny", "pointcoc_small"]


def upstream(fixtures_dir, name: str):
    fx = torch.load(fixtures_dir / name, weights_only=True)
    model = load_upstream_state_dict(build_from_upstream_config(fx["config"]), fx["state_dict"]).eval()
    return model, fx


@pytest.mark.parametrize("name", FIXTURES)
def test_upstream_parity(fixtures_dir, name: str) -> None:
    model, fx = upstream(fixtures_dir, name)
    pos = fx["input"].transpose(1, 2)  # upstream [B, 3, N] -> pointcoc [B, N, 3]
    with torch.no_grad():
        torch.testing.assert_close(model(pos), fx["output"], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(model.double()(pos.double()), fx["output_float64"], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", FIXTURES)
def test_fps_and_knn_choose_upstreams_points(fixtures_dir, name: str) -> None:
    fx = torch.load(fixtures_dir / name, weights_only=True)
    assert_fps_knn_records(fx["input"].transpose(1, 2).contiguous(), fx)


def test_zoo_matches_upstream_keys_shapes_and_counts(fixtures_dir) -> None:
    table = json.loads((fixtures_dir / "keys_and_shapes.json").read_text())["models"]
    cases = {"pointMLP_CoC_15": ("pointmlp_coc", 15), "pointMLP_CoC_40": ("pointmlp_coc", 40),
             "pointMLP_40": ("pointmlp", 40), "pointMLPElite_40": ("pointmlp_elite", 40)}
    for upstream_name, (name, classes) in cases.items():
        entry = table[upstream_name]
        model = create_model(name, num_classes=classes)
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == entry["num_params_trainable"]
        fake = {key: torch.zeros(shape, dtype=getattr(torch, dtype)) for key, shape, dtype in entry["state_dict"]}
        load_upstream_state_dict(model, fake, source=upstream_name)  # strict


def test_issue_parameter_counts() -> None:
    assert sum(p.numel() for p in create_model("pointmlp_coc", num_classes=15).parameters()) == 15_326_815
    assert sum(p.numel() for p in create_model("pointmlp").parameters()) == 13_238_504
    assert sum(p.numel() for p in create_model("pointmlp_elite").parameters()) == 716_232


def test_upstream_checkpoint_file(fixtures_dir, tmp_path) -> None:
    """Upstream's point-cloud script saves {'net': DataParallel state dict, ...}."""
    model, fx = upstream(fixtures_dir, "point_pointmlp_coc_small.pt")
    torch.save({"net": {f"module.{k}": v for k, v in fx["state_dict"].items()}, "epoch": 10,
                "best_test_acc": 86.2}, tmp_path / "best_checkpoint.pth")
    fresh = build_from_upstream_config(fx["config"])
    load_checkpoint(fresh, tmp_path / "best_checkpoint.pth").eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(fx["input"].transpose(1, 2)), fx["output"], rtol=1e-4, atol=1e-4)


def small_pointmlp(**kwargs) -> PointMLP:
    return PointMLP(num_classes=6, embed_dim=16, res_expansion=0.5, dim_expansion=(2, 2), pre_depths=(1, 1),
                    post_depths=(1, 1), num_neighbors=(8, 8), reductions=(2, 2), cluster=True, **kwargs).eval()


@pytest.mark.parametrize("fps_start", ["first", "canonical"])
def test_ragged_flat_batch_cloud_by_cloud(fps_start: str) -> None:
    model = small_pointmlp(fps_start=fps_start)
    clouds = [torch.randn(n, 3) for n in (120, 64, 97)]
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor([120, 64, 97]))
    with torch.no_grad():
        flat = model(torch.cat(clouds), batch=batch)
        alone = torch.cat([model(c[None]) for c in clouds])
    torch.testing.assert_close(flat, alone, rtol=1e-5, atol=1e-5)


def test_permutation_invariance_with_canonical_start() -> None:
    pos = torch.randn(2, 128, 3)
    perm = torch.randperm(128)
    with torch.no_grad():
        model = small_pointmlp(fps_start="canonical")
        torch.testing.assert_close(model(pos[:, perm]), model(pos), rtol=1e-5, atol=1e-5)
        first = small_pointmlp(fps_start="first")
        first.load_state_dict(model.state_dict())
        assert not torch.allclose(first(pos[:, perm]), first(pos), atol=1e-4), "index-0 FPS depends on the order"


def test_random_start_is_seeded_in_training() -> None:
    model = small_pointmlp(fps_start="random").train()
    pos = torch.randn(2, 64, 3)
    torch.manual_seed(3)
    a = model(pos)
    torch.manual_seed(3)
    torch.testing.assert_close(model(pos), a)
    model.eval()
    first = small_pointmlp()
    first.load_state_dict(model.state_dict())
    torch.testing.assert_close(model(pos), first(pos))  # eval falls back to index 0


@pytest.mark.parametrize("name", POINT_ZOO)
def test_point_zoo_forward_backward_and_minimum(name: str) -> None:
    assert name in list_models("point")
    model = create_model(name, num_classes=5).train()
    need = model.min_points()
    logits = model(torch.randn(2, max(need, 256), 3))
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match=f"needs at least {need} points"):
        model.eval()(torch.randn(1, need - 1, 3))


def test_point_zoo_invariance_and_features() -> None:
    model = create_model("pointcoc_tiny", num_classes=4, in_chans=3).eval()
    pos, normals = torch.randn(2, 300, 3), torch.randn(2, 300, 3)
    perm = torch.randperm(300)
    with torch.no_grad():
        torch.testing.assert_close(model(pos[:, perm], normals[:, perm]), model(pos, normals), rtol=1e-5,
                                   atol=1e-5)
    with pytest.raises(ValueError, match=r"`x` must be \(2, 300, 3\)"):
        model(pos)
    with pytest.raises(ValueError, match="transpose"):
        create_model("pointmlp")(torch.randn(2, 3, 1024))


def test_unsupported_upstream_configs() -> None:
    cfg = {"upstream_file": "pointcloud/models/contextcluster.py", "class": "Model",
           "resolved_constructor_args": {"groups": 2}}
    with pytest.raises(ValueError, match="groups=2"):
        build_from_upstream_config(cfg)
    with pytest.raises(ValueError, match="unsupported upstream model"):
        build_from_upstream_config({"upstream_file": "x.py", "class": "Net", "constructor_args": {}})
