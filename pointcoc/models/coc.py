"""CoC: Context-Cluster image models, made of pointcoc blocks.

Paper: Ma et al., "Image as Set of Points", ICLR 2023, https://arxiv.org/abs/2303.01494
Reference code: https://github.com/ma-xu/Context-Cluster (``models/context_cluster.py``)

Every pixel is a point with the 5-D feature ``(r, g, b, x, y)``; a point
reducer (4x4, stride 4) embeds the set, four stages of :class:`ClusterBlock`
mix it, point reducers (3x3, stride 2) shrink it between stages, and a norm,
global mean pool and linear head classify it. On an image the reducers run
as strided convolutions and the clusters use adaptive-pooling centres in
fixed windows (the fast path); :meth:`CoC.forward_points` runs the same
weights on an unordered set of pixels through FPS and kNN.

The state-dict layout (``patch_embed``, ``network.{i}``, ``norm``, ``head``)
follows upstream, so upstream checkpoints load after a shape conversion
(:mod:`pointcoc.models.upstream`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import trunc_normal_
from timm.models import build_model_with_cfg, register_model
from timm.models._features import feature_take_indices
from torch import Tensor, nn
from torch_geometric.nn import global_mean_pool

from pointcoc.blocks import ClusterBlock, ClusterStage, PointReducer, SampleNorm, apply_norm
from pointcoc.errors import renamed_arguments
from pointcoc.models._common import check_stage_lengths, drop_path_rates
from pointcoc.models.checkpoint import convert_layouts, register_checkpoint_filter, unwrap_state_dict
from pointcoc.models.registry import register
from pointcoc.ops import Points

__all__ = ["CoC", "pixel_features", "image_to_points"]


def pixel_features(rows: Tensor, cols: Tensor, height: int, width: int) -> Tensor:
    """Positional features ``(x, y)`` of pixels: ``index / (size - 1) - 0.5`` per axis, in float32.

    Upstream computes them in float32 even for a float64 model; so does this
    (cast to the model's dtype afterwards). A side of length 1 gives 0.

    Args:
        rows, cols: ``[...]`` pixel indices along height (tensor dim 2) and width.
        height, width: image size.

    Returns:
        ``[..., 2]`` float32.
    """
    def axis(idx: Tensor, size: int) -> Tensor:
        idx = idx.to(torch.float32)
        return idx / (size - 1.0) - 0.5 if size > 1 else torch.zeros_like(idx)

    return torch.stack([axis(rows, height), axis(cols, width)], dim=-1)


def image_to_points(images: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Turn images into flat pixel point sets.

    Args:
        images: ``[B, 3, H, W]``.
        mask: optional ``[B, H, W]`` bool, the pixels to keep (e.g. an object without its background).

    Returns:
        ``rgb [P, 3]``, ``pos [P, 2]`` pixel ``(row, col)`` coordinates and ``batch [P]``.
    """
    B, C, H, W = images.shape
    keep = torch.ones(B, H, W, dtype=torch.bool, device=images.device) if mask is None else mask
    b, r, c = torch.nonzero(keep, as_tuple=True)
    rgb = images.permute(0, 2, 3, 1)[b, r, c]
    return rgb, torch.stack([r, c], -1).to(images.dtype), b


#: deprecated argument names (FutureWarning) and their replacements
RENAMED = dict(heads="num_heads", head_dims="head_dim")


class CoC(nn.Module):
    """Context-Cluster image classifier (and dense-prediction backbone with ``fork_feat``).

    Args:
        depths: ClusterBlocks per stage (upstream ``layers``).
        dims: channels per stage (upstream ``embed_dims``).
        mlp_ratios: MLP expansion per stage.
        num_heads, head_dim: context-cluster heads and head width per stage (deprecated aliases: ``heads``,
            ``head_dims``).
        centers: ``(rows, cols)`` centres per region per stage (upstream ``(proposal_w, proposal_h)``:
            upstream's "w" is tensor dim 2, the image height).
        regions: ``(rows, cols)`` windows per stage (upstream ``(fold_w, fold_h)``).
        downsamples: whether a point reducer follows stage ``i`` (one is also added when
            the width changes), as upstream.
        num_classes: classes of the head (0: no head).
        in_chans: image channels.
        in_patch_size, in_stride, in_pad: the embedding reducer's patch.
        down_patch_size, down_stride, down_pad: the reducers between stages.
        norm_layer: norm type (upstream ``GroupNorm`` = :class:`SampleNorm`).
        act_layer: MLP activation type.
        drop_rate: dropout in the MLPs.
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
        layer_scale_init_value: initial layer scale, ``None`` disables it.
        fork_feat: dense-prediction mode: no head; ``forward`` returns the four
            stage outputs, each through its own norm (``norm0``, ``norm2``, ...), as ``[B, C, H, W]``.
        denominator: ``"weights"`` (default, the paper) or ``"count"`` (early upstream checkpoints).

    Shapes:
        ``forward``: images ``[B, in_chans, H, W]`` -> logits ``[B, num_classes]``;
        ``forward_features``: -> ``[B, H/32, W/32, dims[-1]]`` (channels last);
        ``forward_points``: pixels ``rgb [sum N, 3]``, ``pos [sum N, 2]``, ``batch`` -> logits.
    """

    @renamed_arguments(**RENAMED)
    def __init__(self, depths: Sequence[int] = (3, 4, 5, 2), dims: Sequence[int] = (32, 64, 196, 320),
                 mlp_ratios: Sequence[float] = (8, 8, 4, 4), num_heads: Sequence[int] = (4, 4, 8, 8),
                 head_dim: Sequence[int] = (24, 24, 24, 24),
                 centers: Sequence[tuple[int, int]] = ((2, 2),) * 4,
                 regions: Sequence[tuple[int, int]] = ((8, 8), (4, 4), (2, 2), (1, 1)),
                 downsamples: Sequence[bool] = (True, True, True, True), num_classes: int = 1000,
                 in_chans: int = 3, in_patch_size: int = 4, in_stride: int = 4, in_pad: int = 0,
                 down_patch_size: int = 3, down_stride: int = 2, down_pad: int = 1,
                 norm_layer: type[nn.Module] = SampleNorm, act_layer: type[nn.Module] = nn.GELU,
                 drop_rate: float = 0.0, drop_path_rate: float = 0.0, layer_scale_init_value: float | None = 1e-5,
                 fork_feat: bool = False, denominator: str = "weights", global_pool: str = "avg") -> None:
        super().__init__()
        check_stage_lengths(depths=depths, dims=dims, mlp_ratios=mlp_ratios, num_heads=num_heads, head_dim=head_dim,
                            centers=centers, regions=regions)
        if global_pool not in ("avg", ""):
            raise ValueError(f"`global_pool` must be 'avg' or '', got {global_pool!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.fork_feat = fork_feat
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = dims[-1]
        self.patch_embed = PointReducer(in_chans + 2, dims[0], kernel_size=in_patch_size, stride=in_stride,
                                        padding=in_pad, neighbor_order="offset")
        rates = drop_path_rates(drop_path_rate, depths)
        network: list[nn.Module] = []
        self.stage_index: list[int] = []  # position of each stage in `network`
        self.feature_info: list[dict] = []
        reduction = in_stride
        for i, depth in enumerate(depths):
            blocks = ClusterStage(
                ClusterBlock(dims[i], mlp_ratio=mlp_ratios[i], num_heads=num_heads[i], head_dim=head_dim[i],
                             centers=tuple(centers[i]), regions=tuple(regions[i]), norm_layer=norm_layer,
                             act_layer=act_layer, drop=drop_rate,
                             drop_path=rates[i][j],
                             layer_scale_init_value=layer_scale_init_value, denominator=denominator)
                for j in range(depth))
            self.stage_index.append(len(network))
            self.feature_info.append({"num_chs": dims[i], "reduction": reduction, "module": f"network.{len(network)}"})
            network.append(blocks)
            if i < len(depths) - 1 and (downsamples[i] or dims[i] != dims[i + 1]):
                network.append(PointReducer(dims[i], dims[i + 1], kernel_size=down_patch_size, stride=down_stride,
                                            padding=down_pad, neighbor_order="offset"))
                reduction *= down_stride
        self.network = nn.ModuleList(network)
        if fork_feat:
            for idx, dim in zip(self.stage_index, dims):
                self.add_module(f"norm{idx}", norm_layer(dim))
        else:
            self.norm = norm_layer(dims[-1])
            self.head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ timm interface
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head with a fresh ``Linear(num_features, num_classes)`` (0: identity)."""
        if self.fork_feat:
            raise ValueError("a fork_feat model has no classifier")
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"`global_pool` must be 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def embed(self, x: Tensor) -> Tensor:
        """Images ``[B, C, H, W]`` -> embedded map ``[B, H/4, W/4, dims[0]]`` (positions appended first)."""
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected images [B, {self.in_chans}, H, W], got {tuple(x.shape)}")
        B, _, H, W = x.shape
        rows = torch.arange(H, device=x.device)[:, None].expand(H, W)
        cols = torch.arange(W, device=x.device)[None, :].expand(H, W)
        pos = pixel_features(rows, cols, H, W).to(x.dtype).permute(2, 0, 1).expand(B, -1, -1, -1)
        inp = torch.cat([x, pos], dim=1).permute(0, 2, 3, 1)  # channels-last view
        return self.patch_embed(inp).contiguous()

    def forward_intermediates(self, x: Tensor, indices: int | list[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """Stage outputs for dense prediction (timm API).

        Args:
            x: images ``[B, C, H, W]``.
            indices: stages to return (``None``: all; int ``n``: the last ``n``).
            norm: apply the ``fork_feat`` norms (when the model has them).
            stop_early: stop after the last requested stage.
            output_fmt: ``"NCHW"`` or ``"NHWC"``.
            intermediates_only: return only the list of stage outputs.
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"`output_fmt` must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        take, max_index = feature_take_indices(len(self.stage_index), indices)
        last = self.stage_index[max_index] if stop_early else len(self.network) - 1
        h = self.embed(x)
        out = []
        for idx, module in enumerate(self.network[: last + 1]):
            h = module.forward_grid(h)
            if idx in self.stage_index and self.stage_index.index(idx) in take:
                feat = getattr(self, f"norm{idx}")(h) if norm and hasattr(self, f"norm{idx}") else h
                out.append(feat.permute(0, 3, 1, 2) if output_fmt == "NCHW" else feat)
        if intermediates_only:
            return out
        if not self.fork_feat and last == len(self.network) - 1:
            h = self.norm(h)
        return h, out

    def prune_intermediate_layers(self, indices: int | list[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the stages after the last requested one (timm API, used by ``features_only``)."""
        take, max_index = feature_take_indices(len(self.stage_index), indices)
        self.network = self.network[: self.stage_index[max_index] + 1]
        self.stage_index = self.stage_index[: max_index + 1]
        if prune_head and not self.fork_feat:
            self.head = nn.Identity()
        if prune_norm and not self.fork_feat:
            self.norm = nn.Identity()
        return take

    def forward_features(self, x: Tensor) -> Tensor:
        """Images ``[B, C, H, W]`` -> normalised last-stage map ``[B, h, w, C]`` (channels last)."""
        if self.fork_feat:
            raise ValueError("a fork_feat model returns stage features from forward(); it has no final norm")
        h = self.embed(x)
        for module in self.network:
            h = module.forward_grid(h)
        return self.norm(h)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """``[B, h, w, C]`` map (or pooled ``[B, C]``) -> logits ``[B, num_classes]`` (or pooled features)."""
        if x.dim() == 4 and self.global_pool == "avg":
            x = x.mean(dim=(1, 2))
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        if self.fork_feat:
            return self.forward_intermediates(x, norm=True, intermediates_only=True)
        return self.forward_head(self.forward_features(x))

    # ------------------------------------------------------------------ images as point sets
    def forward_points(self, rgb: Tensor, pos: Tensor, batch: Tensor | None = None,
                       image_size: tuple[int, int] | None = None, pre_logits: bool = False) -> Tensor:
        """Classify unordered sets of pixels with the same weights, through FPS and kNN.

        The embedding and the reducers pick anchors by FPS and their ``k`` nearest
        pixels (``k`` = patch size, neighbours in kernel order by offset); the
        cluster blocks split each set into FPS regions (as many as the image
        path's windows) with FPS-proposed centres. The result does not depend on
        the order of the pixels, and any subset of an image's pixels works.

        Args:
            rgb: ``[sum N, in_chans]`` (or dense ``[B, N, in_chans]``) pixel values, normalised
                like the images.
            pos: ``[sum N, 2]`` (or ``[B, N, 2]``) pixel ``(row, col)`` coordinates.
            batch: flat form, the image id of every pixel (sorted).
            image_size: ``(H, W)`` for the positional features (default: the extent of ``pos``).
            pre_logits: return pooled features instead of logits.

        Returns:
            ``[B, num_classes]`` logits (``[B, num_features]`` with ``pre_logits``).
        """
        if self.fork_feat:
            raise ValueError("forward_points classifies; build the model without fork_feat")
        if rgb.shape[:-1] != pos.shape[:-1] or pos.shape[-1] != 2 or rgb.shape[-1] != self.in_chans:
            raise ValueError(f"expected rgb [..., {self.in_chans}] and pos [..., 2] over the same pixels, got "
                             f"{tuple(rgb.shape)} and {tuple(pos.shape)}")
        points = Points.from_dense(pos.to(rgb.dtype), rgb) if rgb.dim() == 3 else Points(pos.to(rgb.dtype), rgb, batch)
        if image_size is None:
            image_size = (int(points.pos[:, 0].max()) + 1, int(points.pos[:, 1].max()) + 1)
        pix = pixel_features(points.pos[:, 0], points.pos[:, 1], *image_size).to(rgb.dtype)
        h = self.patch_embed.forward_points(points.with_x(torch.cat([points.x, pix], dim=-1)))
        for module in self.network:
            h = module.forward_points(h)
        feats = apply_norm(self.norm, h.x, h)
        pooled = global_mean_pool(feats, h.batch, size=h.num_clouds)
        return pooled if pre_logits else self.head(pooled)


# ---------------------------------------------------------------------- zoo
def _cfg(**kwargs) -> dict:
    return {"url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7), "crop_pct": 0.9,
            "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
            "first_conv": "patch_embed.proj", "classifier": "head", "license": "apache-2.0", **kwargs}


# name: (hyper-parameters, upstream ImageNet top-1 from the upstream README, or None)
ZOO: dict[str, dict] = {
    "coc_tiny": dict(depths=(3, 4, 5, 2), dims=(32, 64, 196, 320), num_heads=(4, 4, 8, 8), head_dim=(24,) * 4,
                     centers=((2, 2),) * 4, regions=((8, 8), (4, 4), (2, 2), (1, 1))),
    "coc_tiny2": dict(depths=(3, 4, 5, 2), dims=(32, 64, 196, 320), num_heads=(4, 4, 8, 8), head_dim=(24,) * 4,
                      centers=((4, 4), (2, 2), (7, 7), (4, 4)), regions=((7, 7), (7, 7), (1, 1), (1, 1))),
    "coc_tiny_plain": dict(depths=(3, 4, 5, 2), dims=(32, 64, 196, 320), num_heads=(4, 4, 8, 8), head_dim=(24,) * 4,
                           centers=((4, 4), (4, 4), (2, 2), (2, 2)), regions=((1, 1),) * 4),
    "coc_small": dict(depths=(2, 2, 6, 2), dims=(64, 128, 320, 512), num_heads=(4, 4, 8, 8), head_dim=(32,) * 4,
                      centers=((2, 2),) * 4, regions=((8, 8), (4, 4), (2, 2), (1, 1))),
    "coc_medium": dict(depths=(4, 4, 12, 4), dims=(64, 128, 320, 512), num_heads=(6, 6, 12, 12), head_dim=(32,) * 4,
                       centers=((2, 2),) * 4, regions=((8, 8), (4, 4), (2, 2), (1, 1))),
    "coc_base_dim64": dict(depths=(6, 6, 24, 6), dims=(64, 128, 320, 512), num_heads=(8, 8, 16, 16),
                           head_dim=(32,) * 4, centers=((2, 2),) * 4, regions=((8, 8), (4, 4), (2, 2), (1, 1))),
    "coc_base_dim96": dict(depths=(4, 4, 12, 4), dims=(96, 192, 384, 768), num_heads=(8, 8, 16, 16),
                           head_dim=(32,) * 4, centers=((2, 2),) * 4, regions=((8, 8), (4, 4), (2, 2), (1, 1))),
}
for _name in ZOO:
    ZOO[_name].update(mlp_ratios=(8, 8, 4, 4))

default_cfgs = {name: _cfg() for name in ZOO}


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """timm ``pretrained_filter_fn``: an upstream or pointcoc CoC checkpoint -> this model's state dict.

    Upstream's NCHW 1x1 (and patch) convolutions become pointcoc's channels-last linear layers by a
    reshape (:func:`~pointcoc.models.checkpoint.convert_layouts`); the key names are the same.
    """
    return convert_layouts(model, unwrap_state_dict(state_dict))


register_checkpoint_filter(CoC, checkpoint_filter_fn)


@renamed_arguments(_owner="CoC (create_model)", **RENAMED)
def _create(variant: str, pretrained: bool = False, **kwargs) -> CoC:
    args = {**ZOO[variant], **kwargs}
    return build_model_with_cfg(CoC, variant, pretrained,
                                pretrained_filter_fn=checkpoint_filter_fn,
                                feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)), **args)


def _zoo_entry(variant: str):
    def build(pretrained: bool = False, **kwargs) -> CoC:
        return _create(variant, pretrained, **kwargs)

    build.__name__ = variant
    build.__doc__ = f"CoC ``{variant}``: {ZOO[variant]}"
    register("image")(build)
    return register_model(build)


coc_tiny = _zoo_entry("coc_tiny")
coc_tiny2 = _zoo_entry("coc_tiny2")
coc_tiny_plain = _zoo_entry("coc_tiny_plain")
coc_small = _zoo_entry("coc_small")
coc_medium = _zoo_entry("coc_medium")
coc_base_dim64 = _zoo_entry("coc_base_dim64")
coc_base_dim96 = _zoo_entry("coc_base_dim96")
