"""Draw the cluster assignments of a context-cluster model: over an image, or on a 3D point cloud.

The assignments come from the model itself, through
:func:`pointcoc.blocks.record_assignments` (no clustering is re-implemented here):

* :func:`image_assignment_map` - a :class:`~pointcoc.models.CoC` image model, one stage/block/head:
  the cluster id of every position of that stage's map ``[h, w]``;
* :func:`point_assignments` - a :class:`~pointcoc.models.PointCoC` point model: the positions of
  that stage's points ``[n, 3]`` and their cluster ids ``[n]``;
* :func:`draw_image_clusters` - the image beside the image tinted by cluster, with cluster
  boundaries (the paper's figure), as a PNG;
* :func:`draw_point_clusters` - a 3D scatter coloured by cluster, one panel per view, as a PNG;
* :func:`draw_part_segmentation` - a cloud coloured by predicted part, beside the ground truth and
  the wrong points, one column per view, as a PNG (not tied to a model: it takes the part ids).

Cluster ids are ``region * M + centre`` (see :class:`~pointcoc.blocks.ClusterAssignment`).
Figures are drawn on matplotlib ``Figure`` objects with the Agg canvas (no pyplot, no display,
no global backend change), at a fixed size: an image figure is ``2 * PANEL_INCHES`` wide, a point
figure ``len(views) * PANEL_INCHES``, at ``dpi`` pixels per inch.

PointMLP-CoC is not supported: its context clusters have one centre per kNN group, so every
point of a group is in the same (only) cluster and there is nothing to draw.
"""

from __future__ import annotations

import colorsys
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor, nn

from pointcoc.blocks import ClusterAssignment, ContextCluster, record_assignments
from pointcoc.errors import InputError
from pointcoc.models import CoC, PointCoC, PointCoCSeg, PointMLP

__all__ = ["image_assignment_map", "point_assignments", "draw_image_clusters", "draw_point_clusters",
           "cluster_colors", "upsample_nearest", "cluster_boundaries", "mixer_name", "PANEL_INCHES",
           "DEFAULT_VIEWS", "draw_part_segmentation", "PART_VIEWS"]

log = logging.getLogger(__name__)

#: Width of one panel of a figure, in inches (an image figure has two panels, a point figure one per view).
PANEL_INCHES = 4.0
#: ``(elevation, azimuth)`` in degrees of the default point-cloud views.
DEFAULT_VIEWS: tuple[tuple[float, float], ...] = ((20, -60), (20, 30), (80, 0))

_TITLE_INCHES = 0.5  # extra figure height for a suptitle


# ----------------------------------------------------------------------------- which mixer
def _check_index(value: int, count: int, name: str, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count:
        raise InputError(f"`{name}` must be an int in [0, {count - 1}] ({where} has {count}), got {value!r}")


def mixer_name(model: nn.Module, stage: int, block: int) -> str:
    """The module name of the :class:`ContextCluster` of ``stage``/``block``, as :func:`record_assignments` reports it.

    ``network.{model.stage_index[stage]}.{block}.token_mixer`` for a :class:`CoC`,
    ``stages.{stage}.{block}.token_mixer`` for a :class:`PointCoC`; for a :class:`PointCoCSeg` the encoder's
    stages come first, then the decoder levels that have blocks, deepest first (``up_blocks.{level}``).

    Raises:
        ValueError: ``stage`` or ``block`` out of range (the message gives the valid ranges), or a
            model without multi-centre context clusters (PointMLP, PointMLP-CoC, other modules).
    """
    if isinstance(model, CoC):
        stages = [model.network[i] for i in model.stage_index]
        prefix = lambda s: f"network.{model.stage_index[s]}"  # noqa: E731
    elif isinstance(model, PointCoC):
        stages = list(model.stages)
        prefix = lambda s: f"stages.{s}"  # noqa: E731
    elif isinstance(model, PointCoCSeg):
        names = [f"stages.{i}" for i in range(len(model.stages))] + [
            f"up_blocks.{i}" for i in reversed(range(len(model.up_blocks))) if len(model.up_blocks[i])]
        stages = [model.get_submodule(n) for n in names]
        prefix = names.__getitem__
    elif isinstance(model, PointMLP):
        if any(isinstance(m, ContextCluster) for m in model.modules()):
            raise InputError("PointMLP-CoC's context clusters have one centre per kNN group (every point of a "
                             "group joins the group's only cluster), so there are no clusters to draw; use a "
                             "3D context-cluster model (pointcoc_nano, pointcoc_tiny, pointcoc_small)")
        raise InputError("PointMLP has no context clusters; use a 3D context-cluster model "
                         "(pointcoc_nano, pointcoc_tiny, pointcoc_small)")
    else:
        raise InputError(f"cluster drawing supports CoC image models and PointCoC / PointCoCSeg point models, got a "
                         f"{type(model).__name__}")
    _check_index(stage, len(stages), "stage", f"this {type(model).__name__}")
    if len(stages[stage]) == 0:
        raise InputError(f"stage {stage} of this {type(model).__name__} has no blocks; choose another `stage`")
    _check_index(block, len(stages[stage]), "block", f"stage {stage}")
    return f"{prefix(stage)}.{block}.token_mixer"


def _record(model: nn.Module, name: str, head: int, *inputs: Tensor | None) -> ClusterAssignment:
    """Run ``model(*inputs)`` in eval mode without gradients and return the assignment ``name`` recorded.

    The inputs (``None`` passes through) are moved to the model's device and dtype."""
    mixer = model.get_submodule(name)
    _check_index(head, mixer.num_heads, "head", f"block {name!r}")
    param = next(model.parameters())
    inputs = tuple(None if t is None else t.to(param.device, param.dtype) for t in inputs)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), record_assignments(model) as records:
            model(*inputs)
    finally:
        model.train(was_training)
    found = [a for n, a in records if n == name]
    if len(found) != 1:  # a mixer that did not run once (e.g. a pruned model) is a bug worth naming
        raise ValueError(f"the forward pass recorded {len(found)} assignments for {name!r}, expected 1 "
                         f"(recorded: {[n for n, _ in records]})")
    return found[0]


# ----------------------------------------------------------------------------- assignments
def image_assignment_map(model: nn.Module, image: Tensor, stage: int = 0, block: int = 0, head: int = 0) -> Tensor:
    """The cluster id of every position of a stage's map, for one image, as the model assigns it.

    The model runs once in eval mode without gradients (its mode is restored); the map is the
    :class:`~pointcoc.blocks.ClusterAssignment` that block's mixer records, for ``head``.

    Args:
        model: a :class:`~pointcoc.models.CoC` image model.
        image: ``[3, H, W]`` (``[in_chans, H, W]``) normalised like the model's training images.
        stage: stage index in ``[0, len(model.stage_index))``.
        block: block index within the stage.
        head: context-cluster head.

    Returns:
        ``[h, w]`` int64 cluster ids in ``[0, R * M)`` (``h, w``: the stage's map size, e.g.
        ``H / 4`` for stage 0).

    Raises:
        ValueError: a bad image shape, or ``stage``/``block``/``head`` out of range (the valid range
            is in the message); the model's own errors (e.g. a size its regions do not divide).
    """
    if isinstance(model, PointCoC):
        raise ValueError("image_assignment_map needs a CoC image model, got a PointCoC point model; "
                         "use point_assignments")
    name = mixer_name(model, stage, block)  # also the explanatory error for models without clusters
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != model.in_chans:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"`image` must be a tensor [{model.in_chans}, H, W] (one normalised image), got {shape}")
    return _record(model, name, head, image.unsqueeze(0)).clusters[0, head].long().cpu()


def point_assignments(model: nn.Module, pos: Tensor, stage: int = 0, block: int = 0, head: int = 0,
                      x: Tensor | None = None, category: int | None = None) -> tuple[Tensor, Tensor]:
    """The points of a stage and the cluster each joined, for one cloud, as the model assigns them.

    The model runs once in eval mode without gradients (its mode is restored).

    Args:
        model: a :class:`~pointcoc.models.PointCoC` point model or a :class:`~pointcoc.models.PointCoCSeg`
            segmenter (its decoder levels follow the encoder's stages, see :func:`mixer_name`).
        pos: ``[N, 3]`` (``[N, pos_dim]``) one cloud's coordinates.
        stage, block: which stage and block (stage ``s`` runs on the cloud after ``s + 1`` reductions).
        head: context-cluster head.
        x: ``[N, in_chans]`` extra per-point features, for a model built with ``in_chans > 0``.
        category: a part segmenter's category index (required when it has categories).

    Returns:
        ``positions [n, 3]`` of the stage's points (a subset of ``pos``) and their cluster ids
        ``[n]`` (int64, in ``[0, R * M)``).

    Raises:
        ValueError: a bad ``pos`` shape, ``stage``/``block``/``head`` out of range, PointMLP /
            PointMLP-CoC (no multi-centre clusters), or a cloud too small for the model.
    """
    if isinstance(model, CoC):
        raise ValueError("point_assignments needs a PointCoC point model, got a CoC image model; "
                         "use image_assignment_map")
    name = mixer_name(model, stage, block)
    if not isinstance(pos, Tensor) or pos.dim() != 2:
        shape = tuple(pos.shape) if isinstance(pos, Tensor) else type(pos).__name__
        raise ValueError(f"`pos` must be a tensor [N, {model.pos_dim}] (one cloud), got {shape}")
    if isinstance(model, PointCoCSeg) and model.num_categories:
        if category is None or not 0 <= int(category) < model.num_categories:
            raise InputError(f"this part segmenter needs `category` in [0, {model.num_categories - 1}], got "
                             f"{category!r}")
        one_hot = torch.nn.functional.one_hot(torch.tensor([int(category)]), model.num_categories).float()
        record = _record(model, name, head, pos, x, one_hot)
    else:
        record = _record(model, name, head, pos, x)
    assert record.pos is not None  # PointCoC passes positions to every mixer, in the flat layout
    return record.pos.cpu(), record.clusters[:, head].long().cpu()


# ----------------------------------------------------------------------------- colours and maps
def cluster_colors(num: int) -> np.ndarray:
    """``[num, 3]`` float RGB in ``[0, 1]``, distinct categorical colours (consecutive ones far apart).

    Up to 10: ``tab10``; up to 20: ``tab20`` with its dark shades first; more: hues stepped by the
    golden ratio, with alternating saturation and brightness.
    """
    from matplotlib import colormaps

    if num <= 10:
        return np.asarray(colormaps["tab10"].colors)[:num, :3]
    if num <= 20:
        tab20 = np.asarray(colormaps["tab20"].colors)[:, :3]
        return np.concatenate([tab20[0::2], tab20[1::2]])[:num]
    golden = (np.sqrt(5.0) - 1.0) / 2.0
    return np.array([colorsys.hsv_to_rgb((i * golden) % 1.0, (0.85, 0.55, 0.7)[i % 3], (0.95, 0.8, 0.65)[(i // 3) % 3])
                     for i in range(num)])


def upsample_nearest(assignment: Tensor | np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour upsampling of a map ``[h, w]`` to ``[height, width]``: pixel row ``i`` takes map row
    ``i * h // height`` (columns alike).

    With an integer factor every map cell becomes an exact ``height / h x width / w`` block,
    as ``F.interpolate(mode="nearest")``.
    """
    grid = np.asarray(assignment.cpu() if isinstance(assignment, Tensor) else assignment)
    h, w = grid.shape
    rows = np.arange(height) * h // height
    cols = np.arange(width) * w // width
    return grid[rows[:, None], cols[None, :]]


def cluster_boundaries(labels: np.ndarray) -> np.ndarray:
    """``[H, W]`` bool: pixels whose right or lower neighbour is in another cluster."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge


def _as_rgb(image: np.ndarray | Image.Image) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"`image_rgb` must be a PIL image or a uint8 array [H, W, 3], got {arr.dtype} "
                         f"{tuple(arr.shape)}; convert it with np.asarray(img.convert('RGB'))")
    return arr


def _check_png(path: str | Path, name: str = "path") -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"`{name}` must be a .png file, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _labels(clusters: Tensor | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(clusters.cpu() if isinstance(clusters, Tensor) else clusters)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"`{name}` must hold integer cluster ids, got dtype {arr.dtype}")
    return arr


# ----------------------------------------------------------------------------- figures
def draw_image_clusters(image_rgb: np.ndarray | Image.Image, assignment: Tensor | np.ndarray, path: str | Path,
                        title: str | None = None, alpha: float = 0.5, dpi: int = 100) -> Path:
    """Write a PNG: the image, and beside it the image tinted by cluster with the cluster boundaries.

    The map is upsampled to the image size (nearest); every cluster present gets its own
    colour from :func:`cluster_colors` (in order of cluster id), blended with weight ``alpha``;
    boundary pixels are white. An image narrower than a panel is first enlarged by an integer
    factor (nearest) so that the boundaries stay one screen pixel thin.

    Args:
        image_rgb: ``[H, W, 3]`` uint8 array or a PIL image (converted to RGB); the image the model saw.
        assignment: ``[h, w]`` integer cluster ids (e.g. from :func:`image_assignment_map`).
        path: the ``.png`` to write (parent folders are created).
        title: optional figure title.
        alpha: tint strength in ``[0, 1]``.
        dpi: pixels per inch; the PNG is ``2 * PANEL_INCHES * dpi`` pixels wide and
            ``PANEL_INCHES * H / W * dpi`` (+ ``0.5 * dpi`` with a title) high.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    rgb = _as_rgb(image_rgb)
    labels = _labels(assignment, "assignment")
    if labels.ndim != 2:
        raise ValueError(f"`assignment` must be a map [h, w] of cluster ids, got shape {tuple(labels.shape)}")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"`alpha` must be in [0, 1], got {alpha}")
    path = _check_png(path)
    H, W = rgb.shape[:2]
    scale = max(1, int(PANEL_INCHES * dpi) // W)  # small images: enlarge (nearest) so boundaries stay 1 px thin
    if scale > 1:
        rgb = rgb.repeat(scale, axis=0).repeat(scale, axis=1)
    full = upsample_nearest(labels, H * scale, W * scale)
    H, W = rgb.shape[:2]
    ids, index = np.unique(full, return_inverse=True)
    colors = cluster_colors(len(ids))[index.reshape(H, W)]
    tinted = (1.0 - alpha) * rgb / 255.0 + alpha * colors
    tinted[cluster_boundaries(full)] = 1.0

    panel_h = PANEL_INCHES * H / W
    fig = Figure(figsize=(2 * PANEL_INCHES, panel_h + (_TITLE_INCHES if title else 0.0)), dpi=dpi)
    top = panel_h / (panel_h + _TITLE_INCHES) if title else 1.0
    for i, (img, label) in enumerate(((rgb, "image"), (tinted, f"{len(ids)} clusters ({labels.shape[0]}x"
                                                               f"{labels.shape[1]} map)"))):
        ax = fig.add_axes((i / 2, 0.0, 0.5, top))
        ax.imshow(img, interpolation="nearest", aspect="auto")
        ax.set_axis_off()
        ax.text(0.01, 0.99, label, transform=ax.transAxes, va="top", ha="left", fontsize=8, color="white",
                bbox=dict(facecolor="black", alpha=0.5, pad=2, linewidth=0))
    if title:
        fig.suptitle(title, y=1.0 - 0.5 * _TITLE_INCHES / (panel_h + _TITLE_INCHES), va="center", fontsize=10)
    fig.savefig(path, format="png", dpi=dpi)
    log.debug("wrote %s (%d clusters over a %dx%d image)", path, len(ids), H // scale, W // scale)
    return path


def draw_point_clusters(pos: Tensor | np.ndarray, clusters: Tensor | np.ndarray, path: str | Path,
                        views: Sequence[tuple[float, float]] = DEFAULT_VIEWS, title: str | None = None,
                        vertical_axis: str = "y", dpi: int = 100) -> Path:
    """Write a PNG: a 3D scatter of the points coloured by cluster, one panel per view.

    Args:
        pos: ``[n, 3]`` positions.
        clusters: ``[n]`` integer cluster ids (each id present gets its own colour, in order of id).
        path: the ``.png`` to write (parent folders are created).
        views: ``(elevation, azimuth)`` pairs in degrees, one panel each.
        title: optional figure title.
        vertical_axis: the axis drawn upwards (``"y"`` for ModelNet40 and the demo data).
        dpi: pixels per inch; the PNG is ``len(views) * PANEL_INCHES * dpi`` pixels wide and
            ``PANEL_INCHES * dpi`` (+ ``0.5 * dpi`` with a title) high.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    xyz = np.asarray(pos.detach().cpu() if isinstance(pos, Tensor) else pos, dtype=np.float64)
    labels = _labels(clusters, "clusters")
    if xyz.ndim != 2 or xyz.shape[1] != 3 or xyz.shape[0] == 0:
        raise ValueError(f"`pos` must be [n, 3] with n >= 1, got shape {tuple(xyz.shape)}")
    if labels.shape != (xyz.shape[0],):
        raise ValueError(f"`clusters` must be [n] = [{xyz.shape[0]}] (one id per point of `pos`), got shape "
                         f"{tuple(labels.shape)}")
    if not np.isfinite(xyz).all():
        raise ValueError("`pos` holds NaN or infinite coordinates")
    views = [tuple(v) for v in views]
    if not views or any(len(v) != 2 for v in views):
        raise ValueError(f"`views` must be a non-empty list of (elevation, azimuth) pairs, got {views!r}")
    if vertical_axis not in ("x", "y", "z"):
        raise ValueError(f"`vertical_axis` must be 'x', 'y' or 'z', got {vertical_axis!r}")
    path = _check_png(path)
    ids, index = np.unique(labels, return_inverse=True)
    colors = cluster_colors(len(ids))[index]
    centre = (xyz.max(0) + xyz.min(0)) / 2
    radius = max(float((xyz.max(0) - xyz.min(0)).max()) / 2, 1e-6)
    size = float(np.clip(3000.0 / xyz.shape[0], 2.0, 40.0))

    fig = Figure(figsize=(len(views) * PANEL_INCHES, PANEL_INCHES + (_TITLE_INCHES if title else 0.0)), dpi=dpi)
    top = PANEL_INCHES / (PANEL_INCHES + _TITLE_INCHES) if title else 1.0
    for i, (elev, azim) in enumerate(views):
        ax = fig.add_axes((i / len(views), 0.0, 1.0 / len(views), top), projection="3d")
        ax.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], c=colors, s=size, depthshade=False, linewidths=0)
        for axis, c in zip("xyz", centre):
            getattr(ax, f"set_{axis}lim")(c - radius, c + radius)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=elev, azim=azim, vertical_axis=vertical_axis)
        ax.set_xticklabels([])
        ax.set_yticklabels([])
        ax.set_zticklabels([])
        ax.set_xlabel("x", labelpad=-12)
        ax.set_ylabel("y", labelpad=-12)
        ax.set_zlabel("z", labelpad=-12)
        ax.set_title(f"elev {elev:g}, azim {azim:g}", fontsize=8, y=0.95)
    if title:
        fig.suptitle(f"{title} ({len(ids)} clusters, {xyz.shape[0]} points)",
                     y=1.0 - 0.5 * _TITLE_INCHES / (PANEL_INCHES + _TITLE_INCHES), va="center", fontsize=10)
    fig.savefig(path, format="png", dpi=dpi)
    log.debug("wrote %s (%d points in %d clusters, %d views)", path, xyz.shape[0], len(ids), len(views))
    return path


# ----------------------------------------------------------------------------- part segmentation
#: ``(elevation, azimuth)`` in degrees of the default views of :func:`draw_part_segmentation`.
PART_VIEWS: tuple[tuple[float, float], ...] = ((20, -60), (20, 30), (80, -90))

_PART_DPI = 100
_IGNORED_RGB = np.full(3, 64 / 255)  # pointcoc.data.files.IGNORE_COLOR (visualize may not import pointcoc.data)
_RIGHT_RGB = np.full(3, 0.85)  # a right point in the error row
_WRONG_RGB = np.array([0.9, 0.0, 0.0])  # a wrong point in the error row
_LEGEND_ROW_INCHES = 0.22


def _part_colors(labels: np.ndarray) -> np.ndarray:
    """``[N, 3]`` float RGB: the colour of each label id (the same id, the same colour, in every row and figure).

    Ids below 20 take :func:`cluster_colors` ``(20)``, later ids the golden-ratio colours of
    :func:`cluster_colors`; ``-1`` (ignored) is dark grey. These are
    :func:`pointcoc.data.files.label_colors` divided by 255, the colours of the PLY files it writes.
    """
    out = np.tile(_IGNORED_RGB, (labels.shape[0], 1))
    keep = labels >= 0
    if keep.any():
        present, inverse = np.unique(labels[keep], return_inverse=True)
        colors = np.empty((present.size, 3))
        small = present < 20
        colors[small] = cluster_colors(20)[present[small]]
        if not small.all():
            colors[~small] = cluster_colors(int(present.max()) + 1)[present[~small]]
        out[keep] = colors[inverse.reshape(-1)]
    return out


def _part_ids(values: Tensor | np.ndarray, name: str, n: int) -> np.ndarray:
    arr = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values)
    if arr.dtype.kind not in "iu":
        raise InputError(f"`{name}` must hold integer part ids, got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise InputError(f"`{name}` must be [N] = [{n}] (one part id per point of `pos`), got shape "
                         f"{tuple(arr.shape)}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < -1:
        raise InputError(f"`{name}` holds {int(arr.min())} at index {int(np.argmin(arr))}; part ids are >= 0 "
                         f"(-1 = ignored)")
    return arr


def draw_part_segmentation(pos: Tensor | np.ndarray, pred: Tensor | np.ndarray, target: Tensor | np.ndarray | None,
                           path: str | Path, *, views: Sequence[tuple[float, float]] = PART_VIEWS,
                           names: Sequence[str] | None = None, title: str | None = None, point_size: float = 2.0,
                           vertical_axis: str = "y", max_points: int | None = 100_000) -> Path:
    """Write a PNG: 3D scatters of a cloud coloured by predicted part, beside the ground truth and the errors.

    One column per view; rows, top to bottom: the prediction, then with ``target`` the ground truth
    and the errors (wrong points red, right ones light grey, ignored ones dark grey). A part id has
    the same colour in every row (and in the PLY files of :func:`pointcoc.data.files.write_labeled_ply`:
    :func:`pointcoc.data.files.label_colors`); ``-1`` (ignored) is dark grey. With ``target``, the
    row titles give the shape's accuracy over the points whose target is not ``-1``. With ``names``,
    a legend below the panels names the parts present in ``pred`` or ``target``.

    Args:
        pos: ``[N, 3]`` positions.
        pred: ``[N]`` integer predicted part ids.
        target: ``[N]`` integer ground-truth part ids (``-1`` = ignored), or ``None``.
        path: the ``.png`` to write (parent folders are created).
        views: ``(elevation, azimuth)`` pairs in degrees, one column each.
        names: part names, ``names[i]`` for part id ``i``; every id present must have one.
        title: optional figure title (the number of points is appended).
        point_size: marker area in points^2 (wrong points in the error row are drawn twice as large).
        vertical_axis: the axis drawn upwards (``"y"`` for ShapeNetPart, ``"z"`` for most scans).
        max_points: draw at most this many points (evenly spaced in index order; the accuracy counts
            all of them), ``None`` for all; matplotlib's 3D scatter slows down beyond ~10^5 points.

    Returns:
        ``path`` as a :class:`~pathlib.Path`. The PNG is ``len(views) * PANEL_INCHES * 100`` pixels wide
        and ``rows * PANEL_INCHES * 100`` high (rows: 1, or 3 with ``target``), plus ``0.5 * 100`` with
        a title and ``0.22 * 100`` per legend line plus a margin with ``names``.

    Raises:
        InputError: wrong shapes or dtypes, ``pred``/``target`` lengths that differ from ``pos``,
            non-finite positions, a part id without a name, bad ``views``/``point_size``/``max_points``,
            a path that is not ``.png``.
    """
    from matplotlib.patches import Patch

    xyz = np.asarray(pos.detach().cpu() if isinstance(pos, Tensor) else pos)
    if xyz.dtype.kind not in "fiu" or xyz.ndim != 2 or xyz.shape[1] != 3 or xyz.shape[0] == 0:
        raise InputError(f"`pos` must be a numeric [N, 3] array with N >= 1, got {xyz.dtype} {tuple(xyz.shape)}")
    xyz = xyz.astype(np.float64)
    n = xyz.shape[0]
    bad = ~np.isfinite(xyz).all(axis=1)
    if bad.any():
        raise InputError(f"`pos` holds NaN or infinite coordinates (first at index {int(np.argmax(bad))})")
    predicted = _part_ids(pred, "pred", n)
    truth = None if target is None else _part_ids(target, "target", n)
    views = [tuple(v) for v in views]
    if not views or any(len(v) != 2 for v in views):
        raise InputError(f"`views` must be a non-empty list of (elevation, azimuth) pairs, got {views!r}")
    if vertical_axis not in ("x", "y", "z"):
        raise InputError(f"`vertical_axis` must be 'x', 'y' or 'z', got {vertical_axis!r}")
    if isinstance(point_size, bool) or not isinstance(point_size, (int, float)) or not point_size > 0:
        raise InputError(f"`point_size` must be a number > 0, got {point_size!r}")
    if max_points is not None and (isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1):
        raise InputError(f"`max_points` must be an int >= 1 or None, got {max_points!r}")
    present = np.unique(predicted if truth is None else np.concatenate([predicted, truth]))
    if names is not None:
        if isinstance(names, str) or not all(isinstance(s, str) for s in names):
            raise InputError("`names` must be a sequence of part names (names[i] for part id i), got "
                             f"{names!r}")
        missing = [int(i) for i in present if i >= len(names)]
        if missing:
            raise InputError(f"`names` has {len(names)} entries but part id(s) {missing} are present; give a name "
                             f"for every part id")
    path = _check_png(path)

    rows: list[tuple[str, np.ndarray, np.ndarray | None]] = []  # (title, colours, the points drawn on top)
    if truth is None:
        rows.append(("prediction", _part_colors(predicted), None))
    else:
        valid = truth >= 0
        wrong = valid & (predicted != truth)
        counted = int(valid.sum())
        score = (f"{1.0 - wrong.sum() / counted:.1%} right" if counted else "no labelled points")
        errors = np.where(valid[:, None], _RIGHT_RGB, _IGNORED_RGB)
        errors[wrong] = _WRONG_RGB
        rows += [(f"prediction ({score})", _part_colors(predicted), None),
                 ("ground truth", _part_colors(truth), None),
                 (f"errors: {int(wrong.sum())} of {counted} points wrong (red)", errors, wrong)]
    keep = np.arange(n) if max_points is None or n <= max_points else \
        np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
    if keep.size < n:
        log.info("drawing %d of %d points (max_points=%d)", keep.size, n, max_points)

    handles = []
    if names is not None:
        handles = [Patch(color=_part_colors(np.array([i]))[0], label=f"{int(i)}: {names[i]}" if i >= 0 else
                         "-1: ignored") for i in present]
    ncol = max(1, min(len(handles), 4 * len(views)))
    legend_h = (_LEGEND_ROW_INCHES * -(-len(handles) // ncol) + 0.1) if handles else 0.0
    title_h = _TITLE_INCHES if title else 0.0
    height = len(rows) * PANEL_INCHES + legend_h + title_h
    centre = (xyz.max(0) + xyz.min(0)) / 2
    radius = max(float((xyz.max(0) - xyz.min(0)).max()) / 2, 1e-6)

    fig = Figure(figsize=(len(views) * PANEL_INCHES, height), dpi=_PART_DPI)
    for r, (label, colors, top) in enumerate(rows):
        bottom = (legend_h + (len(rows) - 1 - r) * PANEL_INCHES) / height
        for c, (elev, azim) in enumerate(views):
            ax = fig.add_axes((c / len(views), bottom, 1.0 / len(views), PANEL_INCHES / height), projection="3d")
            under = keep if top is None else keep[~top[keep]]
            ax.scatter(xyz[under, 0], xyz[under, 1], xyz[under, 2], c=colors[under], s=point_size,
                       depthshade=False, linewidths=0)
            if top is not None and top[keep].any():
                over = keep[top[keep]]
                ax.scatter(xyz[over, 0], xyz[over, 1], xyz[over, 2], c=colors[over], s=2 * point_size,
                           depthshade=False, linewidths=0)
            for axis, mid in zip("xyz", centre):
                getattr(ax, f"set_{axis}lim")(mid - radius, mid + radius)
            ax.set_box_aspect((1, 1, 1), zoom=1.2)  # no axes drawn: the cloud may fill more of the panel
            ax.view_init(elev=elev, azim=azim, vertical_axis=vertical_axis)
            ax.set_axis_off()
            ax.set_title(f"{label}\nelev {elev:g}, azim {azim:g}", fontsize=8, y=0.95)
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, 0.0), handlelength=1.0, columnspacing=1.0)
    if title:
        fig.suptitle(f"{title} ({n} points)", y=1.0 - 0.5 * _TITLE_INCHES / height, va="center", fontsize=10)
    fig.savefig(path, format="png", dpi=_PART_DPI)
    log.debug("wrote %s (%d points, %d views, %d rows)", path, n, len(views), len(rows))
    return path
