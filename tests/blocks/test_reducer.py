"""PointReducer: the FPS/kNN point path, the strided-conv grid path, and their equality on grids."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data

from pointcoc.blocks import PointReducer
from pointcoc.ops import gather

from reference import naive_knn


def pixel_points(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, H, W, C]`` image -> points ``[B, H*W, C]`` with positions ``(row, col)``."""
    B, H, W, C = x.shape
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    pos = torch.stack([rows, cols], -1).reshape(1, H * W, 2).expand(B, -1, -1).to(x.dtype)
    return x.reshape(B, H * W, C), pos


@pytest.mark.parametrize("kernel,hw", [((2, 2), (6, 8)), ((4, 4), (8, 12)), ((2, 3), (4, 9))])
def test_point_path_equals_grid_path_on_non_overlapping_patches(kernel, hw) -> None:
    red = PointReducer(5, 7, kernel_size=kernel, stride=kernel, neighbor_order="offset").double()
    x = torch.randn(2, *hw, 5, dtype=torch.float64)
    grid = red(x)
    kh, kw = kernel
    Ho, Wo = hw[0] // kh, hw[1] // kw
    assert grid.shape == (2, Ho, Wo, 7)
    pts, pos = pixel_points(x)
    r, c = torch.meshgrid(torch.arange(Ho), torch.arange(Wo), indexing="ij")
    anchors = torch.stack([r * kh + (kh - 1) / 2, c * kw + (kw - 1) / 2], -1).reshape(1, -1, 2).expand(2, -1, -1)
    shuffle = torch.randperm(pts.shape[1])  # the point path does not care about the input order
    out, new_pos, _ = red(pts[:, shuffle], pos[:, shuffle], anchor_pos=anchors.double())
    torch.testing.assert_close(out, grid.reshape(2, Ho * Wo, 7), rtol=1e-10, atol=1e-10)
    assert torch.equal(new_pos, anchors.double())


def test_grid_path_is_the_conv_of_upstream_layout() -> None:
    """Overlapping 3x3 stride 2 pad 1: the grid path is Conv2d with the permuted weight."""
    red = PointReducer(4, 6, kernel_size=3, stride=2, padding=1)
    conv = torch.nn.Conv2d(4, 6, 3, 2, 1)
    with torch.no_grad():
        red.proj.weight.copy_(conv.weight.permute(0, 2, 3, 1).reshape(6, -1))
        red.proj.bias.copy_(conv.bias)
    x = torch.randn(2, 9, 10, 4)
    ref = conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    torch.testing.assert_close(red(x), ref, rtol=1e-5, atol=1e-5)


def test_point_path_values() -> None:
    """Dense path: anchors from FPS, neighbours nearest first, linear over [features, offsets]."""
    red = PointReducer(3, 5, num_neighbors=4, reduction=4, rel_pos_dim=3).double()
    x, pos = torch.randn(1, 40, 3, dtype=torch.float64), torch.randn(1, 40, 3, dtype=torch.float64)
    out, anchors, _ = red(x, pos)
    assert out.shape == (1, 10, 5) and anchors.shape == (1, 10, 3)
    idx = naive_knn(pos[0], anchors[0], 4)
    feats = torch.cat([x[0][idx], pos[0][idx] - anchors[0][:, None]], -1).flatten(1)
    torch.testing.assert_close(out[0], red.proj(feats), rtol=1e-10, atol=1e-10)


def test_point_path_permutation_invariant_and_flat() -> None:
    red = PointReducer(8, 16, num_neighbors=8, reduction=4, rel_pos_dim=3)
    clouds = [Data(x=torch.randn(n, 8), pos=torch.randn(n, 3)) for n in (64, 30, 101)]
    data = Batch.from_data_list(clouds)
    out, pos, batch = red(data.x, data.pos, data.batch)
    assert torch.equal(torch.bincount(batch), torch.tensor([16, 8, 26]))
    alone = [red(c.x[None], c.pos[None]) for c in clouds]
    torch.testing.assert_close(out, torch.cat([a[0][0] for a in alone]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pos, torch.cat([a[1][0] for a in alone]))
    perm = torch.randperm(101)
    shuffled = red(clouds[2].x[perm][None], clouds[2].pos[perm][None])
    torch.testing.assert_close(shuffled[0], alone[2][0], rtol=1e-5, atol=1e-5)


def test_offset_order_sorts_neighbours_like_a_kernel() -> None:
    red = PointReducer(1, 1, kernel_size=2, stride=2, neighbor_order="offset")
    pos = torch.tensor([[[1.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    x = torch.tensor([[[4.0], [1.0], [3.0], [2.0]]])  # raster order of the 2x2 patch: 1, 2, 3, 4
    with torch.no_grad():
        red.proj.weight.copy_(torch.tensor([[1.0, 10.0, 100.0, 1000.0]]))
        red.proj.bias.zero_()
    out, _, _ = red(x, pos, anchor_pos=torch.tensor([[[0.5, 0.5]]]))
    assert out.item() == pytest.approx(1 + 20 + 300 + 4000)
    assert torch.equal(gather(x, torch.tensor([[1, 3, 2, 0]]))[0, :, 0], torch.tensor([1.0, 2, 3, 4]))


@pytest.mark.parametrize(
    "make, call, match",
    [
        (lambda: PointReducer(3, 4, num_neighbors=16, reduction=4),
         lambda r: r(torch.randn(1, 10, 3), torch.randn(1, 10, 3)), r"`k`=16 is larger than the cloud"),
        (lambda: PointReducer(3, 4, num_neighbors=4, reduction=2),
         lambda r: r(torch.randn(1, 4, 4, 3)), r"no grid kernel"),
        (lambda: PointReducer(3, 4, kernel_size=2, rel_pos_dim=2),
         lambda r: r(torch.randn(1, 4, 4, 3)), r"does not take relative positions"),
        (lambda: PointReducer(3, 4, kernel_size=2),
         lambda r: r(torch.randn(1, 10, 3)), r"needs `pos`"),
        (lambda: PointReducer(3, 4, kernel_size=2, rel_pos_dim=3),
         lambda r: r(torch.randn(1, 10, 3), torch.randn(1, 10, 2)), r"rel_pos_dim=3"),
        (lambda: PointReducer(3, 4), None, r"give `kernel_size`"),
        (lambda: PointReducer(3, 4, kernel_size=2, neighbor_order="random"), None, r"`neighbor_order`"),
    ],
)
def test_errors(make, call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        red = make()
        call(red)



def test_forward_points_always_returns_points() -> None:
    from pointcoc.ops import Points

    red = PointReducer(4, 6, num_neighbors=5, reduction=3, rel_pos_dim=3).eval()
    sizes = (20, 31, 9)
    pos, x = torch.randn(sum(sizes), 3), torch.randn(sum(sizes), 4)
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    out = red.forward_points(Points(pos, x, batch))
    assert isinstance(out, Points) and out.sizes == (7, 11, 3) and out.x.shape == (21, 6)
    assert torch.equal(out.batch, torch.repeat_interleave(torch.arange(3), torch.tensor([7, 11, 3])))
    x2, pos2, batch2 = red(x, pos, batch)  # the compatibility form: the same tensors
    assert torch.equal(x2, out.x) and torch.equal(pos2, out.pos) and torch.equal(batch2, out.batch)
    dense = red(x[:20][None], pos[:20][None])
    torch.testing.assert_close(dense[0][0], out.x[:7])
    assert dense[2] is None and dense[1].shape == (1, 7, 3)
    grid = PointReducer(4, 6, kernel_size=2)
    assert grid.forward_grid(torch.randn(1, 4, 4, 4)).shape == (1, 2, 2, 6)
    with pytest.raises(ValueError, match="needs point features"):
        red.forward_points(Points(pos))
