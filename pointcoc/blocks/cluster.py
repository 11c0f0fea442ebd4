"""The context-cluster token mixer, for image maps and point sets alike.

Paper: Ma et al., "Image as Set of Points", ICLR 2023, https://arxiv.org/abs/2303.01494

Update rule, for every region and head (features projected by ``f`` to a
similarity space and by ``v`` to a value space):

* centres ``c_m`` and centre values ``v_m`` are proposed in the region
  (adaptive average pooling on a grid; FPS anchors with the mean of their
  ``k`` nearest points on a point set; the region mean when ``M = 1``);
* ``s_im = sigmoid(beta + alpha * cos(f_i, c_m))``; each point joins the centre
  with the largest ``s_im``, with weight ``w_i = s_{i, m(i)}``;
* aggregate ``g_m = (v_m + sum_{i in m} w_i v_i) / (1 + sum_{i in m} w_i)``;
* dispatch ``p_i' = w_i g_{m(i)}``, heads merged, then ``proj``.

The assignment is a hard argmax and carries no gradient; gradients flow
through ``w_i`` to ``alpha``, ``beta``, the centres and the features. The
implementation keeps the masked similarity ``[G, M, n]`` and two batched
matrix products; it never builds the ``[G, M, n, C]`` tensor of the
reference code.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointcoc.errors import renamed_arguments
from pointcoc.ops import (
    Points,
    canonical_points,
    fps_padded,
    fps_points,
    group_padded,
    knn_padded,
    knn_points,
    serial_windows,
)

__all__ = ["cluster_mix", "grid_proposal", "PointPartition", "point_partition", "ContextCluster", "pair",
           "REGION_MODES", "ClusterAssignment", "record_assignments", "compat_points", "compat_output"]


def pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    """``(rows, cols)`` from an int (square) or a pair; positive entries only."""
    if isinstance(value, int):
        out = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        out = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"`{name}` must be an int or a (rows, cols) pair of ints, got {value!r}")
    if min(out) < 1:
        raise ValueError(f"`{name}` must be positive, got {value!r}")
    return out


def cluster_mix(feat: Tensor, value: Tensor, centers: Tensor, value_centers: Tensor, alpha: Tensor, beta: Tensor,
                point_mask: Tensor | None = None, center_mask: Tensor | None = None,
                denominator: str = "weights", impl: str = "auto") -> tuple[Tensor, Tensor]:
    """Cluster, aggregate and dispatch inside independent groups (the functional core).

    Args:
        feat: ``[..., n, c]`` similarity features of the points of each group.
        value: ``[..., n, c]`` values of the points.
        centers: ``[..., M, c]`` proposed centres (similarity space).
        value_centers: ``[..., M, c]`` the centres' values.
        alpha, beta: scalars (``[1]``) of ``w = sigmoid(beta + alpha * cos)``.
        point_mask: ``[..., n]`` bool, padding entries are False (they join no cluster).
        center_mask: ``[..., M]`` bool, padding centres are False (no point joins them).
        denominator: ``"weights"``: ``1 + sum w_i`` (the paper's Eq. 1, upstream since
            2023-05-31); ``"count"``: ``1 + |members|``, the earlier upstream code that
            the first released image checkpoints were trained with.
        impl: ``"matmul"`` keeps the masked similarity ``[..., M, n]`` for autograd and
            aggregates/dispatches with two batched matrix products (fastest for few
            centres); ``"scatter"`` keeps only ``[..., n]`` weights (the similarity to all
            centres is computed without autograd, to pick the winner) and aggregates with
            ``scatter_add``/``gather`` (fastest and leanest for many centres); ``"auto"``:
            ``matmul`` when ``M <= c``, else ``scatter``. Both give the same result.

    Returns:
        ``out [..., n, c]`` the dispatched features (0 at padding) and
        ``assign [..., n]`` the index of each point's centre.
    """
    if denominator not in ("weights", "count"):
        raise ValueError(f"`denominator` must be 'weights' or 'count', got {denominator!r}")
    M, c = centers.shape[-2], feat.shape[-1]
    if impl == "auto":
        impl = "matmul" if M <= c else "scatter"
    if impl not in ("matmul", "scatter"):
        raise ValueError(f"`impl` must be 'auto', 'matmul' or 'scatter', got {impl!r}")
    fn, cn = F.normalize(feat, dim=-1), F.normalize(centers, dim=-1)

    def pick(sim: Tensor) -> Tensor:  # the winning centre of every point, [..., n]
        if center_mask is not None:
            sim = sim.masked_fill(~center_mask.unsqueeze(-1), -1.0)
        return sim.max(dim=-2).indices  # first maximum, as upstream; 10x faster than argmax over dim -2 on CPU

    mask = None if point_mask is None else point_mask.to(feat.dtype)

    def per_centre(assign: Tensor, x: Tensor) -> Tensor:  # sum of x [..., n] over each centre's members, [..., M, 1]
        return value_centers.new_zeros(*value_centers.shape[:-1], 1).scatter_add(-2, assign.unsqueeze(-1),
                                                                                 x.unsqueeze(-1))

    def member_counts(assign: Tensor) -> Tensor:  # the ``"count"`` denominator
        return per_centre(assign, feat.new_ones(feat.shape[:-1]) if mask is None else mask.expand(feat.shape[:-1]))

    if impl == "matmul":
        sim = torch.sigmoid(beta + alpha * (cn @ fn.transpose(-1, -2)))  # [..., M, n]
        assign = pick(sim.detach())
        weight = sim.gather(-2, assign.unsqueeze(-2)).squeeze(-2)  # [..., n]
        if mask is not None:
            weight = weight * mask
        masked = torch.zeros_like(sim).scatter(-2, assign.unsqueeze(-2), weight.unsqueeze(-2))  # one entry per column
        total = masked.sum(-1, keepdim=True) if denominator == "weights" else member_counts(assign)
        agg = (masked @ value + value_centers) / (total + 1.0)  # [..., M, c]
        return masked.transpose(-1, -2) @ agg, assign  # w_i * g_{m(i)}
    with torch.no_grad():
        assign = pick(torch.sigmoid(beta + alpha * (cn @ fn.transpose(-1, -2))))
    idx = assign.unsqueeze(-1).expand(*assign.shape, c)
    weight = torch.sigmoid(beta + alpha * (fn * cn.gather(-2, idx)).sum(-1))  # [..., n]
    if mask is not None:
        weight = weight * mask
    total = per_centre(assign, weight) if denominator == "weights" else member_counts(assign)
    num = value_centers.scatter_add(-2, idx, weight.unsqueeze(-1) * value)
    agg = num / (total + 1.0)  # [..., M, c]
    return weight.unsqueeze(-1) * agg.gather(-2, idx), assign


@lru_cache(maxsize=64)
def _pool_matrix_1d(size: int, bins: int) -> Tensor:
    """``[bins, size]`` averaging weights of ``AdaptiveAvgPool1d(bins)`` (bins overlap when sizes do not divide)."""
    mat = torch.zeros(bins, size, dtype=torch.float64)
    for i in range(bins):
        start = (i * size) // bins
        end = -((-(i + 1) * size) // bins)
        mat[i, start:end] = 1.0 / (end - start)
    return mat


def grid_proposal(h: int, w: int, rows: int, cols: int, dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> Tensor:
    """Adaptive-average-pooling weights that propose ``rows x cols`` centres in an ``h x w`` region.

    Returns:
        ``[rows * cols, h * w]``; row ``i * cols + j`` averages the ``(i, j)`` bin
        of ``nn.AdaptiveAvgPool2d((rows, cols))``, pixels in raster order.
    """
    mat = torch.kron(_pool_matrix_1d(h, rows), _pool_matrix_1d(w, cols))
    return mat.to(dtype=dtype, device=device)


@dataclass
class ClusterAssignment:
    """Which cluster every point joined in one forward pass of a :class:`ContextCluster`.

    Cluster ids are ``region * M + centre`` with ``M`` centres per region; on a grid the
    regions are numbered row by row and so are the centres (``i * cols + j`` for the
    ``(i, j)`` adaptive-pooling bin, as upstream).

    Attributes:
        clusters: image map ``[B, heads, H, W]``; dense points ``[B, N, heads]``; flat points
            ``[sum N, heads]`` (input order).
        num_clusters: ``R * M``, clusters per image / cloud.
        num_centers: ``M``, centres per region.
        pos: point sets with a partition, the positions of the points (``[sum N, D]`` or ``[B, N, D]``).
        batch: flat point sets only, the cloud id of every point ``[sum N]``.
    """

    clusters: Tensor
    num_clusters: int
    num_centers: int
    pos: Tensor | None = None
    batch: Tensor | None = None


@contextmanager
def record_assignments(model: nn.Module) -> Iterator[list[tuple[str, ClusterAssignment]]]:
    """Collect the cluster assignments of every :class:`ContextCluster` in ``model`` during the block.

    Example:
        >>> with record_assignments(model) as records:
        ...     model(images)
        >>> name, assignment = records[0]        # forward order: (module name, ClusterAssignment)
    """
    records: list[tuple[str, ClusterAssignment]] = []
    mixers = [(name, m) for name, m in model.named_modules() if isinstance(m, ContextCluster)]
    for name, mixer in mixers:
        mixer._recorder = lambda a, name=name: records.append((name, a))
    try:
        yield records
    finally:
        for _, mixer in mixers:
            mixer._recorder = None


@dataclass
class PointPartition:
    """How a batch of point sets splits into regions and where each region proposes its centres.

    Regions are padded to a common size ``n``; ``G`` is the number of regions in the whole
    batch, cloud-major (``B * R`` FPS regions: group ``g`` is region ``g % R`` of cloud ``g // R``;
    curve windows: ``sum_b ceil(N_b / region_size)``).

    Attributes:
        index: ``[G, n]`` index of every region member into the flat points (0 at padding).
        mask: ``[G, n]`` bool, real members.
        proposal: ``[G, M, n]`` averaging weights: centre ``m`` of region ``g`` is
            ``proposal[g, m] @ features[index[g]]``.
        center_mask: ``[G, M]`` bool, real centres (a region with fewer than ``M``
            points has fewer centres).
        num_points: number of flat points ``sum N``.
        inverse: ``[sum N]`` where every point sits in the padded layout, ``g * n + slot``
            (gathering ``[G * n, C]`` rows with it returns per-point values, no mask needed).
        local_region: ``[G]`` each region's index in its cloud (``g % R`` for FPS regions).
    """

    index: Tensor
    mask: Tensor
    proposal: Tensor
    center_mask: Tensor
    num_points: int
    inverse: Tensor
    local_region: Tensor


def _as_points(pos: Points | Tensor, batch: Tensor | None) -> Points:
    """The compatibility form ``(pos [sum N, D], batch)`` as a validated ``Points``."""
    if isinstance(pos, Points):
        if batch is not None:
            raise ValueError("give either a Points or (pos, batch), not a Points and a `batch`")
        return pos
    return Points(pos, batch=batch)


def compat_points(x: Tensor, pos: Tensor | None, batch: Tensor | None) -> Points:
    """The point input of the blocks' compatibility ``forward(x, pos, batch)`` as a checked ``Points``.

    Args:
        x: dense ``[B, N, C]`` or flat ``[sum N, C]`` features.
        pos: ``[B, N, D]`` or ``[sum N, D]`` positions.
        batch: flat form, the sorted cloud id per point (``None``: one cloud).

    Raises:
        ValueError: another rank, missing or mismatched ``pos``, or any check of :class:`Points`.
    """
    if x.dim() not in (2, 3):
        raise ValueError(f"x must be [B, H, W, C] (image map), [B, N, C] (point set) or [sum N, C] (flat), got "
                         f"{tuple(x.shape)}")
    if pos is None:
        raise ValueError(f"a point set x {tuple(x.shape)} needs `pos`")
    if x.dim() == 3:
        if batch is not None:
            raise ValueError("`batch` is only for flat input x [sum N, C]; dense x [B, N, C] needs none")
        if pos.dim() != 3 or pos.shape[:2] != x.shape[:2]:
            raise ValueError(f"`pos` must be [B, N, D] matching x {tuple(x.shape)}, got {tuple(pos.shape)}")
        return Points.from_dense(pos, x)
    if pos.dim() != 2 or pos.shape[0] != x.shape[0]:
        raise ValueError(f"`pos` must be [sum N, D] with {x.shape[0]} points, got {tuple(pos.shape)}")
    return Points(pos, x, batch)


def compat_output(points: Points, out: Tensor) -> Tensor:
    """Per-point ``out [sum N, C]`` in the layout ``points`` came in: ``[B, N, C]`` from a dense batch."""
    return points.dense(out) if points.from_dense_batch else out


#: how a point partition forms its regions: FPS anchors, or windows along a space-filling curve
REGION_MODES = ("fps", "morton", "hilbert")


@torch.no_grad()
def point_partition(points: Points | Tensor, batch: Tensor | None = None, num_regions: int = 1,
                    num_centers: int = 1, center_k: int | None = None, region_mode: str = "fps",
                    region_size: int | None = None) -> PointPartition:
    """Split point sets into regions and propose centres in each (no gradients involved).

    ``region_mode="fps"`` (the object-size models): each cloud is split into ``num_regions``
    regions; FPS picks region anchors and every point joins its nearest anchor (with one
    region, the cloud is the region). In every region, FPS picks ``num_centers`` anchors.
    FPS starts from the lexicographically smallest point, so the partition does not depend
    on the order of the input points. The padded region size is the one value read back
    from the device (none when ``num_regions == 1``: the regions are the clouds).

    ``region_mode="morton"`` / ``"hilbert"`` (clouds of 10^5 points and more): each cloud's
    points are sorted along the curve (:func:`~pointcoc.ops.serial_order`) and cut into
    ``ceil(N_b / region_size)`` consecutive windows of balanced size (at most ``region_size``);
    the ``num_centers`` anchors are evenly spaced along the window. Costs a sort, no FPS,
    no host sync; depends on the input order only among points in one curve cell.

    Either way a centre is the mean of its anchor's ``k`` nearest region members, ``k =
    n_region // num_centers`` by default (at least 1), or ``center_k``; with one centre,
    the region mean. Memory is ``O(P * num_centers)``.

    Args:
        points: the clouds, a :class:`~pointcoc.ops.Points` (or flat positions ``[sum N, D]``
            with ``batch``, checked here).
        batch: with positions only, the sorted cloud id per point ``[sum N]`` (``None``: one cloud).
        num_regions: FPS regions per cloud ``R`` (``region_mode="fps"``).
        num_centers: centres per region ``M``.
        center_k: neighbours averaged into a centre (default ``n_region // M``).
        region_mode: one of :data:`REGION_MODES`.
        region_size: curve modes, the most points of a window.

    Returns:
        the :class:`PointPartition`.
    """
    points = _as_points(points, batch)
    if center_k is not None and center_k < 1:
        raise ValueError(f"`center_k` must be >= 1, got {center_k}")
    check_region_mode(region_mode, region_size, num_regions)
    P, pos = points.num_points, points.pos
    if region_mode == "fps":
        members, region_sorted, sizes, n, local = _assign_regions(points, num_regions)
    else:
        members, region_sorted, sizes, n, local = _serial_windows(points, region_mode, region_size)
    index, mask, slot = group_padded(members, region_sorted, sizes, n)
    inverse = torch.empty(P, dtype=torch.long, device=pos.device)
    inverse[members] = region_sorted * n + slot
    if num_centers == 1:
        proposal = (mask.to(pos.dtype) / sizes.clamp_min(1).to(pos.dtype)[:, None]).unsqueeze(1)
        return PointPartition(index, mask, proposal, (sizes > 0)[:, None], P, inverse, local)
    anchor = None
    if region_mode != "fps":  # evenly along the window: slot floor((m + 1/2) * size / M), or m in a small window
        m = torch.arange(num_centers, device=pos.device)
        anchor = torch.where(sizes[:, None] >= num_centers, ((2 * m + 1) * sizes[:, None]) // (2 * num_centers), m)
        anchor = anchor.clamp_max(n - 1)
    proposal, center_mask = _propose_centers(pos[index], mask, sizes, n, num_centers, center_k, anchor)
    return PointPartition(index, mask, proposal, center_mask, P, inverse, local)


def check_region_mode(region_mode: str, region_size: int | None, num_regions: int) -> None:
    """``region_mode`` must be known; the curve modes need a positive ``region_size`` and no FPS regions."""
    if region_mode not in REGION_MODES:
        raise ValueError(f"`region_mode` must be one of {REGION_MODES}, got {region_mode!r}")
    if region_mode == "fps":
        if region_size is not None:
            raise ValueError("`region_size` is for the curve region modes ('morton', 'hilbert'); "
                             "region_mode='fps' takes `regions`")
        return
    if isinstance(region_size, bool) or not isinstance(region_size, int) or region_size < 1:
        raise ValueError(f"region_mode={region_mode!r} needs `region_size`, a positive int (points per "
                         f"window), got {region_size!r}")
    if num_regions != 1:
        raise ValueError(f"region_mode={region_mode!r} forms its regions from `region_size`; leave `regions` "
                         f"at 1 (got {num_regions})")


def _assign_regions(points: Points, num_regions: int) -> tuple[Tensor, Tensor, Tensor, int, Tensor]:
    """Every point's FPS region.

    Returns:
        ``members [P]`` (the points, regions contiguous, canonical order inside), ``region [P]``
        (the global region id of each, cloud-major), ``sizes [B * R]`` (points per region, on the
        device), ``n``, the largest region (read from the device only when ``num_regions > 1``),
        and ``local [B * R]``, each region's index in its cloud.
    """
    order, ordered = canonical_points(points.with_x(None))
    pos_s, batch_s, B = ordered.pos, ordered.batch, points.num_clouds
    local = torch.arange(B * num_regions, device=pos_s.device) % num_regions
    if num_regions == 1:
        return order, batch_s, points.counts_on_device(), max(points.sizes), local
    if min(points.sizes) < num_regions:
        raise ValueError(
            f"a cloud has {min(points.sizes)} points, fewer than the {num_regions} regions this block "
            f"splits it into; use clouds of at least {num_regions} points or fewer regions"
        )
    anchors = fps_points(ordered, [num_regions] * B)
    anchor_pts = Points.trusted(pos_s[anchors], None, batch_s[anchors], [num_regions] * B)
    region = knn_points(anchor_pts, pos_s, batch_s, 1)[:, 0]  # nearest anchor = global region id
    sizes = torch.zeros(B * num_regions, dtype=torch.long, device=pos_s.device)
    sizes.index_add_(0, region, torch.ones_like(region))
    by_region = region.argsort(stable=True)  # regions contiguous, canonical order inside
    return order[by_region], region[by_region], sizes, int(sizes.max()), local  # max: the partition's one sync


def _serial_windows(points: Points, curve: str, region_size: int) -> tuple[Tensor, Tensor, Tensor, int, Tensor]:
    """Consecutive windows of the curve order, ``ceil(N_b / region_size)`` per cloud of balanced sizes.

    Returns what :func:`_assign_regions` returns; every size is known on the host (no sync).
    """
    per_cloud = [-(-n // region_size) for n in points.sizes]
    order, region, sizes, local = serial_windows(points, curve, per_cloud)
    n = max(-(-n // w) for n, w in zip(points.sizes, per_cloud))  # the largest window
    device = points.pos.device
    return order, region, sizes.to(device, non_blocking=True), n, local.to(device, non_blocking=True)


def _propose_centers(pos_g: Tensor, mask: Tensor, sizes: Tensor, n: int, num_centers: int,
                     center_k: int | None, anchor: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The mean of each anchor's nearest members in every padded region ``pos_g [G, n, D]``.

    The anchors are ``anchor [G, M]`` slots when given (valid where ``m < sizes[g]``), else FPS in every region.

    Returns:
        ``proposal [G, M, n]`` averaging weights and ``center_mask [G, M]``.
    """
    if anchor is None:
        anchor, center_mask = fps_padded(pos_g, num_centers, mask)
    else:
        center_mask = torch.arange(num_centers, device=pos_g.device) < sizes[:, None]
    anchor_pos = pos_g.gather(1, anchor.unsqueeze(-1).expand(-1, -1, pos_g.shape[2]))
    if center_k is None:
        k_region, k_max = (sizes // num_centers).clamp_min(1), max(n // num_centers, 1)
    else:
        k_region, k_max = sizes.clamp(max=center_k).clamp_min(1), max(min(n, center_k), 1)
    k_max = min(k_max, n)  # the largest k_region, known on the host
    nbr, valid = knn_padded(pos_g, anchor_pos, k_max, mask)  # [G, M, k]
    valid = valid & (torch.arange(k_max, device=pos_g.device) < k_region[:, None, None]) & center_mask[..., None]
    proposal = torch.zeros(*center_mask.shape, n, dtype=pos_g.dtype, device=pos_g.device)
    proposal.scatter_(2, nbr, valid.to(pos_g.dtype))
    return proposal / proposal.sum(-1, keepdim=True).clamp_min(1.0), center_mask


class ContextCluster(nn.Module):
    """Context-cluster token mixer for image maps and point sets (one class, one set of weights).

    Args:
        dim: input channels ``C``.
        out_dim: output channels (default ``dim``).
        num_heads: number of heads ``e`` (deprecated alias: ``heads``).
        head_dim: channels per head ``c``; the similarity and value spaces have ``e * c`` channels.
        centers: centres per region, ``(rows, cols)`` on a grid; on a point set the
            product ``M = rows * cols`` is used, and a plain int ``M`` is allowed
            (such a mixer then only runs on point sets).
        regions: regions, ``(rows, cols)`` windows on a grid (each map side must be
            divisible); on a point set ``R = rows * cols`` FPS regions per cloud
            (or a plain int ``R``).
        center_k: point sets only, neighbours averaged into each centre
            (default: region size // M).
        region_mode: point sets only, how regions form: ``"fps"`` (``regions`` FPS regions per
            cloud) or ``"morton"``/``"hilbert"`` (windows of at most ``region_size`` points along
            the curve: for clouds of 10^5 points and more), see :func:`point_partition`.
        region_size: the curve modes' window size.
        denominator: ``"weights"`` (default, the paper) or ``"count"`` (early upstream
            checkpoints); see :func:`cluster_mix`.

    Forms (one set of weights):
        * :meth:`forward_grid`: image map ``x [B, H, W, C]`` (channels last) -> ``[B, H, W, out_dim]``;
        * :meth:`forward_points`: a :class:`~pointcoc.ops.Points` with ``x [sum N, C]`` -> the same
          points with ``x [sum N, out_dim]``;
        * :meth:`forward_sets`: ``x [B, N, C]`` where each set is one cluster around its mean
          (``M = R = 1``; no positions needed: PointMLP-CoC's form);
        * ``forward(x, pos=None, batch=None, partition=None)``: the compatibility form, which
          picks one of the above from the rank of ``x``: ``[B, H, W, C]``; ``[B, N, C]`` with
          ``pos [B, N, D]`` (or without, as a set); ``[sum N, C]`` with ``pos [sum N, D]`` and
          ``batch [sum N]``. It checks its input and builds a ``Points`` once.

    Example:
        >>> mixer = ContextCluster(64, num_heads=4, head_dim=16, centers=(2, 2), regions=(2, 2))
        >>> y_img = mixer.forward_grid(torch.randn(2, 8, 8, 64))                    # image map
        >>> pts = Points.from_dense(torch.randn(2, 500, 3), torch.randn(2, 500, 64))
        >>> y_pts = mixer.forward_points(pts).x                                      # [1000, 64]
        >>> y_old = mixer(torch.randn(2, 500, 64), torch.randn(2, 500, 3))           # compatibility form
    """

    @renamed_arguments(heads="num_heads")
    def __init__(self, dim: int, out_dim: int | None = None, num_heads: int = 4, head_dim: int = 24,
                 centers: int | tuple[int, int] = (2, 2), regions: int | tuple[int, int] = (1, 1),
                 center_k: int | None = None, denominator: str = "weights", region_mode: str = "fps",
                 region_size: int | None = None) -> None:
        super().__init__()
        if denominator not in ("weights", "count"):
            raise ValueError(f"`denominator` must be 'weights' or 'count', got {denominator!r}")
        self.denominator = denominator
        out_dim = dim if out_dim is None else out_dim
        self.dim, self.out_dim, self.num_heads, self.head_dim = dim, out_dim, num_heads, head_dim
        # An int is a count for point sets; a grid needs the (rows, cols) layout.
        self.centers = pair(centers, "centers") if not isinstance(centers, int) else pair((centers, 1), "centers")
        self.regions = pair(regions, "regions") if not isinstance(regions, int) else pair((regions, 1), "regions")
        self.grid_layout = all(not isinstance(v, int) or v == 1 for v in (centers, regions))
        self.center_k = center_k
        check_region_mode(region_mode, region_size, self.num_regions)
        self.region_mode, self.region_size = region_mode, region_size
        inner = num_heads * head_dim
        self.f = nn.Linear(dim, inner)
        self.v = nn.Linear(dim, inner)
        self.proj = nn.Linear(inner, out_dim)
        self.sim_alpha = nn.Parameter(torch.ones(1))
        self.sim_beta = nn.Parameter(torch.zeros(1))
        self._recorder: Callable[[ClusterAssignment], None] | None = None  # set by record_assignments

    @property
    def heads(self) -> int:
        """Deprecated name of :attr:`num_heads`."""
        return self.num_heads

    @property
    def num_centers(self) -> int:
        """Centres per region on a point set (``rows * cols``)."""
        return self.centers[0] * self.centers[1]

    @property
    def num_regions(self) -> int:
        """Regions per cloud on a point set (``rows * cols``)."""
        return self.regions[0] * self.regions[1]

    @property
    def partition_key(self) -> tuple[Hashable, ...]:
        """What defines this mixer's partition of a point set (the ``Points`` cache key)."""
        return ("context-cluster partition", self.num_regions, self.num_centers, self.center_k, self.region_mode,
                self.region_size)

    def extra_repr(self) -> str:
        extra = "" if self.denominator == "weights" else f", denominator={self.denominator!r}"
        if self.region_mode != "fps":
            extra += f", region_mode={self.region_mode!r}, region_size={self.region_size}"
        return (f"dim={self.dim}, out_dim={self.out_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}, "
                f"centers={self.centers}, regions={self.regions}{extra}")

    def partition(self, points: Points | Tensor, batch: Tensor | None = None) -> PointPartition:
        """This mixer's partition of ``points`` (or of flat ``pos [sum N, D]`` with ``batch``), cached on a Points.

        Mixers with the same ``partition_key`` (the blocks of a stage) share it.
        """
        args = (self.num_regions, self.num_centers, self.center_k, self.region_mode, self.region_size)
        if isinstance(points, Points) and batch is None:
            return points.cached(self.partition_key, lambda: point_partition(points, None, *args))
        return point_partition(points, batch, *args)

    def takes_sets(self, x: Tensor, pos: Tensor | None, partition: PointPartition | None) -> bool:
        """Whether the compatibility form treats ``x [B, N, C]`` as sets around their means (:meth:`forward_sets`):
        no partition, and no positions or one centre per set."""
        one_centre = self.num_centers == self.num_regions == 1
        return x.dim() == 3 and partition is None and (pos is None or one_centre)

    def _check_channels(self, x: Tensor) -> None:
        if x.shape[-1] != self.dim:
            raise ValueError(f"ContextCluster(dim={self.dim}) got x with {x.shape[-1]} channels, shape "
                             f"{tuple(x.shape)}")

    # ------------------------------------------------------------------ compatibility form
    def forward(self, x: Tensor, pos: Tensor | None = None, batch: Tensor | None = None,
                partition: PointPartition | None = None) -> Tensor:
        """The compatibility form: dispatch on the rank of ``x`` (see the class docstring)."""
        self._check_channels(x)
        if x.dim() == 4:
            return self.forward_grid(x)
        if self.takes_sets(x, pos, partition):
            return self.forward_sets(x)  # one centre per set: the set mean, positions unused
        if pos is None and (partition is not None or self.num_centers == self.num_regions == 1):
            pos = x.new_zeros(*x.shape[:-1], 1)  # positions are not used with a given partition or one centre
        points = compat_points(x, pos, batch)
        return compat_output(points, self.forward_points(points, partition).x)

    def _split_heads(self, t: Tensor) -> Tensor:
        """``[G, n, e*c] -> [G, e, n, c]``."""
        G, n, _ = t.shape
        return t.view(G, n, self.num_heads, self.head_dim).transpose(1, 2)

    def _merge_heads(self, t: Tensor) -> Tensor:
        """``[G, e, n, c] -> [G, n, e*c]``."""
        G, _, n, _ = t.shape
        return t.transpose(1, 2).reshape(G, n, self.num_heads * self.head_dim)

    # ------------------------------------------------------------------ explicit forms
    def forward_grid(self, x: Tensor) -> Tensor:
        """Image map ``x [B, H, W, C]`` -> ``[B, H, W, out_dim]``: windows and adaptive-pooling centres."""
        self._check_channels(x)
        B, H, W, _ = x.shape
        if not self.grid_layout:
            raise ValueError(
                "this ContextCluster was built with an int `centers`/`regions` (a point-set count); "
                "give them as (rows, cols) pairs to run it on an image map [B, H, W, C]"
            )
        fr, fc = self.regions
        if H % fr or W % fc:
            raise ValueError(
                f"image map of {H}x{W} (x shape {tuple(x.shape)}) cannot be split into {fr}x{fc} regions; "
                "each side must be divisible by the regions along it"
            )
        h, w, e, c = H // fr, W // fc, self.num_heads, self.head_dim

        def to_groups(t: Tensor) -> Tensor:  # [B, H, W, e*c] -> [B*fr*fc, e, h*w, c]
            t = t.view(B, fr, h, fc, w, e, c).permute(0, 1, 3, 5, 2, 4, 6)
            return t.reshape(B * fr * fc, e, h * w, c)

        feat, value = to_groups(self.f(x)), to_groups(self.v(x))
        prop = grid_proposal(h, w, *self.centers, dtype=x.dtype, device=x.device)
        out, assign = cluster_mix(feat, value, prop @ feat, prop @ value, self.sim_alpha, self.sim_beta,
                                  denominator=self.denominator)
        if self._recorder is not None:
            M = prop.shape[0]
            region = torch.arange(fr * fc, device=x.device).view(1, fr, fc, 1, 1, 1) * M
            ids = assign.view(B, fr, fc, e, h, w) + region
            self._recorder(ClusterAssignment(ids.permute(0, 3, 1, 4, 2, 5).reshape(B, e, H, W).detach(),
                                             fr * fc * M, M))
        out = out.view(B, fr, fc, e, h, w, c).permute(0, 1, 4, 2, 5, 3, 6).reshape(B, H, W, e * c)
        return self.proj(out)

    def forward_sets(self, x: Tensor) -> Tensor:
        """``x [B, N, C]``, each set one cluster around its mean -> ``[B, N, out_dim]`` (needs ``M = R = 1``)."""
        self._check_channels(x)
        if self.num_centers != 1 or self.num_regions != 1:
            raise ValueError(f"a point set with {self.num_centers} centres / {self.num_regions} regions needs `pos`; "
                             "use forward_points")
        feat, value = self._split_heads(self.f(x)), self._split_heads(self.v(x))
        out, assign = cluster_mix(feat, value, feat.mean(2, keepdim=True), value.mean(2, keepdim=True),
                                  self.sim_alpha, self.sim_beta, denominator=self.denominator)
        if self._recorder is not None:
            self._recorder(ClusterAssignment(assign.transpose(1, 2).detach(), 1, 1))
        return self.proj(self._merge_heads(out))

    def forward_points(self, points: Points, partition: PointPartition | None = None) -> Points:
        """``points`` with features ``x [sum N, C]`` -> the same points with ``x [sum N, out_dim]``.

        The partition is ``partition`` if given, else this mixer's cached partition of ``points``.
        """
        x = points.x
        if x is None:
            raise ValueError("forward_points needs point features: build the Points with `x`")
        self._check_channels(x)
        if partition is None:
            partition = self.partition(points)
        elif partition.num_points != points.num_points:
            raise ValueError(f"`partition` was built for {partition.num_points} points, x has {points.num_points}")
        index, mask = partition.index, partition.mask
        feat = self._split_heads(self.f(x)[index])  # [G, e, n, c]
        value = self._split_heads(self.v(x)[index])
        prop = partition.proposal.to(x.dtype).unsqueeze(1)  # [G, 1, M, n]
        out, assign = cluster_mix(feat, value, prop @ feat, prop @ value, self.sim_alpha, self.sim_beta,
                                  point_mask=mask.unsqueeze(1), center_mask=partition.center_mask.unsqueeze(1),
                                  denominator=self.denominator)
        if self._recorder is not None:
            self._record_points(assign, partition, prop.shape[2], points)
        out = self._merge_heads(out)  # [G, n, e*c]
        merged = out.reshape(-1, out.shape[-1])[partition.inverse]  # back to the points' order, [sum N, e*c]
        return points.with_x(self.proj(merged))

    def _record_points(self, assign: Tensor, partition: PointPartition, M: int, points: Points) -> None:
        """Report ``assign [G, heads, n]`` of a point partition as cluster ids per input point ``[P, heads]``."""
        assert self._recorder is not None
        local = partition.local_region  # each group's region in its cloud
        R = self.num_regions if self.region_mode == "fps" else int(local.max()) + 1
        region = local[:, None, None] * M
        ids = (assign + region).transpose(1, 2)  # [G, n, heads]
        flat = ids.reshape(-1, ids.shape[-1])[partition.inverse]
        pos, batch = points.pos.detach(), points.batch
        if points.from_dense_batch:  # the layout the caller used: [B, N, heads], [B, N, D]
            flat, pos, batch = points.dense(flat), points.dense(pos), None
        self._recorder(ClusterAssignment(flat.detach(), R * M, M, pos, batch))
