"""ClusterBlock (a MetaFormer block with the context-cluster token mixer) and ClusterStage (its blocks on one set)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from timm.layers import Mlp
from torch import Tensor, nn

from pointcoc.blocks.cluster import ContextCluster, PointPartition, compat_output, compat_points
from pointcoc.blocks.layers import DropPath, SampleNorm, apply_norm
from pointcoc.errors import renamed_arguments
from pointcoc.ops import Points

__all__ = ["ClusterBlock", "ClusterStage", "cluster_stage"]


class ClusterBlock(nn.Module):
    """``x + drop_path(ls1 * mixer(norm1(x)))``, then ``x + drop_path(ls2 * mlp(norm2(x)))``.

    Args:
        dim: channels ``C``.
        mlp_ratio: hidden width of the MLP as a multiple of ``dim``.
        num_heads, head_dim, centers, regions, center_k, denominator, region_mode, region_size: passed to
            :class:`ContextCluster`
            (deprecated alias of ``num_heads``: ``heads``).
        norm_layer: norm type, built as ``norm_layer(dim)``; norms with ``accepts_batch``
            (like :class:`SampleNorm`, upstream's ``GroupNorm(1, C)``) normalise each cloud of a
            point set (they are called ``norm(x, batch, counts)``).
        act_layer: activation type of the MLP.
        drop: dropout in the MLP.
        drop_path: stochastic-depth probability (per sample; per cloud on point sets).
        layer_scale_init_value: initial layer scale; ``None`` disables layer scale.

    Forms: :meth:`forward_grid` (``[B, H, W, C]``), :meth:`forward_points` (a
    :class:`~pointcoc.ops.Points`, features ``[sum N, C]``) and the compatibility
    ``forward(x, pos=None, batch=None, partition=None)`` of :class:`ContextCluster`;
    the output has the input's shape.
    """

    @renamed_arguments(heads="num_heads")
    def __init__(self, dim: int, mlp_ratio: float = 4.0, num_heads: int = 4, head_dim: int = 24,
                 centers: int | tuple[int, int] = (2, 2), regions: int | tuple[int, int] = (1, 1),
                 center_k: int | None = None, norm_layer: type[nn.Module] = SampleNorm,
                 act_layer: type[nn.Module] = nn.GELU, drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale_init_value: float | None = 1e-5, denominator: str = "weights",
                 region_mode: str = "fps", region_size: int | None = None) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.token_mixer = ContextCluster(dim, dim, num_heads=num_heads, head_dim=head_dim, centers=centers,
                                          regions=regions, center_k=center_k, denominator=denominator,
                                          region_mode=region_mode, region_size=region_size)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        self.drop_path = DropPath(drop_path)
        self.use_layer_scale = layer_scale_init_value is not None
        if self.use_layer_scale:
            self.layer_scale_1 = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
            self.layer_scale_2 = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))

    def partition(self, points: Points | Tensor, batch: Tensor | None = None) -> PointPartition:
        """The point partition of this block's mixer (cached on a ``Points``: one per stage)."""
        return self.token_mixer.partition(points, batch)

    def _residuals(self, x: Tensor, mix: Tensor, points: Points | None) -> Tensor:
        """Both residual branches around ``mix`` (the mixer's output on ``norm1(x)``)."""
        batch, num = (None, None) if points is None else (points.batch, points.num_clouds)
        if self.use_layer_scale:
            mix = self.layer_scale_1 * mix
        x = x + self.drop_path(mix, batch, num)
        hidden = self.mlp(apply_norm(self.norm2, x, points))
        if self.use_layer_scale:
            hidden = self.layer_scale_2 * hidden
        return x + self.drop_path(hidden, batch, num)

    def forward_grid(self, x: Tensor) -> Tensor:
        """Image map ``[B, H, W, C]`` -> ``[B, H, W, C]``."""
        return self._residuals(x, self.token_mixer.forward_grid(self.norm1(x)), None)

    def forward_points(self, points: Points, partition: PointPartition | None = None) -> Points:
        """``points`` with ``x [sum N, C]`` -> the same points with new features (partition: the mixer's cached one)."""
        x = points.x
        if x is None:
            raise ValueError("forward_points needs point features: build the Points with `x`")
        normed = points.with_x(apply_norm(self.norm1, x, points))
        mix = self.token_mixer.forward_points(normed, partition).x
        return points.with_x(self._residuals(x, mix, points))

    def forward(self, x: Tensor, pos: Tensor | None = None, batch: Tensor | None = None,
                partition: PointPartition | None = None) -> Tensor:
        """The compatibility form (layout from the rank of ``x``, as :meth:`ContextCluster.forward`)."""
        if x.dim() == 4:
            return self.forward_grid(x)
        if self.token_mixer.takes_sets(x, pos, partition):
            return self._residuals(x, self.token_mixer.forward_sets(self.norm1(x)), None)  # one centre per set
        points = compat_points(x, pos, batch)
        return compat_output(points, self.forward_points(points, partition).x)


class ClusterStage(nn.ModuleList):
    """The :class:`ClusterBlock` s of one stage, run on one point set (or image map).

    The blocks of a stage see the same points, so they share one partition (regions
    and centre proposals: FPS, kNN), computed by the first block and cached on the
    :class:`~pointcoc.ops.Points`; only the features change. As an ``nn.ModuleList``
    its state-dict keys are ``{j}.<block keys>``, the same as a plain list of blocks
    (upstream checkpoints load unchanged).

    Forms: :meth:`forward_grid` (``[B, H, W, C]``), :meth:`forward_points` (``Points``) and
    ``forward(x, pos=None, batch=None)`` (compatibility: dense ``[B, N, C]`` or flat ``[sum N, C]``).
    """

    def forward_grid(self, x: Tensor) -> Tensor:
        """Image map ``[B, H, W, C]`` through every block."""
        for blk in self:
            x = blk.forward_grid(x)
        return x

    def forward_points(self, points: Points) -> Points:
        """``points`` (features ``[sum N, C]``) through every block, one shared partition."""
        for blk in self:
            points = blk.forward_points(points)
        return points

    def forward(self, x: Tensor, pos: Tensor | None = None, batch: Tensor | None = None) -> Tensor:
        """The compatibility form: an image map, or dense / flat point features with ``pos`` (and ``batch``)."""
        return cluster_stage(self, x, pos, batch)


def cluster_stage(blocks: Iterable[ClusterBlock], x: Tensor, pos: Tensor | None = None,
                  batch: Tensor | None = None) -> Tensor:
    """Run consecutive ClusterBlocks on one point set or image map, computing the point partition once.

    The compatibility form of :class:`ClusterStage` for a plain sequence of blocks.

    Args:
        blocks: the blocks of the stage (all with the same centre/region settings).
        x: ``[B, H, W, C]`` image map, ``[B, N, C]`` dense or ``[sum N, C]`` flat features.
        pos: point sets, ``[B, N, D]`` or ``[sum N, D]`` positions.
        batch: flat form, ``[sum N]`` cloud ids.

    Returns:
        the features after the last block, shaped like ``x``.
    """
    stage = blocks if isinstance(blocks, ClusterStage) else ClusterStage(blocks)
    if x.dim() == 4:
        return stage.forward_grid(x)
    points = compat_points(x, pos, batch)
    return compat_output(points, stage.forward_points(points).x)
