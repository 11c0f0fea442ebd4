"""Part segmentation end to end: training (summary, checkpoint, resume, DDP), the full-shape test with
voting, validate.py and predict.py on .ply / .npy / .txt files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pointcoc.data import PartDemoConfig, ShapeNetPart, read_point_file
from pointcoc.data.demo_parts import write_partseg_demo
from pointcoc.engine.distributed import DistInfo
from pointcoc.engine.metrics import PartSegMeter
from pointcoc.engine.partseg import ShapeCollate, _vote_view, evaluate_shapes
from pointcoc.engine.partseg import main as train_partseg
from pointcoc.engine.predict import main as predict_main
from pointcoc.engine.validate import main as validate
from pointcoc.models import create_model, read_checkpoint

from runs import one_line_error, run_script, torchrun

CATEGORIES = ("Mug", "Table")


@pytest.fixture(scope="module")
def parts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two demo categories, 6 / 2 / 3 shapes each, 150-260 points per shape (some below 256)."""
    root = tmp_path_factory.mktemp("parts") / "set"
    write_partseg_demo(root, PartDemoConfig(train_per_category=6, val_per_category=2, test_per_category=3,
                                            min_points=150, max_points=260, categories=CATEGORIES))
    return root


def args(data: Path, out: Path, *extra: str) -> list[str]:
    """A 2-epoch ``pointcoc_seg_nano`` run at 256 points on the tiny part set (seconds on a CPU)."""
    return ["--dataset", "shapenetpart", "--data-dir", str(data), "--model", "pointcoc_seg_nano", "--num-points",
            "256", "--epochs", "2", "--batch-size", "4", "--lr", "0.004", "--train-split", "train", "--val-split",
            "val", "--workers", "0", "--device", "cpu", "--seed", "1", "--output-dir", str(out), "--no-tensorboard",
            *extra]


def test_training_reports_part_metrics_and_saves_the_part_table(parts_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = train_partseg(args(parts_dir, out, "--vote", "3"))
    for key in ("best_instance_miou", "best_class_miou", "final_full_instance_miou", "final_full_class_miou",
                "final_vote_instance_miou", "final_vote_class_miou"):
        assert 0.0 <= summary[key] <= 100.0, key
    assert set(summary["final_full_per_category"]) == set(CATEGORIES) and summary["vote"] == 3
    test = ShapeNetPart(parts_dir, "test", num_points=None)
    assert summary["full_points"] == sum(test.load(i)[0].shape[0] for i in range(len(test)))  # every stored point
    assert json.loads((out / "summary.json").read_text())["best_instance_miou"] == summary["best_instance_miou"]
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val_instance_miou", "val_class_miou", "val_oa"} <= set(header)
    ckpt = read_checkpoint(out / "best.pt")
    assert ckpt["task"] == "partseg" and ckpt["categories"]["names"] == list(CATEGORIES)
    assert ckpt["categories"]["parts"] == [[36, 37], [47, 48, 49]]
    # validate.py on whole shapes gives the training run's full-shape numbers
    metrics = validate(["--model", "pointcoc_seg_nano", "--checkpoint", str(out / "last.pt"), "--dataset",
                        "shapenetpart", "--data-dir", str(parts_dir), "--device", "cpu", "--workers", "0",
                        "--batch-size", "4"])
    assert metrics["instance_miou"] == pytest.approx(summary["final_full_instance_miou"])
    assert metrics["class_miou"] == pytest.approx(summary["final_full_class_miou"])
    assert metrics["points"] == summary["full_points"] and metrics["full_shapes"]


def test_resume_gives_the_same_weights_and_metrics(parts_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A resumed run ends where an uninterrupted one does, also when the variant's default head context changed
    in between: it resumes (and predicts) with the context it was started with."""
    from pointcoc.engine.predict import load_predictor
    from pointcoc.models import SEG_VARIANTS

    straight, split = tmp_path / "straight", tmp_path / "split"
    a = train_partseg(args(parts_dir, straight))
    assert train_partseg(args(parts_dir, split, "--stop-after-epoch", "1")) == {"stopped_after_epoch": 1}
    monkeypatch.setitem(SEG_VARIANTS, "pointcoc_seg_nano", {**SEG_VARIANTS["pointcoc_seg_nano"],
                                                             "global_context": "all"})
    b = train_partseg(args(parts_dir, split, "--resume"))
    wa, wb = read_checkpoint(straight / "last.pt")["model"], read_checkpoint(split / "last.pt")["model"]
    assert "context_norm.weight" in wb and wa.keys() == wb.keys()
    assert all(torch.equal(v, wb[k]) for k, v in wa.items())
    assert a["best_instance_miou"] == b["best_instance_miou"]
    assert a["final_full_instance_miou"] == b["final_full_instance_miou"]
    assert load_predictor(split / "last.pt", device="cpu").model.global_context == "deepest"
    fresh = tmp_path / "fresh"  # a new run takes the (patched) default
    train_partseg(args(parts_dir, fresh, "--epochs", "1"))
    assert "context_maps.0.1.weight" in read_checkpoint(fresh / "last.pt")["model"]


def test_recipes_and_refusals(parts_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from pointcoc.engine.partseg import build_parser, resolve_partseg_config

    from runs import refused

    def resolved(*extra: str) -> dict:
        return resolve_partseg_config(vars(build_parser().parse_args(list(extra))))

    mlp = resolved("--model", "pointmlp_partseg")
    assert (mlp["opt"], mlp["lr"], mlp["sched"], mlp["decay_epochs"], mlp["epochs"]) == ("adam", 0.003, "step",
                                                                                          [40], 350)
    nxt = resolved("--model", "pointcoc_seg_tiny")
    assert (nxt["opt"], nxt["lr"], nxt["decay_epochs"], nxt["weight_decay"]) == ("adamw", 0.001, [210, 270], 1e-4)
    assert resolved("--dataset", "demo")["recipe"] == "demo"
    message = refused(train_partseg, args(parts_dir, tmp_path / "x", "--model", "pointmlp_partseg",
                                          "--no-normals"), caplog)
    assert "normals" in message
    message = refused(train_partseg, args(parts_dir, tmp_path / "y", "--batch-size", "64"), caplog)
    assert "--batch-size 64" in message
    message = refused(train_partseg, args(parts_dir, tmp_path / "z", "--num-points", "20"), caplog)
    assert "--num-points 20" in message and "33" in message  # nano's minimum
    message = refused(train_partseg, args(parts_dir, tmp_path / "w", "--sched", "step", "--decay-epochs", "4", "8"),
                      caplog)
    assert "multistep" in message
    assert not any((tmp_path / d).exists() for d in "xyzw")  # nothing was touched


def test_full_shape_evaluation_pads_small_shapes_and_matches_shape_by_shape(parts_dir: Path) -> None:
    torch.manual_seed(0)
    model = create_model("pointcoc_seg_nano", num_categories=2).eval()
    ds = ShapeNetPart(parts_dir, "test", num_points=None, use_normals=True)
    cfg = {"batch_size": 4, "workers": 0, "seed": 0, "use_normals": True}
    dist = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    got = evaluate_shapes(model, ds, cfg, dist)
    meter = PartSegMeter(ds.categories.part_mask())
    with torch.no_grad():
        for i in range(len(ds)):
            pts, cat, parts = ds[i]
            logits = model(pts[None, :, :3], pts[None, :, 3:], torch.tensor([cat]))
            meter.update(logits, torch.tensor([cat]), parts[None])
    ref = meter.compute()
    assert got["instance_miou"] == pytest.approx(ref["instance_miou"], abs=1e-9)
    assert got["per_category"] == pytest.approx(ref["per_category"], abs=1e-9)
    # padding: a shape below the model's minimum keeps its own points first, repeats mark keep=False
    pts = torch.randn(10, 6)
    collate = pickle.loads(pickle.dumps(ShapeCollate(16)))  # loader workers started by spawn pickle it
    flat, batch, cat, seg, keep = collate([(pts, 1, torch.arange(10))])
    assert flat.shape == (16, 6) and keep.sum() == 10 and torch.equal(flat[:10], pts) and bool(keep[:10].all())
    assert cat.tolist() == [1] and torch.equal(seg[:10], torch.arange(10)) and batch.eq(0).all()


def test_voting_views_and_one_vote_is_no_vote(parts_dir: Path) -> None:
    g = torch.Generator().manual_seed(0)
    pts = torch.cat([torch.randn(50, 3), torch.nn.functional.normalize(torch.randn(50, 3), dim=1)], dim=1)
    batch = torch.tensor([0] * 20 + [1] * 30)
    view = _vote_view(pts, batch, 2, g)
    for b in range(2):
        xyz = view[batch == b, :3]
        assert xyz.mean(0).abs().max() < 1e-5 and xyz.norm(dim=1).max() == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(view[:, 3:].norm(dim=1), torch.ones(50), atol=1e-5)
    assert not torch.allclose(view[:, :3], pts[:, :3])
    torch.manual_seed(0)
    model = create_model("pointcoc_seg_nano", num_categories=2).eval()
    ds = ShapeNetPart(parts_dir, "test", num_points=None, use_normals=True)
    cfg = {"batch_size": 3, "workers": 0, "seed": 0, "use_normals": True}
    dist = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    none, one = evaluate_shapes(model, ds, cfg, dist, 0), evaluate_shapes(model, ds, cfg, dist, 1)
    assert none["instance_miou"] == one["instance_miou"]
    voted = evaluate_shapes(model, ds, cfg, dist, 4)
    assert voted["instance_miou"] != none["instance_miou"]


@pytest.fixture(scope="module")
def trained(parts_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    train_partseg(args(parts_dir, out, "--epochs", "1"))
    return out / "best.pt"


def _shape_file(parts_dir: Path, suffix: str, folder: Path) -> tuple[Path, np.ndarray]:
    """The first Mug of the test split written as ``suffix``; returns the path and its rows [N, 7]."""
    ds = ShapeNetPart(parts_dir, "test", num_points=None)
    mug = ds.categories.names.index("Mug")
    rows = np.loadtxt(next(path for category, path in ds.shapes if category == mug))
    path = folder / f"mug{suffix}"
    if suffix == ".npy":
        np.save(path, rows)
    elif suffix == ".txt":
        np.savetxt(path, rows, fmt="%.6f")
    else:
        from pointcoc.data import write_labeled_ply

        write_labeled_ply(path, rows[:, :3], rows[:, 6].astype(np.int64), normals=rows[:, 3:6], binary=False)
    return path, rows


@pytest.mark.parametrize("suffix", [".ply", ".npy", ".txt"])
def test_predict_round_trip(trained: Path, parts_dir: Path, tmp_path: Path, suffix: str) -> None:
    path, rows = _shape_file(parts_dir, suffix, tmp_path)
    result = predict_main(["--checkpoint", str(trained), "--input", str(path), "--category", "Mug", "--output",
                           str(tmp_path / "out" / "mug.ply"), "--device", "cpu"])
    assert result["task"] == "partseg" and result["points"] == rows.shape[0]
    labels = np.load(tmp_path / "out" / "mug.npy")
    written = read_point_file(tmp_path / "out" / "mug.ply")
    assert labels.shape == (rows.shape[0],) and set(np.unique(labels)) <= {36, 37}  # the Mug's parts only
    assert np.array_equal(written.labels, labels)
    np.testing.assert_allclose(written.pos, rows[:, :3], atol=1e-6)  # the input's own coordinates
    assert (tmp_path / "out" / "mug.png").stat().st_size > 0
    assert 0.0 <= result["accuracy"] <= 100.0  # the file's labels are compared
    # the same points in another order get the same labels (the model follows the points)
    perm = np.random.default_rng(0).permutation(rows.shape[0])
    np.save(tmp_path / "perm.npy", rows[perm])
    predict_main(["--checkpoint", str(trained), "--input", str(tmp_path / "perm.npy"), "--category", "Mug",
                  "--output", str(tmp_path / "perm_out.ply"), "--device", "cpu"])
    assert np.array_equal(np.load(tmp_path / "perm_out.npy"), labels[perm])


def test_predict_refuses_bad_input_with_one_line(trained: Path, parts_dir: Path, tmp_path: Path) -> None:
    path, _ = _shape_file(parts_dir, ".npy", tmp_path)
    res = run_script("predict.py", "--checkpoint", str(trained), "--input", str(path), "--category", "Lamp")
    assert "not one of the model's categories: Mug, Table" in one_line_error(res)
    res = run_script("predict.py", "--checkpoint", str(trained), "--input", str(path))
    assert "give --category" in one_line_error(res)
    bad = tmp_path / "bad.txt"
    bad.write_text("0 0 0 0 0 1\n1 2 x 0 0 1\n")
    res = run_script("predict.py", "--checkpoint", str(trained), "--input", str(bad), "--category", "Mug")
    message = one_line_error(res)
    assert "bad.txt" in message and "line 2" in message
    xyz = tmp_path / "xyz.npy"
    np.save(xyz, np.random.default_rng(0).normal(size=(300, 3)))
    res = run_script("predict.py", "--checkpoint", str(trained), "--input", str(xyz), "--category", "Mug")
    assert "normals" in one_line_error(res)
    res = run_script("predict.py", "--checkpoint", str(trained), "--input", str(path), "--category", "Table",
                     "--output", str(tmp_path / "t.ply"))  # the file's labels are a Mug's
    assert "not Table's global part ids [47, 48, 49]" in one_line_error(res)
    before = path.read_bytes()
    res = run_script("predict.py", "--checkpoint", str(trained), "--input", str(path), "--category", "Mug",
                     "--output", str(path.with_suffix(".ply")))
    assert "would overwrite the input" in one_line_error(res) and path.read_bytes() == before


def test_torchrun_two_processes(parts_dir: Path, tmp_path: Path) -> None:
    """DDP on CPU (gloo): the reduced validation metrics equal a single-process evaluation of the result."""
    out = tmp_path / "ddp"
    res = torchrun("train_partseg.py", *args(parts_dir, out, "--batch-size", "2"))
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    metrics = validate(["--model", "pointcoc_seg_nano", "--checkpoint", str(out / "last.pt"), "--dataset",
                        "shapenetpart", "--data-dir", str(parts_dir), "--device", "cpu", "--workers", "0"])
    assert metrics["instance_miou"] == pytest.approx(summary["final_full_instance_miou"])
    assert metrics["samples"] == 6
