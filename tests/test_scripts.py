"""The scripts run, and the benchmark's alternative implementations compute the same thing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import torch

from pointcoc.blocks import cluster_mix

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_alternatives_agree_with_cluster_mix() -> None:
    bench = load_script("benchmark")
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(3, 2, 50, 8, generator=g, dtype=torch.float64) for _ in range(2)]
    args += [torch.randn(3, 2, 5, 8, generator=g, dtype=torch.float64) for _ in range(2)]
    args += [torch.tensor([1.3], dtype=torch.float64), torch.tensor([-0.2], dtype=torch.float64)]
    ref = cluster_mix(*args)[0]
    torch.testing.assert_close(bench.dense_cluster(*args), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bench.scatter_cluster(*args), ref, rtol=1e-12, atol=1e-12)


def test_benchmark_runs(tmp_path) -> None:
    out = tmp_path / "bench.csv"
    cmd = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--repeats", "1", "--points", "500",
           "--cluster-points", "64", "--centers", "4", "--models", "pointcoc_tiny", "--batch-size", "2",
           "--num-points", "256", "--csv", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "## cluster" in res.stderr and "pointcoc_tiny" in res.stderr
    rows = out.read_text().splitlines()
    assert rows[0].startswith("section,case") and len(rows) == 1 + 1 + 3 + 1
