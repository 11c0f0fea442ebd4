"""The built-in part-segmentation demo: readable as ShapeNetPart, parts and normals right, deterministic, idempotent."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from pointcoc.data import SHAPENETPART_PARTS, ShapeNetPart
from pointcoc.data.demo import MARKER
from pointcoc.data.demo_parts import (
    PART_DEMO_CATEGORIES,
    PART_DEMO_OPTIONAL,
    PART_DEMO_PARTS,
    PART_DEMO_VERSION,
    PartDemoConfig,
    ensure_partseg_demo,
    make_part_shape,
    write_partseg_demo,
)

from data_builders import snapshot

SMALL = PartDemoConfig(train_per_category=3, val_per_category=2, test_per_category=2, seed=5)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """The small config, written once for this module, and the counts the writer returned."""
    directory = tmp_path_factory.mktemp("parts") / "parts"
    return directory, write_partseg_demo(directory, SMALL)


def _rows(path: Path) -> np.ndarray:
    return np.loadtxt(path, ndmin=2)


def test_layout_reads_as_shapenetpart(small) -> None:
    directory, counts = small
    names = (directory / "synsetoffset2category.txt").read_text().splitlines()
    assert names == [f"{n}\t{SHAPENETPART_PARTS[n][0]}" for n in PART_DEMO_CATEGORIES]
    sizes = {"train": 3, "val": 2, "test": 2}
    assert counts["train"] == 15 and counts["val"] == 10 and counts["test"] == 10
    assert counts["part_demo_version"] == PART_DEMO_VERSION
    total = 0
    for split, per_category in sizes.items():
        entries = json.loads((directory / "train_test_split" / f"shuffled_{split}_file_list.json").read_text())
        assert all(e.startswith("shape_data/") and len(e.split("/")) == 3 for e in entries)
        assert len(set(entries)) == len(entries)
        for use_normals in (False, True):
            for num_points in (2048, None):
                ds = ShapeNetPart(directory, split, num_points=num_points, use_normals=use_normals)
                assert ds.categories.names == PART_DEMO_CATEGORIES
                assert torch.bincount(ds.labels, minlength=5).tolist() == [per_category] * 5
                pts, category, seg = ds[0]
                n = 2048 if num_points is not None else ds.load(0)[0].shape[0]
                assert pts.shape == (n, 6 if use_normals else 3) and seg.shape == (n,)
                assert int(seg.min()) >= 0 and set(seg.tolist()) <= set(ds.categories.parts[category])
        full = ShapeNetPart(directory, split, num_points=None)
        lengths = [full[i][0].shape[0] for i in range(len(full))]
        assert all(SMALL.min_points <= n <= SMALL.max_points for n in lengths)
        assert len(set(lengths)) > 1  # the number of points varies per shape
        total += sum(lengths)
    assert total == counts["points"]
    # the file lists are shuffled: the categories are not in blocks
    train = ShapeNetPart(directory, "train")
    assert train.labels.tolist() != sorted(train.labels.tolist())
    assert len(ShapeNetPart(directory, "trainval")) == 25


def test_parts_belong_to_their_category_and_all_appear(small) -> None:
    directory, _ = small
    seen: dict[str, list[set[int]]] = {n: [] for n in PART_DEMO_CATEGORIES}
    for split in ("train", "val", "test"):
        ds = ShapeNetPart(directory, split, num_points=None)
        for (category, path) in ds.shapes:
            parts = _rows(path)[:, 6]
            assert (parts == np.round(parts)).all()
            name = ds.categories.names[category]
            ids = set(parts.astype(int).tolist())
            assert ids <= set(SHAPENETPART_PARTS[name][1]), (path, ids)
            seen[name].append(ids)
    for name, shapes in seen.items():
        required = {pid for part, pid in PART_DEMO_PARTS[name].items() if part not in PART_DEMO_OPTIONAL.get(name, ())}
        for ids in shapes:
            assert required <= ids, (name, required - ids)
    # optional parts: present in some shapes and absent in others (of 40 fresh shapes per category)
    g = torch.Generator().manual_seed(11)
    for name, optional in PART_DEMO_OPTIONAL.items():
        for part in optional:
            pid = PART_DEMO_PARTS[name][part]
            present = [bool((make_part_shape(name, 400, g)[2] == pid).any()) for _ in range(40)]
            assert 5 < sum(present) < 35, (name, part, sum(present))


def test_shapes_are_varied_and_small_parts_get_points() -> None:
    g = torch.Generator().manual_seed(2)
    for name in PART_DEMO_CATEGORIES:
        a, _, pa = make_part_shape(name, 2400, g)
        b, _, pb = make_part_shape(name, 2400, g)
        assert a.shape == (2400, 3) and a.dtype == torch.float32 and pa.dtype == torch.int64
        # two shapes of one category differ in their proportions, not only in the sampling
        assert not torch.allclose(a.amax(0) - a.amin(0), b.amax(0) - b.amin(0), atol=0.02)
        for parts in (pa, pb):
            counts = torch.bincount(parts)[parts.unique()]
            assert int(counts.min()) >= 2400 // 40
        radius = a.norm(dim=-1).max()
        assert 0.97 < float(radius) < 1.05  # normalised into the unit sphere, plus noise
        assert abs(float(a.mean(0).abs().max())) < 0.01


def test_normals_are_unit_and_outward(small) -> None:
    directory, _ = small
    body, handle = PART_DEMO_PARTS["Mug"]["body"], PART_DEMO_PARTS["Mug"]["handle"]
    ds = ShapeNetPart(directory, "train", num_points=None, use_normals=True)
    checked = 0
    for i in range(len(ds)):
        points, category, parts = ds.load(i)
        nrm = torch.from_numpy(points[:, 3:]).double()
        torch.testing.assert_close(nrm.norm(dim=-1), torch.ones(len(nrm), dtype=torch.float64), atol=1e-3, rtol=0)
        if ds.categories.names[category] != "Mug":
            continue
        xyz = torch.from_numpy(points[:, :3]).double()
        on_body = torch.from_numpy(parts == body)
        side = on_body & (nrm[:, 1].abs() < 0.5)  # the cylinder wall (the bottom disk faces down)
        axis = xyz[on_body][:, [0, 2]].mean(0)  # the wall surrounds the axis evenly
        radial = xyz[side][:, [0, 2]] - axis
        outward = (nrm[side][:, [0, 2]] * radial).sum(-1) > 0
        assert float(outward.float().mean()) > 0.98
        bottom = on_body & (nrm[:, 1] < -0.9)
        # the bottom disk faces down and sits at the foot of the wall
        assert bool(bottom.any()) and float(xyz[bottom, 1].mean()) < float(xyz[side, 1].mean())
        # the handle sticks out of the wall: its points lie farther from the axis than the wall's
        far = (xyz[torch.from_numpy(parts == handle)][:, [0, 2]] - axis).norm(dim=-1)
        assert float(far.max()) > float(radial.norm(dim=-1).max()) + 0.05
        checked += 1
    assert checked == 3


def test_outward_normals_on_closed_parts() -> None:
    """Without noise, the normals of closed convex parts (lamp base, table top, chair seat) point away from the
    part's centre (the mean of its points)."""
    g = torch.Generator().manual_seed(4)
    for name, part in (("Lamp", "base"), ("Table", "top"), ("Chair", "seat")):
        xyz, nrm, parts = make_part_shape(name, 3000, g, noise=0.0)
        mine = parts == PART_DEMO_PARTS[name][part]
        centre = xyz[mine].mean(0)
        assert float(((xyz[mine] - centre) * nrm[mine]).sum(-1).gt(0).float().mean()) > 0.99, name


def test_deterministic_for_a_seed(tmp_path: Path, small) -> None:
    directory, _ = small
    write_partseg_demo(tmp_path / "same", SMALL)
    write_partseg_demo(tmp_path / "other", PartDemoConfig(train_per_category=3, val_per_category=2,
                                                          test_per_category=2, seed=6))
    files = sorted(p.relative_to(directory) for p in directory.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "same") for p in (tmp_path / "same").rglob("*") if p.is_file())
    for f in files:
        assert (directory / f).read_bytes() == (tmp_path / "same" / f).read_bytes(), f
    shape = next(f for f in files if f.suffix == ".txt" and f.parent.name.isdigit())
    assert (directory / shape).read_bytes() != (tmp_path / "other" / shape).read_bytes()
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for x, y in zip(make_part_shape("Airplane", 500, g1), make_part_shape("Airplane", 500, g2)):
        assert torch.equal(x, y)


def test_ensure_is_idempotent(tmp_path: Path, caplog) -> None:
    config = PartDemoConfig(train_per_category=1, val_per_category=1, test_per_category=1, categories=("Mug", "Lamp"))
    path = ensure_partseg_demo(tmp_path, config)
    assert path == tmp_path / "parts" and (path / MARKER).is_file()
    assert ShapeNetPart(path, "val").categories.names == ("Mug", "Lamp")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != ".lock"]  # no temp folder left
    before = snapshot(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert ensure_partseg_demo(tmp_path, config) == path
    assert snapshot(tmp_path) == before  # nothing rewritten (sizes, mtimes, contents)
    assert not caplog.records  # same config: no stale-config warning
    with caplog.at_level(logging.WARNING):
        assert ensure_partseg_demo(tmp_path, PartDemoConfig(train_per_category=2, val_per_category=1,
                                                             test_per_category=1, categories=("Mug", "Lamp"))) == path
    assert snapshot(tmp_path) == before
    assert "another part-demo version/config" in caplog.text


def test_incomplete_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "mine.txt").write_text("user data")
    with pytest.raises(ValueError, match="exists but is not a complete pointcoc demo folder"):
        ensure_partseg_demo(tmp_path, SMALL)
    assert [p.name for p in (tmp_path / "parts").iterdir()] == ["mine.txt"]


def test_bad_arguments() -> None:
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"unknown part-demo category 'Car'.*Airplane"):
        make_part_shape("Car", 100, g)
    with pytest.raises(ValueError, match=r"unknown part-demo categories \['Guitar'\]; known: \['Airplane'"):
        PartDemoConfig(categories=("Mug", "Guitar"))
    with pytest.raises(ValueError, match="min_points <= max_points"):
        PartDemoConfig(min_points=3000, max_points=2000)
    with pytest.raises(ValueError, match="at least one shape"):
        PartDemoConfig(val_per_category=0)
    with pytest.raises(ValueError, match="num_points must be >= 1"):
        make_part_shape("Mug", 0, g)
