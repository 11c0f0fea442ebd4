"""PointCoC: a hierarchical point-cloud classifier made only of pointcoc blocks.

Each stage reduces the cloud with a :class:`~pointcoc.blocks.PointReducer`
(FPS anchors + kNN neighbours with their offsets), then mixes it with
:class:`~pointcoc.blocks.ClusterBlock` s whose centres and regions are
proposed by FPS on the points: Context Clusters carried over to 3D.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch_geometric.nn import global_max_pool, global_mean_pool

from pointcoc.blocks import ClusterBlock, ClusterStage, PointReducer
from pointcoc.errors import renamed_arguments
from pointcoc.models._common import (
    check_stage_lengths,
    drop_path_rates,
    input_features,
    prepare_points,
    reducer_stages,
    stages_min_points,
)
from pointcoc.models.registry import register
from pointcoc.ops import Points

__all__ = ["PointCoC", "VARIANTS", "pointcoc_nano", "pointcoc_tiny", "pointcoc_small", "pointcoc_scale_tiny"]


#: deprecated argument names (FutureWarning) and their replacements
RENAMED = dict(in_channels="in_chans", neighbors="num_neighbors", heads="num_heads")


class PointCoC(nn.Module):
    """Point-cloud classifier: embed -> [PointReducer -> ClusterBlock x depth] per stage -> pool -> head.

    Args:
        num_classes: output classes.
        in_chans: extra per-point input features besides the coordinates (e.g. 3 for normals).
        pos_dim: coordinates per point ``D``.
        embed_dim: width of the per-point embedding.
        dims: channels of each stage.
        depths: ClusterBlocks per stage.
        reductions: each stage keeps ``ceil(N / reduction)`` points.
        num_neighbors: kNN neighbours of each reducer.
        num_heads, head_dim: per stage, of the context-cluster mixers.
        centers: centres per region, per stage.
        regions: FPS regions per cloud, per stage.
        mlp_ratio: MLP width of the blocks.
        drop_path_rate: stochastic depth, linearly increasing over blocks.
        layer_scale_init_value: initial layer scale of the blocks (``None``: none).
        pool: ``"mean"`` or ``"max"`` over each cloud's last-stage points.
        aggregation: how the reducers combine neighbours (``"max"``: order-free; ``"concat"``: the
            image models' form), see :class:`~pointcoc.blocks.PointReducer`.
        sampler: the reducers' anchor sampler: ``"fps"`` (the object-size models) or, for clouds of
            10^5 points and more, ``"window_fps"`` (FPS in runs of the Hilbert order), ``"hilbert"``/
            ``"morton"`` (evenly along a space-filling curve) or ``"fpsample"`` (see
            :func:`pointcoc.ops.sample_indices`).
        region_mode: how the blocks form regions: ``"fps"`` (``regions`` per cloud) or
            ``"hilbert"``/``"morton"`` (curve windows of ``region_size`` points; then ``regions`` must
            be all 1), see :func:`~pointcoc.blocks.point_partition`.
        region_size: per stage, the curve windows' size (curve region modes only).

    Deprecated aliases: ``in_channels`` (``in_chans``), ``neighbors`` (``num_neighbors``), ``heads``
    (``num_heads``).

    Shapes:
        dense: ``pos [B, N, D]`` (+ ``x [B, N, in_chans]``) -> logits ``[B, num_classes]``;
        flat: ``pos [sum N, D]``, ``batch [sum N]`` (+ ``x``) -> ``[B, num_classes]``; or a
        :class:`~pointcoc.ops.Points` (its ``x`` the extra features).
    """

    @renamed_arguments(**RENAMED)
    def __init__(self, num_classes: int = 40, in_chans: int = 0, pos_dim: int = 3, embed_dim: int = 32,
                 dims: Sequence[int] = (64, 128, 256), depths: Sequence[int] = (1, 1, 1),
                 reductions: Sequence[int] = (4, 4, 4), num_neighbors: Sequence[int] = (16, 16, 16),
                 num_heads: Sequence[int] = (2, 4, 4), head_dim: Sequence[int] = (16, 16, 32),
                 centers: Sequence[int] = (4, 4, 4), regions: Sequence[int] = (16, 4, 1),
                 mlp_ratio: float = 2.0, drop_path_rate: float = 0.0,
                 layer_scale_init_value: float | None = 1e-5, pool: str = "max",
                 aggregation: str = "max", sampler: str = "fps", region_mode: str = "fps",
                 region_size: Sequence[int] | None = None) -> None:
        super().__init__()
        region_size = [None] * len(dims) if region_size is None else list(region_size)
        check_stage_lengths(dims=dims, depths=depths, reductions=reductions, num_neighbors=num_neighbors,
                            num_heads=num_heads, head_dim=head_dim, centers=centers, regions=regions,
                            region_size=region_size)
        self.num_classes, self.in_chans, self.pos_dim = num_classes, in_chans, pos_dim
        self.embed = nn.Sequential(nn.Linear(pos_dim + in_chans, embed_dim), nn.LayerNorm(embed_dim), nn.GELU())
        rates = drop_path_rates(drop_path_rate, depths)
        self.reducers = nn.ModuleList()
        self.stages = nn.ModuleList()
        prev = embed_dim
        for i, dim in enumerate(dims):
            self.reducers.append(PointReducer(prev, dim, num_neighbors=num_neighbors[i], reduction=reductions[i],
                                              rel_pos_dim=pos_dim, aggregation=aggregation, sampler=sampler))
            self.stages.append(ClusterStage(
                ClusterBlock(dim, mlp_ratio=mlp_ratio, num_heads=num_heads[i], head_dim=head_dim[i],
                             centers=centers[i], regions=regions[i], norm_layer=nn.LayerNorm, drop_path=rates[i][j],
                             layer_scale_init_value=layer_scale_init_value, region_mode=region_mode,
                             region_size=region_size[i])
                for j in range(depths[i])))
            prev = dim
        if pool not in ("mean", "max"):
            raise ValueError(f"`pool` must be 'mean' or 'max', got {pool!r}")
        self.pool = pool
        self.norm = nn.LayerNorm(prev)
        self.head = nn.Linear(prev, num_classes)
        self.num_features = prev

    @property
    def in_channels(self) -> int:
        """Deprecated name of :attr:`in_chans`."""
        return self.in_chans

    def min_points(self) -> int:
        """The smallest cloud this model accepts (every reducer needs ``k`` points, every stage its regions)."""
        return stages_min_points(reducer_stages(self.reducers, self.stages))

    def prepare(self, pos: Tensor | Points, x: Tensor | None = None, batch: Tensor | None = None) -> Points:
        """Check the input once: dense ``pos [B, N, D]`` / flat ``[sum N, D]`` (+ ``x``, ``batch``) or a ``Points``."""
        return prepare_points(pos, x, batch, self.in_chans, self.min_points(), self.pos_dim)

    def forward_features(self, points: Points) -> list[Points]:
        """The encoder: one ``Points`` per stage (its anchors, features ``[sum S_i, dims[i]]``), finest first.

        ``points`` is the checked input (:meth:`prepare`), its ``x`` the extra per-point features.
        """
        h = points.with_x(self.embed(input_features(points)))
        stages = []
        for reducer, stage in zip(self.reducers, self.stages):
            h = stage.forward_points(reducer.forward_points(h))
            stages.append(h)
        return stages

    def forward_head(self, feats: list[Points] | Points | Tensor, pre_logits: bool = False) -> Tensor:
        """Logits ``[B, num_classes]`` from the stages (the last one is pooled) or pooled features ``[B, C]``.

        With ``pre_logits`` the pooled features ``[B, num_features]``.
        """
        if isinstance(feats, list):
            feats = feats[-1]
        if isinstance(feats, Points):
            pool = global_max_pool if self.pool == "max" else global_mean_pool
            feats = pool(self.norm(feats.x), feats.batch, size=feats.num_clouds)
        return feats if pre_logits else self.head(feats)

    def forward(self, pos: Tensor | Points, x: Tensor | None = None, batch: Tensor | None = None) -> Tensor:
        """Logits ``[B, num_classes]``: dense ``pos [B, N, D]``, flat ``[sum N, D]`` with ``batch``, or a Points."""
        return self.forward_head(self.forward_features(self.prepare(pos, x, batch)))


# name: hyper-parameters (each entry overrides PointCoC's defaults, which are pointcoc_tiny's)
VARIANTS: dict[str, dict] = {
    "pointcoc_nano": dict(embed_dim=16, dims=(32, 64), depths=(1, 1), reductions=(4, 4), num_neighbors=(8, 8),
                          num_heads=(2, 2), head_dim=(8, 16), centers=(4, 2), regions=(4, 1), mlp_ratio=2.0),
    "pointcoc_tiny": dict(),
    "pointcoc_small": dict(embed_dim=64, dims=(128, 256, 512), depths=(2, 2, 2), num_heads=(4, 8, 8),
                           head_dim=(32, 32, 64), centers=(4, 4, 4), regions=(16, 4, 1), mlp_ratio=2.0),
    # tiny's widths, with near-linear sampling and partition: FPS in runs of the Hilbert order for the anchors
    # (evenly spaced curve samples cost 2 points of demo accuracy) and Hilbert windows of 16 points for the
    # regions (at 1,024 points the region sizes of tiny's 16 / 4 / 1 FPS regions)
    "pointcoc_scale_tiny": dict(sampler="window_fps", region_mode="hilbert", regions=(1, 1, 1),
                                region_size=(16, 16, 16)),
}


@renamed_arguments(_owner="PointCoC (create_model)", **RENAMED)
def _create_point_coc(variant: str, **kwargs) -> PointCoC:
    return PointCoC(**{**VARIANTS[variant], **kwargs})


@register("point")
def pointcoc_nano(**kwargs) -> PointCoC:
    """3D Context Cluster, nano: two small stages; for quick runs (the demo, tests) on a CPU."""
    return _create_point_coc("pointcoc_nano", **kwargs)


@register("point")
def pointcoc_tiny(**kwargs) -> PointCoC:
    """3D Context Cluster, tiny: 1024 points -> 256 -> 64 -> 16, one block per stage."""
    return _create_point_coc("pointcoc_tiny", **kwargs)


@register("point")
def pointcoc_small(**kwargs) -> PointCoC:
    """3D Context Cluster, small: wider and deeper than tiny."""
    return _create_point_coc("pointcoc_small", **kwargs)


@register("point")
def pointcoc_scale_tiny(**kwargs) -> PointCoC:
    """3D Context Cluster for large clouds (10^5-10^6 points): tiny's widths; window FPS and Hilbert windows."""
    return _create_point_coc("pointcoc_scale_tiny", **kwargs)
