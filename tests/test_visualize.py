"""Cluster figures: assignment maps from the model's own record, the PNGs, and scripts/visualize_clusters.py."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pointcoc.blocks import record_assignments
from pointcoc.models import CoC, PointMLP, create_model
from pointcoc.visualize import (
    cluster_colors,
    draw_image_clusters,
    draw_point_clusters,
    image_assignment_map,
    mixer_name,
    point_assignments,
    upsample_nearest,
)

from scripts_loader import ROOT, load_script

SCRIPT = ROOT / "scripts" / "visualize_clusters.py"
# two stages: 8x8 map in 2x2 windows of 2x2 centres (16 clusters), then a 4x4 map, one window of 2x1 centres
SMALL_COC = dict(depths=(1, 1), dims=(16, 24), mlp_ratios=(2, 2), num_heads=(2, 2), head_dim=(8, 8),
                 centers=((2, 2), (2, 1)), regions=((2, 2), (1, 1)), num_classes=5)


@pytest.fixture
def coc() -> CoC:
    return CoC(**SMALL_COC).eval()


@pytest.fixture
def nano() -> torch.nn.Module:
    return create_model("pointcoc_nano", num_classes=5).eval()


def recorded(model: torch.nn.Module, *inputs: torch.Tensor) -> dict:
    with torch.no_grad(), record_assignments(model) as records:
        model(*inputs)
    return dict(records)


def near(png: np.ndarray, rgb: np.ndarray, tol: int = 3) -> np.ndarray:
    """``[H, W]`` bool: pixels of ``png`` within ``tol`` of the float colour ``rgb`` in [0, 1]."""
    return (np.abs(png[..., :3].astype(int) - np.round(np.asarray(rgb) * 255).astype(int)) <= tol).all(-1)


# ----------------------------------------------------------------------------- image maps
@pytest.mark.parametrize("stage, block, head, shape, num_clusters",
                         [(0, 0, 0, (8, 8), 16), (0, 0, 1, (8, 8), 16), (1, 0, 1, (4, 4), 2)])
def test_image_map_is_the_recorded_assignment(coc, stage, block, head, shape, num_clusters) -> None:
    image = torch.randn(3, 32, 32)
    amap = image_assignment_map(coc, image, stage, block, head)
    assert amap.shape == shape and amap.dtype == torch.int64
    assert 0 <= int(amap.min()) and int(amap.max()) < num_clusters
    name = f"network.{coc.stage_index[stage]}.{block}.token_mixer"
    assert mixer_name(coc, stage, block) == name
    record = recorded(coc, image[None])[name]
    assert record.num_clusters == num_clusters
    torch.testing.assert_close(amap, record.clusters[0, head].long(), rtol=0, atol=0)


def test_image_map_regions_hold_their_own_clusters(coc) -> None:
    """Stage 0 splits the 8x8 map into 2x2 windows of 4x4 with 4 centres each: window r holds ids 4r..4r+3."""
    amap = image_assignment_map(coc, torch.randn(3, 32, 32), 0, 0, 0)
    for r, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        window = amap[4 * i:4 * i + 4, 4 * j:4 * j + 4]
        assert ((window // 4) == r).all(), (r, window)
    assert amap.unique().numel() > 4  # not one cluster per window


def test_image_map_keeps_the_model_mode(coc) -> None:
    coc.train()
    seen: list[bool] = []
    coc.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    image = torch.randn(3, 32, 32)
    amap = image_assignment_map(coc, image, 0, 0, 0)
    assert seen == [False]  # the forward pass ran in eval mode ...
    assert coc.training  # ... and the caller's mode is back
    torch.testing.assert_close(amap, image_assignment_map(coc.eval(), image, 0, 0, 0), rtol=0, atol=0)


def test_image_map_bad_arguments(coc, nano) -> None:
    image = torch.randn(3, 32, 32)
    with pytest.raises(ValueError, match=r"`stage` must be an int in \[0, 1\]"):
        image_assignment_map(coc, image, 2, 0, 0)
    with pytest.raises(ValueError, match=r"`stage` must be an int in \[0, 1\]"):
        image_assignment_map(coc, image, -1, 0, 0)
    with pytest.raises(ValueError, match=r"`block` must be an int in \[0, 0\] \(stage 1 has 1\)"):
        image_assignment_map(coc, image, 1, 1, 0)
    with pytest.raises(ValueError, match=r"`head` must be an int in \[0, 1\]"):
        image_assignment_map(coc, image, 0, 0, 2)
    with pytest.raises(ValueError, match=r"`image` must be a tensor \[3, H, W\]"):
        image_assignment_map(coc, image[None], 0, 0, 0)
    with pytest.raises(ValueError, match="point_assignments"):
        image_assignment_map(nano, image, 0, 0, 0)


def test_upsample_nearest_matches_interpolate() -> None:
    grid = torch.randint(0, 50, (8, 8))
    ref = F.interpolate(grid[None, None].float(), size=(32, 32), mode="nearest")[0, 0].long().numpy()
    np.testing.assert_array_equal(upsample_nearest(grid, 32, 32), ref)
    np.testing.assert_array_equal(upsample_nearest(np.array([[0, 1], [2, 3]]), 4, 2),
                                  [[0, 1], [0, 1], [2, 3], [2, 3]])


# ----------------------------------------------------------------------------- image figure
def test_draw_image_clusters_writes_the_overlay(tmp_path) -> None:
    gray = np.full((32, 32, 3), 128, dtype=np.uint8)
    amap = torch.zeros(8, 8, dtype=torch.long)
    amap[:, 4:] = 7  # left half cluster 0, right half cluster 7
    out = draw_image_clusters(gray, amap, tmp_path / "sub" / "clusters.png", alpha=1.0)
    assert out == tmp_path / "sub" / "clusters.png"
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (800, 400)  # two 4-inch panels at 100 dpi
        png = np.asarray(img.convert("RGB"))
    colors = cluster_colors(2)
    assert near(png[200:, :400], np.full(3, 128 / 255)).mean() > 0.99  # the original, untouched
    assert near(png[200:, 400:590], colors[0]).mean() > 0.99  # left half of the overlay: cluster 0
    assert near(png[200:, 610:], colors[1]).mean() > 0.99  # right half: cluster 7
    assert near(png[200:, 595:605], np.ones(3)).any()  # the white boundary between them


def test_draw_image_clusters_size_and_input_forms(tmp_path) -> None:
    wide = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 64, 3), dtype=np.uint8))
    out = draw_image_clusters(wide, torch.randint(0, 5, (8, 16)), tmp_path / "wide.png", title="wide")
    with Image.open(out) as img:
        assert img.size == (800, 250)  # panels 4 x 2 inches + 0.5 inch for the title
    with pytest.raises(ValueError, match="image_rgb"):
        draw_image_clusters(np.zeros((32, 32, 3), np.float32), torch.zeros(8, 8, dtype=torch.long), tmp_path / "x.png")
    with pytest.raises(ValueError, match="integer cluster ids"):
        draw_image_clusters(np.zeros((32, 32, 3), np.uint8), torch.zeros(8, 8), tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\.png"):
        draw_image_clusters(np.zeros((32, 32, 3), np.uint8), torch.zeros(8, 8, dtype=torch.long), tmp_path / "x.jpg")


# ----------------------------------------------------------------------------- points
@pytest.mark.parametrize("stage, n, num_clusters", [(0, 64, 16), (1, 16, 2)])
def test_point_assignments_are_the_recorded_ones(nano, stage, n, num_clusters) -> None:
    pos = torch.randn(256, 3)
    stage_pos, ids = point_assignments(nano, pos, stage, 0, 1)
    assert stage_pos.shape == (n, 3) and ids.shape == (n,) and ids.dtype == torch.int64
    assert 0 <= int(ids.min()) and int(ids.max()) < num_clusters
    # the stage's points are points of the input cloud (FPS subsets)
    assert (stage_pos[:, None] == pos[None]).all(-1).any(1).all()
    record = recorded(nano, pos)[f"stages.{stage}.0.token_mixer"]
    assert record.num_clusters == num_clusters
    torch.testing.assert_close(stage_pos, record.pos, rtol=0, atol=0)
    torch.testing.assert_close(ids, record.clusters[:, 1].long(), rtol=0, atol=0)


def test_point_assignments_with_extra_features() -> None:
    model = create_model("pointcoc_nano", num_classes=5, in_chans=3)
    pos, normals = torch.randn(256, 3), torch.randn(256, 3)
    stage_pos, ids = point_assignments(model, pos, 0, 0, 0, x=normals)
    record = recorded(model.eval(), pos, normals)["stages.0.0.token_mixer"]
    torch.testing.assert_close(ids, record.clusters[:, 0].long(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="`x` must be"):
        point_assignments(model, pos, 0, 0, 0)


def test_point_assignments_bad_arguments(nano, coc) -> None:
    pos = torch.randn(256, 3)
    with pytest.raises(ValueError, match=r"`stage` must be an int in \[0, 1\]"):
        point_assignments(nano, pos, 2, 0, 0)
    with pytest.raises(ValueError, match=r"`block` must be an int in \[0, 0\]"):
        point_assignments(nano, pos, 0, 1, 0)
    with pytest.raises(ValueError, match=r"`head` must be an int in \[0, 1\]"):
        point_assignments(nano, pos, 0, 0, 2)
    with pytest.raises(ValueError, match=r"`pos` must be a tensor \[N, 3\]"):
        point_assignments(nano, pos[None], 0, 0, 0)
    with pytest.raises(ValueError, match="image_assignment_map"):
        point_assignments(coc, pos, 0, 0, 0)


def test_pointmlp_coc_has_nothing_to_draw() -> None:
    model = PointMLP(num_classes=3, embed_dim=8, dim_expansion=(2,), pre_depths=(1,), post_depths=(1,),
                     num_neighbors=(8,), reductions=(2,), cluster=True).eval()
    records = recorded(model, torch.randn(1, 64, 3))
    assert records and all(a.num_clusters == 1 for a in records.values())  # why: one centre per kNN group
    with pytest.raises(ValueError, match="one centre per kNN group.*pointcoc_"):
        point_assignments(model, torch.randn(64, 3), 0, 0, 0)
    with pytest.raises(ValueError, match="no context clusters"):
        point_assignments(PointMLP(num_classes=3, embed_dim=8, dim_expansion=(2,), pre_depths=(1,), post_depths=(1,),
                                   num_neighbors=(8,), reductions=(2,)), torch.randn(64, 3), 0, 0, 0)


def test_draw_point_clusters_one_panel_per_view(tmp_path) -> None:
    pos = torch.cat([torch.randn(40, 3) * 0.1 - 1, torch.randn(40, 3) * 0.1 + 1])
    ids = torch.arange(80) // 40 * 3  # two clusters, ids 0 and 3
    sizes = {}
    for views in ([(20, -60)], [(20, -60), (20, 30), (80, 0)]):
        out = draw_point_clusters(pos, ids, tmp_path / f"v{len(views)}.png", views=views)
        with Image.open(out) as img:
            assert img.format == "PNG"
            sizes[len(views)] = img.size
            png = np.asarray(img.convert("RGB"))
        for color in cluster_colors(2):  # both clusters are drawn in every panel
            for panel in np.split(png, len(views), axis=1):
                assert near(panel, color, tol=8).sum() > 20
    assert sizes == {1: (400, 400), 3: (1200, 400)}
    with Image.open(draw_point_clusters(pos, ids, tmp_path / "t.png", title="two")) as img:
        assert img.size == (1200, 450)


def test_draw_point_clusters_bad_arguments(tmp_path) -> None:
    pos, ids = torch.randn(10, 3), torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match=r"`clusters` must be \[n\] = \[10\]"):
        draw_point_clusters(pos, ids[:5], tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"`pos` must be \[n, 3\]"):
        draw_point_clusters(pos[:, :2], ids, tmp_path / "x.png")
    with pytest.raises(ValueError, match="views"):
        draw_point_clusters(pos, ids, tmp_path / "x.png", views=[])
    with pytest.raises(ValueError, match="NaN"):
        draw_point_clusters(torch.full((10, 3), float("nan")), ids, tmp_path / "x.png")


# ----------------------------------------------------------------------------- the script, in process
def test_script_reads_point_files(tmp_path) -> None:
    script = load_script("visualize_clusters")
    cloud = np.random.default_rng(0).normal(size=(2000, 6)) * 5 + 3
    np.save(tmp_path / "c.npy", cloud.astype(np.float32))
    pos, label = script.load_points(str(tmp_path / "c.npy"), 512)
    assert pos.shape == (512, 3) and label == "c.npy"
    assert abs(float(pos.norm(dim=1).max()) - 1.0) < 1e-5 and float(pos.mean(0).abs().max()) < 1e-5
    raw, _ = script.load_points(str(tmp_path / "c.npy"), 4000, normalize=False)
    torch.testing.assert_close(raw, torch.from_numpy(cloud[:, :3]).float())  # fewer points than asked: all
    np.savetxt(tmp_path / "c.txt", cloud[:100], delimiter=",")
    txt, _ = script.load_points(str(tmp_path / "c.txt"), 1024, normalize=False)
    torch.testing.assert_close(txt, torch.from_numpy(cloud[:100, :3]).float())
    (tmp_path / "bad.txt").write_text("1 2\n3 4\n")
    with pytest.raises(ValueError, match=r"\[N, 3\+\]"):
        script.load_points(str(tmp_path / "bad.txt"), 1024)
    with pytest.raises(ValueError, match="demo:<index>"):
        script.load_points("demo:x", 1024)
    with pytest.raises(ValueError, match="does not exist"):
        script.load_points(str(tmp_path / "missing.npy"), 1024)
    assert script.parse_views("20,-60; 80,0") == [(20.0, -60.0), (80.0, 0.0)]
    with pytest.raises(ValueError, match="--views"):
        script.parse_views("20")


def test_script_checkpoints(tmp_path) -> None:
    script = load_script("visualize_clusters")
    trained = create_model("pointcoc_nano", num_classes=7)
    state = trained.state_dict()
    ckpt = tmp_path / "last.pt"  # the training engine's layout
    torch.save({"model": state, "config": {"model": "pointcoc_nano", "num_points": 300},
                "class_names": [f"c{i}" for i in range(7)]}, ckpt)
    model, train_cfg = script.build_model({"model": "pointcoc_nano", "checkpoint": str(ckpt)})
    assert model.num_classes == 7 and train_cfg["num_points"] == 300
    torch.testing.assert_close(model.state_dict(), state)
    with pytest.raises(ValueError, match="trained as 'pointcoc_nano'; pass --model pointcoc_nano"):
        script.build_model({"model": "pointcoc_tiny", "checkpoint": str(ckpt)})
    with pytest.raises(ValueError, match="shape mismatches"):  # an explicit class count wins, and must fit
        script.build_model({"model": "pointcoc_nano", "checkpoint": str(ckpt), "num_classes": 3})
    other = tmp_path / "other.pth"  # a foreign layout: wrapped, DDP prefixes, no class names
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, other)
    model, train_cfg = script.build_model({"model": "pointcoc_nano", "checkpoint": str(other)})
    assert model.num_classes == 7 and train_cfg == {}
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a PyTorch checkpoint"):
        script.build_model({"model": "pointcoc_nano", "checkpoint": str(tmp_path / "junk.pt")})


def test_script_loads_an_upstream_image_checkpoint(fixtures_dir, tmp_path) -> None:
    fx = torch.load(fixtures_dir / "image_coc_tiny.pt", weights_only=True)
    path = tmp_path / "coc_tiny.pth.tar"
    torch.save({"state_dict": fx["state_dict"], "epoch": 3}, path)
    model, _ = load_script("visualize_clusters").build_model({"model": "coc_tiny", "checkpoint": str(path)})
    head = [k for k in fx["state_dict"] if k.endswith("head.weight")][0]
    assert model.num_classes == fx["state_dict"][head].shape[0]
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(fx["input"][:1]), fx["output"][:1], rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- the script, as a command
def test_script_bad_argument_exits_2(tmp_path, caplog) -> None:
    np.save(tmp_path / "cloud.npy", np.random.default_rng(1).normal(size=(300, 3)).astype(np.float32))
    out = tmp_path / "bad.png"
    with pytest.raises(SystemExit) as exit_info:
        load_script("visualize_clusters").main(["--model", "pointcoc_nano", "--points", str(tmp_path / "cloud.npy"),
                                                "--head", "5", "--output", str(out)])
    assert exit_info.value.code == 2
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "--head must be in [0, 1]" in errors[0].getMessage()
    assert "\n" not in errors[0].getMessage() and not out.exists()


@pytest.mark.slow
def test_script_runs(tmp_path) -> None:
    """Two runs at once (each pays the import time): an image with the default output, and a point file."""
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "tiny.png")
    np.save(tmp_path / "cloud.npy", np.random.default_rng(1).normal(size=(300, 3)).astype(np.float32))
    runs = {
        "image": ["--model", "coc_tiny", "--image", "tiny.png", "--img-size", "32", "--stage", "1", "--head", "3"],
        "points": ["--model", "pointcoc_nano", "--points", "cloud.npy", "--views", "20,-60;20,30",
                   "--output", "out/points.png"],
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on two cores
    procs = {key: subprocess.Popen([sys.executable, str(SCRIPT), *args], cwd=tmp_path, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for key, args in runs.items()}
    results = {key: p.communicate(timeout=120) for key, p in procs.items()}
    for key, p in procs.items():
        assert p.returncode == 0, results[key][1]
    image_png = tmp_path / "runs" / "vis" / "coc_tiny_tiny_s1b0h3.png"  # the default output
    assert str(image_png.relative_to(tmp_path)) in results["image"][1]
    with Image.open(image_png) as img:
        assert img.format == "PNG" and img.size == (800, 450)
    assert "random weights" in results["points"][1]
    with Image.open(tmp_path / "out" / "points.png") as img:
        assert img.format == "PNG" and img.size == (800, 450)  # two views
