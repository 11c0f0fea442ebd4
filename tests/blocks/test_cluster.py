"""ContextCluster: values and gradients against dense references, on grids and point sets."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data

from pointcoc.blocks import ContextCluster, cluster_mix, grid_proposal

from reference import dense_cluster, dense_grid_mixer, lexsort, naive_fps, naive_knn, naive_point_mixer

TOL = dict(rtol=1e-10, atol=1e-10)


def make_mixer(dim: int, dtype: torch.dtype = torch.float64, **kwargs) -> ContextCluster:
    mixer = ContextCluster(dim, **kwargs).to(dtype)
    with torch.no_grad():  # non-trivial similarity scalars, as in trained models
        mixer.sim_alpha.fill_(1.7)
        mixer.sim_beta.fill_(-0.4)
    return mixer


def grads(module: torch.nn.Module, x: torch.Tensor, fn) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Output of ``fn(x)`` and the gradients of a random projection of it w.r.t. x and all parameters."""
    x = x.detach().requires_grad_(True)
    out = fn(x)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
    params = [x] + list(module.parameters())
    return out, list(torch.autograd.grad((out * weight).sum(), params))


@pytest.mark.parametrize(
    "dim,heads,head_dim,hw,regions,centers,denominator",
    [
        (16, 2, 8, (8, 12), (2, 3), (3, 2), "weights"),  # overlapping pooling bins along rows (4 rows, 3 bins)
        (20, 3, 4, (4, 6), (1, 1), (3, 3), "weights"),  # heads * head_dim != dim, overlapping bins on both axes
        (8, 1, 8, (6, 4), (3, 1), (1, 1), "weights"),  # one centre per region, regions along rows only
        (16, 2, 8, (8, 12), (2, 3), (3, 2), "count"),  # early upstream: divide by 1 + number of members
    ],
)
def test_grid_matches_dense_reference(dim, heads, head_dim, hw, regions, centers, denominator) -> None:
    mixer = make_mixer(dim, num_heads=heads, head_dim=head_dim, regions=regions, centers=centers,
                       denominator=denominator)
    x = torch.randn(2, *hw, dim, dtype=torch.float64)
    out, g = grads(mixer, x, mixer)
    ref, g_ref = grads(mixer, x, lambda t: dense_grid_mixer(mixer, t))
    assert out.shape == (2, *hw, dim)
    torch.testing.assert_close(out, ref, **TOL)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, **TOL)
    assert g[1 + [n for n, _ in mixer.named_parameters()].index("sim_alpha")].abs().item() > 0


def test_grid_proposal_is_adaptive_avg_pool() -> None:
    x = torch.randn(3, 5, 7, 9, dtype=torch.float64)
    ref = torch.nn.AdaptiveAvgPool2d((3, 4))(x).flatten(2)  # [3, 5, 12]
    mine = x.flatten(2) @ grid_proposal(7, 9, 3, 4, dtype=torch.float64).T
    torch.testing.assert_close(mine, ref, **TOL)


def _spread_positions(n: int, mixer: ContextCluster) -> torch.Tensor:
    """``[n, 3]`` random positions whose regions (the reference's assignment) each hold more than twice a centre's
    neighbours: in a smaller region several centres average the same members, their similarities tie exactly, and
    which centre takes a point is an implementation detail, not the method. Redrawn until that holds (how often
    depends on the CPU's random normal kernel)."""
    R, M = mixer.num_regions, mixer.num_centers
    for _ in range(100):
        pos = torch.randn(n, 3, dtype=torch.float64)
        if R == 1 or M == 1:
            return pos
        ps = pos[lexsort(pos)]
        region = naive_knn(ps[naive_fps(ps, R)], ps, 1)[:, 0]
        counts = torch.bincount(region, minlength=R)
        k = mixer.center_k or max(1, int(counts.min()) // M)
        if bool((counts > 2 * k).all()):
            return pos
    raise AssertionError(f"no spread positions of {n} points for {R} regions")


@pytest.mark.parametrize(
    "regions,centers,center_k,denominator",
    [(1, 1, None, "weights"), (1, 4, None, "weights"), (4, 3, None, "weights"), ((2, 2), (2, 2), 5, "weights"),
     (6, 1, None, "weights"), (4, 3, None, "count")],
)
def test_points_match_naive_reference(regions, centers, center_k, denominator) -> None:
    mixer = make_mixer(12, num_heads=2, head_dim=6, regions=regions, centers=centers, center_k=center_k,
                       denominator=denominator)
    sizes = [150, 97, 128]
    xs = [torch.randn(n, 12, dtype=torch.float64) for n in sizes]
    ps = [_spread_positions(n, mixer) for n in sizes]
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    x, pos = torch.cat(xs), torch.cat(ps)
    out, g = grads(mixer, x, lambda t: mixer(t, pos, batch))
    ref, g_ref = grads(mixer, x, lambda t: torch.cat([naive_point_mixer(mixer, a, p)
                                                       for a, p in zip(t.split(sizes), ps)]))
    torch.testing.assert_close(out, ref, **TOL)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, **TOL)


def test_one_instance_serves_images_and_points() -> None:
    mixer = ContextCluster(32, num_heads=4, head_dim=8, centers=(2, 2), regions=(2, 2))
    img = mixer(torch.randn(2, 8, 8, 32))
    pts = mixer(torch.randn(2, 300, 32), torch.randn(2, 300, 3))
    assert img.shape == (2, 8, 8, 32) and pts.shape == (2, 300, 32)
    assert torch.isfinite(img).all() and torch.isfinite(pts).all()
    # on a point set the grid settings mean 2*2 = 4 centres in each of 2*2 = 4 regions
    part = mixer.partition(torch.randn(300, 3))
    assert part.proposal.shape[:2] == (4, 4) and int(part.mask.sum()) == 300


def test_point_path_is_permutation_equivariant() -> None:
    mixer = ContextCluster(16, num_heads=2, head_dim=8, centers=4, regions=3)
    x, pos = torch.randn(2, 200, 16), torch.randn(2, 200, 3)
    perm = torch.randperm(200)
    out = mixer(x, pos)
    torch.testing.assert_close(mixer(x[:, perm], pos[:, perm]), out[:, perm], rtol=1e-6, atol=1e-6)
    # flat form too, cloud by cloud
    flat = mixer(x.reshape(400, 16), pos.reshape(400, 3), torch.arange(2).repeat_interleave(200))
    torch.testing.assert_close(flat.view(2, 200, 16), out, rtol=1e-6, atol=1e-6)


def test_pyg_batch_cloud_by_cloud() -> None:
    mixer = ContextCluster(16, num_heads=2, head_dim=8, centers=4, regions=2)
    clouds = [Data(x=torch.randn(n, 16), pos=torch.randn(n, 3)) for n in (33, 120, 57, 80)]
    data = Batch.from_data_list(clouds)
    out = mixer(data.x, data.pos, data.batch)
    alone = torch.cat([mixer(c.x, c.pos) for c in clouds])
    torch.testing.assert_close(out, alone, rtol=1e-6, atol=1e-6)
    dense_alone = mixer(clouds[1].x[None], clouds[1].pos[None])[0]
    torch.testing.assert_close(out[33:153], dense_alone, rtol=1e-6, atol=1e-6)


def test_single_centre_needs_no_positions() -> None:
    """The upstream point-cloud form: one centre per set, the set mean, no positions."""
    mixer = make_mixer(8, num_heads=1, head_dim=8, centers=1, regions=1)
    x = torch.randn(5, 24, 8, dtype=torch.float64)
    f, v = mixer.f(x), mixer.v(x)
    ref = mixer.proj(dense_cluster(f, v, f.mean(1, keepdim=True), v.mean(1, keepdim=True),
                                   mixer.sim_alpha, mixer.sim_beta))
    torch.testing.assert_close(mixer(x), ref, **TOL)


@pytest.mark.parametrize("impl", ["matmul", "scatter"])
def test_gradcheck_cluster_mix(impl: str) -> None:
    g = torch.Generator().manual_seed(5)
    feat, value = (torch.randn(2, 7, 3, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    centers, vc = (torch.randn(2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    alpha = torch.tensor([1.3], dtype=torch.float64, requires_grad=True)
    beta = torch.tensor([-0.2], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True] * 7, [True] * 5 + [False] * 2])
    assert torch.autograd.gradcheck(lambda *a: cluster_mix(*a, point_mask=mask, impl=impl)[0],
                                    (feat, value, centers, vc, alpha, beta))


@pytest.mark.parametrize("denominator", ["weights", "count"])
def test_cluster_mix_implementations_agree_with_the_dense_reference(denominator: str) -> None:
    """matmul and scatter forms: same values, gradients and assignments as the dense masked reference."""
    g = torch.Generator().manual_seed(11)
    G, n, M, c = 4, 40, 6, 5
    inputs = [torch.randn(G, size, c, generator=g, dtype=torch.float64, requires_grad=True) for size in (n, n, M, M)]
    inputs += [torch.tensor([-1.4], dtype=torch.float64, requires_grad=True),  # negative alpha: argmax flips
               torch.tensor([0.3], dtype=torch.float64, requires_grad=True)]
    ref = dense_cluster(*inputs, denominator=denominator)
    ref_grads = torch.autograd.grad(ref.square().sum(), inputs)
    for impl in ("matmul", "scatter"):
        out, assign = cluster_mix(*inputs, denominator=denominator, impl=impl)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        for a, b in zip(torch.autograd.grad(out.square().sum(), inputs), ref_grads):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
        sim = torch.sigmoid(inputs[5] + inputs[4] * (torch.nn.functional.normalize(inputs[2], dim=-1)
                            @ torch.nn.functional.normalize(inputs[0], dim=-1).transpose(1, 2)))
        assert torch.equal(assign, sim.argmax(1))
    masked = cluster_mix(*inputs, point_mask=torch.arange(n) < 30, center_mask=torch.arange(M) < 4, impl="scatter")
    same = cluster_mix(*inputs, point_mask=torch.arange(n) < 30, center_mask=torch.arange(M) < 4, impl="matmul")
    torch.testing.assert_close(masked[0], same[0], rtol=1e-12, atol=1e-12)
    assert bool((masked[1] < 4).all()) and bool((masked[0][:, 30:] == 0).all())


@pytest.mark.parametrize("layout", ["grid", "points"])
def test_gradcheck_module(layout: str) -> None:
    mixer = make_mixer(6, num_heads=2, head_dim=3, centers=(2, 1), regions=(1, 2))
    g = torch.Generator().manual_seed(7)
    if layout == "grid":
        x = torch.randn(1, 4, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(mixer, (x,))
    else:
        x = torch.randn(1, 16, 6, generator=g, dtype=torch.float64, requires_grad=True)
        pos = torch.randn(1, 16, 3, generator=g, dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda t: mixer(t, pos), (x,))


def test_no_dense_cluster_tensor_is_saved() -> None:
    """Backward keeps O(N * D) tensors: nothing the size of the [G, M, n, c] product is saved."""
    B, H, W, C, e, c, M = 2, 16, 16, 32, 2, 16, 16
    mixer = ContextCluster(C, num_heads=e, head_dim=c, centers=(4, 4))
    sizes: list[int] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
        mixer(torch.randn(B, H, W, C, requires_grad=True)).sum()
    dense = B * e * M * H * W * c
    assert sizes and max(sizes) <= B * H * W * max(C, e * c), (max(sizes), dense)
    assert max(sizes) * 8 <= dense


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m(torch.randn(1, 7, 8, 16)), r"7x8 .* cannot be split into 2x2 regions"),
        (lambda m: m(torch.randn(1, 8, 8, 15)), r"dim=16.*15 channels"),
        (lambda m: m(torch.randn(2, 50, 16)), r"needs `pos`"),
        (lambda m: m(torch.randn(2, 50, 16), torch.randn(2, 49, 3)), r"`pos` must be \[B, N, D\]"),
        (lambda m: m(torch.randn(3, 16), torch.randn(3, 3)), r"3 points, fewer than the 4 regions"),
        (lambda m: m(torch.randn(16)), r"x must be"),
        (lambda m: ContextCluster(16, centers=4)(torch.randn(1, 4, 4, 16)), r"give them as \(rows, cols\)"),
        (lambda m: ContextCluster(16, centers=(0, 2)), r"`centers` must be positive"),
    ],
)
def test_errors(call, match: str) -> None:
    mixer = ContextCluster(16, num_heads=2, head_dim=8, centers=(2, 2), regions=(2, 2))
    with pytest.raises(ValueError, match=match):
        call(mixer)


def test_recorded_assignments_on_points() -> None:
    """Recorded cluster ids are region * M + centre, per point in input order, for dense and flat input."""
    from pointcoc.blocks import record_assignments

    mixer = ContextCluster(8, num_heads=2, head_dim=4, centers=3, regions=4)
    x, pos = torch.randn(2, 90, 8), torch.randn(2, 90, 3)
    with record_assignments(mixer) as records:
        mixer(x, pos)
        mixer(x.reshape(180, 8), pos.reshape(180, 3), torch.arange(2).repeat_interleave(90))
    (name, dense), (_, flat) = records
    assert name == "" and dense.clusters.shape == (2, 90, 2) and flat.clusters.shape == (180, 2)
    assert dense.num_clusters == 12 and dense.num_centers == 3
    assert torch.equal(dense.clusters.reshape(180, 2), flat.clusters)
    assert torch.equal(dense.pos, pos) and torch.equal(flat.batch, torch.arange(2).repeat_interleave(90))
    # every point's cluster lies in the region the partition gave it
    part = mixer.partition(pos[0])
    region_of = torch.empty(90, dtype=torch.long)
    for g in range(part.index.shape[0]):
        region_of[part.index[g][part.mask[g]]] = g
    assert torch.equal(dense.clusters[0] // 3, region_of[:, None].expand(-1, 2))
    assert mixer._recorder is None  # recording ends with the block


def test_explicit_forms() -> None:
    """forward_grid / forward_points / forward_sets are what the compatibility forward dispatches to."""
    from pointcoc.ops import Points

    mixer = ContextCluster(16, num_heads=2, head_dim=8, centers=(2, 2), regions=(2, 2)).eval()
    img = torch.randn(2, 4, 4, 16)
    assert torch.equal(mixer.forward_grid(img), mixer(img))
    x, pos = torch.randn(2, 50, 16), torch.randn(2, 50, 3)
    pts = Points.from_dense(pos, x)
    out = mixer.forward_points(pts)
    assert isinstance(out, Points) and out.pos is pts.pos and out.x.shape == (100, 16)
    assert torch.equal(out.x.view(2, 50, 16), mixer(x, pos))
    single = ContextCluster(16, num_heads=2, head_dim=8, centers=1, regions=1).eval()
    assert torch.equal(single.forward_sets(x), single(x))
    torch.testing.assert_close(single.forward_points(pts).x.view(2, 50, 16), single(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="needs `pos`"):
        mixer.forward_sets(x)
    with pytest.raises(ValueError, match="needs point features"):
        mixer.forward_points(Points.from_dense(pos))
