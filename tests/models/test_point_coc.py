"""PointCoC (the demo point model): layouts, invariance, backward, and its errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pointcoc.models import PointCoC

ROOT = Path(__file__).resolve().parents[2]


def small_model(**kwargs) -> PointCoC:
    return PointCoC(num_classes=5, embed_dim=16, dims=(32, 64), depths=(1, 1), reductions=(4, 4),
                    num_neighbors=(8, 8), num_heads=(2, 2), head_dim=(8, 16), centers=(4, 2), regions=(4, 1),
                    **kwargs).eval()


def test_dense_and_flat_ragged_agree_cloud_by_cloud() -> None:
    model = small_model()
    clouds = [torch.randn(n, 3) for n in (256, 190, 300)]
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor([256, 190, 300]))
    with torch.no_grad():
        flat = model(torch.cat(clouds), batch=batch)
        alone = torch.cat([model(c[None]) for c in clouds])
    assert flat.shape == (3, 5)
    torch.testing.assert_close(flat, alone, rtol=1e-5, atol=1e-5)


def test_logits_are_invariant_to_point_order() -> None:
    model = small_model()
    pos = torch.randn(2, 256, 3)
    perm = torch.randperm(256)
    with torch.no_grad():
        torch.testing.assert_close(model(pos[:, perm]), model(pos), rtol=1e-5, atol=1e-5)


def test_features_and_backward() -> None:
    model = small_model(in_chans=3).train()
    pos, normals = torch.randn(2, 128, 3), torch.randn(2, 128, 3)
    logits = model(pos, normals)
    logits.sum().backward()
    assert logits.shape == (2, 5)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_too_small_cloud_says_the_minimum() -> None:
    model = small_model()
    need = model.min_points()
    with pytest.raises(ValueError, match=f"needs at least {need}"):
        model(torch.randn(1, need - 1, 3))
    assert model(torch.randn(1, need, 3)).shape == (1, 5)


def test_demo_script_runs() -> None:
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--batch-size", "2",
                          "--num-points", "512", "--steps", "1"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "logits (2, 10)" in res.stderr and "flat batch of clouds" in res.stderr


@pytest.mark.parametrize("name", ["pointcoc_nano", "pointmlp_elite", "pointcoc_scale_tiny"])
def test_forward_features_returns_every_stage(name: str) -> None:
    """The encoder hierarchy (for the segmentation decoders): one Points per stage, flat and dense alike."""
    import pointcoc
    from pointcoc.ops import Points

    model = pointcoc.create_model(name, num_classes=5).eval()
    clouds = [torch.randn(n, 3) for n in (300, 257)]
    flat = Points(torch.cat(clouds), batch=torch.repeat_interleave(torch.arange(2), torch.tensor([300, 257])))
    with torch.no_grad():
        stages = model.forward_features(model.prepare(flat))
        alone = [model.forward_features(model.prepare(c[None])) for c in clouds]
        logits = model.forward_head(stages)
        pooled = model.forward_head(stages, pre_logits=True)
    assert isinstance(stages, list) and all(isinstance(s, Points) for s in stages)
    assert len(stages) == len(alone[0]) >= 2
    for i, stage in enumerate(stages):
        assert stage.sizes == tuple(a[i].num_points for a in alone)
        assert stage.x.shape == (stage.num_points, alone[0][i].x.shape[1])
        for cloud, a in zip(stage.split(stage.x), alone):
            torch.testing.assert_close(cloud, a[i].x, rtol=1e-5, atol=1e-5)
    assert pooled.shape == (2, model.num_features)
    torch.testing.assert_close(logits, model(torch.cat(clouds), batch=flat.batch))
    torch.testing.assert_close(model.forward_head(pooled), logits)


@pytest.mark.parametrize(
    "build, old, new",
    [
        (lambda **kw: PointCoC(num_classes=3, **kw), {"in_channels": 3, "neighbors": (8, 8, 8), "heads": (1, 2, 2)},
         {"in_chans": 3, "num_neighbors": (8, 8, 8), "num_heads": (1, 2, 2)}),
        (lambda **kw: __import__("pointcoc").create_model("pointcoc_nano", **kw), {"in_channels": 2},
         {"in_chans": 2}),
        (lambda **kw: __import__("pointcoc").create_model("pointmlp_elite", **kw),
         {"k_neighbors": (8,) * 4, "reducers": (2,) * 4, "pre_blocks": (1,) * 4, "pos_blocks": (1,) * 4,
          "activation": "gelu", "in_channels": 1},
         {"num_neighbors": (8,) * 4, "reductions": (2,) * 4, "pre_depths": (1,) * 4, "post_depths": (1,) * 4,
          "act_layer": "gelu", "in_chans": 1}),
        (lambda **kw: __import__("pointcoc").create_model("coc_tiny", **kw),
         {"heads": (1, 1, 2, 2), "head_dims": (8,) * 4}, {"num_heads": (1, 1, 2, 2), "head_dim": (8,) * 4}),
    ],
)
def test_deprecated_argument_names_still_work(build, old: dict, new: dict) -> None:
    """The names before the timm vocabulary build the same model, with a FutureWarning naming the new one."""
    torch.manual_seed(0)
    with pytest.warns(FutureWarning) as caught:
        a = build(**old)
    torch.manual_seed(0)
    b = build(**new)
    messages = " ".join(str(w.message) for w in caught)
    assert all(f"`{o}` is deprecated, use `{n}`" in messages for o, n in zip(old, new))
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    with pytest.raises(TypeError, match="got both"):
        build(**old, **new)
