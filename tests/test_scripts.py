"""The scripts run, and the benchmark's alternative implementations compute the same thing."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
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
           "--batch-size", "2", "--num-points", "256", "--data-clouds", "200", "--scale-points", "300", "1000",
           "--partseg-models", "pointcoc_seg_nano", "--seg-points", "256", "--semseg-models", "pointcoc_seg_nano",
           "--semseg-points", "512", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    report = (out / "benchmark.md").read_text()
    for section in ("## machine", "## ops", "## cluster", "## models", "## data", "## scale", "## partseg",
                    "## semseg"):
        assert section in report
    assert "--cpu-allocator reuse" in report.splitlines()[0]  # the timings' allocator setting is reported
    rows = (out / "benchmark.csv").read_text().splitlines()
    assert rows[0].startswith("section,case") and len(rows) == 1 + 1 + 4 + 3 + 1 + 4 + 2 + 2 * 10 + 1 + 1
    table = list(csv.DictReader(rows))
    jpeg = [r for r in table if r["case"].startswith("jpeg 512x600 ms")]
    assert len(jpeg) == 2 and all(float(r["value"]) > 0 for r in jpeg)  # Pillow and load_image, timed
    assert (out / "benchmark.png").stat().st_size > 10_000
    scale = [r for r in table if r["section"] == "scale"]
    assert [r["case"] for r in scale if r["n"] == "1000"] == [  # every sampler, kNN, forward, train
        "sample fps", "sample fpsample", "sample window_fps", "sample morton", "sample hilbert", "sample grid",
        "knn torch-cluster", "knn kdtree",
        "forward pointcoc_scale_tiny", "train pointcoc_scale_tiny"]
    assert all(float(r["ms"]) > 0 and (r["samples"] == "" or int(r["samples"]) > 0) for r in scale)
    assert (out / "benchmark_scale.png").stat().st_size > 10_000
    seg = [r for r in table if r["section"] == "partseg"]
    assert [r["case"] for r in seg] == ["pointcoc_seg_nano"] and float(seg[0]["train_samples_s"]) > 0
    scenes = [r for r in table if r["section"] == "semseg"]  # no --semseg-epochs: the training step only
    assert [r["case"] for r in scenes] == ["pointcoc_seg_nano train step"] and float(scenes[0]["crops_s"]) > 0


def test_benchmark_scale_helpers() -> None:
    bench = load_script("benchmark")
    assert abs(bench.fitted_slope([(10**k, 3.0 * 10 ** (1.5 * k)) for k in range(3, 7)]) - 1.5) < 1e-9
    assert bench.fitted_slope([(10**3, 1.0), (10**5, 2.0)]) is None  # one point at N >= 10^4: no slope
    pos = torch.rand(4000, 3, generator=torch.Generator().manual_seed(0))
    worst, mean = bench.covering_radius(pos, pos)
    assert worst == mean == 0.0
    worst, mean = bench.covering_radius(pos, pos[:1])
    assert worst == float((pos - pos[0]).norm(dim=1).max()) and 0 < mean < worst
    n = 200_000
    from pointcoc.ops import Points, subsample

    voxels = subsample(Points(bench._scale_points(n, torch.device("cpu"))), "grid", voxel_size=bench.grid_voxel_for(n))
    assert 0.9 * n / 4 < voxels.index.numel() < 1.05 * n / 4
    rows = [{"case": "sample hilbert", "n": 1_000_000, "ms": 400.0, "samples": 250_000},
            {"case": "sample morton", "n": 1_000_000, "ms": 1500.0, "samples": 250_000},
            {"case": "train pointcoc_scale_tiny", "n": 16_384, "points_s": 40_000.0, "peak_mb": 100.0},
            {"case": "train pointcoc_scale_tiny", "n": 131_072, "points_s": 19_000.0, "peak_mb": 900.0}]
    met = {g["goal"].split("(")[-1]: g["met"] for g in bench.scale_goals(rows)}
    assert met["hilbert)"] is True and met["morton)"] is False
    train = next(g for g in bench.scale_goals(rows) if "training step" in g["goal"])
    assert train["met"] is False and "(48 %)" in train["measured"] and "(9.0x)" in train["measured"]


def test_benchmark_partseg_goals() -> None:
    bench = load_script("benchmark")
    ours = {"case": "pointcoc_seg_tiny", "points": 2048, "batch": 16, "train_samples_s": 30.0, "train_peak_mb": 500.0,
            "demo_instance_miou": 80.0, "demo_epochs": 10}
    ref = {"case": "pointmlp_partseg", "points": 2048, "batch": 16, "train_samples_s": 9.0, "train_peak_mb": 2500.0,
           "demo_instance_miou": 79.0, "demo_epochs": 10}
    met = [g["met"] for g in bench.partseg_goals([ours, ref])]
    assert met == [True, True]
    assert [g["met"] for g in bench.partseg_goals([{**ours, "train_samples_s": 20.0}, ref])][0] is False  # 2.2x
    assert [g["met"] for g in bench.partseg_goals([{**ours, "demo_instance_miou": 78.0}, ref])][0] is False
    assert [g["met"] for g in bench.partseg_goals([{**ours, "train_peak_mb": 700.0}, ref])][1] is False  # 3.6x
    no_training = [{k: v for k, v in r.items() if not k.startswith("demo")} for r in (ours, ref)]
    assert bench.partseg_goals(no_training)[0]["met"] is None  # the speed half alone decides nothing
    assert bench.partseg_goals([ours]) == []


def test_benchmark_semseg_goals() -> None:
    bench = load_script("benchmark")
    rows = [{"case": "predict.py 1,000,000 points, stream off", "wall_s": 40.0, "predict_s": 33.0,
             "peak_rss_mb": 2500.0, "streamed": False, "points": 1_000_000},
            {"case": "predict.py 1,000,000 points, stream on", "wall_s": 45.0, "predict_s": 38.0,
             "peak_rss_mb": 900.0, "streamed": True, "points": 1_000_000},
            {"case": "predict.py 10,000,000 points, stream on", "wall_s": 450.0, "predict_s": 440.0,
             "peak_rss_mb": 1000.0, "streamed": True, "points": 10_000_000},
            {"case": "pointcoc_seg_tiny demo rooms", "miou": 70.0},
            {"case": "baseline knn (height + colour) demo rooms", "miou": 55.0},
            {"case": "baseline linear (height + colour) demo rooms", "miou": 40.0}]
    assert [g["met"] for g in bench.semseg_goals(rows)] == [True, True, True]
    slow = [{**rows[0], "wall_s": 61.0}, *rows[1:]]
    assert bench.semseg_goals(slow)[0]["met"] is False
    growing = [*rows[:2], {**rows[2], "peak_rss_mb": 1500.0}, *rows[3:]]
    assert bench.semseg_goals(growing)[1]["met"] is False  # 1.7x the 10^6 streamed peak: not flat
    close = [*rows[:3], {**rows[3], "miou": 60.0}, *rows[4:]]
    assert bench.semseg_goals(close)[2]["met"] is False  # 5 points above the kNN baseline is not clearly
    assert bench.semseg_goals(rows[3:4]) == []


def test_benchmark_scene_file_and_per_point_baseline(tmp_path) -> None:
    from pointcoc.data.scenes import write_scene

    bench = load_script("benchmark")
    table = np.load(bench.scene_file(tmp_path / "s.npy", 70_000))
    assert table.shape == (70_000, 7) and table[:, 6].max() <= 6 and np.ptp(table[:, 0]) > 9  # two rooms, 9 m apart
    rng = np.random.default_rng(0)
    folders = []
    for i in range(3):  # class = height band; colour says nothing: the baselines learn it from the height
        z = rng.uniform(0, 3, 4000)
        folders.append(write_scene(tmp_path / f"r{i}", np.c_[rng.uniform(0, 4, (4000, 2)), z],
                                   color=rng.uniform(0, 255, (4000, 3)), segment=(z > 1.5).astype(int)))
    res = bench.per_point_baseline(folders[:2], folders[2:], 2, voxel=0.05)
    assert res["knn_miou"] > 85 and res["linear_miou"] > 85 and 0 <= res["linear_oa"] <= 100


def test_peak_memory_sees_the_dense_tensor(monkeypatch) -> None:
    """The per-process peak-memory probe measures what a case allocates: the dense [G, M, n, c] form is larger."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # spawned workers import the script's module by name
    import benchmark as bench

    params = {"groups": 8, "n": 3136, "m": 49, "c": 24}
    lean = bench.peak_memory_mb("cluster", {"impl": "pointcoc", **params}, torch.device("cpu"))
    dense = bench.peak_memory_mb("cluster", {"impl": "dense", **params}, torch.device("cpu"))
    assert isinstance(lean, float) and isinstance(dense, float), (lean, dense)
    assert dense > 100 and dense > 3 * lean  # one [8, 49, 3136, 24] float32 tensor alone is 118 MB
