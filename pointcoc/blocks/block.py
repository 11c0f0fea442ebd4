"""ClusterBlock: a MetaFormer block with the context-cluster token mixer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import Mlp
from torch import Tensor, nn

from pointcoc.blocks.cluster import ContextCluster, PointPartition
from pointcoc.blocks.layers import DropPath, SampleNorm, apply_norm

__all__ = ["ClusterBlock", "cluster_stage"]


class ClusterBlock(nn.Module):
    """``x + drop_path(ls1 * mixer(norm1(x)))``, then ``x + drop_path(ls2 * mlp(norm2(x)))``.

    Args:
        dim: channels ``C``.
        mlp_ratio: hidden width of the MLP as a multiple of ``dim``.
        heads, head_dim, centers, regions, center_k, denominator: passed to :class:`ContextCluster`.
        norm_layer: norm type, built as ``norm_layer(dim)``; norms with ``accepts_batch``
            (like :class:`SampleNorm`, upstream's ``GroupNorm(1, C)``) get the flat ``batch``.
        act_layer: activation type of the MLP.
        drop: dropout in the MLP.
        drop_path: stochastic-depth probability (per sample; per cloud in flat batches).
        layer_scale_init_value: initial layer scale; ``None`` disables layer scale.

    Shapes:
        as :class:`ContextCluster`: ``[B, H, W, C]``, ``[B, N, C]`` (+ ``pos``) or
        ``[sum N, C]`` (+ ``pos``, ``batch``); the output has the input's shape.
    """

    def __init__(self, dim: int, mlp_ratio: float = 4.0, heads: int = 4, head_dim: int = 24,
                 centers: int | tuple[int, int] = (2, 2), regions: int | tuple[int, int] = (1, 1),
                 center_k: int | None = None, norm_layer: type[nn.Module] = SampleNorm,
                 act_layer: type[nn.Module] = nn.GELU, drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale_init_value: float | None = 1e-5, denominator: str = "weights") -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.token_mixer = ContextCluster(dim, dim, heads=heads, head_dim=head_dim, centers=centers,
                                          regions=regions, center_k=center_k, denominator=denominator)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        self.drop_path = DropPath(drop_path)
        self.use_layer_scale = layer_scale_init_value is not None
        if self.use_layer_scale:
            self.layer_scale_1 = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
            self.layer_scale_2 = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))

    def partition(self, pos: Tensor, batch: Tensor | None = None) -> PointPartition:
        """The point partition of this block's mixer (compute once per stage, pass to every block)."""
        return self.token_mixer.partition(pos, batch)

    def forward(self, x: Tensor, pos: Tensor | None = None, batch: Tensor | None = None,
                partition: PointPartition | None = None) -> Tensor:
        flat_batch = batch if x.dim() == 2 else None
        mixed = self.token_mixer(apply_norm(self.norm1, x, flat_batch), pos, batch, partition)
        if self.use_layer_scale:
            mixed = self.layer_scale_1 * mixed
        x = x + self.drop_path(mixed, flat_batch)
        hidden = self.mlp(apply_norm(self.norm2, x, flat_batch))
        if self.use_layer_scale:
            hidden = self.layer_scale_2 * hidden
        return x + self.drop_path(hidden, flat_batch)


def cluster_stage(blocks: Sequence[ClusterBlock], x: Tensor, pos: Tensor | None = None,
                  batch: Tensor | None = None) -> Tensor:
    """Run consecutive ClusterBlocks on one point set, computing the point partition once.

    The blocks of a stage see the same points, so their regions and centre
    proposals (FPS, kNN) are shared; only the features change.

    Args:
        blocks: the blocks of the stage (all with the same centre/region settings).
        x: ``[B, N, C]`` dense or ``[sum N, C]`` flat features; an image map
            ``[B, H, W, C]`` is passed through the grid path block by block.
        pos: ``[B, N, D]`` or ``[sum N, D]`` positions.
        batch: flat form, ``[sum N]`` cloud ids.

    Returns:
        the features after the last block, shaped like ``x``.
    """
    if not blocks:
        return x
    if x.dim() == 4:
        for blk in blocks:
            x = blk(x)
        return x
    if pos is None:
        raise ValueError(f"point features {tuple(x.shape)} need `pos` for a cluster stage")
    dense = x.dim() == 3
    if dense:
        B, N, _ = x.shape
        x, pos = x.reshape(B * N, -1), pos.reshape(B * N, -1)
        batch = torch.arange(B, device=x.device).repeat_interleave(N)
    part = blocks[0].partition(pos, batch)
    for blk in blocks:
        x = blk(x, pos, batch, part)
    return x.view(B, N, -1) if dense else x
