"""The benchmark's upstream section: pointcoc's training step against upstream's, side by side.

No upstream code lives in this repository, so the section itself runs only when the environment
variable ``POINTCOC_UPSTREAM_CC`` names a Context-Cluster checkout (a work tree or a git dir, e.g. a
bare mirror); the other tests cover the option handling, the stand-in FPS and the goal rows.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reference import naive_fps
from scripts_loader import ROOT, load_script

BENCHMARK = str(ROOT / "scripts" / "benchmark.py")
URL = "https://github.com/ma-xu/Context-Cluster"


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, BENCHMARK, *args], capture_output=True, text=True, timeout=timeout)


def test_upstream_section_without_checkout_exits_2_naming_the_option() -> None:
    res = _run("--section", "upstream")
    assert res.returncode == 2, res.stderr
    errors = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, res.stderr  # one line
    assert "--upstream-cc" in errors[0] and URL in errors[0]
    assert res.stdout == ""


def test_upstream_checkout_that_is_not_one_exits_2(tmp_path: Path) -> None:
    res = _run("--section", "upstream", "--upstream-cc", str(tmp_path / "missing"))
    assert res.returncode == 2
    assert "no such directory" in res.stderr and URL in res.stderr
    res = _run("--section", "upstream", "--upstream-cc", str(tmp_path))  # an empty folder, outside any git repo
    assert res.returncode == 2
    assert "neither a Context-Cluster work tree" in res.stderr


def test_stand_in_fps_matches_the_cuda_op_contract() -> None:
    """``pointnet2_ops``' FPS stand-in: ``[B, N, 3] -> int32 [B, npoint]``, from index 0, farthest first."""
    bench = load_script("benchmark")
    xyz = torch.randn(3, 200, 3, generator=torch.Generator().manual_seed(0))
    idx = bench.furthest_point_sample(xyz, 32)
    assert idx.dtype == torch.int32 and idx.shape == (3, 32)
    assert (idx[:, 0] == 0).all()
    assert torch.equal(idx.long(), torch.stack([naive_fps(cloud, 32) for cloud in xyz]))
    stand_ins = bench.upstream_stand_ins()
    assert stand_ins["pointnet2_ops.pointnet2_utils"].furthest_point_sample is bench.furthest_point_sample
    assert stand_ins["pointnet2_ops"].pointnet2_utils is stand_ins["pointnet2_ops.pointnet2_utils"]
    fn = object()
    assert stand_ins["timm.models.registry"].register_model(fn) is fn  # timm's registry is left alone


def test_goal_comes_from_the_side_by_side_rows_only() -> None:
    bench = load_script("benchmark")
    models = [{"section": "models", "case": "coc_tiny", "train_samples_s": 100.0}]  # fast, but against nothing
    (goal,) = [g for g in bench.goals(models) if "upstream" in g["goal"]]
    assert goal["measured"] == "not measured (run with --upstream-cc)" and goal["met"] is None
    side = {"section": "upstream", "case": "coc_tiny", "batch": 16, "upstream_step_s": 3.0, "pointcoc_step_s": 1.2,
            "upstream_samples_s": 16 / 3.0, "pointcoc_samples_s": 16 / 1.2, "speedup": 2.5, "outputs_agree": True}
    goals = [g for g in bench.goals(models + [side]) if "upstream" in g["goal"]]
    assert len(goals) == 1 and goals[0]["met"] is True and goals[0]["measured"].startswith("2.50x")
    slow = {**side, "speedup": 1.4}
    assert [g["met"] for g in bench.goals([slow]) if "upstream" in g["goal"]] == [False]
    unequal = {**side, "outputs_agree": False}  # a ratio of different computations meets nothing
    (goal,) = [g for g in bench.goals([unequal]) if "upstream" in g["goal"]]
    assert goal["met"] is False and "differ" in goal["measured"]
    assert bench.bench_upstream(argparse.Namespace(upstream_code=None), torch.device("cpu")) == []  # skipped


def test_upstream_section_side_by_side(tmp_path: Path) -> None:
    checkout = os.environ.get("POINTCOC_UPSTREAM_CC")
    if not checkout:
        pytest.skip(f"POINTCOC_UPSTREAM_CC is not set: point it to a checkout of {URL} (a work tree or a git dir) "
                    "to run the upstream section")
    out = tmp_path / "bench"
    res = _run("--section", "upstream", "--upstream-cc", checkout, "--upstream-batch-size", "2", "--repeats", "1",
               "--img-size", "64", "--num-points", "256", "--out", str(out), timeout=180)
    assert res.returncode == 0, res.stderr
    with (out / "benchmark.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["case"] for r in rows] == ["coc_tiny", "coc_tiny_plain", "pointmlp_coc"]
    for r in rows:
        assert r["section"] == "upstream" and r["batch"] == "2"
        assert r["outputs_agree"] == "True" and float(r["fwd_max_abs_diff"]) < 1e-10, r  # equal float64 computations
        speedup = float(r["speedup"])
        assert speedup > 0 and speedup == pytest.approx(float(r["upstream_step_s"]) / float(r["pointcoc_step_s"]))
    report = (out / "benchmark.md").read_text()
    assert "## upstream" in report and "--cpu-allocator reuse" in report.splitlines()[0]
    assert "coc_tiny training step at least 2x upstream's (side by side in this run" in report
