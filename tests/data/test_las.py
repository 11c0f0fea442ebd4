"""LAS/LAZ LiDAR files: reading, label maps, streaming, header info, and writing predicted classes to a copy."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

laspy = pytest.importorskip("laspy")

from pointcoc.data.files import PointFile  # noqa: E402
from pointcoc.data.las import (  # noqa: E402
    ASPRS_CLASSES,
    DEFAULT_LAS_CLASSES,
    DEFAULT_LAS_IGNORE,
    LasChunk,
    LasLabelMap,
    iter_las_chunks,
    las_header_info,
    read_las,
    write_las_labels,
)
from pointcoc.errors import InputError  # noqa: E402

HAS_LAZ = bool(laspy.LazBackend.detect_available())
needs_lazrs = pytest.mark.skipif(not HAS_LAZ, reason="lazrs (the LAZ backend) is not installed")

SCALES = np.array([0.001, 0.001, 0.01])
OFFSETS = np.array([431_000.0, 5_402_000.0, 100.0])  # UTM-like coordinates, far from the origin
CODES = np.array([2, 3, 4, 5, 6, 9, 2, 2, 6, 1], dtype=np.uint8)  # cycled over the points


def _write(path: Path, n: int = 50, *, point_format: int = 3, version: str = "1.2", rgb: str = "16",
           codes: np.ndarray | None = None, seed: int = 0, vlr: bool = False) -> dict[str, np.ndarray]:
    """Write a small LAS/LAZ (compressed by suffix) and return what was stored.

    ``rgb``: "16" (v * 257), "256" (v * 256) or "8" (v itself in the 16-bit fields), for an 8-bit ``v``.
    """
    rng = np.random.default_rng(seed)
    header = laspy.LasHeader(point_format=point_format, version=version)
    header.scales, header.offsets = SCALES, OFFSETS
    header.file_source_id, header.system_identifier = 17, "pointcoc tests"
    if vlr:
        header.vlrs.append(laspy.VLR(user_id="pointcoc_test", record_id=42, description="kept",
                                     record_data=b"\x01\x02crs-ish"))
    las = laspy.LasData(header)
    raw = np.stack([rng.integers(-200_000, 200_000, n), rng.integers(-200_000, 200_000, n),
                    rng.integers(-5_000, 5_000, n)], axis=1).astype(np.int32)
    las.X, las.Y, las.Z = raw[:, 0], raw[:, 1], raw[:, 2]
    out: dict[str, np.ndarray] = {"raw": raw, "pos": raw * SCALES + OFFSETS}
    out["intensity"] = rng.integers(0, 65536, n).astype(np.uint16)
    out["number_of_returns"] = rng.integers(1, 6, n).astype(np.uint8)
    out["return_number"] = np.minimum(rng.integers(1, 6, n), out["number_of_returns"]).astype(np.uint8)
    out["classification"] = np.resize(CODES, n) if codes is None else np.asarray(codes, dtype=np.uint8)
    out["gps_time"] = rng.uniform(0, 1e5, n)
    las.intensity = out["intensity"]
    las.return_number, las.number_of_returns = out["return_number"], out["number_of_returns"]
    las.classification = out["classification"]
    if "gps_time" in header.point_format.dimension_names:
        las.gps_time = out["gps_time"]
    if point_format < 6:
        out["synthetic"] = (np.arange(n) % 3 == 0).astype(np.uint8)
        las.synthetic = out["synthetic"]
    if {"red", "green", "blue"} <= set(header.point_format.dimension_names):
        v8 = rng.integers(0, 256, (n, 3)).astype(np.uint16)
        v8[0] = 255  # so that the 16-bit files reach above 255
        stored = {"16": v8 * 257, "256": v8 * 256, "8": v8}[rgb]
        las.red, las.green, las.blue = stored[:, 0], stored[:, 1], stored[:, 2]
        out["rgb8"], out["rgb_stored"] = v8.astype(np.uint8), stored
    las.write(str(path))
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _raises(match: str, path: Path, fn, *args, **kwargs) -> str:
    with pytest.raises(InputError, match=match) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    return message


# ----------------------------------------------------------------------------- reading
def test_read_las_positions_fields_and_16_bit_colours(tmp_path: Path) -> None:
    path = tmp_path / "tile.las"
    written = _write(path)
    cloud = read_las(path)
    assert isinstance(cloud, PointFile) and cloud.path == path and cloud.num_points == 50
    assert cloud.pos.dtype == np.float64 and cloud.pos.shape == (50, 3)
    np.testing.assert_array_equal(cloud.pos, written["pos"])  # X * scale + offset, exactly
    assert np.abs(np.round((cloud.pos - OFFSETS) / SCALES) - written["raw"]).max() == 0
    assert cloud.colors.dtype == np.uint8
    np.testing.assert_array_equal(cloud.colors, written["rgb8"])
    for name in ("intensity", "return_number", "number_of_returns"):
        np.testing.assert_array_equal(cloud.fields[name], written[name])
    assert cloud.fields["intensity"].dtype == np.uint16
    assert cloud.labels is None  # no label map: the raw codes are kept instead
    np.testing.assert_array_equal(cloud.fields["classification"], written["classification"])
    assert cloud.normals is None


@pytest.mark.parametrize("mode", ["256", "8"])
def test_read_las_colours_stored_times_256_or_as_8_bit(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"rgb{mode}.las"
    written = _write(path, rgb=mode)
    assert written["rgb_stored"].max() == (255 if mode == "8" else 255 * 256)
    np.testing.assert_array_equal(read_las(path).colors, written["rgb8"])


def test_read_las_rgb_bits_forces_the_depth(tmp_path: Path) -> None:
    path = tmp_path / "rgb8.las"
    written = _write(path, rgb="8")
    forced = read_las(path, rgb_bits=16).colors  # 0..255 read as 16-bit: all nearly black
    np.testing.assert_array_equal(forced, (written["rgb_stored"] >> 8).astype(np.uint8))
    assert forced.max() == 0
    with pytest.raises(InputError, match="rgb_bits"):
        read_las(path, rgb_bits=12)


@pytest.mark.parametrize(("point_format", "version"), [(1, "1.2"), (6, "1.4")])
def test_point_formats_without_rgb(tmp_path: Path, point_format: int, version: str) -> None:
    path = tmp_path / "norgb.las"
    written = _write(path, point_format=point_format, version=version)
    cloud = read_las(path, features=("rgb", "intensity", "gps_time"))
    assert cloud.colors is None
    np.testing.assert_array_equal(cloud.fields["gps_time"], written["gps_time"])
    np.testing.assert_array_equal(cloud.pos, written["pos"])
    info = las_header_info(path)
    assert info["has_rgb"] is False and info["point_format"] == point_format


def test_read_las_features_choose_the_fields(tmp_path: Path) -> None:
    path = tmp_path / "tile.las"
    written = _write(path)
    cloud = read_las(path, features=("user_data",), label_map=LasLabelMap.default())
    assert set(cloud.fields) == {"user_data"} and cloud.colors is None
    assert cloud.labels is not None
    message = _raises("not a dimension of point format 3", path, read_las, path, features=("nir",))
    assert "intensity" in message  # lists what the file has
    assert written["pos"].shape == (50, 3)


# ----------------------------------------------------------------------------- label maps
def test_asprs_codes_and_the_default_map() -> None:
    assert len(ASPRS_CLASSES) == 19 and ASPRS_CLASSES[2] == "ground" and ASPRS_CLASSES[6] == "building"
    assert ASPRS_CLASSES[18] == "high noise" and ASPRS_CLASSES[17] == "bridge deck"
    default = LasLabelMap.default()
    assert default.names == tuple(DEFAULT_LAS_CLASSES) == ("ground", "vegetation", "building", "water", "other")
    assert default.ignore == DEFAULT_LAS_IGNORE
    table = default.table
    assert table.shape == (256,) and table.dtype == np.int64
    assert table[[2, 11, 3, 5, 6, 9, 17]].tolist() == [0, 0, 1, 1, 2, 3, 4]
    assert table[[0, 1, 7, 18]].tolist() == [-1, -1, -1, -1]
    assert (table[19:] == -2).all()  # unknown: an error when met
    assert LasLabelMap.parse(None) == default


def test_label_map_from_a_string_equals_the_dict() -> None:
    from_string = LasLabelMap.parse(" ground:2 ; vegetation:3-5;building:6;ignore:0,1,7,18;")
    from_dict = LasLabelMap.parse({"ground": 2, "vegetation": [3, 4, 5], "building": (6,)}, ignore=[0, 1, 7, 18])
    assert from_string == from_dict
    assert from_string.names == ("ground", "vegetation", "building") and from_string.num_classes == 3
    assert from_string.codes == ((2,), (3, 4, 5), (6,)) and from_string.ignore == (0, 1, 7, 18)
    assert from_string.spec == "ground:2;vegetation:3-5;building:6;ignore:0,1,7,18"
    assert LasLabelMap.parse(from_string.spec) == from_string  # the spec reads back
    labels = from_string.to_labels(np.array([2, 3, 4, 5, 6, 0, 1, 7, 18], dtype=np.uint8))
    assert labels.tolist() == [0, 1, 1, 1, 2, -1, -1, -1, -1] and labels.dtype == np.int64


def test_label_map_default_ignore_leaves_out_named_codes() -> None:
    mapping = LasLabelMap.parse("ground:2;unclassified:1")
    assert 1 not in mapping.ignore and set(mapping.ignore) == set(DEFAULT_LAS_IGNORE) - {1}
    assert mapping.to_labels(np.array([1, 2, 7])).tolist() == [1, 0, -1]


@pytest.mark.parametrize(("spec", "match"), [
    ("ground2", "not 'name:codes'"),
    ("ground:2;building:2", "code 2 is given to both 'ground' and 'building'"),
    ("ground:300", "0..255"),
    ("ground:x", "not a code"),
    ("ground:5-3", "runs backwards"),
    ("ground:2;ground:3", "used twice"),
    ("ignore:0", "no classes"),
])
def test_label_map_errors(spec: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        LasLabelMap.parse(spec)


def test_label_map_code_both_ignored_and_a_class() -> None:
    with pytest.raises(InputError, match="code 2 is both ignored and class 'ground'"):
        LasLabelMap.parse({"ground": [2]}, ignore=[2])
    with pytest.raises(InputError, match="`unknown`"):
        LasLabelMap.parse("ground:2", unknown="drop")


def test_unknown_code_is_an_error_naming_code_and_count(tmp_path: Path) -> None:
    path = tmp_path / "tile.las"
    codes = np.array([2] * 40 + [26] * 7 + [20] * 3, dtype=np.uint8)
    _write(path, codes=codes)
    message = _raises("not in the label map", path, read_las, path, label_map="ground:2;building:6")
    assert "26 (reserved, 7 points)" in message and "20 (reserved, 3 points)" in message
    assert "ignore:20" in message and "unknown='ignore'" in message
    ignored = read_las(path, label_map=LasLabelMap.parse("ground:2;building:6", unknown="ignore"))
    assert ignored.labels.tolist() == [0] * 40 + [-1] * 10
    added = read_las(path, label_map="ground:2;building:6;other:20,26")
    assert added.labels.tolist() == [0] * 40 + [2] * 10
    assert "classification" not in added.fields


def test_ignored_codes_read_as_minus_one(tmp_path: Path) -> None:
    path = tmp_path / "tile.las"
    written = _write(path)
    cloud = read_las(path, label_map=LasLabelMap.default())
    expected = LasLabelMap.default().table[written["classification"]]
    np.testing.assert_array_equal(cloud.labels, expected)
    assert (cloud.labels[written["classification"] == 1] == -1).all() and (cloud.labels == -1).sum() == 5


# ----------------------------------------------------------------------------- bad files
def test_truncated_las_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.las"
    _write(path, n=200)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    message = _raises("truncated", path, read_las, path)
    assert "200 points" in message
    with pytest.raises(InputError, match="truncated"):
        next(iter_las_chunks(path, 10))
    assert las_header_info(path)["point_count"] == 200  # the header alone is still readable


def test_truncated_las_at_a_point_boundary(tmp_path: Path) -> None:
    path = tmp_path / "cut.las"
    _write(path, n=100)
    record = laspy.open(str(path)).header.point_format.size
    assert record == 34  # point format 3
    path.write_bytes(path.read_bytes()[: path.stat().st_size - 10 * record])
    assert "holds only 90" in _raises("truncated", path, read_las, path)


def test_truncation_is_caught_while_reading_too(tmp_path: Path, monkeypatch) -> None:
    """Behind the size check (which sees a short file up front), reading itself notices a file that ends early."""
    import pointcoc.data.las as las_module

    monkeypatch.setattr(las_module, "_size_check", lambda path, header: None)
    path = tmp_path / "cut.las"
    _write(path, n=100)
    path.write_bytes(path.read_bytes()[: path.stat().st_size - 10 * 34])
    assert "ends after 90" in _raises("truncated", path, read_las, path)
    chunks = iter_las_chunks(path, 50)
    assert next(chunks).count == 50
    _raises("ends after 90", path, next, chunks)
    path.write_bytes(path.read_bytes()[:-7])  # mid-point
    _raises("truncated", path, read_las, path)


@needs_lazrs
def test_truncated_laz_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.laz"
    _write(path, n=500)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    _raises("truncated or corrupt", path, read_las, path)


def test_not_a_las_file_missing_file_and_empty_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.las"
    junk.write_bytes(b"not a point cloud at all " * 40)
    _raises("not a readable LAS/LAZ file", junk, read_las, junk)
    _raises("not a readable LAS/LAZ file", junk, las_header_info, junk)
    missing = tmp_path / "missing.las"
    _raises("file not found", missing, read_las, missing)
    empty = tmp_path / "empty.las"
    laspy.LasData(laspy.LasHeader(point_format=3, version="1.2")).write(str(empty))
    assert las_header_info(empty)["point_count"] == 0
    _raises("no points", empty, read_las, empty)
    with pytest.raises(InputError, match="no points"):
        list(iter_las_chunks(empty, 10))


def test_missing_laspy_is_an_import_error_saying_what_to_install(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "tile.las"
    _write(path, n=5)
    monkeypatch.setitem(sys.modules, "laspy", None)
    with pytest.raises(ImportError, match=r"pip install 'pointcoc\[las\]'"):
        read_las(path)


@needs_lazrs
def test_laz_without_lazrs_is_an_error_saying_what_to_install(tmp_path: Path, monkeypatch) -> None:
    laz, las = tmp_path / "tile.laz", tmp_path / "tile.las"
    _write(laz, n=5)
    _write(las, n=5)
    monkeypatch.setattr(laspy.LazBackend, "detect_available", staticmethod(lambda: ()))
    message = _raises("needs the lazrs package", laz, read_las, laz)
    assert "pointcoc[las]" in message
    assert read_las(las).num_points == 5  # plain LAS needs no lazrs
    _raises("needs the lazrs package", tmp_path / "out.laz", write_las_labels, las, tmp_path / "out.laz",
            np.zeros(5, dtype=np.int64))


@needs_lazrs
def test_laz_round_trip_equals_las(tmp_path: Path) -> None:
    laz, las = tmp_path / "tile.laz", tmp_path / "tile.las"
    written = _write(laz, n=300, seed=3)
    _write(las, n=300, seed=3)
    assert las_header_info(laz)["compressed"] is True and las_header_info(las)["compressed"] is False
    a, b = read_las(laz, label_map=LasLabelMap.default()), read_las(las, label_map=LasLabelMap.default())
    np.testing.assert_array_equal(a.pos, written["pos"])
    np.testing.assert_array_equal(a.pos, b.pos)
    np.testing.assert_array_equal(a.colors, b.colors)
    np.testing.assert_array_equal(a.labels, b.labels)
    for name in ("intensity", "return_number", "number_of_returns"):
        np.testing.assert_array_equal(a.fields[name], written[name])


# ----------------------------------------------------------------------------- streaming and header
@pytest.mark.parametrize("suffix", [".las", pytest.param(".laz", marks=needs_lazrs)])
def test_chunks_cover_every_point_once_in_order(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"tile{suffix}"
    _write(path, n=103)
    mapping = LasLabelMap.default()
    whole = read_las(path, label_map=mapping)
    chunks = list(iter_las_chunks(path, 10, label_map=mapping))
    assert all(isinstance(c, LasChunk) for c in chunks)
    assert [c.start for c in chunks] == list(range(0, 103, 10)) and [c.count for c in chunks] == [10] * 10 + [3]
    assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:])) and chunks[-1].stop == 103
    np.testing.assert_array_equal(np.concatenate([c.pos for c in chunks]), whole.pos)
    np.testing.assert_array_equal(np.concatenate([c.colors for c in chunks]), whole.colors)
    np.testing.assert_array_equal(np.concatenate([c.labels for c in chunks]), whole.labels)
    for name in whole.fields:
        np.testing.assert_array_equal(np.concatenate([c.fields[name] for c in chunks]), whole.fields[name])
    raw = list(iter_las_chunks(path, 1000))  # no map: the raw codes, one chunk for the whole file
    assert len(raw) == 1 and raw[0].labels is None and raw[0].fields["classification"].shape == (103,)


def test_chunks_report_unknown_codes_and_bad_arguments(tmp_path: Path) -> None:
    path = tmp_path / "tile.las"
    _write(path, codes=np.array([2] * 25 + [40] * 25, dtype=np.uint8), point_format=6, version="1.4")
    chunks = iter_las_chunks(path, 20, label_map="ground:2")
    assert next(chunks).labels.tolist() == [0] * 20
    message = _raises("points 20..39: class code 40", path, next, chunks)
    assert "15 points" in message
    with pytest.raises(InputError, match="chunk_size"):
        next(iter_las_chunks(path, 0))


def test_chunks_8_bit_colour_decision_is_checked_later(tmp_path: Path) -> None:
    path = tmp_path / "rgb.las"
    header = laspy.LasHeader(point_format=3, version="1.2")
    las = laspy.LasData(header)
    las.x = np.arange(20.0)
    las.y = las.z = np.zeros(20)
    red = np.full(20, 200, dtype=np.uint16)
    red[15] = 60000
    las.red, las.green, las.blue = red, red, red
    las.write(str(path))
    with pytest.raises(InputError, match="rgb_bits=16"):
        list(iter_las_chunks(path, 10))
    chunks = list(iter_las_chunks(path, 10, rgb_bits=16))
    assert chunks[1].colors[5].tolist() == [234, 234, 234] and chunks[0].colors[0, 0] == 0


def test_header_info_without_reading_points(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "tile.las"
    written = _write(path, vlr=True)
    monkeypatch.setattr(laspy.LasReader, "read_points", lambda *a, **k: pytest.fail("read points"))
    info = las_header_info(path)
    assert info["point_count"] == 50 and info["point_format"] == 3 and info["version"] == "1.2"
    assert info["has_rgb"] is True and info["compressed"] is False
    np.testing.assert_allclose(info["mins"], written["pos"].min(axis=0))
    np.testing.assert_allclose(info["maxs"], written["pos"].max(axis=0))
    assert info["scales"] == SCALES.tolist() and info["offsets"] == OFFSETS.tolist()
    assert "classification" in info["dimensions"] and len(info["vlrs"]) == 1
    with pytest.raises(BaseException, match="read points"):
        read_las(path)


# ----------------------------------------------------------------------------- writing labels
def _points(path: Path) -> np.ndarray:
    return laspy.read(str(path)).points.array


@pytest.mark.parametrize(("src_name", "dst_name"), [
    ("src.las", "out.las"),
    pytest.param("src.las", "out.laz", marks=needs_lazrs),
    pytest.param("src.laz", "out.las", marks=needs_lazrs),
])
def test_write_las_labels_replaces_only_the_classification(tmp_path: Path, src_name: str, dst_name: str) -> None:
    src, dst = tmp_path / src_name, tmp_path / "out" / dst_name
    written = _write(src, n=120, vlr=True)
    before = _digest(src)
    rng = np.random.default_rng(1)
    labels = rng.integers(-1, 5, 120)
    assert write_las_labels(src, dst, labels, chunk_size=32) == dst
    assert _digest(src) == before
    mapping = LasLabelMap.default()
    out = laspy.read(str(dst))
    expected = np.array([1, 2, 3, 6, 9, 10])[labels + 1]  # -1 -> 1 unassigned, class i -> its first code
    np.testing.assert_array_equal(np.asarray(out.classification), expected)
    np.testing.assert_array_equal(np.asarray(out.synthetic), written["synthetic"])  # the flags kept
    old, new = _points(src), out.points.array
    assert old.dtype == new.dtype
    for name in old.dtype.names:
        if name != "raw_classification":
            np.testing.assert_array_equal(new[name], old[name], err_msg=name)
    h_old, h_new = laspy.open(str(src)).header, out.header
    np.testing.assert_array_equal(h_new.scales, h_old.scales)
    np.testing.assert_array_equal(h_new.offsets, h_old.offsets)
    np.testing.assert_array_equal(h_new.mins, h_old.mins)
    assert h_new.point_count == 120 and h_new.point_format.id == 3 and str(h_new.version) == "1.2"
    assert (h_new.file_source_id, h_new.system_identifier) == (17, "pointcoc tests")
    np.testing.assert_array_equal(h_new.number_of_points_by_return, h_old.number_of_points_by_return)
    assert h_new.are_points_compressed == (dst.suffix == ".laz")
    kept = [v for v in h_new.vlrs if v.user_id == "pointcoc_test"]
    assert len(kept) == 1 and kept[0].record_data == b"\x01\x02crs-ish"
    np.testing.assert_array_equal(read_las(dst, label_map=mapping).labels, labels)  # reads back as written
    assert sorted(p.name for p in dst.parent.iterdir()) == [dst.name]  # no temporary file left


def test_write_las_labels_streams_from_a_callback_and_a_memmap(tmp_path: Path) -> None:
    src = tmp_path / "src.las"
    _write(src, n=75, point_format=7, version="1.4")
    mapping = LasLabelMap.parse("a:40;b:2;c:200")  # point format 7 stores codes 0..255
    calls: list[tuple[int, int]] = []

    def labels_for(start: int, count: int) -> np.ndarray:
        calls.append((start, count))
        return (np.arange(start, start + count) % 4) - 1

    write_las_labels(src, tmp_path / "cb.las", labels_for, label_map=mapping, chunk_size=30)
    assert calls == [(0, 30), (30, 30), (60, 15)]
    expected = np.array([1, 40, 2, 200])[np.arange(75) % 4]
    np.testing.assert_array_equal(np.asarray(laspy.read(str(tmp_path / "cb.las")).classification), expected)
    memmap = np.lib.format.open_memmap(tmp_path / "labels.npy", mode="w+", dtype=np.int32, shape=(75,))
    memmap[:] = (np.arange(75) % 4) - 1
    memmap.flush()
    write_las_labels(src, tmp_path / "mm.las", np.load(tmp_path / "labels.npy", mmap_mode="r"), label_map=mapping)
    assert _digest(tmp_path / "mm.las") == _digest(tmp_path / "cb.las")


def test_write_las_labels_refuses_the_source_and_bad_labels(tmp_path: Path) -> None:
    src = tmp_path / "src.las"
    _write(src, n=20)
    before = _digest(src)
    labels = np.zeros(20, dtype=np.int64)
    _raises("is the source file", src, write_las_labels, src, src, labels)
    same = tmp_path / "sub" / ".." / "src.las"
    (tmp_path / "sub").mkdir()
    _raises("is the source file", same, write_las_labels, src, same, labels)
    link = tmp_path / "link.las"
    os.link(src, link)
    _raises("is the source file", link, write_las_labels, src, link, labels)
    dst = tmp_path / "out.las"
    _raises("20 points", dst, write_las_labels, src, dst, np.zeros(19, dtype=np.int64))
    _raises("holds 5 at index 3", dst, write_las_labels, src, dst, np.array([0, 1, 2, 5] + [0] * 16))
    _raises("ending in .las or .laz", tmp_path / "out.ply", write_las_labels, src, tmp_path / "out.ply", labels)
    _raises("stores codes 0..31", dst, write_las_labels, src, dst, labels, label_map="a:40;b:2")
    assert not dst.exists() and _digest(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.las", "src.las", "sub"]


def test_write_las_labels_failure_mid_write_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    src, dst = tmp_path / "src.las", tmp_path / "out.las"
    _write(src, n=100)
    real = laspy.LasWriter.write_points
    calls = []

    def failing(self, points) -> None:
        calls.append(len(points))
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        real(self, points)

    monkeypatch.setattr(laspy.LasWriter, "write_points", failing)
    with pytest.raises(OSError, match="simulated"):
        write_las_labels(src, dst, np.zeros(100, dtype=np.int64), chunk_size=40)
    assert calls == [40, 40] and not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.las"]  # no partial or temporary file
    monkeypatch.setattr(laspy.LasWriter, "write_points", real)
    write_las_labels(src, dst, np.ones(100, dtype=np.int64))
    previous = _digest(dst)
    monkeypatch.setattr(laspy.LasWriter, "write_points", failing)
    calls.clear()
    with pytest.raises(OSError, match="simulated"):
        write_las_labels(src, dst, np.zeros(100, dtype=np.int64), chunk_size=40)
    assert _digest(dst) == previous and sorted(p.name for p in tmp_path.iterdir()) == ["out.las", "src.las"]
    assert (np.asarray(laspy.read(str(dst)).classification) == 3).all()  # vegetation's first code


def test_write_las_labels_keeps_las_1_4_evlrs(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.las", tmp_path / "out.las"
    from laspy.vlrs.vlrlist import VLRList

    header = laspy.LasHeader(point_format=6, version="1.4")
    las = laspy.LasData(header)
    las.x, las.y, las.z = np.arange(10.0), np.zeros(10), np.ones(10)
    las.classification = np.full(10, 2, dtype=np.uint8)
    las.evlrs = VLRList([laspy.VLR(user_id="pointcoc_test", record_id=7, description="evlr",
                                   record_data=b"extended")])
    las.write(str(src))
    assert las_header_info(src)["evlrs"] == 1
    write_las_labels(src, dst, np.full(10, 2), label_map="ground:2;vegetation:3;building:6")
    out = laspy.read(str(dst))
    assert np.asarray(out.classification).tolist() == [6] * 10
    assert [e.record_data for e in out.evlrs] == [b"extended"]
