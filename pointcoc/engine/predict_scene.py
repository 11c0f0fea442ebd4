"""``scripts/predict.py`` for scene segmenters: every point of a scene file labelled, streamed when it is large.

Inputs: ``.ply``, ``.npy``/``.npz``, ``.txt``/``.xyz``/``.pts`` (:func:`pointcoc.data.files.read_point_file`)
and LiDAR ``.las``/``.laz`` (:mod:`pointcoc.data.las`). The scene is predicted in tiles
(:mod:`pointcoc.engine.scene_infer`) with the settings of the training run (voxel size, features).

Streaming (``--stream on``, or ``auto`` for ``.las``/``.laz``/``.npy`` files above ``--stream-above`` points):
one pass reads the file in chunks and bins the points by tile into spill files under a temporary folder
(a ``.npy`` gets a first pass for its bounds; a LAS header has them); the tiles are then predicted one at a
time, their labels written into a memory-mapped ``OUT.npy``; a last pass writes the labelled points chunk by
chunk and keeps the figure's points (a LAS copy takes one more, for the figure). Memory depends on the chunk
and tile sizes, not on the file.

Outputs (``--output OUT``): ``OUT.npy`` (int32 labels), ``OUT.png`` (top view and a 3D view, beside the
file's own labels when it has some), and the labelled points: for LAS/LAZ a copy of the input with the
classification replaced (``OUT.las``/``OUT.laz``; the input is never modified), otherwise ``OUT.ply`` with a
``label`` property and label colours.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from tqdm import tqdm

from pointcoc.data.files import label_colors, write_atomic
from pointcoc.data.scenes import load_scene
from pointcoc.engine.scene_infer import ArraySource, SpilledSource, TileConfig, predict_tiles
from pointcoc.errors import InputError

__all__ = ["segment_scene_file", "LAS_SUFFIXES", "STREAM_SUFFIXES"]

log = logging.getLogger("pointcoc.predict")

LAS_SUFFIXES = (".las", ".laz")
#: the formats that can be read in chunks
STREAM_SUFFIXES = (".las", ".laz", ".npy")
PREVIEW_POINTS = 200_000


def _npy_layout(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` of a ``.npy`` file, from its header only."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            offset = fh.tell()
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable .npy file ({err})") from None
    if fortran:
        raise InputError(f"{path}: a Fortran-ordered array cannot be streamed by rows; save it C-ordered "
                         "(np.ascontiguousarray) or use --stream off")
    return shape, dtype, offset


def _npy_columns(path: Path, shape: tuple[int, ...], dtype: np.dtype, columns: str | None
                 ) -> tuple[list[int], list[int] | None]:
    """x, y, z and (optional) r, g, b column indices of a 2-D ``.npy`` read in chunks."""
    if len(shape) != 2 or dtype.kind not in "fiu":
        raise InputError(f"{path}: streaming reads a numeric [N, C] array, got {dtype} {tuple(shape)}; "
                         "use --stream off for structured arrays")
    if columns is None:
        if shape[1] != 3:
            raise InputError(f"{path}: {shape[1]} columns; name them with --columns (e.g. 'x,y,z,r,g,b,_') to "
                             "stream it")
        return [0, 1, 2], None
    names = [c.strip().lower() for c in columns.split(",")]
    if len(names) != shape[1]:
        raise InputError(f"{path}: --columns names {len(names)} columns, the array has {shape[1]}")
    try:
        xyz = [names.index(a) for a in ("x", "y", "z")]
    except ValueError:
        raise InputError(f"{path}: --columns must name x, y and z, got {columns!r}") from None
    rgb = [names.index(a) for a in ("r", "g", "b")] if all(a in names for a in ("r", "g", "b")) else None
    return xyz, rgb


class _Scene:
    """A scene file seen through chunks: ``count``, ``bounds [2, 3]``, ``has_color``, ``chunks()`` yielding
    ``(start, coord [n, 3] float64, color [n, 3] uint8 or None, labels [n] or None)``."""

    def __init__(self, path: Path, chunk_size: int, columns: str | None, label_map: Any) -> None:
        self.path, self.chunk_size, self.label_map = path, chunk_size, label_map
        suffix = path.suffix.lower()
        self.is_las = suffix in LAS_SUFFIXES
        if self.is_las:
            from pointcoc.data.las import las_header_info

            info = las_header_info(path)
            self.count, self.has_color = info["point_count"], info["has_rgb"]
            self.bounds = np.array([info["mins"], info["maxs"]], dtype=np.float64)
        else:
            self.shape, self.dtype, self.offset = _npy_layout(path)
            self.xyz, self.rgb = _npy_columns(path, self.shape, self.dtype, columns)
            self.count, self.has_color = int(self.shape[0]), self.rgb is not None
            self.color_scale = 1.0
            lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
            high = 0.0
            for _, coord, color, _ in self.chunks(raw_colors=True):
                lo, hi = np.minimum(lo, coord.min(0)), np.maximum(hi, coord.max(0))
                if color is not None and color.size:
                    high = max(high, float(color.max()))
            self.bounds = np.stack([lo, hi])
            # as read_point_file: floats in 0..1 are scaled by 255, integers above 255 are 16-bit colours
            if self.has_color and self.dtype.kind == "f" and high <= 1.0:
                self.color_scale = 255.0
            elif self.has_color and self.dtype.kind in "iu" and high > 255:
                self.color_scale = 255.0 / 65535.0
        if self.count == 0:
            raise InputError(f"{path}: no points")

    def chunks(self, raw_colors: bool = False) -> Iterator[tuple[int, np.ndarray, np.ndarray | None,
                                                                  np.ndarray | None]]:
        if self.is_las:
            from pointcoc.data.las import iter_las_chunks

            feats = ("rgb",) if self.has_color else ()
            for c in iter_las_chunks(self.path, self.chunk_size, features=feats, label_map=self.label_map):
                yield c.start, c.pos, c.colors, c.labels
            return
        cols = self.shape[1]
        for start in range(0, self.count, self.chunk_size):
            n = min(self.chunk_size, self.count - start)
            with open(self.path, "rb") as fh:  # plain reads, not a memory map: the pages do not stay resident
                fh.seek(self.offset + start * cols * self.dtype.itemsize)
                block = np.fromfile(fh, dtype=self.dtype, count=n * cols)
            if block.size != n * cols:
                raise InputError(f"{self.path}: ends at row {start + block.size // cols}, its header says {self.count} "
                                 "rows (truncated); re-save the array")
            block = block.reshape(n, cols)
            coord = block[:, self.xyz].astype(np.float64)
            if not np.isfinite(coord).all():
                row = start + int(np.argmax(~np.isfinite(coord).all(1)))
                raise InputError(f"{self.path}: row {row} has a NaN or infinite coordinate")
            color = None if self.rgb is None else block[:, self.rgb]
            if color is not None and not raw_colors:
                color = np.clip(np.round(color * self.color_scale), 0, 255).astype(np.uint8)
            yield start, coord, color, None


def _point_count(path: Path) -> int:
    """The number of points of a ``.las``/``.laz`` (its header) or ``.npy`` (its first dimension) file, without
    reading the points."""
    if path.suffix.lower() in LAS_SUFFIXES:
        from pointcoc.data.las import las_header_info

        return int(las_header_info(path)["point_count"])
    shape = _npy_layout(path)[0]
    return int(shape[0]) if shape else 0


def _write_ply_stream(path: Path, count: int, large: bool,
                      rows: Iterator[tuple[np.ndarray, np.ndarray]]) -> None:
    """A binary little-endian PLY of ``count`` vertices (``x y z`` float32, or float64 when ``large``, ``red green
    blue`` uchar, ``label`` int32) from ``(coord [n, 3], labels [n])`` chunks, atomically; the header is the one
    :func:`pointcoc.data.files.write_labeled_ply` writes, without confidences."""
    ftype = "double" if large else "float"
    dtype = np.dtype([("x", "<f8" if large else "<f4"), ("y", "<f8" if large else "<f4"),
                      ("z", "<f8" if large else "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
                      ("label", "<i4")])
    header = ("ply\nformat binary_little_endian 1.0\ncomment written by pointcoc\n"
              f"element vertex {count}\nproperty {ftype} x\nproperty {ftype} y\nproperty {ftype} z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty int label\nend_header\n")

    def write(fh: BinaryIO) -> None:
        fh.write(header.encode("ascii"))
        for coord, labels in rows:
            table = np.empty(len(coord), dtype=dtype)
            for i, a in enumerate("xyz"):
                table[a] = coord[:, i]
            rgb = label_colors(labels)
            for i, a in enumerate(("red", "green", "blue")):
                table[a] = rgb[:, i]
            table["label"] = labels
            table.tofile(fh)

    write_atomic(path, write)


def _bar(total: int, desc: str) -> tuple[Any, Callable[[float], None]]:
    bar = tqdm(total=total, desc=desc, unit="%", disable=not os.isatty(2), leave=False)

    def update(fraction: float) -> None:
        bar.n = int(round(fraction * total))
        bar.refresh()

    return bar, update


def _outputs(path: Path, out: Path | None, is_las: bool) -> dict[str, Path]:
    stem = (out or path.with_name(path.stem + "_pred")).with_suffix("")
    points = stem.with_suffix(path.suffix if is_las else ".ply")
    outs = {"points": points, "labels": stem.with_suffix(".npy"), "figure": stem.with_suffix(".png")}
    for p in outs.values():
        if p.resolve() == path.resolve():
            raise InputError(f"--output {out} would overwrite the input {path}; choose another --output")
    return outs


def segment_scene_file(model: Any, path: Path, out: Path | None, tiles: TileConfig, class_names: list[str], *,
                       device: Any = "cpu", stream: str = "auto", stream_above: int = 5_000_000,
                       chunk_size: int = 1_000_000, columns: str | None = None, label_map: Any = None,
                       title: str = "") -> dict[str, Any]:
    """Label every point of the scene file ``path`` and write the outputs (see the module docstring).

    Returns what was predicted and written: ``points``, ``streamed``, per-class ``counts``, ``accuracy`` (when
    the file has labels and was read in memory) and ``written``.
    """
    from pointcoc.visualize import draw_part_segmentation

    suffix = path.suffix.lower()
    is_las = suffix in LAS_SUFFIXES
    outs = _outputs(path, out, is_las)
    if stream not in ("auto", "on", "off"):
        raise InputError(f"--stream must be auto, on or off, got {stream!r}")
    if stream == "on" and suffix not in STREAM_SUFFIXES:
        raise InputError(f"--stream on reads {', '.join(STREAM_SUFFIXES)} files in chunks; {path} is {suffix} (use "
                         "--stream off, or convert it to .npy)")
    if label_map is not None:  # prediction does not need the file's labels: codes outside the map are not errors
        from pointcoc.data.las import LasLabelMap

        label_map = LasLabelMap.parse(label_map, unknown="ignore")
    streamed = suffix in STREAM_SUFFIXES and (stream == "on" or (stream == "auto"
                                                                 and _point_count(path) > stream_above))
    scene = _Scene(path, chunk_size, columns, label_map) if streamed else None
    if scene is not None:
        if "color" in tiles.features and not scene.has_color:
            raise InputError(f"{path}: the model reads colours and the file has none (no RGB in the LAS point format, "
                             "or no r, g, b in --columns); give a file with colours")
        if "normal" in tiles.features:
            raise InputError(f"{path}: the model reads normals, which streaming does not carry; use --stream off")
    if streamed:  # freed blocks go back to the kernel at once: resident memory follows what one tile holds
        from pointcoc.engine.runtime import release_freed_memory

        try:
            release_freed_memory()
        except RuntimeError:  # this process already keeps freed memory (e.g. it trained first): leave it so
            log.debug("the CPU allocator is already set in this process; freed memory is not released early")
    C = len(class_names)
    outs["labels"].parent.mkdir(parents=True, exist_ok=True)
    tmp_labels = outs["labels"].with_name(f".{outs['labels'].name}.tmp.npy")
    bar, progress = _bar(100, f"predict {path.name}")
    try:
        if streamed:
            assert scene is not None
            labels = np.lib.format.open_memmap(tmp_labels, mode="w+", dtype=np.int32, shape=(scene.count,))
            work = Path(tempfile.mkdtemp(prefix=".pointcoc-tiles-", dir=outs["labels"].parent))
            try:
                source = SpilledSource(((s, c, col) for s, c, col, _ in scene.chunks()), scene.bounds, scene.count,
                                       tiles, work, scene.has_color and "color" in tiles.features)
                done = 0
                for index, probs in predict_tiles(model, source, tiles, device, progress):
                    labels[index] = probs.argmax(1)
                    done += len(index)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            if done != scene.count:
                raise RuntimeError(f"{path}: {done} of {scene.count} points were predicted (a tiling bug)")
            labels.flush()
            count, truth_all = scene.count, None
        else:
            cloud = load_scene(path, label_map=label_map, columns=columns)
            source_mem = ArraySource(cloud.coord, cloud.color if "color" in tiles.features else None, cloud.normal)
            labels = np.zeros(cloud.num_points, dtype=np.int32)
            for index, probs in predict_tiles(model, source_mem, tiles, device, progress):
                labels[index] = probs.argmax(1)
            np.save(tmp_labels, labels)
            count, truth_all = cloud.num_points, cloud.segment
    except BaseException:
        tmp_labels.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    tmp_labels.replace(outs["labels"])
    labels = np.load(outs["labels"], mmap_mode="r")
    step = max(1, count // PREVIEW_POINTS)  # the figure shows every step-th point
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []

    def labelled_chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The streamed file's chunks with their labels, keeping the preview's points on the way (copies: a strided
        view would keep each whole chunk alive)."""
        assert scene is not None
        for s0, c, _, t in scene.chunks():
            lab = np.asarray(labels[s0:s0 + len(c)])
            parts.append((c[::step].copy(), lab[::step].copy(), None if t is None else t[::step].copy()))
            yield c, lab

    # the labelled points
    if is_las:
        from pointcoc.data.las import write_las_labels

        las_map = label_map if label_map is not None else {name: [i] for i, name in enumerate(class_names)}
        write_las_labels(path, outs["points"], labels, label_map=las_map, chunk_size=chunk_size)
        if streamed:  # write_las_labels reads the file on its own: one more pass for the preview
            for _ in labelled_chunks():
                pass
    elif streamed:
        assert scene is not None
        _write_ply_stream(outs["points"], count, bool(np.abs(scene.bounds).max() > 1e4), labelled_chunks())
    else:
        from pointcoc.data.files import write_labeled_ply

        write_labeled_ply(outs["points"], cloud.coord, np.asarray(labels))
    if streamed:
        pos = np.concatenate([p for p, _, _ in parts])
        pred = np.concatenate([q for _, q, _ in parts])
        truth = None if any(t is None for _, _, t in parts) else np.concatenate([t for _, _, t in parts])
    else:
        pos, pred = cloud.coord[::step], np.asarray(labels[::step])
        truth = None if truth_all is None else truth_all[::step]
    if truth is not None and truth.size and truth.max() >= C:
        log.warning("%s: its labels go up to %d but the model has %d classes; not scored", path, truth.max(), C)
        truth = None
    draw_part_segmentation(pos, pred, truth, outs["figure"], views=((90.0, -90.0), (35.0, -60.0)),
                           vertical_axis="z", names=list(class_names), title=title or path.name, point_size=0.5)
    result: dict[str, Any] = {"points": count, "streamed": streamed,
                              "counts": {class_names[i]: int(n) for i, n in
                                         enumerate(np.bincount(np.asarray(labels), minlength=C)) if n},
                              "written": [str(outs["points"]), str(outs["labels"]), str(outs["figure"])]}
    if truth_all is not None and (truth_all >= 0).any() and truth_all.max() < C:
        valid = truth_all >= 0
        result["accuracy"] = 100.0 * float((np.asarray(labels)[valid] == truth_all[valid]).mean())
    return result

