"""PointReducer: fewer points with new features, on point sets and (fast path) on grids."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointcoc.blocks.cluster import compat_points, pair
from pointcoc.errors import renamed_arguments
from pointcoc.ops import SAMPLERS, Points, canonical_points, fps_points, knn_points, sample_indices
from pointcoc.ops._checks import check_k

__all__ = ["PointReducer"]


def _order_by_offset(idx: Tensor, rel: Tensor) -> tuple[Tensor, Tensor]:
    """Reorder neighbours ``idx [..., k]`` lexicographically by their offsets ``rel [..., k, D]`` (dim 0 first)."""
    order = torch.arange(idx.shape[-1], device=idx.device).expand_as(idx)
    for d in reversed(range(rel.shape[-1])):
        key = rel[..., d].gather(-1, order)
        order = order.gather(-1, key.argsort(dim=-1, stable=True))
    return idx.gather(-1, order), rel.gather(-2, order.unsqueeze(-1).expand_as(rel))


class PointReducer(nn.Module):
    """Reduce a point set: FPS anchors, their kNN neighbours, neighbour features concatenated -> linear.

    On a point set each anchor's ``k`` neighbours are concatenated (optionally
    with their offsets from the anchor) and mapped by one linear layer. On an
    image map the anchors and neighbours form a regular grid, and the same
    operation is a strided convolution with the same weights; that fast path
    is used for ``[B, H, W, C]`` input.

    Args:
        dim: input channels ``C`` (deprecated alias: ``in_dim``).
        out_dim: output channels.
        kernel_size: grid patch ``(kh, kw)``; also sets ``k = kh * kw`` by default.
        stride: grid stride; also sets the point reduction ``sh * sw`` by default.
        padding: grid padding (the point path has no padding).
        num_neighbors: neighbours ``k`` per anchor on point sets (default ``kh * kw``).
        reduction: on point sets each cloud keeps ``ceil(N / reduction)`` anchors
            (default ``sh * sw``).
        rel_pos_dim: if > 0, append each neighbour's offset from its anchor (``D =
            rel_pos_dim`` coordinates) to its features; point path only.
        neighbor_order: ``"distance"`` (nearest first; ties in canonical point order)
            or ``"offset"`` (lexicographic by offset, first coordinate first: the
            raster order of a convolution kernel when positions are ``(row, col)``).
        random_start: start FPS at a random point in training mode.
        sampler: how anchors are picked on point sets: ``"fps"`` (exact FPS in canonical order, the
            object-size models) or a sampler of :func:`pointcoc.ops.sample_indices` for large clouds
            (``"window_fps"``: FPS in windows along the Hilbert curve; ``"hilbert"``/``"morton"``: evenly
            along a space-filling curve, ``O(N log N)``; ``"fpsample"``: bucket FPS on the CPU).
        aggregation: ``"concat"`` (the neighbours side by side -> one linear layer: the grid
            convolution's form) or ``"max"`` (one linear layer shared by the neighbours, then the
            maximum over them: independent of the neighbour order, PointNet++'s form).

    Forms:
        * :meth:`forward_grid`: image map ``x [B, H, W, C]`` -> ``[B, H', W', out_dim]``;
        * :meth:`forward_points`: a :class:`~pointcoc.ops.Points` with ``x [sum N, C]`` -> the anchors
          as a ``Points`` with ``x [sum S, out_dim]`` (always a ``Points``);
        * ``forward`` (compatibility, by the rank of ``x``): the image map as above; dense points
          ``x [B, N, C]``, ``pos [B, N, D]`` -> ``(x' [B, S, out_dim], pos' [B, S, D], None)``; flat
          points ``x [sum N, C]``, ``pos``, ``batch`` -> ``(x' [sum S, out_dim], pos' [sum S, D], batch' [sum S])``.
          ``anchor_pos`` (dense ``[B, S, D]`` only) replaces FPS with given anchors.

    The weight layout is ``proj.weight [out_dim, k * (C + rel_pos_dim)]`` with
    neighbour-major input, i.e. a conv kernel ``[out, C, kh, kw]`` is
    ``proj.weight.view(out, kh, kw, C).permute(0, 3, 1, 2)``.
    """

    @renamed_arguments(in_dim="dim")
    def __init__(self, dim: int, out_dim: int, kernel_size: int | tuple[int, int] | None = None,
                 stride: int | tuple[int, int] | None = None, padding: int | tuple[int, int] = 0,
                 num_neighbors: int | None = None, reduction: int | None = None, rel_pos_dim: int = 0,
                 neighbor_order: str = "distance", random_start: bool = False, aggregation: str = "concat",
                 sampler: str = "fps") -> None:
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size") if kernel_size is not None else None
        self.stride = pair(stride, "stride") if stride is not None else self.kernel_size
        self.padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
        if num_neighbors is None and self.kernel_size is None:
            raise ValueError("give `kernel_size` (grid patch) or `num_neighbors` (point sets)")
        self.num_neighbors = num_neighbors if num_neighbors is not None else math.prod(self.kernel_size)
        if reduction is None:
            if self.stride is None:
                raise ValueError("give `stride` (grid) or `reduction` (point sets)")
            reduction = math.prod(self.stride)
        if reduction < 1 or self.num_neighbors < 1:
            raise ValueError(f"`reduction` and `num_neighbors` must be >= 1, got {reduction}, {self.num_neighbors}")
        if neighbor_order not in ("distance", "offset"):
            raise ValueError(f"`neighbor_order` must be 'distance' or 'offset', got {neighbor_order!r}")
        if aggregation not in ("concat", "max"):
            raise ValueError(f"`aggregation` must be 'concat' or 'max', got {aggregation!r}")
        if sampler not in SAMPLERS or sampler == "grid":
            raise ValueError(f"`sampler` must be one of {tuple(m for m in SAMPLERS if m != 'grid')} (a count per "
                             f"cloud), got {sampler!r}")
        if random_start and sampler != "fps":
            raise ValueError(f"`random_start` is for sampler='fps' (a random FPS start); sampler={sampler!r} has "
                             "no start point to randomise")
        self.sampler = sampler
        self.aggregation = aggregation
        self.reduction = reduction
        self.rel_pos_dim = rel_pos_dim
        self.neighbor_order = neighbor_order
        self.random_start = random_start
        self.dim, self.out_dim = dim, out_dim
        width = dim + rel_pos_dim
        self.proj = nn.Linear(width if aggregation == "max" else self.num_neighbors * width, out_dim)

    def extra_repr(self) -> str:
        return (f"{self.dim}, {self.out_dim}, k={self.num_neighbors}, reduction={self.reduction}, "
                f"aggregation={self.aggregation!r}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"rel_pos_dim={self.rel_pos_dim}, neighbor_order={self.neighbor_order!r}"
                + ("" if self.sampler == "fps" else f", sampler={self.sampler!r}"))

    @property
    def in_dim(self) -> int:
        """Deprecated name of :attr:`dim`."""
        return self.dim

    def conv_weight(self) -> Tensor:
        """The projection as a convolution kernel ``[out_dim, C, kh, kw]`` (grid fast path)."""
        if self.aggregation != "concat":
            raise ValueError("the grid fast path is the 'concat' aggregation; this reducer uses "
                             f"{self.aggregation!r}: run it on points")
        if self.kernel_size is None or math.prod(self.kernel_size) != self.num_neighbors:
            raise ValueError(f"this PointReducer has no grid kernel (kernel_size={self.kernel_size}, "
                             f"k={self.num_neighbors}); build it with kernel_size to use image maps")
        if self.rel_pos_dim:
            raise ValueError("the grid fast path does not take relative positions (rel_pos_dim > 0); "
                             "run the point path on the pixel positions instead")
        kh, kw = self.kernel_size
        return self.proj.weight.view(self.out_dim, kh, kw, self.dim).permute(0, 3, 1, 2)

    def forward_grid(self, x: Tensor) -> Tensor:
        """Image map ``x [B, H, W, C]`` -> ``[B, H', W', out_dim]`` (the strided convolution)."""
        self._check_channels(x)
        out = F.conv2d(x.permute(0, 3, 1, 2), self.conv_weight(), self.proj.bias, self.stride, self.padding)
        return out.permute(0, 2, 3, 1)

    def forward_points(self, points: Points, anchors: Points | None = None) -> Points:
        """``points`` with ``x [sum N, C]`` -> anchors (``ceil(N_b / reduction)`` per cloud), ``x [sum S, out_dim]``.

        Args:
            points: the clouds and their features.
            anchors: given anchor positions (a ``Points`` over the same clouds) instead of FPS.
        """
        x = points.x
        if x is None:
            raise ValueError("forward_points needs point features: build the Points with `x`")
        self._check_channels(x)
        self._check_pos_dim(points.pos)
        if anchors is None:
            samples = [-(-n // self.reduction) for n in points.sizes]
            if self.sampler == "fps":
                # canonical order first: anchors and neighbour ties do not depend on the input order
                _, source = canonical_points(points)
                idx = fps_points(source, samples, random_start=self.random_start and self.training)
            else:  # large clouds: no O(N log N)-per-axis canonical sort, no O(N S) FPS
                source, idx = points, sample_indices(points, self.sampler, samples)
            anchors = Points.trusted(source.pos[idx], None, source.batch[idx], samples)
        else:
            if anchors.num_clouds != points.num_clouds or anchors.pos_dim != points.pos_dim:
                raise ValueError(f"`anchors` ({anchors}) must cover the same clouds, in the same dimension, as "
                                 f"`points` ({points})")
            source = points
        check_k(self.num_neighbors, source.sizes, "pos")
        nbr = knn_points(source, anchors.pos, anchors.batch, self.num_neighbors)  # [sum S, k]
        return anchors.with_x(self._aggregate(source.x, source.pos, nbr, anchors.pos))

    def forward(self, x: Tensor, pos: Tensor | None = None, batch: Tensor | None = None,
                anchor_pos: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor, Tensor | None]:
        """The compatibility form, by the rank of ``x`` (see the class docstring for the shapes)."""
        self._check_channels(x)
        if x.dim() == 4:
            return self.forward_grid(x)
        points = compat_points(x, pos, batch)
        anchors = None
        if anchor_pos is not None:
            if not points.from_dense_batch or anchor_pos.dim() != 3 or anchor_pos.shape[0] != x.shape[0] \
                    or anchor_pos.shape[2] != pos.shape[2]:
                raise ValueError(f"`anchor_pos` must be [B, S, D] for dense pos {tuple(pos.shape)}, got "
                                 f"{tuple(anchor_pos.shape)}")
            anchors = Points.from_dense(anchor_pos)
        out = self.forward_points(points, anchors)
        if points.from_dense_batch:
            return out.dense(out.x), out.dense(out.pos), None
        return out.x, out.pos, out.batch

    def _check_channels(self, x: Tensor) -> None:
        if x.shape[-1] != self.dim:
            raise ValueError(f"PointReducer(dim={self.dim}) got x with shape {tuple(x.shape)}")

    def _aggregate(self, x: Tensor, pos: Tensor, idx: Tensor, anchor_pos: Tensor) -> Tensor:
        """Neighbour features -> anchor features.

        ``x [P, C]``, ``pos [P, D]`` (flat), ``idx [S, k]`` neighbours (nearest first),
        ``anchor_pos [S, D]`` -> ``[S, out_dim]``.
        """
        rel = pos[idx] - anchor_pos.unsqueeze(1)  # [S, k, D]
        if self.neighbor_order == "offset":
            idx, rel = _order_by_offset(idx, rel)
        feats = x[idx]  # [S, k, C]
        if self.rel_pos_dim:
            feats = torch.cat([feats, rel.to(feats.dtype)], dim=-1)
        if self.aggregation == "max":
            return self.proj(feats).amax(dim=1)
        return self.proj(feats.flatten(1))

    def _check_pos_dim(self, pos: Tensor) -> None:
        if self.rel_pos_dim and pos.shape[-1] != self.rel_pos_dim:
            raise ValueError(f"`pos` has {pos.shape[-1]} coordinates, this reducer expects rel_pos_dim="
                             f"{self.rel_pos_dim}")
