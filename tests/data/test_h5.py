"""HDF5 readers: ModelNet40 and ScanObjectNN layouts, custom sets, every bad-data case, nothing modified."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from pointcoc.data import (
    SCANOBJECTNN_CLASSES,
    DatasetNotFoundError,
    PointCloudH5,
    load_time_benchmark,
    modelnet40,
    scanobjectnn,
)

from data_builders import cloud_arrays, make_modelnet, make_scanobjectnn, snapshot, write_h5


@pytest.fixture
def modelnet_dir(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "modelnet40_ply_hdf5_2048"
    return root, make_modelnet(root)


def _cat(arrays: list[dict], key: str) -> np.ndarray:
    return np.concatenate([a[key] for a in arrays])


def test_modelnet40_reads_the_release_layout(modelnet_dir) -> None:
    root, written = modelnet_dir
    before = snapshot(root)
    ds = modelnet40(root, "train", num_points=20)
    assert ds.classes == ["airplane", "bathtub", "bed"] and ds.num_classes == 3
    assert [f.name for f in ds.files] == ["ply_data_train0.h5", "ply_data_train1.h5"]
    assert len(ds) == 11
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (11,)
    assert ds.labels.tolist() == _cat(written["train"], "label")[:, 0].tolist()
    points, label = ds[7]
    assert points.shape == (20, 3) and points.dtype == torch.float32 and isinstance(label, int)
    # the first num_points points, in order, from the second file (PointMLP's convention)
    np.testing.assert_array_equal(points.numpy(), written["train"][1]["data"][1, :20])
    assert label == int(written["train"][1]["label"][1, 0])
    test = modelnet40(root, "test", num_points=32)
    assert len(test) == 4 and test[0][0].shape == (32, 3)
    for i in range(len(ds)):
        ds[i]
    assert snapshot(root) == before


def test_modelnet40_normals(modelnet_dir) -> None:
    root, written = modelnet_dir
    ds = modelnet40(root, "test", num_points=10, use_normals=True)
    points, _ = ds[2]
    assert points.shape == (10, 6)
    np.testing.assert_array_equal(points[:, :3].numpy(), written["test"][0]["data"][2, :10])
    np.testing.assert_array_equal(points[:, 3:].numpy(), written["test"][0]["normal"][2, :10])


def test_items_are_copies(modelnet_dir) -> None:
    ds = modelnet40(modelnet_dir[0], "train", num_points=8)
    points, _ = ds[0]
    reference = points.clone()
    points += 100
    torch.testing.assert_close(ds[0][0], reference)


def test_transform_is_applied(modelnet_dir) -> None:
    ds = modelnet40(modelnet_dir[0], "train", num_points=8, transform=lambda p: p * 0 + 5)
    assert bool((ds[3][0] == 5).all())


def test_custom_dataset_any_class_and_point_count(tmp_path: Path) -> None:
    names = [f"shape{i}" for i in range(7)]
    root = tmp_path / "custom"
    make_modelnet(root, train=(9,), test=(3,), points=100, classes=names, normals=False, seed=3)
    ds = modelnet40(root, "train", num_points=100)
    assert ds.classes == names and ds.num_classes == 7 and ds[0][0].shape == (100, 3)
    assert int(ds.labels.max()) < 7


def test_without_shape_names_classes_are_numbers_from_both_splits(tmp_path: Path) -> None:
    root = tmp_path / "nonames"
    write_h5(root / "ply_data_train0.h5", data=np.zeros((3, 4, 3), np.float32), label=np.array([[0], [2], [1]]))
    write_h5(root / "ply_data_test0.h5", data=np.zeros((2, 4, 3), np.float32), label=np.array([[4], [0]]))
    train = modelnet40(root, "train", num_points=4)
    test = modelnet40(root, "test", num_points=4)
    assert train.classes == test.classes == ["0", "1", "2", "3", "4"]


def test_without_file_lists_files_are_found_in_natural_order(tmp_path: Path) -> None:
    root = tmp_path / "glob"
    write_h5(root / "ply_data_train10.h5", data=np.ones((2, 4, 3), np.float32), label=np.array([1, 1]))
    write_h5(root / "ply_data_train2.h5", data=np.zeros((1, 4, 3), np.float32), label=np.array([0]))
    (root / "shape_names.txt").write_text("a\nb\n")
    ds = modelnet40(root, "train", num_points=4)
    assert [f.name for f in ds.files] == ["ply_data_train2.h5", "ply_data_train10.h5"]
    assert ds.labels.tolist() == [0, 1, 1]


def test_integral_float_labels_are_accepted(tmp_path: Path) -> None:
    path = write_h5(tmp_path / "a.h5", data=np.zeros((2, 5, 3), np.float64), label=np.array([1.0, 0.0]))
    ds = PointCloudH5([path], num_points=5, classes=["x", "y"])
    assert ds.labels.tolist() == [1, 0] and ds.points.dtype == torch.float32


def test_num_points_none_keeps_all_and_needs_equal_counts(tmp_path: Path) -> None:
    a = write_h5(tmp_path / "a.h5", **cloud_arrays(2, 10, 2, seed=0, normals=False))
    b = write_h5(tmp_path / "b.h5", **cloud_arrays(2, 12, 2, seed=1, normals=False))
    assert PointCloudH5([a], num_classes=2).num_points == 10
    with pytest.raises(ValueError, match="different point counts"):
        PointCloudH5([a, b], num_classes=2)
    assert PointCloudH5([a, b], num_points=10, num_classes=2).points.shape == (4, 10, 3)


def test_num_points_larger_than_stored(modelnet_dir) -> None:
    root, _ = modelnet_dir
    with pytest.raises(ValueError, match=r"ply_data_train0\.h5: num_points=64 but the file stores 32"):
        modelnet40(root, "train", num_points=64)


def test_missing_modelnet40_prints_layout_and_source(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as info:
        modelnet40(root)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    for needle in (str(root), "does not exist", "ply_data_train0.h5", "ply_data_test1.h5", "shape_names.txt",
                   "train_files.txt", "modelnet40_ply_hdf5_2048.zip", "shapenet.cs.stanford.edu", "ensure_demo_data"):
        assert needle in msg, needle
    assert not root.exists()
    root.mkdir()
    (root / "readme.txt").write_text("x")
    with pytest.raises(DatasetNotFoundError, match=r"no train_files.txt and no ply_data_train\*\.h5.*readme.txt"):
        modelnet40(root)


def test_bad_split_name(modelnet_dir) -> None:
    with pytest.raises(ValueError, match="'train' or 'test'"):
        modelnet40(modelnet_dir[0], "val")


# ----------------------------------------------------------------------------- ScanObjectNN

@pytest.mark.parametrize("variant, folder, name", [
    ("pb_t50_rs", "main_split", "{}_objectdataset_augmentedrot_scale75.h5"),
    ("obj_bg", "main_split", "{}_objectdataset.h5"),
    ("obj_only", "main_split_nobg", "{}_objectdataset.h5"),
])
def test_scanobjectnn_variants(tmp_path: Path, variant: str, folder: str, name: str) -> None:
    root = tmp_path / "h5_files"
    written = make_scanobjectnn(root)
    before = snapshot(root)
    for split, prefix in (("train", "training"), ("test", "test")):
        ds = scanobjectnn(root, split, variant=variant, num_points=24)
        arrays = written[(folder, name.format(prefix))]
        assert ds.files == [root / folder / name.format(prefix)]
        assert ds.classes == SCANOBJECTNN_CLASSES and ds.num_classes == 15
        assert ds.labels.tolist() == arrays["label"].tolist()
        np.testing.assert_array_equal(ds[1][0].numpy(), arrays["data"][1, :24])
    assert snapshot(root) == before


def test_scanobjectnn_shape_names_override(tmp_path: Path) -> None:
    root = tmp_path / "h5_files"
    write_h5(root / "main_split" / "training_objectdataset_augmentedrot_scale75.h5",
             data=np.zeros((3, 8, 3), np.float32), label=np.array([0, 1, 1]))
    (root / "shape_names.txt").write_text("left\nright\n")
    ds = scanobjectnn(root, "train", num_points=8)
    assert ds.classes == ["left", "right"] and ds.num_classes == 2


def test_scanobjectnn_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        scanobjectnn(tmp_path / "h5_files")
    msg = str(info.value)
    for needle in ("main_split_nobg", "training_objectdataset_augmentedrot_scale75.h5",
                   "hkust-vgd.github.io/scanobjectnn",
                   "h5_files.zip"):
        assert needle in msg, needle
    root = tmp_path / "h5_files"
    write_h5(root / "main_split" / "training_objectdataset.h5", data=np.zeros((1, 4, 3), np.float32), label=[0])
    with pytest.raises(DatasetNotFoundError, match=r"obj_only train file .*main_split_nobg/training_objectdataset\.h5"):
        scanobjectnn(root, "train", variant="obj_only")
    with pytest.raises(ValueError, match="variant must be one of"):
        scanobjectnn(root, "train", variant="hardest")


# ----------------------------------------------------------------------------- bad data

def _corrupt(path: Path) -> None:
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _rewrite(**changes):
    def apply(path: Path) -> None:
        import h5py
        with h5py.File(path, "r") as f:
            arrays = {k: f[k][()] for k in f}
        for key, fn in changes.items():
            if fn is None:
                del arrays[key]
            else:
                arrays[key] = fn(arrays[key])
        path.unlink()
        write_h5(path, **arrays)
    return apply


def _set(index, value):
    def fn(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        a[index] = value
        return a
    return fn


BAD_FILES = {
    "corrupt": (_corrupt, {}, "not a readable HDF5 file, corrupt or truncated"),
    "truncated": (_truncate, {}, "corrupt or truncated"),
    "missing data": (_rewrite(data=None), {}, "missing key 'data'"),
    "missing label": (_rewrite(label=None), {}, "missing key 'label'"),
    "missing normal": (_rewrite(normal=None), {"use_normals": True}, "missing key 'normal'"),
    "data 2-D coords": (_rewrite(data=lambda a: a[..., :2]), {},
                        r"'data' has shape \(5, 32, 2\); expected \[n, points, 3\]"),
    "data 2-D": (_rewrite(data=lambda a: a[:, :, 0]), {}, r"'data' has shape \(5, 32\)"),
    "data int": (_rewrite(data=lambda a: (a * 10).astype(np.int32)), {}, "'data' has dtype int32; expected float32"),
    "data strings": (_rewrite(data=lambda a: np.array([b"x"] * 5)), {}, "'data' has dtype"),
    "normal shape": (_rewrite(normal=lambda a: a[:, :7]), {"use_normals": True}, "'normal' has shape"),
    "label 2 columns": (_rewrite(label=lambda a: np.repeat(a, 2, axis=1)), {}, r"'label' has shape \(5, 2\)"),
    "label count": (_rewrite(label=lambda a: a[:4]), {}, r"'label' has shape \(4, 1\); expected \[5\] or \[5, 1\]"),
    "label fraction": (_rewrite(label=lambda a: a.astype(np.float32) + 0.5), {}, "non-integer values"),
    "label strings": (_rewrite(label=lambda a: np.array([b"chair"] * 5)), {}, "'label' has dtype"),
    "NaN": (_rewrite(data=_set((2, 3, 1), np.nan)), {}, r"NaN or inf values in 1 cloud\(s\) \(first at index 2\)"),
    "inf": (_rewrite(data=_set((4, 0, 0), np.inf)), {}, r"NaN or inf values in 1 cloud\(s\) \(first at index 4\)"),
    "NaN normal": (_rewrite(normal=_set((1, 0, 0), np.nan)), {"use_normals": True}, "'normal' holds NaN or inf"),
    "label too large": (_rewrite(label=_set((3, 0), 3)), {}, "label 3 at index 3 .* outside the 3 classes 0..2"),
    "label negative": (_rewrite(label=lambda a: _set((0, 0), -1)(a.astype(np.int64))), {}, "label -1 at index 0"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_hdf5_file_names_file_and_problem(modelnet_dir, case: str) -> None:
    root, _ = modelnet_dir
    damage, kwargs, problem = BAD_FILES[case]
    damage(root / "ply_data_train1.h5")
    before = snapshot(root)
    with pytest.raises(ValueError) as info:
        modelnet40(root, "train", num_points=16, **kwargs)
    msg = str(info.value)
    assert str(root / "ply_data_train1.h5") in msg, msg
    assert re.search(problem, msg), msg
    assert snapshot(root) == before


def test_empty_split(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    make_modelnet(root, train=(0, 0), test=(2,))
    before = snapshot(root)
    with pytest.raises(ValueError, match=r"split is empty \(0 clouds in .*ply_data_train0\.h5"):
        modelnet40(root, "train", num_points=8)
    assert snapshot(root) == before
    (root / "train_files.txt").write_text("\n")
    before = snapshot(root)
    with pytest.raises(ValueError, match=r"train_files\.txt lists no \.h5 files: the train split is empty"):
        modelnet40(root, "train", num_points=8)
    with pytest.raises(ValueError, match="no .h5 files given"):
        PointCloudH5([])
    assert snapshot(root) == before


def test_file_list_naming_a_missing_file(modelnet_dir) -> None:
    root, _ = modelnet_dir
    (root / "ply_data_train1.h5").rename(root / "moved.h5")
    with pytest.raises(ValueError, match=r"train_files\.txt lists ply_data_train1\.h5 but .*train1\.h5 does not"):
        modelnet40(root, "train")


@pytest.mark.parametrize("text, problem", [("\n\n", "lists no class names"), ("a\nb\na\n", r"\['a'\] more than once")])
def test_bad_shape_names(modelnet_dir, text: str, problem: str) -> None:
    root, _ = modelnet_dir
    (root / "shape_names.txt").write_text(text)
    with pytest.raises(ValueError, match=rf"shape_names\.txt.*{problem}"):
        modelnet40(root, "train", num_points=32)


def test_labels_outside_a_short_class_list(modelnet_dir) -> None:
    root, written = modelnet_dir
    (root / "shape_names.txt").write_text("airplane\n")  # labels 0..2 stored, one class named
    with pytest.raises(ValueError, match=r"train0\.h5: label [12] .*outside the 1 classes 0..0 of .*shape_names\.txt"):
        modelnet40(root, "train", num_points=32)


def test_load_time_benchmark_small(tmp_path: Path) -> None:
    out = load_time_benchmark(num_clouds=30, num_points=64, num_files=2, read_points=32, repeats=1, directory=tmp_path)
    assert set(out) == {"size_mb", "s_per_10k_first", "s_per_10k_all", "s_per_10k_normals"}
    assert all(v > 0 for v in out.values())
    assert list(tmp_path.iterdir()) == []  # its temporary folder is gone


def test_scanobjectnn_label_outside_the_15_categories(tmp_path: Path) -> None:
    root = tmp_path / "h5_files"
    path = write_h5(root / "main_split" / "test_objectdataset_augmentedrot_scale75.h5",
                    data=np.zeros((3, 8, 3), np.float32), label=np.array([0, 15, 1]))
    with pytest.raises(ValueError, match=rf"{path}: label 15 at index 1 .*outside the 15 classes 0..14 of ScanObject"):
        scanobjectnn(root, "test", num_points=8)
