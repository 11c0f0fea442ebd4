"""Part-segmentation figures: panel layout, one colour per part id in every row, the error row, bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from pointcoc.data.files import label_colors
from pointcoc.errors import InputError
from pointcoc.visualize import PANEL_INCHES, _part_colors, draw_part_segmentation

PANEL = int(PANEL_INCHES * 100)  # pixels per panel at the figure's fixed 100 dpi
N = 120


@pytest.fixture
def shape() -> tuple[np.ndarray, np.ndarray]:
    """A sphere split into 4 parts by octant-ish regions: positions [N, 3] and part ids [N]."""
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(N, 3))
    pos /= np.linalg.norm(pos, axis=1, keepdims=True)
    return pos, (pos[:, 0] > 0).astype(np.int64) + 2 * (pos[:, 1] > 0)


def _png(path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB")).astype(int)


def _has(png: np.ndarray, rgb: np.ndarray, tol: int = 2) -> int:
    """How many pixels of ``png`` are within ``tol`` of the uint8 colour ``rgb``."""
    return int((np.abs(png - np.asarray(rgb, dtype=int)) <= tol).all(-1).sum())


@pytest.mark.parametrize("views, with_target, rows", [(((20, -60),), False, 1), (((20, -60), (20, 30)), False, 1),
                                                      (((20, -60), (20, 30), (80, -90)), True, 3)])
def test_size_follows_views_and_rows(tmp_path, shape, views, with_target, rows) -> None:
    pos, parts = shape
    out = draw_part_segmentation(pos, parts, parts if with_target else None, tmp_path / "sub" / "f.png", views=views)
    assert out == tmp_path / "sub" / "f.png"
    with Image.open(out) as img:
        assert img.size == (len(views) * PANEL, rows * PANEL)


def test_title_and_legend_add_height(tmp_path, shape) -> None:
    pos, parts = shape
    out = draw_part_segmentation(pos, parts, parts, tmp_path / "f.png", views=((20, -60),), title="Chair",
                                 names=["back", "seat", "leg", "arm", "unused"])
    width, height = Image.open(out).size
    assert width == PANEL and height == 3 * PANEL + 50 + round(100 * (0.22 * 1 + 0.1))  # 4 entries, one line


def test_same_part_same_colour_in_prediction_and_ground_truth(tmp_path, shape) -> None:
    pos, _ = shape
    pred, target = np.full(N, 3), np.full(N, 9)  # one part per row: each row's points have one colour
    png = _png(draw_part_segmentation(pos, pred, target, tmp_path / "f.png", views=((20, -60),), point_size=60))
    top, middle, bottom = png[:PANEL], png[PANEL:2 * PANEL], png[2 * PANEL:]
    three, nine = label_colors(np.array([3, 9]))  # the colours of the PLY files write_labeled_ply writes
    assert _has(top, three) > 500 and _has(top, nine) == 0
    assert _has(middle, nine) > 500 and _has(middle, three) == 0
    assert _has(bottom, [230, 0, 0]) > 500  # every point is wrong: red
    # now the ground truth is part 3 too: the same colour in both rows, no wrong point
    png = _png(draw_part_segmentation(pos, pred, pred, tmp_path / "g.png", views=((20, -60),), point_size=60))
    assert _has(png[:PANEL], three) > 500 and _has(png[PANEL:2 * PANEL], three) > 500
    assert _has(png[2 * PANEL:], [230, 0, 0], tol=40) == 0


def test_part_colors_match_label_colors() -> None:
    ids = np.concatenate([[-1], np.arange(60), [250]])
    np.testing.assert_array_equal(np.round(_part_colors(ids) * 255).astype(np.uint8), label_colors(ids))


def test_different_predictions_draw_different_images(tmp_path, shape) -> None:
    pos, parts = shape
    a = _png(draw_part_segmentation(pos, parts, None, tmp_path / "a.png", views=((20, -60),)))
    b = _png(draw_part_segmentation(pos, (parts + 1) % 4, None, tmp_path / "b.png", views=((20, -60),)))
    same = _png(draw_part_segmentation(torch.from_numpy(pos), torch.from_numpy(parts), None, tmp_path / "c.png",
                                       views=((20, -60),)))
    assert a.shape == b.shape and not np.array_equal(a, b)
    np.testing.assert_array_equal(a, same)  # tensors draw as the same arrays do


def test_one_wrong_point_shows_in_the_error_row(tmp_path, shape) -> None:
    pos, parts = shape
    pred = parts.copy()
    pred[5] = (parts[5] + 1) % 4
    png = _png(draw_part_segmentation(pos, pred, parts, tmp_path / "f.png", views=((20, -60), (80, -90)),
                                      point_size=20))
    assert _has(png[2 * PANEL:, :PANEL], [230, 0, 0]) > 0 and _has(png[2 * PANEL:, PANEL:], [230, 0, 0]) > 0


def test_max_points_draws_a_subset(tmp_path, shape, caplog) -> None:
    pos, parts = shape
    with caplog.at_level(logging.INFO, logger="pointcoc.visualize"):
        draw_part_segmentation(pos, parts, parts, tmp_path / "f.png", views=((20, -60),), max_points=30)
    assert "drawing 30 of 120 points" in caplog.text


def test_bad_input(tmp_path, shape) -> None:
    pos, parts = shape
    png = tmp_path / "f.png"
    cases = [
        (dict(pred=parts[:-1]), r"`pred` must be \[N\] = \[120\] .*got shape \(119,\)"),
        (dict(target=parts[:10]), r"`target` must be \[N\] = \[120\] .*got shape \(10,\)"),
        (dict(pos=pos[:, :2]), r"`pos` must be a numeric \[N, 3\]"),
        (dict(pred=parts.astype(np.float32)), r"`pred` must hold integer part ids"),
        (dict(target=parts - 2), r"`target` holds -2"),
        (dict(names=["a", "b"]), r"`names` has 2 entries but part id\(s\) \[2, 3\] are present"),
        (dict(names="abcd"), r"`names` must be a sequence of part names"),
        (dict(views=()), r"`views` must be a non-empty list"),
        (dict(point_size=0), r"`point_size` must be a number > 0"),
        (dict(path=tmp_path / "f.jpg"), r"`path` must be a .png file"),
    ]
    bad_pos = pos.copy()
    bad_pos[3, 1] = np.nan
    cases.append((dict(pos=bad_pos), r"NaN or infinite coordinates \(first at index 3\)"))
    for kwargs, match in cases:
        args = {"pos": pos, "pred": parts, "target": parts, "path": png, **kwargs}
        with pytest.raises(InputError, match=match):
            draw_part_segmentation(args.pop("pos"), args.pop("pred"), args.pop("target"), args.pop("path"), **args)
    assert not png.exists() and not (tmp_path / "f.jpg").exists()


# ----------------------------------------------------------------------------- clusters of the segmenter
def test_segmenter_assignments_cover_encoder_and_decoder_levels() -> None:
    from pointcoc.models import create_model
    from pointcoc.visualize import mixer_name, point_assignments

    torch.manual_seed(0)
    model = create_model("pointcoc_seg_nano", num_categories=3)
    pos, normals = torch.randn(256, 3), torch.nn.functional.normalize(torch.randn(256, 3), dim=1)
    # nano: 2 encoder stages (64, 16 points), then the decoder level with blocks (on stage 0's 64 points)
    assert [mixer_name(model, s, 0) for s in range(3)] == ["stages.0.0.token_mixer", "stages.1.0.token_mixer",
                                                           "up_blocks.1.0.token_mixer"]
    with pytest.raises(InputError, match="stage"):
        mixer_name(model, 3, 0)
    sizes = {}
    for stage in range(3):
        where, clusters = point_assignments(model, pos, stage, 0, 0, normals, category=1)
        sizes[stage] = where.shape[0]
        assert clusters.shape == (where.shape[0],) and clusters.min() >= 0
        # every drawn point is one of the input points
        assert (where[:, None] - pos[None]).abs().sum(-1).min(dim=1).values.max() == 0
    assert sizes == {0: 64, 1: 16, 2: 64}
    with pytest.raises(InputError, match="needs `category`"):
        point_assignments(model, pos, 0, 0, 0, normals)


def test_visualize_clusters_script_on_a_segmenter(tmp_path) -> None:
    from scripts_loader import load_script

    rng = np.random.default_rng(0)
    rows = np.c_[rng.normal(size=(300, 3)), rng.normal(size=(300, 3))]
    np.save(tmp_path / "shape.npy", rows)
    script = load_script("visualize_clusters")
    out = script.main(["--model", "pointcoc_seg_nano", "--points", str(tmp_path / "shape.npy"), "--category", "Mug",
                       "--stage", "2", "--output", str(tmp_path / "seg.png")])
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 0
    with pytest.raises(SystemExit):
        load_script("visualize_clusters").main(["--model", "pointcoc_seg_nano", "--points",
                                                str(tmp_path / "shape.npy"), "--category", "Spoon"])
