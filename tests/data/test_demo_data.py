"""Built-in demo data: layout, readability, determinism, idempotency, concurrency, and that it is not trivial."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

import pointcoc.data.demo as demo_module
from pointcoc.data import DEMO_IMAGE_CLASSES, DEMO_SHAPES, DemoConfig, ensure_demo_data, image_folder, modelnet40
from pointcoc.data.demo import (
    MARKER,
    _materialize,
    global_features,
    linear_baseline_accuracy,
    make_demo_clouds,
    make_demo_image,
    write_image_demo,
    write_point_demo,
)

from data_builders import snapshot

ROOT = Path(__file__).resolve().parents[2]
TINY = DemoConfig(train_per_class=3, test_per_class=2, num_points=64, image_train_per_class=2, image_val_per_class=1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, float]:
    """The default demo data, generated once for this module, and the time it took."""
    root = tmp_path_factory.mktemp("demo")
    start = time.perf_counter()
    ensure_demo_data(root)
    return root, time.perf_counter() - start


def test_default_demo_layout_and_speed(demo) -> None:
    root, seconds = demo
    assert seconds < 60, f"generating the demo data took {seconds:.1f} s"
    points = root / "points"
    assert sorted(p.name for p in points.iterdir()) == sorted(
        ["ply_data_train0.h5", "ply_data_train1.h5", "ply_data_test0.h5", "shape_names.txt", "train_files.txt",
         "test_files.txt", MARKER])
    assert (points / "shape_names.txt").read_text().split() == DEMO_SHAPES and len(DEMO_SHAPES) >= 10
    with h5py.File(points / "ply_data_test0.h5", "r") as f:
        assert f["data"].shape == (600, 1024, 3) and f["data"].dtype == np.float32
        assert f["label"].shape == (600, 1) and f["normal"].shape == (600, 1024, 3)
    for split, count in (("train", 60), ("val", 20)):
        assert sorted(p.name for p in (root / "images" / split).iterdir()) == sorted(DEMO_IMAGE_CLASSES)
        for c in DEMO_IMAGE_CLASSES:
            assert len(list((root / "images" / split / c).glob("*.png"))) == count
    assert not [p for p in root.iterdir() if p.name.startswith(".") and p.name != ".lock"]  # no temp folders left
    meta = json.loads((points / MARKER).read_text())
    assert meta["counts"] == {"train": 2400, "test": 600}


def test_demo_is_readable_by_the_readers(demo) -> None:
    root, _ = demo
    train = modelnet40(root / "points", "train", use_normals=True)
    test = modelnet40(root / "points", "test")
    assert len(train) == 2400 and len(test) == 600 and train.num_classes == 12 and train.classes == DEMO_SHAPES
    assert torch.bincount(train.labels).tolist() == [200] * 12
    assert torch.bincount(test.labels).tolist() == [50] * 12
    pts, label = train[0]
    assert pts.shape == (1024, 6) and 0 <= label < 12
    torch.testing.assert_close(train.points[..., 3:].norm(dim=-1), torch.ones(2400, 1024), atol=1e-4, rtol=0)
    radius = test.points.norm(dim=-1).amax(dim=1)
    assert float(radius.min()) > 0.95 and float(radius.max()) < 1.15  # unit sphere plus noise
    images = image_folder(root / "images", "train")
    val = image_folder(root / "images", "val")
    assert images.classes == DEMO_IMAGE_CLASSES and len(images) == 300 and len(val) == 100
    image, label = val[5]
    assert image.size == (32, 32) and image.mode == "RGB"


def test_demo_is_idempotent(demo) -> None:
    root, first = demo
    before = snapshot(root)
    start = time.perf_counter()
    assert ensure_demo_data(root) == root
    assert time.perf_counter() - start < first / 2
    assert snapshot(root) == before


def test_demo_is_not_trivial(demo) -> None:
    """A linear classifier on global statistics does not solve the demo; the same probe is not broken.

    Measured here: 63.3 % for the probe, while ``make demo`` (pointcoc_tiny, 10-12 epochs, 512 points)
    reaches about 90 %: the shapes need more than their global extents.
    """
    root, _ = demo
    train, test = modelnet40(root / "points", "train"), modelnet40(root / "points", "test")
    acc = linear_baseline_accuracy((train.points, train.labels), (test.points, test.labels))
    assert 2 / 12 < acc < 0.7, acc  # well above chance (the probe works) but far from solved
    # the same probe solves a task that global statistics do separate (spheres of different radii)
    g = torch.Generator().manual_seed(0)
    def spheres(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(4).repeat(n)
        pts = torch.randn(4 * n, 256, 3, generator=g)
        return pts / pts.norm(dim=-1, keepdim=True) * (1 + labels[:, None, None]), labels
    assert linear_baseline_accuracy(spheres(20), spheres(10)) > 0.95
    assert global_features(train.points[:3]).shape == (3, 14)


def test_clouds_are_deterministic_and_varied() -> None:
    a = make_demo_clouds(2, 128, seed=7)
    b = make_demo_clouds(2, 128, seed=7)
    c = make_demo_clouds(2, 128, seed=8)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])
    pts, nrm, labels = a
    assert pts.shape == (24, 128, 3) and nrm.shape == (24, 128, 3)
    assert sorted(labels.tolist()) == sorted(list(range(12)) * 2)
    assert bool(torch.isfinite(pts).all())
    # two clouds of one class differ (random parameters, scale, rotation, occlusion)
    same = torch.nonzero(labels == 0).flatten()
    assert not torch.allclose(pts[same[0]], pts[same[1]], atol=0.1)
    with pytest.raises(ValueError, match="per_class and num_points must be >= 1"):
        make_demo_clouds(0)


def test_written_demo_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_point_demo(tmp_path / name, TINY)
        write_image_demo(tmp_path / f"{name}_img", TINY)
    for f in ("ply_data_train0.h5", "ply_data_train1.h5", "ply_data_test0.h5"):
        with h5py.File(tmp_path / "a" / f, "r") as fa, h5py.File(tmp_path / "b" / f, "r") as fb:
            for key in ("data", "label", "normal"):
                np.testing.assert_array_equal(fa[key][()], fb[key][()])
    for png in sorted((tmp_path / "a_img").rglob("*.png")):
        other = tmp_path / "b_img" / png.relative_to(tmp_path / "a_img")
        np.testing.assert_array_equal(np.asarray(Image.open(png)),
                                      np.asarray(Image.open(other)))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert [np.asarray(make_demo_image(k, 16, g1)).tobytes() for k in range(5)] == \
           [np.asarray(make_demo_image(k, 16, g2)).tobytes() for k in range(5)]


def test_incomplete_existing_folder_is_not_touched(tmp_path: Path) -> None:
    (tmp_path / "points").mkdir()
    (tmp_path / "points" / "mine.txt").write_text("user data")
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=rf"{tmp_path / 'points'} exists but is not a complete pointcoc demo"):
        ensure_demo_data(tmp_path, TINY)
    after = snapshot(tmp_path)
    after.pop(".lock", None)
    assert after == before


def test_lost_race_keeps_the_winner(tmp_path: Path) -> None:
    """Another process renames its folder into place while this one generates: ours is discarded, theirs kept."""
    def writer(directory: Path, config: DemoConfig) -> dict[str, int]:
        winner = tmp_path / "points"
        winner.mkdir()
        (winner / MARKER).write_text("{}")
        (winner / "theirs.txt").write_text("winner")
        (directory / "ours.txt").write_text("loser")
        return {}

    assert _materialize(tmp_path, "points", writer, TINY) is False
    assert sorted(p.name for p in (tmp_path / "points").iterdir()) == sorted([MARKER, "theirs.txt"])
    assert [p.name for p in tmp_path.iterdir()] == ["points"]  # our temporary folder is gone


def _rank(root: Path) -> None:
    torch.set_num_threads(1)  # as DataLoader workers: a forked child must not use the parent's OpenMP pool
    ensure_demo_data(root, TINY)


@pytest.mark.parametrize("lock", [True, False])
def test_concurrent_calls(tmp_path: Path, monkeypatch, lock: bool) -> None:
    """Two processes (as torchrun ranks) generating into one root at once both succeed; one complete copy results.

    Without the lock (e.g. a file system without flock) both generate and the atomic rename picks one.
    """
    if not lock:
        monkeypatch.setattr(demo_module, "_lock", lambda path: contextlib.nullcontext())
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_rank, args=(tmp_path,), daemon=True) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
    assert codes == [0, 0]
    ds = modelnet40(tmp_path / "points", "train", num_points=64)
    assert len(ds) == 36
    assert len(image_folder(tmp_path / "images", "val")) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ([".lock"] if lock else []) + ["images", "points"]


def test_make_demo_data_script(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "scripts" / "make_demo_data.py"), "--root", str(tmp_path / "demo"),
           "--train-per-class", "4", "--test-per-class", "2", "--images-per-class", "3", "--baseline"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "48 train / 24 test clouds x 1024 points, 12 classes" in res.stderr
    assert "15 train images, 5 classes" in res.stderr and "test accuracy" in res.stderr
    assert len(modelnet40(tmp_path / "demo" / "points", "test")) == 24
