"""PointMLP part segmentation (upstream ``part_segmentation/model/pointMLP.py``), channels last, on pointcoc ops.

Paper: Ma et al., "Rethinking Network Design and Local Geometry in Point Cloud: A Simple Residual MLP
Framework", ICLR 2022 (https://arxiv.org/abs/2202.07123); code: https://github.com/ma-xu/pointMLP-pytorch.

The encoder is the classification PointMLP's (:mod:`pointcoc.models.pointmlp`): an embedding of xyz and
normals together, then per stage FPS anchors, ``k`` neighbours normalised around the anchor (with their
xyz, ``use_xyz=True``, divided by one unbiased std per cloud plus 1e-5), residual MLPs and a max over the
neighbours. The decoder goes back level by level, deepest first (PointNet++ feature propagation):

1. each point of the finer level takes its 3 nearest points of the coarser level, weighted by
   ``1 / (d + 1e-8)`` and normalised, where ``d`` is the squared distance in upstream's expanded form
   ``|a|^2 + |b|^2 - 2 a.b`` (an anchor's distance to itself is float noise, possibly slightly negative, as
   upstream's);
2. ``fuse`` (Linear-BN-ReLU, always ReLU) reads ``[skip, interpolated]``, the skip features first;
3. residual MLPs (``extraction``).

A global context (Linear-BN-act then a max over the points, for each of the 5 encoder levels, deepest first,
concatenated, then Linear-BN-act) and the category embedding (two Linear-BN-act layers on the one-hot) are
repeated over the points; the classifier reads ``[decoder, global, category]`` and the output is
``log_softmax`` over the parts. Upstream's ``Conv1d(kernel_size=1)`` layers are ``nn.Linear`` here; the module
names are upstream's state-dict keys, so its checkpoints (``{'model': ...}``, ``module.`` prefixed under
DataParallel) load strictly after a shape conversion.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import global_max_pool

from pointcoc.models._common import FPS_STARTS, category_one_hot, check_stage_lengths, input_features, prepare_points
from pointcoc.models.checkpoint import convert_layouts, register_checkpoint_filter, unwrap_state_dict
from pointcoc.models.pointmlp import (
    ActLayer,
    BatchNormLast,
    LinearBNAct,
    LocalGrouper,
    PostExtraction,
    PreExtraction,
    _act,
    grouper_min_points,
)
from pointcoc.models.registry import register
from pointcoc.ops import Points, knn_points

__all__ = ["PointMLPPartSeg", "FeaturePropagation", "three_nn_interpolate", "pointmlp_partseg",
           "NUM_CATEGORIES", "NUM_PARTS"]

#: ShapeNetPart: shape categories and part classes
NUM_CATEGORIES = 16
NUM_PARTS = 50


def three_nn_interpolate(coarse: Points, fine: Points) -> tuple[Tensor, Tensor]:
    """Upstream's 3-NN interpolation weights from ``coarse`` to the points of ``fine`` (same clouds).

    The three nearest coarse points of every fine point (torch-cluster's exact kNN); their squared distances in
    upstream's expanded form ``|a|^2 + |b|^2 - 2 a.b``, ascending; weights ``1 / (d + 1e-8)`` normalised to sum 1.

    Returns:
        ``idx [sum N_fine, 3]`` global indices into ``coarse`` (ascending expanded distance) and
        ``weight [sum N_fine, 3]``.
    """
    idx = knn_points(coarse, fine.pos, fine.batch, 3)
    a, b = fine.pos, coarse.pos[idx]  # [Q, 3], [Q, 3, 3]
    dots = torch.matmul(b, a.unsqueeze(-1)).squeeze(-1)  # [Q, 3]
    dist = -2 * dots + a.pow(2).sum(-1, keepdim=True) + b.pow(2).sum(-1)
    dist, order = dist.sort(dim=-1, stable=True)
    idx = idx.gather(1, order)
    recip = 1.0 / (dist + 1e-8)
    return idx, recip / recip.sum(dim=-1, keepdim=True)


class FeaturePropagation(nn.Module):
    """One decoder level (upstream ``PointNetFeaturePropagation``): 3-NN interpolation of the coarse features
    onto the finer points, ``fuse`` on ``[skip, interpolated]`` (Linear-BN-ReLU) and residual MLPs.

    Shapes: coarse features ``[sum S, d_coarse]``, skip ``[sum N, d_skip]`` -> ``[sum N, out_dim]``.
    """

    def __init__(self, in_dim: int, out_dim: int, blocks: int, res_expansion: float, bias: bool,
                 act_layer: ActLayer) -> None:
        super().__init__()
        self.fuse = LinearBNAct(in_dim, out_dim, bias, "relu")  # upstream leaves fuse at its default, ReLU
        self.extraction = PostExtraction(out_dim, blocks, res_expansion, bias, act_layer)

    def forward(self, coarse: Points, fine: Points) -> Tensor:
        """``coarse`` (features ``x``) -> features of ``fine``'s points; ``fine.x`` are the skip features."""
        idx, weight = three_nn_interpolate(coarse, fine)
        interpolated = (coarse.x[idx] * weight.to(coarse.x.dtype).unsqueeze(-1)).sum(dim=1)
        return self.extraction(self.fuse(torch.cat([fine.x, interpolated], dim=-1)))


class PointMLPPartSeg(nn.Module):
    """PointMLP for part segmentation (upstream ``PointMLP`` in ``part_segmentation/model/pointMLP.py``).

    Args:
        num_classes: part classes (50 for ShapeNetPart).
        num_categories: shape categories of the one-hot (16 for ShapeNetPart).
        in_chans: per-point features besides xyz (3: the normals, as upstream).
        points: the cloud size upstream was designed for; anchors are ``n // reduction`` of the actual size,
            which equals upstream's count at this size.
        embed_dim, res_expansion, act_layer, bias, use_xyz, normalize, dim_expansion, pre_depths, post_depths,
            num_neighbors, reductions: as upstream (``activation``, ``pre_blocks``, ``pos_blocks``,
            ``k_neighbors``, ``reducers``).
        de_dims: decoder channels per level, deepest first (one per stage; upstream's list before its
            constructor inserts the encoder's last width in front: this one is not mutated).
        de_blocks: residual MLPs per decoder level.
        gmp_dim: channels of the global context; cls_dim: channels of the category embedding.
        fps_start: ``"first"`` (index 0, for parity), ``"canonical"`` or ``"random"`` (see :class:`PointMLP`).

    Shapes:
        ``model(pos, x, category)``: dense ``pos [B, N, 3]`` and normals ``x [B, N, 3]``, or flat ``[sum N, 3]``
        with ``batch``, or a ``Points``; ``category`` ``[B]`` integer indices or ``[B, num_categories]``
        one-hot (float). Returns log-probabilities ``[B, N, num_classes]`` (``[sum N, num_classes]`` for
        flat input). Upstream's ``model(xyz [B, 3, N], normals [B, 3, N], one_hot)`` is
        ``model(xyz.transpose(1, 2), normals.transpose(1, 2), one_hot)``.
    """

    def __init__(self, num_classes: int = NUM_PARTS, num_categories: int = NUM_CATEGORIES, in_chans: int = 3,
                 points: int = 2048, embed_dim: int = 64, res_expansion: float = 1.0, act_layer: ActLayer = "relu",
                 bias: bool = True, use_xyz: bool = True, normalize: str | None = "anchor",
                 dim_expansion: Sequence[int] = (2, 2, 2, 2), pre_depths: Sequence[int] = (2, 2, 2, 2),
                 post_depths: Sequence[int] = (2, 2, 2, 2), num_neighbors: Sequence[int] = (32, 32, 32, 32),
                 reductions: Sequence[int] = (4, 4, 4, 4), de_dims: Sequence[int] = (512, 256, 128, 128),
                 de_blocks: Sequence[int] = (4, 4, 4, 4), gmp_dim: int = 64, cls_dim: int = 64,
                 fps_start: str = "first") -> None:
        super().__init__()
        check_stage_lengths(dim_expansion=dim_expansion, pre_depths=pre_depths, post_depths=post_depths,
                            num_neighbors=num_neighbors, reductions=reductions, de_dims=de_dims,
                            de_blocks=de_blocks)
        if fps_start not in FPS_STARTS:
            raise ValueError(f"`fps_start` must be one of {FPS_STARTS}, got {fps_start!r}")
        if num_categories < 1 or num_classes < 1:
            raise ValueError(f"`num_classes` and `num_categories` must be >= 1, got {num_classes}, {num_categories}")
        _act(act_layer)  # an unknown activation fails here, naming the choices
        self.num_classes, self.num_categories = num_classes, num_categories
        self.in_chans, self.points = in_chans, points
        self.embedding = LinearBNAct(3 + in_chans, embed_dim, bias, act_layer)
        self.local_grouper_list = nn.ModuleList()
        self.pre_blocks_list = nn.ModuleList()
        self.pos_blocks_list = nn.ModuleList()
        en_dims = [embed_dim]
        for i, expansion in enumerate(dim_expansion):
            last, out = en_dims[-1], en_dims[-1] * expansion
            self.local_grouper_list.append(LocalGrouper(last, num_neighbors[i], reductions[i], use_xyz, normalize,
                                                        fps_start))
            self.pre_blocks_list.append(PreExtraction(2 * last + (3 if use_xyz else 0), out, pre_depths[i],
                                                      res_expansion, bias, act_layer, cluster=False))
            self.pos_blocks_list.append(PostExtraction(out, post_depths[i], res_expansion, bias, act_layer))
            en_dims.append(out)
        en_dims.reverse()  # deepest first
        dims = [en_dims[0], *de_dims]  # upstream inserts the deepest width in front (into its argument)
        self.decode_list = nn.ModuleList(
            FeaturePropagation(dims[i] + en_dims[i + 1], dims[i + 1], de_blocks[i], res_expansion, bias, act_layer)
            for i in range(len(de_dims)))
        self.cls_map = nn.Sequential(LinearBNAct(num_categories, cls_dim, bias, act_layer),
                                     LinearBNAct(cls_dim, cls_dim, bias, act_layer))
        self.gmp_map_list = nn.ModuleList(LinearBNAct(d, gmp_dim, bias, act_layer) for d in en_dims)
        self.gmp_map_end = LinearBNAct(gmp_dim * len(en_dims), gmp_dim, bias, act_layer)
        self.classifier = nn.Sequential(nn.Linear(gmp_dim + cls_dim + dims[-1], 128, bias=bias), BatchNormLast(128),
                                        nn.Dropout(0.5), nn.Linear(128, num_classes, bias=bias))
        self.en_dims = en_dims
        self.num_features = dims[-1]

    # ------------------------------------------------------------------ input
    def min_points(self) -> int:
        """The smallest cloud this model accepts: every stage needs ``k`` points and the deepest level at least 3
        anchors for the 3-NN interpolation (upstream fails on 2 and repeats a single one)."""
        return grouper_min_points(self.local_grouper_list, deepest=3)

    def prepare(self, pos: Tensor | Points, x: Tensor | None = None, batch: Tensor | None = None) -> Points:
        """Check the points once: dense ``pos [B, N, 3]`` / flat ``[sum N, 3]`` (+ normals ``x``, ``batch``) or a
        ``Points``."""
        return prepare_points(pos, x, batch, self.in_chans, self.min_points())

    def category_one_hot(self, category: Tensor | None, num_clouds: int, like: Tensor) -> Tensor:
        """``[B]`` indices or a ``[B, num_categories]`` one-hot -> ``[B, num_categories]`` (see
        :func:`~pointcoc.models._common.category_one_hot`)."""
        return category_one_hot(category, self.num_categories, num_clouds, like)

    # ------------------------------------------------------------------ forward
    def forward_features(self, points: Points) -> list[Points]:
        """The encoder: the embedded points, then one ``Points`` per stage (its anchors), finest first."""
        h = points.with_x(self.embedding(input_features(points)))
        levels = [h]
        for grouper, pre, post in zip(self.local_grouper_list, self.pre_blocks_list, self.pos_blocks_list):
            h, grouped = grouper(h)
            h = h.with_x(post(pre(grouped)))
            levels.append(h)
        return levels

    def forward_decoder(self, levels: list[Points]) -> Tensor:
        """Per-point decoder features ``[sum N, de_dims[-1]]`` of the finest level from the encoder's levels."""
        deep = levels[::-1]
        h = deep[0]
        for i, decode in enumerate(self.decode_list):
            h = deep[i + 1].with_x(decode(h, deep[i + 1]))
        return h.x

    def global_context(self, levels: list[Points]) -> Tensor:
        """``[B, gmp_dim]``: each level mapped and max-pooled over its points, deepest first, then fused."""
        pooled = [global_max_pool(m(p.x), p.batch, size=p.num_clouds) for m, p in zip(self.gmp_map_list, levels[::-1])]
        return self.gmp_map_end(torch.cat(pooled, dim=-1))

    def forward_head(self, points: Points, feats: Tensor, context: Tensor, category: Tensor) -> Tensor:
        """Log-probabilities ``[sum N, num_classes]`` from the decoder features ``[sum N, C]``, the global context
        ``[B, gmp_dim]`` and the one-hot category ``[B, num_categories]``."""
        cls = self.cls_map(category.to(feats.dtype))
        x = torch.cat([feats, context[points.batch], cls[points.batch]], dim=-1)
        return F.log_softmax(self.classifier(x), dim=-1)

    def forward(self, pos: Tensor | Points, x: Tensor | None = None, category: Tensor | None = None,
                batch: Tensor | None = None) -> Tensor:
        points = self.prepare(pos, x, batch)
        one_hot = self.category_one_hot(category, points.num_clouds, points.pos)
        levels = self.forward_features(points)
        out = self.forward_head(points, self.forward_decoder(levels), self.global_context(levels), one_hot)
        return points.dense(out) if points.from_dense_batch else out


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """An upstream or pointcoc part-seg checkpoint -> this model's state dict: unwrapped (``{'model': ...}``,
    ``module.`` prefixes), Conv1d weights ``[out, in, 1]`` and ``[1, 1, 1, C]`` affines reshaped."""
    return convert_layouts(model, unwrap_state_dict(state_dict))


register_checkpoint_filter(PointMLPPartSeg, checkpoint_filter_fn)


@register("partseg")
def pointmlp_partseg(**kwargs) -> PointMLPPartSeg:
    """PointMLP part segmentation (upstream ``pointMLP(num_classes=50)``): 16.76M parameters, 50 parts of 16
    categories; ``model(pos, normals, category)`` -> ``[B, N, 50]`` log-probabilities."""
    return PointMLPPartSeg(**kwargs)
