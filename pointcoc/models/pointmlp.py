"""PointMLP and PointMLP-CoC point-cloud classifiers, channels last, on pointcoc ops and blocks.

Papers: Ma et al., "Rethinking Network Design and Local Geometry in Point Cloud:
A Simple Residual MLP Framework", ICLR 2022 (https://arxiv.org/abs/2202.07123);
PointMLP-CoC from "Image as Set of Points", ICLR 2023 (a single-centre context
cluster before every residual MLP of the pre-extraction blocks).

Each stage: FPS anchors (``pointcoc.ops.fps``) and their ``k`` nearest points
(``pointcoc.ops.knn``); the grouped features, normalised around the anchor,
go through a transfer MLP, (context cluster +) residual MLPs and a max over
the ``k`` neighbours; then residual MLPs per anchor. A max over the anchors
and an MLP classify. Upstream's ``Conv1d(kernel_size=1)`` layers are
``nn.Linear`` here, on ``[..., C]`` features; the module names follow upstream
so its checkpoints load after a shape conversion.

The single-centre context cluster is the shared
:class:`pointcoc.blocks.ContextCluster` with one centre and one region: the
centre is the mean of the group.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn import global_max_pool

from pointcoc.blocks import ContextCluster
from pointcoc.errors import renamed_arguments
from pointcoc.models._common import FPS_STARTS, check_stage_lengths, input_features, prepare_points, sample_anchors
from pointcoc.models.checkpoint import convert_layouts, register_checkpoint_filter, unwrap_state_dict
from pointcoc.models.registry import register
from pointcoc.ops import Points, knn_points

__all__ = ["PointMLP", "VARIANTS", "pointmlp", "pointmlp_elite", "pointmlp_coc", "ACTIVATIONS"]

ActLayer = str | type[nn.Module]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "rrelu": nn.RReLU, "selu": nn.SELU, "silu": nn.SiLU,
    "hardswish": nn.Hardswish, "leakyrelu": nn.LeakyReLU,
}


def _act(act_layer: str | type[nn.Module]) -> nn.Module:
    """An activation from a name in :data:`ACTIVATIONS` or a module type."""
    if not isinstance(act_layer, str):
        return act_layer()
    if act_layer.lower() not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act_layer!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[act_layer.lower()]()


class BatchNormLast(nn.BatchNorm1d):
    """``BatchNorm1d`` over the last dimension of ``[..., C]`` features."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).view(x.shape)


class LinearBNAct(nn.Module):
    """``Linear -> BatchNorm -> activation`` on ``[..., C]`` (upstream ``ConvBNReLU1D``)."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool, act_layer: ActLayer) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim, bias=bias), BatchNormLast(out_dim), _act(act_layer))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ResidualMLP(nn.Module):
    """``act(BN(Linear(act(BN(Linear(x))))) + x)`` on ``[..., C]`` (upstream ``ConvBNReLURes1D``, groups=1)."""

    def __init__(self, dim: int, res_expansion: float, bias: bool, act_layer: ActLayer) -> None:
        super().__init__()
        hidden = int(dim * res_expansion)
        self.net1 = nn.Sequential(nn.Linear(dim, hidden, bias=bias), BatchNormLast(hidden), _act(act_layer))
        self.net2 = nn.Sequential(nn.Linear(hidden, dim, bias=bias), BatchNormLast(dim))
        self.act = _act(act_layer)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.net2(self.net1(x)) + x)


class LocalGrouper(nn.Module):
    """Group ``k`` neighbours around FPS anchors and normalise them (PointMLP's geometric affine).

    Args:
        dim: feature channels ``d``.
        k: neighbours per anchor.
        reduction: each cloud keeps ``n // reduction`` anchors.
        use_xyz: append neighbour coordinates to their features.
        normalize: ``"anchor"`` (subtract the anchor's features), ``"center"`` (the group mean) or ``None``;
            then divide by the cloud's standard deviation and apply a learnt affine.
        fps_start: see :class:`PointMLP`.

    Shapes:
        a ``Points`` with ``x [sum N, d]`` -> the anchors (a ``Points`` with their ``x [sum S, d]``) and
        grouped features ``[sum S, k, 2d (+3)]``.
    """

    def __init__(self, dim: int, k: int, reduction: int, use_xyz: bool = False, normalize: str | None = "anchor",
                 fps_start: str = "first") -> None:
        super().__init__()
        if normalize is not None and normalize.lower() not in ("anchor", "center"):
            raise ValueError(f"`normalize` must be 'anchor', 'center' or None, got {normalize!r}")
        self.k, self.reduction, self.use_xyz = k, reduction, use_xyz
        self.normalize = normalize.lower() if normalize else None
        self.fps_start = fps_start
        if self.normalize:
            channels = dim + (3 if use_xyz else 0)
            self.affine_alpha = nn.Parameter(torch.ones(channels))
            self.affine_beta = nn.Parameter(torch.zeros(channels))

    def forward(self, points: Points) -> tuple[Points, Tensor]:
        """``points`` (features ``x [sum N, d]``) -> the anchors (their own features) and the grouped
        features ``[sum S, k, 2d (+3)]``."""
        pos, x, batch = points.pos, points.x, points.batch
        samples = [n // self.reduction for n in points.sizes]
        anchors = sample_anchors(points, samples, self.fps_start, self.training)
        new = Points.trusted(pos[anchors], x[anchors], batch[anchors], samples)
        idx = knn_points(points, new.pos, new.batch, self.k)  # [sum S, k]
        grouped = x[idx]
        if self.use_xyz:
            grouped = torch.cat([grouped, pos[idx].to(grouped.dtype)], dim=-1)
        if self.normalize:
            if self.normalize == "center":
                mean = grouped.mean(dim=1, keepdim=True)
            else:
                anchor = torch.cat([new.x, new.pos.to(new.x.dtype)], -1) if self.use_xyz else new.x
                mean = anchor.unsqueeze(1)
            centred = grouped - mean
            std = _cloud_std(centred, new)  # [sum S, 1, 1]
            grouped = self.affine_alpha * (centred / (std + 1e-5)) + self.affine_beta
        return new, torch.cat([grouped, new.x.unsqueeze(1).expand(-1, self.k, -1)], dim=-1)


def _cloud_std(values: Tensor, points: Points) -> Tensor:
    """Unbiased standard deviation of all of each cloud's entries of ``values [sum S, ...]`` (one row per
    point of ``points``), per row ``[sum S, 1, 1]``."""
    batch, num = points.batch, points.num_clouds
    per_row = values.flatten(1)
    count = points.counts_on_device().to(values.dtype) * per_row.shape[1]
    mean = values.new_zeros(num).index_add(0, batch, per_row.sum(1)) / count
    sq = values.new_zeros(num).index_add(0, batch, (per_row - mean[batch, None]).pow(2).sum(1))
    std = (sq / (count - 1)).sqrt()
    return std[batch].view(-1, *([1] * (values.dim() - 1)))


class PreExtraction(nn.Module):
    """Transfer MLP, then ``blocks`` x ([context cluster +] residual MLP), then max over the neighbours.

    Shapes: ``[sum S, k, d_in]`` -> ``[sum S, d_out]``.
    """

    def __init__(self, in_dim: int, out_dim: int, blocks: int, res_expansion: float, bias: bool, act_layer: ActLayer,
                 cluster: bool) -> None:
        super().__init__()
        self.transfer = LinearBNAct(in_dim, out_dim, bias, act_layer)
        ops: list[nn.Module] = []
        for _ in range(blocks):
            if cluster:  # upstream: heads=1, head_dim=max(C // 4, 32), one centre (the group mean)
                ops.append(ContextCluster(out_dim, out_dim, num_heads=1, head_dim=max(out_dim // 4, 32), centers=1,
                                          regions=1))
            ops.append(ResidualMLP(out_dim, res_expansion, bias, act_layer))
        self.operation = nn.Sequential(*ops)

    def forward(self, x: Tensor) -> Tensor:
        x = self.transfer(x)
        for op in self.operation:
            x = x + op.forward_sets(x) if isinstance(op, ContextCluster) else op(x)
        return x.amax(dim=1)


class PostExtraction(nn.Module):
    """``blocks`` residual MLPs on ``[sum S, d]`` anchor features (PointMLP's Φ_pos, after the grouping)."""

    def __init__(self, dim: int, blocks: int, res_expansion: float, bias: bool, act_layer: ActLayer) -> None:
        super().__init__()
        self.operation = nn.Sequential(*(ResidualMLP(dim, res_expansion, bias, act_layer) for _ in range(blocks)))

    def forward(self, x: Tensor) -> Tensor:
        return self.operation(x)


#: deprecated argument names (upstream's; FutureWarning) and their replacements
RENAMED = dict(in_channels="in_chans", activation="act_layer", pre_blocks="pre_depths", pos_blocks="post_depths",
               k_neighbors="num_neighbors", reducers="reductions")


def grouper_min_points(groupers: Sequence[LocalGrouper], deepest: int = 1) -> int:
    """The smallest cloud that every grouper takes (``k`` points, at least one anchor) and that leaves
    ``deepest`` anchors after the last."""

    def fits(n: int) -> bool:
        for grouper in groupers:
            if n < grouper.k or n // grouper.reduction < 1:
                return False
            n //= grouper.reduction
        return n >= deepest

    n = 1
    while not fits(n):
        n += 1
    return n


class PointMLP(nn.Module):
    """PointMLP (``cluster=False``) and PointMLP-CoC (``cluster=True``).

    Args:
        num_classes: output classes (upstream ``class_num``).
        in_channels: extra per-point features besides xyz (0 as upstream).
        points: the cloud size upstream was designed for; anchors are taken relative to the
            actual size (``n // reduction`` per stage), which equals upstream's count at this size.
        embed_dim, res_expansion, act_layer, bias, use_xyz, normalize, dim_expansion, pre_blocks,
            pos_blocks, k_neighbors, reducers: as upstream ``Model``.
        cluster: add a single-centre context cluster before every pre-extraction residual MLP.
        fps_start: ``"first"`` (each cloud's index 0, as upstream's CUDA op: the default, for parity),
            ``"canonical"`` (the lexicographically smallest point: logits independent of the point order)
            or ``"random"`` (a random start in training, ``"first"`` in eval).

    Deprecated aliases: ``in_channels``, ``activation``, ``pre_blocks``, ``pos_blocks``, ``k_neighbors``,
    ``reducers``. The module names (``local_grouper_list``, ``pre_blocks_list``, ``pos_blocks_list``,
    ``embedding``, ``classifier``) stay upstream's: they are the keys of its checkpoints.

    Shapes:
        dense ``pos [B, N, 3]`` or flat ``pos [sum N, 3]`` with ``batch [sum N]``, or a ``Points``; optional
        ``x [..., in_chans]``; logits ``[B, num_classes]``. Upstream's ``[B, 3, N]`` input is
        ``pos.transpose(1, 2)``.
    """

    @renamed_arguments(**RENAMED)
    def __init__(self, num_classes: int = 40, in_chans: int = 0, points: int = 1024, embed_dim: int = 64,
                 res_expansion: float = 1.0, act_layer: ActLayer = "relu", bias: bool = False, use_xyz: bool = False,
                 normalize: str | None = "anchor", dim_expansion: Sequence[int] = (2, 2, 2, 2),
                 pre_depths: Sequence[int] = (2, 2, 2, 2), post_depths: Sequence[int] = (2, 2, 2, 2),
                 num_neighbors: Sequence[int] = (24, 24, 24, 24), reductions: Sequence[int] = (2, 2, 2, 2),
                 cluster: bool = False, fps_start: str = "first") -> None:
        super().__init__()
        check_stage_lengths(dim_expansion=dim_expansion, pre_depths=pre_depths, post_depths=post_depths,
                            num_neighbors=num_neighbors, reductions=reductions)
        if fps_start not in FPS_STARTS:
            raise ValueError(f"`fps_start` must be one of {FPS_STARTS}, got {fps_start!r}")
        _act(act_layer)  # an unknown activation fails here, naming the choices
        self.num_classes, self.in_chans, self.points = num_classes, in_chans, points
        self.embedding = LinearBNAct(3 + in_chans, embed_dim, bias, act_layer)
        self.local_grouper_list = nn.ModuleList()
        self.pre_blocks_list = nn.ModuleList()
        self.pos_blocks_list = nn.ModuleList()
        last = embed_dim
        for i, expansion in enumerate(dim_expansion):
            out = last * expansion
            self.local_grouper_list.append(LocalGrouper(last, num_neighbors[i], reductions[i], use_xyz, normalize,
                                                        fps_start))
            self.pre_blocks_list.append(PreExtraction(2 * last + (3 if use_xyz else 0), out, pre_depths[i],
                                                      res_expansion, bias, act_layer, cluster))
            self.pos_blocks_list.append(PostExtraction(out, post_depths[i], res_expansion, bias, act_layer))
            last = out
        self.num_features = last
        self.classifier = nn.Sequential(
            nn.Linear(last, 512), nn.BatchNorm1d(512), _act(act_layer), nn.Dropout(0.5),
            nn.Linear(512, 256), nn.BatchNorm1d(256), _act(act_layer), nn.Dropout(0.5),
            nn.Linear(256, num_classes),
        )

    @property
    def in_channels(self) -> int:
        """Deprecated name of :attr:`in_chans`."""
        return self.in_chans

    def min_points(self) -> int:
        """The smallest cloud this model accepts (every stage needs >= 1 anchor and ``k`` points)."""
        return grouper_min_points(self.local_grouper_list)

    def prepare(self, pos: Tensor | Points, x: Tensor | None = None, batch: Tensor | None = None) -> Points:
        """Check the input once: dense ``pos [B, N, 3]`` / flat ``[sum N, 3]`` (+ ``x``, ``batch``) or a ``Points``."""
        return prepare_points(pos, x, batch, self.in_chans, self.min_points())

    def forward_features(self, points: Points) -> list[Points]:
        """The encoder: one ``Points`` per stage (its anchors, features ``[sum S_i, C_i]``), finest first."""
        h = points.with_x(self.embedding(input_features(points)))
        stages = []
        for grouper, pre, post in zip(self.local_grouper_list, self.pre_blocks_list, self.pos_blocks_list):
            h, grouped = grouper(h)
            h = h.with_x(post(pre(grouped)))
            stages.append(h)
        return stages

    def forward_head(self, feats: list[Points] | Points | Tensor, pre_logits: bool = False) -> Tensor:
        """Logits ``[B, num_classes]`` from the stages (max over the last one's points) or pooled ``[B, C]``."""
        if isinstance(feats, list):
            feats = feats[-1]
        if isinstance(feats, Points):
            feats = global_max_pool(feats.x, feats.batch, size=feats.num_clouds)
        return feats if pre_logits else self.classifier(feats)

    def forward(self, pos: Tensor | Points, x: Tensor | None = None, batch: Tensor | None = None) -> Tensor:
        return self.forward_head(self.forward_features(self.prepare(pos, x, batch)))


# Upstream's names that differ from pointcoc's (pattern, replacement): the context cluster's fc1 / fc_v / fc2
# are the shared block's f / v / proj.
_UPSTREAM_RENAMES = ((r"^(pre_blocks_list\.\d+\.operation\.\d+)\.fc1\.", r"\1.f."),
                     (r"^(pre_blocks_list\.\d+\.operation\.\d+)\.fc_v\.", r"\1.v."),
                     (r"^(pre_blocks_list\.\d+\.operation\.\d+)\.fc2\.", r"\1.proj."))


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """An upstream (PointMLP, PointMLP-CoC) or pointcoc checkpoint -> this model's state dict: upstream's
    context-cluster names renamed, Conv1d weights and ``[1, 1, 1, C]`` affines reshaped."""
    return convert_layouts(model, unwrap_state_dict(state_dict), _UPSTREAM_RENAMES)


register_checkpoint_filter(PointMLP, checkpoint_filter_fn)


# name: hyper-parameters (upstream's pointMLP, pointMLPElite and pointMLP_CoC)
_POINTMLP = dict(embed_dim=64, res_expansion=1.0, dim_expansion=(2, 2, 2, 2), pre_depths=(2, 2, 2, 2),
                 post_depths=(2, 2, 2, 2), num_neighbors=(24, 24, 24, 24), reductions=(2, 2, 2, 2))
VARIANTS: dict[str, dict] = {
    "pointmlp": _POINTMLP,
    "pointmlp_elite": dict(embed_dim=32, res_expansion=0.25, dim_expansion=(2, 2, 2, 1), pre_depths=(1, 1, 2, 1),
                           post_depths=(1, 1, 2, 1), num_neighbors=(24, 24, 24, 24), reductions=(2, 2, 2, 2)),
    "pointmlp_coc": {**_POINTMLP, "cluster": True},
}


@renamed_arguments(_owner="PointMLP (create_model)", **RENAMED)
def _create_pointmlp(variant: str, **kwargs) -> PointMLP:
    return PointMLP(**{**VARIANTS[variant], **kwargs})


@register("point")
def pointmlp(**kwargs) -> PointMLP:
    """PointMLP (upstream ``pointMLP``): 13.2M parameters with 40 classes."""
    return _create_pointmlp("pointmlp", **kwargs)


@register("point")
def pointmlp_elite(**kwargs) -> PointMLP:
    """PointMLP-elite (upstream ``pointMLPElite``): 0.72M parameters with 40 classes."""
    return _create_pointmlp("pointmlp_elite", **kwargs)


@register("point")
def pointmlp_coc(**kwargs) -> PointMLP:
    """PointMLP-CoC (upstream ``pointMLP_CoC``): 15.3M parameters with 15 classes (ScanObjectNN)."""
    return _create_pointmlp("pointmlp_coc", **kwargs)
