"""Scene segmentation: metrics by hand, voxels and crops, whole-scene tiling (every point once), streaming equal
to in-memory prediction, training (summary, confusion, resume, DDP), validate.py and predict.py on scene files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pointcoc.data.scene_sets import SceneAugment, SceneCrops, crop_indices, sphere_crop, voxelize
from pointcoc.data.scenes import read_scene, write_scene
from pointcoc.engine.metrics import SemSegMeter
from pointcoc.engine.predict import main as predict_main
from pointcoc.engine.scene_infer import ArraySource, SpilledSource, TileConfig, predict_scene, predict_tiles
from pointcoc.engine.semseg import main as train_semseg
from pointcoc.engine.validate import main as validate
from pointcoc.errors import InputError
from pointcoc.models import create_model, read_checkpoint

from runs import one_line_error, refused, run_script, torchrun

CLASSES = ("floor", "ceiling", "box")


def make_scene(rng: np.random.Generator, n: int = 3000, size: float = 4.0) -> tuple[np.ndarray, ...]:
    """A room-like scene: a floor, a ceiling and a box on the floor, colours by class with noise."""
    kind = rng.choice(3, size=n, p=[0.4, 0.4, 0.2])
    xy = rng.uniform(0, size, (n, 2))
    z = np.where(kind == 0, 0.0, 2.5)
    box = kind == 2
    xy[box] = rng.uniform(1.0, 2.0, (int(box.sum()), 2))
    z = np.where(box, rng.uniform(0.0, 0.8, n), z) + rng.normal(0, 0.005, n)
    base = np.array([[90, 70, 50], [230, 230, 225], [40, 90, 200]])
    color = np.clip(base[kind] + rng.normal(0, 12, (n, 3)), 0, 255)
    return np.c_[xy, z], color, kind


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scene-folder set: 4 / 2 / 2 scenes of 3,000 points in train / val / test, and classes.txt."""
    root = tmp_path_factory.mktemp("scenes") / "set"
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2), ("test", 2)):
        for i in range(count):
            coord, color, seg = make_scene(rng)
            write_scene(root / split / f"scene_{i}", coord, color=color, segment=seg)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def args(data: Path, out: Path, *extra: str) -> list[str]:
    """A 2-epoch ``pointcoc_seg_nano`` run on crops of 1,024 points (seconds on a CPU)."""
    return ["--dataset", "folder", "--data-dir", str(data), "--model", "pointcoc_seg_nano", "--recipe", "demo",
            "--epochs", "2", "--batch-size", "2", "--num-points", "1024", "--loops", "1", "--voxel-size", "0.1",
            "--tile-size", "2", "--tile-points", "2000", "--workers", "0", "--device", "cpu", "--seed", "1",
            "--output-dir", str(out), "--no-tensorboard", *extra]


# ----------------------------------------------------------------------------- metrics
def test_semseg_meter_against_hand_computed_counts() -> None:
    meter = SemSegMeter(4)
    target = torch.tensor([0, 0, 1, 1, 1, -1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 3, 2, 0])
    meter.update(torch.nn.functional.one_hot(pred.clamp_min(0), 4).float(), target, loss=2.0)
    out = meter.compute()
    # class 0: tp 1, fp 2 (points 4 and 7), fn 1 -> 1/4; class 1: tp 2, fp 1, fn 1 -> 2/4; class 2: tp 1, fn 1 -> 1/2
    # class 3: predicted only at an ignored point -> absent from both -> no IoU (NaN), left out of the mean
    assert out["per_class"][:3] == pytest.approx([25.0, 50.0, 50.0]) and math.isnan(out["per_class"][3])
    assert out["miou"] == pytest.approx((25 + 50 + 50) / 3)
    assert out["oa"] == pytest.approx(100 * 4 / 7)  # the ignored point does not count
    assert out["macc"] == pytest.approx(100 * (1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert out["loss"] == pytest.approx(2.0)
    assert meter.confusion[1].tolist() == [1.0, 2.0, 0.0, 0.0]  # truth 1: one predicted 0, two right
    meter.update(torch.tensor([3]), torch.tensor([3]))  # labels as predictions; class 3 now has an IoU
    assert meter.compute()["per_class"][3] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="num_classes"):
        meter.update(torch.tensor([5]), torch.tensor([0]))


# ----------------------------------------------------------------------------- voxels, crops, augmentation
def test_voxelize_one_point_per_voxel_on_a_global_grid() -> None:
    rng = np.random.default_rng(1)
    coord = rng.uniform(-2, 3, (5000, 3))
    index, inverse = voxelize(coord, 0.5)
    cells = np.floor(coord / 0.5).astype(int)
    assert len(np.unique(cells, axis=0)) == len(index)
    assert (cells[index][inverse] == cells).all()  # every point's voxel holds it
    assert (index[inverse] <= np.arange(len(coord))).all()  # without rng: the first point of each voxel
    r_index, r_inverse = voxelize(coord, 0.5, np.random.default_rng(2))
    assert (cells[r_index][r_inverse] == cells).all() and not np.array_equal(np.sort(r_index), np.sort(index))
    # the grid is anchored at the origin: a subset's voxels are the full set's voxels
    sub = coord[coord[:, 0] > 1.0]
    s_index, _ = voxelize(sub, 0.5)
    assert {tuple(c) for c in np.floor(sub[s_index] / 0.5).astype(int)} <= {tuple(c) for c in cells[index]}
    with pytest.raises(InputError, match="voxel_size"):
        voxelize(coord, 0.0)


def test_sphere_crop_and_scene_crops(scenes_dir: Path) -> None:
    coord = np.random.default_rng(0).uniform(0, 1, (400, 3))
    keep = sphere_crop(coord, 50, coord[7])
    d = ((coord - coord[7]) ** 2).sum(1)
    assert len(keep) == 50 and 7 in keep and d[keep].max() <= np.sort(d)[49]
    box = crop_indices(coord, 50, coord[7], "box")  # a square column: z does not count
    cheb = np.abs(coord[:, :2] - coord[7, :2]).max(1)
    assert len(box) == 50 and cheb[box].max() <= np.sort(cheb)[49] and not np.array_equal(box, keep)
    with pytest.raises(InputError, match="crop"):
        crop_indices(coord, 50, coord[7], "cube")
    folders = sorted((scenes_dir / "train").iterdir())
    ds = SceneCrops(folders, 3, voxel_size=0.1, num_points=500, augment=SceneAugment(), loops=2)
    assert len(ds) == 8
    pos, x, label = ds[0]
    assert pos.shape == (500, 3) and x.shape == (500, 4) and label.shape == (500,)
    assert float(x[:, :3].min()) >= 0 and float(x[:, :3].max()) <= 1  # colours in 0..1
    val = SceneCrops(folders, 3, voxel_size=0.1, num_points=500, train=False, seed=3)
    a, b = val[1], val[1]
    assert all(torch.equal(u, v) for u, v in zip(a, b))  # validation crops are deterministic
    assert torch.allclose(a[0][:, 2], a[1][:, 3])  # height = z above the scene's floor, without augmentation


def test_augment_rotates_about_z_keeps_heights_and_drops_colours() -> None:
    rng = np.random.default_rng(0)
    coord = rng.normal(size=(100, 3))
    color = rng.uniform(0, 255, (100, 3))
    aug = SceneAugment(scale=None, flip=0, jitter=0, contrast=0, color_drop=1.0)
    out, col = aug(coord, color, np.random.default_rng(1))
    assert np.allclose(out[:, 2], coord[:, 2]) and np.allclose(np.linalg.norm(out[:, :2], axis=1),
                                                               np.linalg.norm(coord[:, :2], axis=1))
    assert not np.allclose(out, coord) and (col == 0).all()


# ----------------------------------------------------------------------------- tiling and streaming
class CountingModel(torch.nn.Module):
    """Per-point 'logits' that record each point's x, y (to check which points a call saw)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def min_points(self) -> int:
        return 1

    def forward(self, pos: torch.Tensor, x: torch.Tensor | None = None, batch: torch.Tensor | None = None
                ) -> torch.Tensor:
        self.calls.append(pos.shape[0])
        return torch.stack([pos[:, 0], pos[:, 1], torch.zeros_like(pos[:, 0])], dim=1)


def test_every_point_is_predicted_exactly_once_and_tiles_split_to_fit() -> None:
    rng = np.random.default_rng(0)
    coord = np.r_[rng.uniform(0, 10, (20_000, 3)), [[10.0, 10.0, 10.0], [0.0, 0.0, 0.0]]]  # the corners included
    model = CountingModel()
    cfg = TileConfig(voxel_size=0.0, tile_size=4.0, margin=0.5, max_points=1500, features=())
    seen = np.zeros(len(coord), dtype=int)
    for index, probs in predict_tiles(model, ArraySource(coord), cfg):
        seen[index] += 1
        assert probs.shape == (len(index), 3)
    assert (seen == 1).all()
    assert max(model.calls) <= 1500 and len(model.calls) > 9  # split beyond the 3 x 3 tiles of 4 m
    probs = predict_scene(CountingModel(), coord, cfg)
    assert probs.shape == (len(coord), 3) and np.isfinite(probs).all()


def test_streaming_equals_in_memory_prediction(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    coord, color, _ = make_scene(rng, n=6000, size=6.0)
    model = create_model("pointcoc_seg_nano", num_classes=3, num_categories=0, in_chans=4).eval()
    cfg = TileConfig(voxel_size=0.1, tile_size=2.5, margin=0.4, max_points=1200)
    color = color.astype(np.uint8)
    memory = predict_scene(model, coord, cfg, color=color)
    chunks = ((s, coord[s:s + 700], color[s:s + 700]) for s in range(0, len(coord), 700))
    bounds = np.stack([coord.min(0), coord.max(0)])
    source = SpilledSource(chunks, bounds, len(coord), cfg, tmp_path / "spill", has_color=True)
    streamed = np.full((len(coord), 3), np.nan, dtype=np.float32)
    for index, probs in predict_tiles(model, source, cfg):
        assert np.isnan(streamed[index]).all()  # not predicted before
        streamed[index] = probs
    np.testing.assert_allclose(streamed, memory, rtol=0, atol=1e-6)
    with pytest.raises(InputError, match="truncated"):
        SpilledSource(iter([(0, coord[:10], color[:10])]), bounds, len(coord), cfg, tmp_path / "short", True)


@pytest.mark.parametrize("margin", [0.0, 0.4, 3.5])
def test_spilled_tiles_own_every_point_with_rounded_edges_and_a_wrong_header(tmp_path: Path, margin: float) -> None:
    """Core edges such as 1.02 + 3 (= 4.0199999999999996) must bin and own alike; points below a (LAS) header's
    minimum and above its maximum still belong to the outermost tiles; margins wider than a tile reach
    several tiles."""
    rng = np.random.default_rng(4)
    coord = np.c_[rng.uniform(1.02, 13.0, (4000, 2)), rng.uniform(0, 1, 4000)]
    coord[:50, 0] = 1.02 + 3 * rng.integers(1, 4, 50)  # exactly on core edges
    cfg = TileConfig(voxel_size=0.0, tile_size=3.0, margin=margin, max_points=10_000, features=())
    header = np.stack([coord.min(0) + [0.3, 0.3, 0.0], coord.max(0) - [0.3, 0.3, 0.0]])  # a header too tight
    for bounds in (np.stack([coord.min(0), coord.max(0)]), header):
        source = SpilledSource(iter([(0, coord, None)]), bounds, len(coord), cfg, tmp_path / str(len(bounds)), False)
        seen = np.zeros(len(coord), dtype=int)
        for index, _ in predict_tiles(CountingModel(), source, cfg):
            seen[index] += 1
        assert (seen == 1).all()


def test_voxelize_takes_utm_sized_coordinates() -> None:
    rng = np.random.default_rng(0)
    coord = np.c_[5.0e5 + rng.uniform(0, 3, 1000), 5.0e6 + rng.uniform(0, 3, 1000), 300 + rng.uniform(0, 1, 1000)]
    index, inverse = voxelize(coord, 0.04)
    cells = np.floor(coord / 0.04).astype(np.int64)
    assert len(index) == len(np.unique(cells, axis=0)) and (cells[index][inverse] == cells).all()


# ----------------------------------------------------------------------------- readers
def test_scene_folder_refuses_bad_arrays(tmp_path: Path) -> None:
    coord = np.zeros((5, 3))
    folder = write_scene(tmp_path / "a", coord, segment=np.arange(5) % 2)
    np.save(folder / "color.npy", np.zeros((4, 3), dtype=np.uint8))
    with pytest.raises(InputError, match=r"color\.npy.*4 points|color\.npy.*\[5, 3\]"):
        read_scene(folder)
    folder = write_scene(tmp_path / "b", np.r_[coord[:4], [[np.nan, 0, 0]]])
    with pytest.raises(InputError, match="row 4.*NaN"):
        read_scene(folder)
    folder = write_scene(tmp_path / "c", coord, segment=[0, 1, 2, 3, 9])
    with pytest.raises(InputError, match="row 4 has label 9"):
        read_scene(folder, num_classes=3)
    with pytest.raises(InputError, match="no coord.npy"):
        read_scene(tmp_path)
    with pytest.raises(InputError, match="already exists"):
        write_scene(tmp_path / "a", coord)
    assert read_scene(tmp_path / "c").segment.tolist() == [0, 1, 2, 3, 9]


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained(scenes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("semseg") / "run"
    return out, train_semseg(args(scenes_dir, out, "--class-weights", "sqrt"))


def test_training_reports_scene_metrics_and_the_whole_scene_test(trained: tuple[Path, dict],
                                                                  scenes_dir: Path) -> None:
    out, summary = trained
    for key in ("best_miou", "best_oa", "final_full_miou", "final_full_oa", "final_full_macc"):
        assert 0.0 <= summary[key] <= 100.0, key
    assert summary["full_points"] == 2 * 3000 and summary["full_scenes"] == 2  # every original test point
    assert set(summary["final_full_per_class"]) == set(CLASSES)
    assert json.loads((out / "summary.json").read_text())["best_miou"] == summary["best_miou"]
    rows = (out / "confusion_test.csv").read_text().splitlines()
    assert rows[0].split(",")[1:] == list(CLASSES)
    assert sum(int(v) for r in rows[1:] for v in r.split(",")[1:]) == 6000
    ckpt = read_checkpoint(out / "best.pt")
    assert ckpt["task"] == "semseg" and ckpt["classes"] == list(CLASSES) and ckpt["features"] == ["color", "height"]
    metrics = validate(["--model", "pointcoc_seg_nano", "--checkpoint", str(out / "last.pt"), "--dataset", "folder",
                        "--data-dir", str(scenes_dir), "--device", "cpu"])
    assert metrics["miou"] == pytest.approx(summary["final_full_miou"])
    assert metrics["points"] == 6000 and np.array(metrics["confusion"]).sum() == 6000


def test_resume_gives_the_same_weights(scenes_dir: Path, tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    a = train_semseg(args(scenes_dir, straight))
    assert train_semseg(args(scenes_dir, split, "--stop-after-epoch", "1")) == {"stopped_after_epoch": 1}
    b = train_semseg(args(scenes_dir, split, "--resume"))
    wa, wb = read_checkpoint(straight / "last.pt")["model"], read_checkpoint(split / "last.pt")["model"]
    assert all(torch.equal(v, wb[k]) for k, v in wa.items())
    assert a["best_miou"] == b["best_miou"] and a["final_full_miou"] == b["final_full_miou"]


def test_recipes_and_refusals(scenes_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from pointcoc.engine.semseg import build_parser, resolve_semseg_config

    def resolved(*extra: str) -> dict:
        return resolve_semseg_config(vars(build_parser().parse_args(list(extra))))

    s3dis = resolved("--dataset", "s3dis")
    assert (s3dis["opt"], s3dis["lr"], s3dis["weight_decay"], s3dis["epochs"], s3dis["voxel_size"],
            s3dis["num_points"], s3dis["loops"], s3dis["smoothing"]) == ("adamw", 0.01, 1e-4, 100, 0.04, 24_000, 30,
                                                                         0.2)
    assert resolved("--dataset", "scannet")["voxel_size"] == 0.02
    assert resolved("--dataset", "demo")["recipe"] == "demo"
    assert "features" in refused(train_semseg, args(scenes_dir, tmp_path / "x", "--features", "color,depth"), caplog)
    assert "--num-points 8" in refused(train_semseg, args(scenes_dir, tmp_path / "y", "--num-points", "8"), caplog)
    (tmp_path / "noclasses" / "train").mkdir(parents=True)
    message = refused(train_semseg, args(tmp_path / "noclasses", tmp_path / "z"), caplog)
    assert "classes.txt" in message
    assert not any((tmp_path / d).exists() for d in "xyz")


def test_scene_scale_sampler_and_box_crops(scenes_dir: Path, tmp_path: Path) -> None:
    """The O(N log N) samplers of large clouds (window FPS here) in the U-Net, trained and used by predict.py."""
    out = tmp_path / "run"
    summary = train_semseg(args(scenes_dir, out, "--sampler", "window_fps", "--crop", "box", "--epochs", "1"))
    assert 0 <= summary["final_full_miou"] <= 100 and read_checkpoint(out / "best.pt")["config"]["sampler"] == \
        "window_fps"
    scene = read_scene(scenes_dir / "test" / "scene_0")
    path = tmp_path / "scene.npy"
    np.save(path, np.c_[scene.coord, scene.color].astype(np.float64))
    res = predict_main(["--checkpoint", str(out / "best.pt"), "--input", str(path), "--columns", "x,y,z,r,g,b",
                        "--output", str(tmp_path / "pred"), "--device", "cpu"])
    assert res["points"] == 3000 and np.load(tmp_path / "pred.npy").shape == (3000,)


def test_torchrun_two_processes(scenes_dir: Path, tmp_path: Path) -> None:
    """DDP on CPU (gloo): the whole-scene test reduced over 2 processes equals validate.py in one."""
    out = tmp_path / "ddp"
    res = torchrun("train_semseg.py", *args(scenes_dir, out, "--batch-size", "1"))
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    metrics = validate(["--model", "pointcoc_seg_nano", "--checkpoint", str(out / "last.pt"), "--dataset", "folder",
                        "--data-dir", str(scenes_dir), "--device", "cpu"])
    assert metrics["miou"] == pytest.approx(summary["final_full_miou"]) and summary["full_points"] == 6000


# ----------------------------------------------------------------------------- predict.py
def test_predict_scene_files_in_memory_and_streamed(trained: tuple[Path, dict], scenes_dir: Path,
                                                    tmp_path: Path) -> None:
    out, _ = trained
    scene = read_scene(scenes_dir / "test" / "scene_0")
    table = np.c_[scene.coord, scene.color, scene.segment].astype(np.float64)
    path = tmp_path / "scene.npy"
    np.save(path, table)
    common = ["--checkpoint", str(out / "best.pt"), "--input", str(path), "--device", "cpu"]
    memory = predict_main([*common, "--columns", "x,y,z,r,g,b,label", "--output", str(tmp_path / "m" / "a")])
    streamed = predict_main([*common, "--columns", "x,y,z,r,g,b,_", "--output", str(tmp_path / "s" / "a"),
                             "--stream", "on", "--chunk-size", "700"])
    assert not memory["streamed"] and streamed["streamed"] and memory["points"] == 3000
    a, b = np.load(tmp_path / "m" / "a.npy"), np.load(tmp_path / "s" / "a.npy")
    assert a.shape == (3000,) and np.array_equal(a, b)
    assert memory["accuracy"] == pytest.approx(100 * float((a == scene.segment).mean()))
    from pointcoc.data import read_point_file

    for folder in ("m", "s"):
        ply = read_point_file(tmp_path / folder / "a.ply")
        assert np.array_equal(ply.labels, a) and np.allclose(ply.pos, scene.coord, atol=1e-6)
        assert (tmp_path / folder / "a.png").stat().st_size > 0
    res = run_script("predict.py", *common, "--columns", "x,y,z,r,g,b,_", "--output", str(path))
    assert "would overwrite the input" in one_line_error(res)
    res = run_script("predict.py", *common, "--stream", "on")
    assert "--columns" in one_line_error(res)


def test_predict_las_writes_a_labelled_copy(trained: tuple[Path, dict], scenes_dir: Path, tmp_path: Path) -> None:
    laspy = pytest.importorskip("laspy")
    out, _ = trained
    scene = read_scene(scenes_dir / "test" / "scene_1")
    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales, header.offsets = [0.001] * 3, [0.0] * 3
    las = laspy.LasData(header)
    las.x, las.y, las.z = scene.coord[:, 0], scene.coord[:, 1], scene.coord[:, 2]
    las.red, las.green, las.blue = (scene.color[:, i].astype(np.uint16) * 257 for i in range(3))
    las.classification = np.full(len(scene.coord), 1, dtype=np.uint8)
    src = tmp_path / "scan.las"
    las.write(src)
    before = src.read_bytes()
    common = ["--checkpoint", str(out / "best.pt"), "--input", str(src), "--device", "cpu"]
    a = predict_main([*common, "--output", str(tmp_path / "m" / "scan")])
    b = predict_main([*common, "--output", str(tmp_path / "s" / "scan"), "--stream", "on", "--chunk-size", "500"])
    assert src.read_bytes() == before  # the input is untouched
    labels = np.load(tmp_path / "m" / "scan.npy")
    assert np.array_equal(labels, np.load(tmp_path / "s" / "scan.npy")) and a["points"] == b["points"] == 3000
    copy = laspy.read(tmp_path / "m" / "scan.las")
    assert np.array_equal(np.asarray(copy.classification), labels)  # class i written as code i
    assert np.allclose(copy.x, las.x) and np.array_equal(np.asarray(copy.red), np.asarray(las.red))


# ----------------------------------------------------------------------------- layouts
def test_scannet_layout_and_scene_files(tmp_path: Path) -> None:
    from pointcoc.data.files import write_labeled_ply
    from pointcoc.engine.semseg import SCANNET20_CLASSES, scene_split

    rng = np.random.default_rng(0)
    coord, color, seg = make_scene(rng, n=500)
    for split in ("train", "val"):  # Pointcept's ScanNet layout: segment20 / segment200, no segment.npy
        write_scene(tmp_path / "scannet" / split / "scene0000_00", coord, color=color,
                    extra={"segment20": seg.astype(np.int16), "segment200": (seg * 50).astype(np.int16)})
    folders, classes = scene_split({"dataset": "scannet", "data_dir": str(tmp_path / "scannet")}, "val")
    assert classes == list(SCANNET20_CLASSES) and len(folders) == 1
    assert np.array_equal(read_scene(folders[0], num_classes=20).segment, seg)  # segment20, not segment200
    # --dataset folder also takes labelled point files beside (or instead of) scene folders
    root = tmp_path / "files"
    write_labeled_ply(root / "train" / "a.ply", coord, seg, colors=color.astype(np.uint8))
    np.save(root / "train" / "b.npy", coord)  # xyz only: an unlabelled scene
    (root / "classes.txt").write_text("\n".join(CLASSES))
    folders, classes = scene_split({"dataset": "folder", "data_dir": str(root)}, "train")
    assert [f.name for f in folders] == ["a.ply", "b.npy"] and classes == list(CLASSES)
    ds = SceneCrops(folders[:1], 3, voxel_size=0.1, num_points=300, train=False)
    pos, x, label = ds[0]
    assert pos.shape == (300, 3) and set(label.tolist()) <= {0, 1, 2}
    with pytest.raises(InputError, match="no labels"):
        SceneCrops(folders[1:], 3, voxel_size=0.1, num_points=300, train=False)[0]
    with pytest.raises(InputError, match="label 2.*2 classes"):
        SceneCrops(folders[:1], 2, voxel_size=0.1, num_points=300, train=False)[0]


def test_train_on_las_tiles_with_a_label_map(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    laspy = pytest.importorskip("laspy")
    rng = np.random.default_rng(1)
    root = tmp_path / "aerial"
    codes = np.array([2, 6, 5])  # ground, building, vegetation
    for split, count in (("train", 2), ("val", 1), ("test", 1)):
        for i in range(count):
            coord, color, seg = make_scene(rng, n=2000)
            header = laspy.LasHeader(point_format=3, version="1.2")
            header.scales, header.offsets = [0.001] * 3, [0.0] * 3
            las = laspy.LasData(header)
            las.x, las.y, las.z = coord[:, 0], coord[:, 1], coord[:, 2]
            las.red, las.green, las.blue = (color[:, j].astype(np.uint16) * 257 for j in range(3))
            las.classification = codes[seg].astype(np.uint8)
            (root / split).mkdir(parents=True, exist_ok=True)
            las.write(root / split / f"tile_{i}.las")
    (root / "classes.txt").write_text("ground\nbuilding\nvegetation\n")
    out = tmp_path / "run"
    summary = train_semseg(args(root, out, "--las-map", "ground:2;building:6;vegetation:5", "--epochs", "1"))
    assert summary["full_points"] == 2000 and 0 <= summary["final_full_miou"] <= 100
    message = refused(train_semseg, args(root, tmp_path / "x", "--las-map", "ground:2;building:6"), caplog)
    assert "--las-map names 2 classes" in message
    # predict writes the classes back as the map's codes
    res = predict_main(["--checkpoint", str(out / "best.pt"), "--input", str(root / "test" / "tile_0.las"),
                        "--output", str(tmp_path / "pred" / "tile"), "--device", "cpu"])
    written = laspy.read(tmp_path / "pred" / "tile.las")
    labels = np.load(tmp_path / "pred" / "tile.npy")
    assert np.array_equal(np.asarray(written.classification), codes[labels]) and "accuracy" in res
