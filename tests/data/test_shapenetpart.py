"""ShapeNetPart readers on tiny built releases in both layouts: values, sampling, categories, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pointcoc.data import SHAPENETPART_PARTS, PartCategories, ShapeNetPart, shapenetpart
from pointcoc.errors import InputError

from data_builders import snapshot, write_h5

NORMAL = "shapenetcore_partanno_segmentation_benchmark_v0_normal"
AIRPLANE, MUG = "02691156", "03797390"


def shape_rows(n: int, parts: list[int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(n, 3)) * [1.0, 2.0, 0.5] + [3.0, -1.0, 2.0]
    nrm = rng.normal(size=(n, 3))
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    return np.concatenate([xyz, nrm, rng.choice(parts, n)[:, None]], axis=1)


def make_normal(root: Path, shapes: dict[str, list[tuple[str, str, int]]] | None = None) -> Path:
    """A normal-resampled release: two categories, files listed per split; returns the release folder."""
    rel = root / NORMAL
    (rel / "train_test_split").mkdir(parents=True)
    (rel / "synsetoffset2category.txt").write_text(f"Airplane\t{AIRPLANE}\nMug\t{MUG}\n")
    shapes = shapes or {"train": [(AIRPLANE, "a1", 40), (MUG, "m1", 25), (AIRPLANE, "a2", 31)],
                        "val": [(MUG, "m2", 20)], "test": [(AIRPLANE, "a3", 50)]}
    parts = {AIRPLANE: [0, 1, 2, 3], MUG: [36, 37]}
    for split, items in shapes.items():
        entries = []
        for synset, sid, n in items:
            (rel / synset).mkdir(exist_ok=True)
            seed = sum(map(ord, sid))  # not hash(): a str's hash differs from process to process
            np.savetxt(rel / synset / f"{sid}.txt", shape_rows(n, parts[synset], seed=seed), fmt="%.6f")
            entries.append(f"shape_data/{synset}/{sid}")
        (rel / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(entries))
    return rel


def test_normal_layout_reads_normalises_and_samples(tmp_path: Path) -> None:
    rel = make_normal(tmp_path)
    train = shapenetpart(tmp_path, "train", num_points=64, use_normals=True)
    assert train.layout == "normal" and len(train) == 3 and train.labels.tolist() == [0, 1, 0]
    assert train.categories.names == ("Airplane", "Mug") and train.categories.parts[1] == (36, 37)
    full, category, parts = ShapeNetPart(tmp_path, "train", num_points=None, use_normals=True)[1]
    rows = np.loadtxt(rel / MUG / "m1.txt")
    xyz = rows[:, :3] - rows[:, :3].mean(0)
    xyz /= np.linalg.norm(xyz, axis=1).max()
    assert full.shape == (25, 6) and category == 1
    torch.testing.assert_close(full[:, :3], torch.from_numpy(xyz).float(), rtol=0, atol=1e-6)
    torch.testing.assert_close(full[:, 3:], torch.from_numpy(rows[:, 3:6]).float(), rtol=0, atol=1e-6)
    assert parts.tolist() == rows[:, 6].astype(int).tolist()
    torch.manual_seed(0)
    pts, category, seg = train[1]  # 25 stored points, 64 drawn with replacement
    assert pts.shape == (64, 6) and seg.shape == (64,) and set(seg.tolist()) <= {36, 37}
    assert float(pts[:, :3].norm(dim=1).max()) <= 1 + 1e-6
    stored = {tuple(np.round(r, 4)) for r in full.numpy()}  # every drawn point is a stored point
    assert all(tuple(np.round(r, 4)) in stored for r in pts.numpy())
    assert len(shapenetpart(tmp_path, "trainval")) == 4 and ShapeNetPart(tmp_path, "test")[0][0].shape == (2048, 3)


def test_part_mask_is_the_standard_table() -> None:
    cats = PartCategories.standard()
    mask = cats.part_mask()
    assert cats.num_categories == 16 and cats.num_parts == 50 and mask.shape == (16, 50)
    assert mask.sum(0).eq(1).all()  # every part belongs to exactly one category
    assert mask[cats.names.index("Motorbike")].nonzero().flatten().tolist() == [30, 31, 32, 33, 34, 35]


def test_hdf5_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "hdf5_data"
    folder.mkdir()
    (folder / "all_object_categories.txt").write_text(
        "\n".join(f"{name} {syn}" for name, (syn, _) in SHAPENETPART_PARTS.items()))
    label = np.array([[0], [15], [10]], dtype=np.uint8)  # Airplane, Table, Motorbike
    pid = np.stack([rng.choice([0, 1, 2, 3], 128), rng.choice([47, 48, 49], 128), rng.choice([30, 35], 128)])
    write_h5(folder / "ply_data_train0.h5", data=rng.normal(size=(3, 128, 3)).astype(np.float32), label=label,
             pid=pid.astype(np.uint8))
    write_h5(folder / "ply_data_test0.h5", data=rng.normal(size=(1, 128, 3)).astype(np.float32),
             label=label[:1], pid=pid[:1].astype(np.uint8))
    train = shapenetpart(tmp_path, "train", num_points=None)
    assert train.layout == "hdf5" and train.labels.tolist() == [0, 15, 10]
    pts, category, seg = train[1]
    assert pts.shape == (128, 3) and category == 15 and torch.equal(seg, torch.from_numpy(pid[1]).long())
    assert abs(float(pts.norm(dim=1).max()) - 1) < 1e-6
    assert len(ShapeNetPart(folder, "test")) == 1
    with pytest.raises(InputError, match="stores no normals"):
        ShapeNetPart(folder, "train", use_normals=True)
    # a part outside its category: the file, the shape and the point are named
    bad = pid.copy()
    bad[2, 7] = 12
    write_h5(folder / "ply_data_val0.h5", data=rng.normal(size=(3, 128, 3)).astype(np.float32), label=label,
             pid=bad.astype(np.uint8))
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match=r"ply_data_val0.h5 'pid' shape 2 point row 8: part 12 is not a part of "
                                         r"Motorbike"):
        ShapeNetPart(folder, "val")
    assert snapshot(tmp_path) == before  # read-only


@pytest.mark.parametrize("mutate,match", [
    (lambda rel: (rel / MUG / "m1.txt").write_text("0 0 0 1 0 0 36\n0 0 0 1 0\n"), r"m1.txt row 2: 5 columns, "
                                                                                      r"expected 7"),
    (lambda rel: (rel / MUG / "m1.txt").write_text("0 0 nan 1 0 0 36\n"), r"m1.txt row 1: NaN or inf"),
    (lambda rel: (rel / MUG / "m1.txt").write_text("0 0 0 1 0 0 36\n1 1 1 0 1 0 3\n"),
     r"m1.txt row 2: part 3 is not a part of Mug \(its parts are \[36, 37\]\)"),
    (lambda rel: (rel / MUG / "m1.txt").write_text("\n"), r"m1.txt: the shape has no points"),
    (lambda rel: (rel / MUG / "m1.txt").write_text("0 0 0 1 0 0 36.5\n"), r"part label 36.5 is not an integer"),
    (lambda rel: (rel / MUG / "m1.txt").write_text("0 0 zero 1 0 0 36\n"), r"m1.txt row 1: not a number"),
])
def test_bad_shape_files_name_file_and_row(tmp_path: Path, mutate, match: str) -> None:
    rel = make_normal(tmp_path)
    mutate(rel)
    before = snapshot(tmp_path)
    data = ShapeNetPart(tmp_path, "train", num_points=None)
    with pytest.raises(InputError, match=match):
        data.check()
    assert snapshot(tmp_path) == before  # nothing touched


def test_bad_lists_and_categories(tmp_path: Path) -> None:
    rel = make_normal(tmp_path)
    listing = rel / "train_test_split" / "shuffled_train_file_list.json"
    listing.write_text(json.dumps(["shape_data/99999999/x"]))
    with pytest.raises(InputError, match=r"shuffled_train_file_list.json entry 0: unknown synset 99999999"):
        ShapeNetPart(tmp_path, "train")
    (rel / "synsetoffset2category.txt").write_text("Spaceship\t01234567\n")
    with pytest.raises(InputError, match=r"synsetoffset2category.txt line 1: unknown category 'Spaceship'"):
        ShapeNetPart(tmp_path, "test")
    (rel / "synsetoffset2category.txt").write_text(f"Mug\t{AIRPLANE}\n")
    with pytest.raises(InputError, match="Mug has synset 02691156, the release's is 03797390"):
        ShapeNetPart(tmp_path, "test")
    with pytest.raises(InputError, match="no ShapeNetPart release here"):
        ShapeNetPart(tmp_path / "nowhere", "train")
    with pytest.raises(InputError, match="split must be one of"):
        ShapeNetPart(tmp_path, "dev")
    (rel / "train_test_split" / "shuffled_val_file_list.json").unlink()
    (rel / "synsetoffset2category.txt").write_text(f"Airplane\t{AIRPLANE}\nMug\t{MUG}\n")
    with pytest.raises(InputError, match="the val file list is missing"):
        ShapeNetPart(tmp_path, "val")
