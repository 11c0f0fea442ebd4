"""End-to-end training runs on tiny data: points and images, resume, refusals, exit codes, torchrun."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from pointcoc.engine.points import main as train_points
from pointcoc.engine.validate import main as validate
from pointcoc.models import read_checkpoint

from runs import one_line_error, point_args, run_script, torchrun


def test_point_training_writes_everything(modelnet_dir, tmp_path) -> None:
    out = tmp_path / "run"
    summary = train_points(point_args(modelnet_dir, out, "--vote", "2"))
    for name in ("last.pt", "best.pt", "config.yaml", "metrics.csv", "summary.json", "curves.png"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    for key in ("best_oa", "best_macc", "final_oa", "final_macc", "wall_time_s", "final_vote_oa"):
        assert key in on_disk
    assert 0 <= on_disk["final_oa"] <= 100 and on_disk["wall_time_s"] > 0
    per_class = on_disk["final_per_class"]
    assert set(per_class) == {"sphere", "disk", "line", "cube"}
    assert sum(per_class.values()) / 4 == pytest.approx(on_disk["final_macc"])  # 6 test clouds per class
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,lr,train_loss")
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 1 and set(ckpt) >= {"model", "optimizer", "scheduler", "rng", "config", "best_metric"}
    # the same checkpoint evaluates to the same final metrics through validate.py
    metrics = validate(["--model", "pointcoc_nano", "--checkpoint", str(out / "last.pt"), "--dataset",
                        "modelnet40", "--data-dir", str(modelnet_dir), "--num-points", "128", "--device", "cpu",
                        "--workers", "0"])
    assert metrics["oa"] == pytest.approx(on_disk["final_oa"])
    assert metrics["macc"] == pytest.approx(on_disk["final_macc"])


def test_bf16_autocast_and_gradient_clipping(modelnet_dir, tmp_path) -> None:
    """bf16 autocast and gradient clipping run on the CPU; fp16 (CUDA only) is refused with exit code 2."""
    out = tmp_path / "amp"
    summary = train_points(point_args(modelnet_dir, out, "--epochs", "1", "--amp", "bf16", "--clip-grad", "0.5"))
    assert summary["epochs"] == 1 and 0 <= summary["final_oa"] <= 100
    row = (out / "metrics.csv").read_text().splitlines()[1].split(",")
    assert all(torch.isfinite(torch.tensor(float(v))) for v in row[:4])
    with pytest.raises(SystemExit) as exc:
        train_points(point_args(modelnet_dir, tmp_path / "fp16", "--epochs", "1", "--amp", "fp16", "--device", "cpu"))
    assert exc.value.code == 2


def test_resume_gives_the_same_weights(modelnet_dir, tmp_path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_points(point_args(modelnet_dir, straight))
    first = train_points(point_args(modelnet_dir, split, "--stop-after-epoch", "1"))
    assert first == {"stopped_after_epoch": 1} and read_checkpoint(split / "last.pt")["epoch"] == 0
    train_points(point_args(modelnet_dir, split, "--resume"))
    a, b = read_checkpoint(straight / "last.pt"), read_checkpoint(split / "last.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    rows_a = [r.split(",")[:4] for r in (straight / "metrics.csv").read_text().splitlines()]
    rows_b = [r.split(",")[:4] for r in (split / "metrics.csv").read_text().splitlines()]
    assert len(rows_a) == 3 and rows_a == rows_b  # epoch, lr, train loss, train acc of both epochs
    sa, sb = json.loads((straight / "summary.json").read_text()), json.loads((split / "summary.json").read_text())
    assert sa["final_oa"] == sb["final_oa"] and sa["best_oa"] == sb["best_oa"]


def test_refusals_exit_with_code_2(modelnet_dir, tmp_path) -> None:
    out = tmp_path / "taken"
    train_points(point_args(modelnet_dir, out, "--epochs", "1"))
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    cases = {
        "holds another run": point_args(modelnet_dir, out, "--epochs", "1"),
        "larger than the": point_args(modelnet_dir, tmp_path / "b", "--batch-size", "64"),
        "not found": point_args(tmp_path / "nowhere", tmp_path / "c"),
        "invalid choice: 'nonet'": point_args(modelnet_dir, tmp_path / "d", "--model", "nonet"),
        "nothing to resume": point_args(modelnet_dir, tmp_path / "e", "--resume"),
    }
    for message, args in cases.items():
        res = run_script("train_modelnet.py", *args)
        assert res.returncode == 2, (message, res.stderr[-2000:])
        assert message in res.stderr, (message, res.stderr[-2000:])
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before, "a refused run touched the old one"


class _Code:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


def test_resume_refuses_pickled_code(modelnet_dir, tmp_path) -> None:
    evil, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    torch.save({"model": _Code(marker)}, evil)
    res = run_script("train_modelnet.py", *point_args(modelnet_dir, tmp_path / "r", "--resume", str(evil)))
    assert "was refused, not loaded: it holds a pickled posix.system" in one_line_error(res)
    assert not marker.exists()


def test_image_training_and_validation(image_dir, tmp_path) -> None:
    out = tmp_path / "img"
    res = run_script("train_imagenet.py", "--data-dir", str(image_dir), "--model", "coc_tiny_plain", "--img-size",
                     "32", "--epochs", "2", "--batch-size", "4", "--warmup-epochs", "1", "--workers", "0",
                     "--device", "cpu", "--output-dir", str(out), "--model-ema", "--model-ema-decay", "0.9")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert {"best_top1", "best_top5", "final_top1", "wall_time_s"} <= set(summary)
    assert summary["best_top5"] == 100.0  # two classes: the top 5 always hit
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert "val_top1" in header and "ema_top1" in header
    assert any((out / "tb").iterdir()), "no TensorBoard events"
    res = run_script("validate.py", "--model", "coc_tiny_plain", "--checkpoint", str(out / "last.pt"), "--dataset",
                     "images", "--data-dir", str(image_dir), "--img-size", "32", "--device", "cpu", "--workers", "0")
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["top1"] == pytest.approx(summary["final_top1"])


def test_torchrun_two_processes(modelnet_dir, tmp_path) -> None:
    """DDP on CPU (gloo): metrics reduced over both ranks equal a single-process evaluation of the result."""
    out = tmp_path / "ddp"
    res = torchrun("train_modelnet.py", *point_args(modelnet_dir, out, "--batch-size", "4"))
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    metrics = validate(["--model", "pointcoc_nano", "--checkpoint", str(out / "last.pt"), "--dataset",
                        "modelnet40", "--data-dir", str(modelnet_dir), "--num-points", "128", "--device", "cpu",
                        "--workers", "0"])
    assert metrics["oa"] == pytest.approx(summary["final_oa"])
    assert metrics["samples"] == 24
