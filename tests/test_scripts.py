"""The scripts run, and the benchmark's alternative implementations compute the same thing."""

from __future__ import annotations

import subprocess
import sys

import torch

from pointcoc.blocks import cluster_mix

from scripts_loader import ROOT, load_script


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
    out = tmp_path / "bench"
    cmd = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--repeats", "1", "--no-memory", "--points", "500",
           "--op-batches", "1", "--cluster-points", "64", "--centers", "4", "--models", "pointcoc_nano",
           "--batch-size", "2", "--num-points", "256", "--data-clouds", "200", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    report = (out / "benchmark.md").read_text()
    for section in ("## machine", "## ops", "## cluster", "## models", "## data"):
        assert section in report
    assert "--cpu-allocator reuse" in report.splitlines()[0]  # the timings' allocator setting is reported
    rows = (out / "benchmark.csv").read_text().splitlines()
    assert rows[0].startswith("section,case") and len(rows) == 1 + 1 + 4 + 3 + 1 + 4 + 2
    jpeg = [r for r in rows if r.startswith('data,"jpeg 512x600 ms')]
    assert len(jpeg) == 2 and all(float(r.rsplit(",", 1)[1]) > 0 for r in jpeg)  # Pillow and load_image, timed
    assert (out / "benchmark.png").stat().st_size > 10_000


def test_peak_memory_sees_the_dense_tensor(monkeypatch) -> None:
    """The per-process peak-memory probe measures what a case allocates: the dense [G, M, n, c] form is larger."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # spawned workers import the script's module by name
    import benchmark as bench

    params = {"groups": 8, "n": 3136, "m": 49, "c": 24}
    lean = bench.peak_memory_mb("cluster", {"impl": "pointcoc", **params}, torch.device("cpu"))
    dense = bench.peak_memory_mb("cluster", {"impl": "dense", **params}, torch.device("cpu"))
    assert isinstance(lean, float) and isinstance(dense, float), (lean, dense)
    assert dense > 100 and dense > 3 * lean  # one [8, 49, 3136, 24] float32 tensor alone is 118 MB
