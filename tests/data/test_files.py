"""A user's point files: every format read back as written, the column rules, each bad-file error, PLY writing."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from pointcoc.data.files import (
    IGNORE_COLOR,
    SUPPORTED_SUFFIXES,
    PointFile,
    label_colors,
    label_palette,
    read_point_file,
    write_labeled_ply,
)
from pointcoc.errors import InputError

N = 12


@pytest.fixture
def cloud() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    normals = rng.normal(size=(N, 3)).astype(np.float32)
    return {"pos": rng.uniform(-1, 1, size=(N, 3)),
            "normals": normals / np.linalg.norm(normals, axis=1, keepdims=True),
            "colors": rng.integers(0, 256, size=(N, 3)).astype(np.uint8),
            "labels": rng.integers(0, 5, size=N).astype(np.int64),
            "intensity": rng.uniform(0, 100, size=N).astype(np.float32)}


def _raises(match: str, path: Path, **kwargs) -> str:
    """Read ``path`` expecting an InputError whose message names the file and matches ``match``."""
    with pytest.raises(InputError, match=match) as info:
        read_point_file(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def _write_text(path: Path, rows: np.ndarray, header: str = "", fmt: str = "%.17g", sep: str = " ") -> Path:
    path.write_text(header + "\n".join(sep.join(fmt % v for v in row) for row in rows) + "\n")
    return path


def _ply(path: Path, table: np.ndarray, text: bool = False, faces: bool = False, byte_order: str = "=") -> Path:
    elements = [PlyElement.describe(table, "vertex")]
    if faces:
        face = np.empty(1, dtype=[("vertex_indices", "i4", (3,))])
        face["vertex_indices"] = [[0, 1, 2]]
        elements.append(PlyElement.describe(face, "face"))
    PlyData(elements, text=text, byte_order=byte_order).write(str(path))
    return path


def _vertex_table(cloud: dict, color_dtype: str = "u1") -> np.ndarray:
    dtype = [("x", "f8"), ("y", "f8"), ("z", "f8"), ("nx", "f4"), ("ny", "f4"), ("nz", "f4"),
             ("red", color_dtype), ("green", color_dtype), ("blue", color_dtype), ("class", "i4"),
             ("intensity", "f4")]
    table = np.empty(N, dtype=dtype)
    for i, a in enumerate("xyz"):
        table[a] = cloud["pos"][:, i]
        table[f"n{a}"] = cloud["normals"][:, i]
    scale = 1.0 / 255.0 if color_dtype == "f4" else 1
    for i, c in enumerate(("red", "green", "blue")):
        table[c] = cloud["colors"][:, i] * scale
    table["class"] = cloud["labels"]
    table["intensity"] = cloud["intensity"]
    return table


def _assert_cloud(got: PointFile, cloud: dict, normals: bool = True, colors: bool = False, labels: bool = True,
                  ) -> None:
    assert got.pos.dtype == np.float64 and got.pos.shape == (N, 3) and len(got) == N
    np.testing.assert_array_equal(got.pos, cloud["pos"])
    if normals:
        assert got.normals.dtype == np.float32
        np.testing.assert_array_equal(got.normals, cloud["normals"])
    else:
        assert got.normals is None
    if colors:
        assert got.colors.dtype == np.uint8
        np.testing.assert_array_equal(got.colors, cloud["colors"])
    else:
        assert got.colors is None
    if labels:
        assert got.labels.dtype == np.int64
        np.testing.assert_array_equal(got.labels, cloud["labels"])
    else:
        assert got.labels is None


# ----------------------------------------------------------------------------- PLY
@pytest.mark.parametrize("text, byte_order", [(False, "<"), (False, ">"), (True, "=")],
                         ids=["binary", "big-endian", "ascii"])
def test_ply_round_trip(tmp_path, cloud, text, byte_order) -> None:
    path = _ply(tmp_path / "shape.ply", _vertex_table(cloud), text=text, faces=True, byte_order=byte_order)
    got = read_point_file(path)
    assert got.path == path
    _assert_cloud(got, cloud, colors=True)
    assert list(got.fields) == ["intensity"]  # 'class' became the labels; the face element is ignored
    np.testing.assert_array_equal(got.fields["intensity"], cloud["intensity"])
    # what was read writes back (fields in native byte order; small coordinates as float32) and reads back
    again = read_point_file(write_labeled_ply(tmp_path / "again.ply", got.pos, got.labels, colors=got.colors,
                                              normals=got.normals, fields=got.fields))
    _assert_cloud(again, {**cloud, "pos": cloud["pos"].astype(np.float32).astype(np.float64)}, colors=True)
    np.testing.assert_array_equal(again.fields["intensity"], cloud["intensity"])


def test_ply_float_colors_short_names_and_first_label_name(tmp_path, cloud) -> None:
    table = np.empty(N, dtype=[("X", "f4"), ("Y", "f4"), ("Z", "f4"), ("r", "f4"), ("g", "f4"), ("b", "f4"),
                               ("segment", "i2"), ("label", "u1")])
    for i, a in enumerate("XYZ"):
        table[a] = cloud["pos"][:, i]
    for i, c in enumerate("rgb"):
        table[c] = cloud["colors"][:, i] / 255.0
    table["segment"] = cloud["labels"] + 10
    table["label"] = cloud["labels"]
    got = read_point_file(_ply(tmp_path / "UPPER.PLY", table))
    np.testing.assert_array_equal(got.pos, cloud["pos"].astype(np.float32))  # float32 kept exactly, as float64
    np.testing.assert_array_equal(got.colors, cloud["colors"])  # 0..1 floats scaled back to 0..255
    np.testing.assert_array_equal(got.labels, cloud["labels"])  # 'label' comes before 'segment'
    np.testing.assert_array_equal(got.fields["segment"], cloud["labels"] + 10)
    assert got.normals is None


def test_ply_without_xyz_or_vertex(tmp_path) -> None:
    table = np.zeros(3, dtype=[("x", "f4"), ("y", "f4")])
    _raises(r"no z .*needs x, y and z", _ply(tmp_path / "noz.ply", table))
    other = np.zeros(3, dtype=[("a", "f4")])
    path = tmp_path / "novertex.ply"
    PlyData([PlyElement.describe(other, "point")]).write(str(path))
    _raises(r"no 'vertex' element .*'point'", path)


def test_ply_corrupt_and_truncated(tmp_path, cloud) -> None:
    good = _ply(tmp_path / "good.ply", _vertex_table(cloud)).read_bytes()
    (tmp_path / "cut.ply").write_bytes(good[: len(good) - 40])
    _raises(r"not a readable PLY file, corrupt or truncated \(.*vertex.*end-of-file", tmp_path / "cut.ply")
    (tmp_path / "junk.ply").write_bytes(b"\x00\x01 not a ply at all")
    _raises(r"not a readable PLY file", tmp_path / "junk.ply")
    _raises(r"`columns` applies to .npy", tmp_path / "cut.ply", columns="x,y,z")


def test_ply_non_finite_and_non_integral_labels(tmp_path, cloud) -> None:
    table = _vertex_table(cloud)
    table["y"][7] = np.nan
    _raises(r"at vertex 7 is not finite", _ply(tmp_path / "nan.ply", table))
    floats = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("label", "f4")])
    floats["label"] = [0, 1.5, 2]
    _raises(r"'label' holds 1\.5 at vertex 1; labels must be whole numbers", _ply(tmp_path / "lab.ply", floats))


def test_empty_ply(tmp_path) -> None:
    table = np.zeros(0, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    _raises(r"no points \(an empty cloud\)", _ply(tmp_path / "empty.ply", table))


# ----------------------------------------------------------------------------- NumPy
@pytest.mark.parametrize("width", [3, 6, 7])
def test_npy_default_columns(tmp_path, cloud, width) -> None:
    table = np.concatenate([cloud["pos"], cloud["normals"], cloud["labels"][:, None]], axis=1)[:, :width]
    path = tmp_path / "cloud.npy"
    np.save(path, table)
    _assert_cloud(read_point_file(path), cloud, normals=width >= 6, labels=width == 7)


def test_npy_columns_spec(tmp_path, cloud) -> None:
    table = np.concatenate([cloud["pos"], cloud["colors"], cloud["intensity"][:, None], cloud["labels"][:, None],
                            np.full((N, 1), 99.0)], axis=1)
    path = tmp_path / "cloud.npy"
    np.save(path, table)
    got = read_point_file(path, columns="x, y, z, r, g, b, intensity, label, _")
    _assert_cloud(got, cloud, normals=False, colors=True)
    assert list(got.fields) == ["intensity"]
    np.testing.assert_allclose(got.fields["intensity"], cloud["intensity"])
    # reordered columns
    np.save(path, np.concatenate([cloud["labels"][:, None], cloud["pos"][:, ::-1]], axis=1))
    _assert_cloud(read_point_file(path, columns="class,z,y,x"), cloud, normals=False)


def test_npy_structured_array_is_read_by_name(tmp_path, cloud) -> None:
    path = tmp_path / "rec.npy"
    np.save(path, _vertex_table(cloud))
    got = read_point_file(path)
    _assert_cloud(got, cloud, colors=True)
    np.testing.assert_array_equal(got.fields["intensity"], cloud["intensity"])


@pytest.mark.parametrize("spec, match", [
    ("x,y,nx,ny,nz", r"does not name all of x, y, z"),
    ("x,y,z,x", r"names \['x'\] more than once"),
    ("x,y,z,nx,ny", r"names only \['nx', 'ny'\] of \['nx', 'ny', 'nz'\]"),
    ("x,y,z,label,part", r"several label columns"),
    ("x,,y,z", r"empty or blank-containing name"),
])
def test_bad_columns_spec(tmp_path, cloud, spec, match) -> None:
    path = tmp_path / "cloud.npy"
    np.save(path, np.zeros((N, 5)))
    _raises(match, path, columns=spec)


def test_npy_errors(tmp_path, cloud) -> None:
    path = tmp_path / "cloud.npy"
    np.save(path, np.zeros((N, 5)))
    message = _raises(r"has 5 columns per point; without `columns` only 3 .*pass `columns`", path)
    assert "x,y,z,intensity,_" in message
    _raises(r"`columns` names 4 columns .* but the array has 5", path, columns="x,y,z,_")
    np.save(path, np.zeros((N, 2)))
    _raises(r"has 2 columns per point", path)
    np.save(path, np.zeros((2, N, 3)))
    _raises(r"shape \(2, 12, 3\); expected \[N, C\]", path)
    np.save(path, np.zeros((0, 3)))
    _raises(r"no points \(an empty cloud\)", path)
    np.save(path, np.array([["1", "2", "3"]]))
    _raises(r"dtype <U1; expected a float array", path)
    bad = np.concatenate([cloud["pos"], np.zeros((N, 3)), cloud["labels"][:, None]], axis=1)
    bad[4, 6] = 2.5
    np.save(path, bad)
    _raises(r"label column 'label' holds 2\.5 at row 4; labels must be whole numbers", path)
    bad = np.concatenate([cloud["pos"], np.zeros((N, 3))], axis=1)
    bad[9, 2] = np.inf
    np.save(path, bad)
    _raises(r"position \[.*inf\] at row 9 is not finite", path)
    np.save(path, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    _raises(r"holds Python objects \(a pickle\)", path)
    path.write_bytes(b"this is not numpy")
    _raises(r"not a NumPy file", path)
    np.save(path, cloud["pos"])
    path.write_bytes(path.read_bytes()[:200])
    _raises(r"not a readable NumPy file, corrupt or truncated", path)
    np.savez(path.with_suffix(".npz"), pos=cloud["pos"])
    path.with_suffix(".npz").rename(path)
    _raises(r"is a .npz archive, not a .npy array", path)


def test_npz_keys(tmp_path, cloud) -> None:
    path = tmp_path / "cloud.npz"
    np.savez(path, xyz=cloud["pos"], normal=cloud["normals"], rgb=cloud["colors"].astype(np.float32) / 255,
             segment=cloud["labels"].astype(np.int32)[:, None], intensity=cloud["intensity"], category=np.int64(3),
             centre=np.zeros(3))
    got = read_point_file(path)
    _assert_cloud(got, cloud, colors=True)
    assert sorted(got.fields) == ["intensity"]  # the scalar and the [3] array are not per point
    np.testing.assert_array_equal(got.fields["intensity"], cloud["intensity"])


def test_npz_points_follow_the_column_rules(tmp_path, cloud) -> None:
    path = tmp_path / "cloud.npz"
    np.savez(path, points=np.concatenate([cloud["pos"], cloud["normals"], cloud["labels"][:, None]], axis=1),
             label=np.int64(2))  # a single (shape) label is not a per-point label
    _assert_cloud(read_point_file(path), cloud)
    np.savez(path, points=np.concatenate([cloud["pos"], cloud["colors"]], axis=1), labels=cloud["labels"])
    _assert_cloud(read_point_file(path, columns="x,y,z,red,green,blue"), cloud, normals=False, colors=True)


def test_npz_errors(tmp_path, cloud) -> None:
    path = tmp_path / "cloud.npz"
    np.savez(path, normals=cloud["normals"])
    _raises(r"no positions: none of the keys \['pos', 'xyz', 'coord', 'points'\] \(it has \['normals'\]\)", path)
    np.savez(path, pos=cloud["pos"], normals=cloud["normals"][:-2])
    _raises(r"'normals' has 10 rows but 'pos' has 12 points", path)
    np.savez(path, pos=cloud["pos"], labels=cloud["labels"][:5])
    _raises(r"'labels' has 5 rows but 'pos' has 12 points", path)
    np.savez(path, pos=cloud["pos"], colors=cloud["colors"][:3])
    _raises(r"'colors' has 3 rows but 'pos' has 12 points", path)
    np.savez(path, pos=cloud["pos"][:, :2])
    _raises(r"'pos' has shape \(12, 2\); expected \[N, 3\]", path)
    np.savez(path, pos=np.zeros((0, 3)))
    _raises(r"no points \(an empty cloud\)", path)
    labels = cloud["labels"].astype(np.float64)
    labels[3] = 0.5
    np.savez(path, pos=cloud["pos"], label=labels)
    _raises(r"'label' holds 0\.5 at index 3 of 'label'", path)
    np.savez(path, points=np.concatenate([cloud["pos"], cloud["normals"], cloud["labels"][:, None]], axis=1),
             labels=cloud["labels"])
    _raises(r"both the columns of 'points' and the key 'labels' give labels", path)
    np.savez(path, pos=cloud["pos"], colors=np.full((N, 3), 300.0))
    _raises(r"'colors' \[300\.0, 300\.0, 300\.0\] at index 0 of 'colors' is not a colour", path)
    path.write_bytes(b"PK\x03\x04 and then garbage")
    _raises(r"not a readable NumPy file, corrupt or truncated", path)


# ----------------------------------------------------------------------------- text
@pytest.mark.parametrize("suffix", [".txt", ".xyz", ".pts"])
def test_text_default_columns(tmp_path, cloud, suffix) -> None:
    rows = np.concatenate([cloud["pos"], cloud["normals"], cloud["labels"][:, None]], axis=1)
    path = _write_text(tmp_path / f"shape{suffix}", rows, header="# a comment\n\n")
    _assert_cloud(read_point_file(path), cloud)
    _write_text(path, rows[:, :3])
    _assert_cloud(read_point_file(path), cloud, normals=False, labels=False)


def test_text_commas_header_comments_and_columns(tmp_path, cloud) -> None:
    rows = np.concatenate([cloud["pos"], cloud["colors"], cloud["intensity"][:, None], cloud["labels"][:, None]],
                          axis=1)
    path = _write_text(tmp_path / "scan.txt", rows, header="# exported\nsome header line here\n", sep=", ")
    got = read_point_file(path, columns="x,y,z,r,g,b,intensity,label")
    _assert_cloud(got, cloud, normals=False, colors=True)
    np.testing.assert_allclose(got.fields["intensity"], cloud["intensity"])
    # a header naming the columns is used when `columns` is not given (CloudCompare's "//X,..." included)
    _write_text(path, rows, header="//X,Y,Z,R,G,B,Intensity,Label\n", sep=",")
    got = read_point_file(path)
    _assert_cloud(got, cloud, normals=False, colors=True)
    assert list(got.fields) == ["Intensity"]
    # inline comments, and a leading point count (.pts)
    pts = tmp_path / "scan.pts"
    pts.write_text(f"{N}\n" + "".join(f"{x!r} {y!r} {z!r}  # point {i}\n" for i, (x, y, z) in
                                      enumerate(cloud["pos"].tolist())))
    _assert_cloud(read_point_file(pts), cloud, normals=False, labels=False)


def test_text_errors_name_the_line(tmp_path) -> None:
    path = tmp_path / "bad.xyz"
    path.write_text("# x y z\n1 2 3\n4 5 6\n7 8\n")
    _raises(r"line 4 has 2 columns but line 2 has 3", path)
    path.write_text("x y z\n1 2 3\n4 five 6\n")
    _raises(r"line 3: 'five' is not a number", path)
    path.write_text("1,2,3\n\n4,5,6\n7,8,nan\n")
    _raises(r"at line 4 is not finite", path)
    path.write_text("1 2 3 4 5 6 0\n1 2 3 4 5 6 1.25\n")
    _raises(r"holds 1\.25 at line 2; labels must be whole numbers", path)
    path.write_text("1 2 3 4\n")
    _raises(r"has 4 columns per point; without `columns`", path)
    path.write_text("# only comments\n\n")
    _raises(r"no points \(an empty cloud", path)
    path.write_text("x y z\n")
    _raises(r"no points \(an empty cloud: only a header\)", path)
    path.write_bytes(b"\xff\xfe\x00binary")
    _raises(r"not a text file", path)


# ----------------------------------------------------------------------------- paths
def test_missing_unknown_and_folder(tmp_path) -> None:
    _raises(r"file not found", tmp_path / "nope.ply")
    (tmp_path / "cloud.las").write_bytes(b"LASF")
    message = _raises(r"unsupported file type '.las'; supported: ", tmp_path / "cloud.las")
    assert all(s in message for s in SUPPORTED_SUFFIXES)
    (tmp_path / "dir.ply").mkdir()
    _raises(r"is a folder", tmp_path / "dir.ply")


# ----------------------------------------------------------------------------- writing
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "ascii"])
def test_write_labeled_ply_round_trip(tmp_path, cloud, binary) -> None:
    pos = cloud["pos"].astype(np.float32)
    path = write_labeled_ply(tmp_path / "out" / "pred.ply", pos, cloud["labels"], normals=cloud["normals"],
                             colors=cloud["colors"], fields={"intensity": cloud["intensity"],
                                                             "uv": np.arange(2 * N, dtype=np.int64).reshape(N, 2)},
                             binary=binary)
    assert path == tmp_path / "out" / "pred.ply"
    ply = PlyData.read(str(path))
    assert ply.text is not binary
    assert [p.name for p in ply["vertex"].properties] == ["x", "y", "z", "nx", "ny", "nz", "red", "green", "blue",
                                                          "label", "intensity", "uv_0", "uv_1"]
    assert ply["vertex"]["x"].dtype == np.float32 and ply["vertex"]["label"].dtype == np.int32
    got = read_point_file(path)
    _assert_cloud(got, {**cloud, "pos": pos.astype(np.float64)}, colors=True)
    np.testing.assert_array_equal(got.fields["intensity"], cloud["intensity"])
    np.testing.assert_array_equal(got.fields["uv_1"], np.arange(1, 2 * N, 2))
    assert [f.name for f in path.parent.iterdir()] == ["pred.ply"]  # no temporary file left


def test_write_labeled_ply_keeps_large_float64_coordinates(tmp_path, cloud) -> None:
    lidar = cloud["pos"] * 0.001 + np.array([512_345.123456789, 5_412_345.987654321, 245.5])
    path = write_labeled_ply(tmp_path / "lidar.ply", lidar, cloud["labels"])
    assert PlyData.read(str(path))["vertex"]["x"].dtype == np.float64
    got = read_point_file(path)
    np.testing.assert_array_equal(got.pos, lidar)  # exact: float32 would be off by ~0.03 m at 5e6
    np.testing.assert_array_equal(got.colors, label_colors(cloud["labels"]))  # colours default to the labels'
    assert not np.array_equal(lidar.astype(np.float32).astype(np.float64), lidar)
    small = write_labeled_ply(tmp_path / "small.ply", cloud["pos"], cloud["labels"])
    assert PlyData.read(str(small))["vertex"]["x"].dtype == np.float32


def test_write_labeled_ply_replaces_atomically(tmp_path, cloud) -> None:
    path = write_labeled_ply(tmp_path / "p.ply", cloud["pos"], cloud["labels"])
    write_labeled_ply(path, cloud["pos"][:4], cloud["labels"][:4])
    assert len(read_point_file(path)) == 4
    assert sorted(f.name for f in tmp_path.iterdir()) == ["p.ply"]


def test_write_labeled_ply_errors(tmp_path, cloud) -> None:
    pos, labels = cloud["pos"], cloud["labels"]
    target = tmp_path / "p.ply"
    cases = [
        (dict(labels=labels[:-1]), r"`labels` has shape \(11,\) but `pos` has 12 points"),
        (dict(normals=cloud["normals"][:3]), r"`normals` has shape \(3, 3\) but `pos` has 12 points"),
        (dict(colors=cloud["colors"][:5]), r"`colors` has shape \(5, 3\) but `pos` has 12 points"),
        (dict(fields={"intensity": np.zeros(4)}), r"field 'intensity' has shape \(4,\) but `pos` has 12 points"),
        (dict(fields={"label": np.zeros(N)}), r"field 'label' clashes"),
        (dict(fields={"bad name": np.zeros(N)}), r"not a PLY property name"),
        (dict(fields={"big": np.full(N, 2**40)}), r"field 'big' holds values outside int32"),
        (dict(labels=labels + 0.5), r"`labels` holds \d\.5 at index 0; labels must be whole numbers"),
    ]
    for kwargs, match in cases:
        with pytest.raises(InputError, match=match) as info:
            write_labeled_ply(target, pos, **{"labels": labels, **kwargs})
        assert str(target) in str(info.value)
    with pytest.raises(InputError, match=r"`pos` must be a numeric \[N, 3\] array"):
        write_labeled_ply(target, pos[:, :2], labels)
    with pytest.raises(InputError, match=r"give a path ending in .ply"):
        write_labeled_ply(tmp_path / "p.txt", pos, labels)
    assert not any(tmp_path.iterdir())  # nothing written, no temporary file


# ----------------------------------------------------------------------------- colours
def test_label_colors_are_fixed_distinct_and_grey_for_ignored() -> None:
    ids = np.arange(20)
    colors = label_colors(ids)
    assert colors.dtype == np.uint8 and colors.shape == (20, 3)
    assert len({tuple(c) for c in colors}) == 20
    np.testing.assert_array_equal(colors, label_colors(ids))
    np.testing.assert_array_equal(label_colors(ids[::-1]), colors[::-1])  # per id, not per order of appearance
    np.testing.assert_array_equal(label_colors(np.array([3, 3, 3])), colors[[3, 3, 3]])
    np.testing.assert_array_equal(colors[:3], [[31, 119, 180], [255, 127, 14], [44, 160, 44]])  # tab10's first
    ignored = label_colors(np.array([-1, 0]))
    assert tuple(ignored[0]) == IGNORE_COLOR and len(set(IGNORE_COLOR)) == 1  # grey
    assert tuple(ignored[0]) not in {tuple(c) for c in colors}
    many = label_colors(np.arange(200))
    assert len({tuple(c) for c in many}) == 200
    np.testing.assert_array_equal(many, label_palette(200))
    np.testing.assert_array_equal(label_colors(np.array([150, 5])), many[[150, 5]])
    np.testing.assert_array_equal(label_colors(ids.astype(np.float64)), colors)  # whole floats are fine


def test_label_colors_errors() -> None:
    with pytest.raises(InputError, match=r"holds -2 at index 1"):
        label_colors(np.array([0, -2]))
    with pytest.raises(InputError, match=re.escape("holds 7 at index 2 but num_labels is 5")):
        label_colors(np.array([0, 1, 7]), num_labels=5)
    with pytest.raises(InputError, match=r"must be whole numbers"):
        label_colors(np.array([0.5]))
    with pytest.raises(InputError, match=r"must be \[N\]"):
        label_colors(np.zeros((2, 2), dtype=int))
    assert label_colors(np.array([0, 4]), num_labels=5).shape == (2, 3)


def test_non_finite_normals_name_the_row(tmp_path) -> None:
    rows = np.random.default_rng(0).normal(size=(20, 6))
    rows[7, 4] = np.nan
    np.save(tmp_path / "n.npy", rows)
    with pytest.raises(InputError, match=r"n\.npy.*NaN or inf \(row 7\)"):
        read_point_file(tmp_path / "n.npy")
