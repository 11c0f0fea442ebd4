"""CoC image models: upstream parity, the zoo, timm integration, checkpoints, images as point sets."""

from __future__ import annotations

import json

import pytest
import timm
import torch

import pointcoc
from pointcoc.models import (
    CoC,
    build_from_upstream_config,
    create_model,
    image_to_points,
    list_models,
    load_checkpoint,
    load_upstream_state_dict,
)

ZOO = ["coc_tiny", "coc_tiny2", "coc_tiny_plain", "coc_small", "coc_medium", "coc_base_dim64", "coc_base_dim96"]
SMALLEST_INPUT = {"coc_tiny2": 56}  # its 7x7 windows need maps divisible by 7; the others run at 64


def upstream_model(fixtures_dir, name: str, key: str = "config", weights: str = "state_dict"):
    fx = torch.load(fixtures_dir / name, weights_only=True)
    model = load_upstream_state_dict(build_from_upstream_config(fx[key]), fx[weights]).eval()
    return model, fx


@pytest.mark.parametrize("name", ["image_coc_tiny.pt", "image_coc_custom.pt"])
def test_upstream_parity(fixtures_dir, name: str) -> None:
    model, fx = upstream_model(fixtures_dir, name)
    with torch.no_grad():
        torch.testing.assert_close(model(fx["input"]), fx["output"], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(model.double()(fx["input"].double()), fx["output_float64"], rtol=1e-9, atol=1e-9)


def test_upstream_parity_fork_feat(fixtures_dir) -> None:
    model, fx = upstream_model(fixtures_dir, "image_coc_custom.pt", "features_config", "features_state_dict")
    with torch.no_grad():
        feats = model(fx["input"])
        assert [f.shape for f in feats] == [f.shape for f in fx["features"]]
        for mine, ref in zip(feats, fx["features"]):
            torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-4)
        for mine, ref in zip(model.double()(fx["input"].double()), fx["features_float64"]):
            torch.testing.assert_close(mine, ref, rtol=1e-9, atol=1e-9)


def test_zoo_matches_upstream_keys_shapes_and_counts(fixtures_dir) -> None:
    """Every zoo model loads a state dict of upstream's exact keys and shapes, with upstream's parameter count."""
    table = json.loads((fixtures_dir / "keys_and_shapes.json").read_text())["models"]
    for name in ZOO:
        entry = table[name]
        model = create_model(name)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert trainable == entry["num_params_trainable"], name
        fake = {key: torch.zeros(shape) for key, shape, _ in entry["state_dict"]}
        load_upstream_state_dict(model, fake, source=name)  # strict: raises on any key or shape problem
        assert entry["resolved_constructor_args"]["num_classes"] == model.num_classes


def test_issue_parameter_counts() -> None:
    counts = {"coc_tiny": 5_570_584, "coc_small": 14_657_024, "coc_medium": 29_290_520,
              "coc_base_dim64": 54_231_100, "coc_base_dim96": 53_054_904}
    for name, count in counts.items():
        assert sum(p.numel() for p in create_model(name).parameters()) == count


@pytest.mark.parametrize("name", ZOO)
def test_zoo_forward_backward(name: str) -> None:
    size = SMALLEST_INPUT.get(name, 64)
    model = create_model(name, num_classes=7, drop_path_rate=0.1).train()
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_registry() -> None:
    assert set(ZOO) <= set(list_models("image")) and set(ZOO) <= set(pointcoc.list_models())
    assert isinstance(pointcoc.create_model("coc_tiny", num_classes=3), CoC)
    with pytest.raises(ValueError, match="unknown model 'coc_huge'.*coc_tiny"):
        create_model("coc_huge")


def test_timm_integration() -> None:
    model = timm.create_model("coc_tiny", num_classes=10)
    assert isinstance(model, CoC) and model.num_features == 320
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, 224, 224) and cfg["classifier"] == "head" and cfg["crop_pct"] == 0.9
    assert cfg["interpolation"] == "bicubic" and len(cfg["mean"]) == 3 and len(cfg["std"]) == 3
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (1, 7, 7, 320)
        assert model.forward_head(feats, pre_logits=True).shape == (1, 320)
        torch.testing.assert_close(model.forward_head(feats), model(x))
        model.reset_classifier(4)
        assert model(x).shape == (1, 4)
        model.reset_classifier(0)
        assert model(x).shape == (1, 320)


def test_features_only() -> None:
    net = timm.create_model("coc_tiny", features_only=True)
    assert net.feature_info.channels() == [32, 64, 196, 320]
    assert net.feature_info.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        outs = net(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 32, 16, 24), (1, 64, 8, 12), (1, 196, 4, 6), (1, 320, 2, 3)]
    model = create_model("coc_small").eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        last, inter = model.forward_intermediates(x, indices=[1, 3])
        assert [i.shape[1] for i in inter] == [128, 512]
        torch.testing.assert_close(model.forward_head(last), model(x))


def test_checkpoint_files_and_timm_pretrained_file(fixtures_dir, tmp_path) -> None:
    fx = torch.load(fixtures_dir / "image_coc_tiny.pt", weights_only=True)
    sd = fx["state_dict"]
    wrapped = {
        "plain.pth": sd,
        "timm.pth.tar": {"state_dict": sd, "epoch": 3, "args": __import__("argparse").Namespace(lr=1e-3)},
        "model.pth": {"model": sd},
        "net.pth": {"net": {f"module.{k}": v for k, v in sd.items()}},
    }
    for fname, obj in wrapped.items():
        torch.save(obj, tmp_path / fname)
        model = create_model("coc_tiny", checkpoint=tmp_path / fname).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(fx["input"]), fx["output"], rtol=1e-4, atol=1e-4)
    # pointcoc's own state dict round-trips through the same loader
    torch.save({"model": model.state_dict()}, tmp_path / "mine.pt")
    again = create_model("coc_tiny", checkpoint=tmp_path / "mine.pt").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(fx["input"]), fx["output"], rtol=1e-4, atol=1e-4)
    # timm's own local-file route uses the same conversion
    timm_model = timm.create_model("coc_tiny", pretrained=True,
                                   pretrained_cfg_overlay={"file": str(tmp_path / "plain.pth")}).eval()
    with torch.no_grad():
        torch.testing.assert_close(timm_model(fx["input"]), fx["output"], rtol=1e-4, atol=1e-4)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_bad_checkpoints(tmp_path) -> None:
    model = create_model("coc_tiny_plain")
    torch.save({"state_dict": {"weight": _Payload()}}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="was refused, not loaded"):
        load_checkpoint(model, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(model, tmp_path / "absent.pt")
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"missing keys: \['head.weight', 'head.bias'\].*unexpected keys"):
        load_checkpoint(model, tmp_path / "partial.pt")
    sd = dict(model.state_dict(), **{"head.weight": torch.zeros(5, 320)})
    with pytest.raises(ValueError, match=r"shape mismatches: \['head.weight: \(5, 320\) vs model \(1000, 320\)'\]"):
        load_upstream_state_dict(model, sd)


def test_images_as_point_sets() -> None:
    model = CoC(depths=(1, 1), dims=(16, 24), mlp_ratios=(2, 2), num_heads=(2, 2), head_dim=(8, 8),
                centers=((2, 2), (2, 1)), regions=((2, 2), (1, 1)), num_classes=5).eval()
    images = torch.randn(2, 3, 32, 40)
    rgb, pos, batch = image_to_points(images)
    assert rgb.shape == (2 * 32 * 40, 3) and pos.shape == (2 * 32 * 40, 2)
    with torch.no_grad():
        logits = model.forward_points(rgb, pos, batch, image_size=(32, 40))
        assert logits.shape == (2, 5) and torch.isfinite(logits).all()
        # shuffling the pixels (inside each image of the flat batch) does not change the logits
        perm = torch.randperm(rgb.shape[0])
        perm = perm[torch.argsort(batch[perm], stable=True)]
        torch.testing.assert_close(model.forward_points(rgb[perm], pos[perm], batch[perm], (32, 40)), logits,
                                   rtol=1e-5, atol=1e-5)
        # the dense form gives the same
        dense = model.forward_points(rgb.view(2, -1, 3), pos.view(2, -1, 2), image_size=(32, 40))
        torch.testing.assert_close(dense, logits, rtol=1e-5, atol=1e-5)
        # a non-rectangular set: each image without a masked-out region (of different sizes)
        mask = torch.ones(2, 32, 40, dtype=torch.bool)
        mask[0, 8:20, 10:30] = False
        mask[1, :, 30:] = False
        r, p, b = image_to_points(images, mask)
        holes = model.forward_points(r, p, b, image_size=(32, 40))
        assert holes.shape == (2, 5) and torch.isfinite(holes).all()
        one = model.forward_points(r[b == 1], p[b == 1], image_size=(32, 40))
        torch.testing.assert_close(holes[1:], one, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(holes, logits, atol=1e-3), "removing pixels should change the logits"


def test_bad_inputs() -> None:
    model = create_model("coc_tiny_plain")
    with pytest.raises(ValueError, match=r"expected images \[B, 3, H, W\]"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="cannot be split into 8x8 regions"):
        create_model("coc_tiny")(torch.randn(1, 3, 60, 60))
    with pytest.raises(ValueError, match=r"rgb \[\.\.\., 3\] and pos \[\.\.\., 2\]"):
        model.forward_points(torch.randn(10, 3), torch.randn(9, 2))


@pytest.mark.parametrize("name", ["image_coc_tiny.pt", "image_coc_custom.pt"])
def test_recorded_assignments_match_upstream(fixtures_dir, name: str) -> None:
    """In float64 the recorded winning centres equal upstream's `cluster_assignments`, module by module."""
    from pointcoc.blocks import record_assignments

    model, fx = upstream_model(fixtures_dir, name)
    with torch.no_grad(), record_assignments(model.double()) as records:
        model(fx["input"].double())
    assert [n for n, _ in records] == fx["cluster_assignment_modules"]
    for (_, mine), ref in zip(records, fx["cluster_assignments"]):
        B, e, fw, fh, rw, rh = ref.shape
        centre = (mine.clusters % mine.num_centers).view(B, e, fw, rw, fh, rh).permute(0, 1, 2, 4, 3, 5)
        assert torch.equal(centre, ref.long())
        assert mine.num_clusters == fw * fh * mine.num_centers
