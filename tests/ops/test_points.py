"""pointcoc.Points: construction, conversions, the geometry cache, and every bad input it refuses."""

from __future__ import annotations

import pytest
import torch
import torch_cluster
from torch_geometric.data import Batch, Data

import pointcoc
from pointcoc.ops import Points


def ragged(sizes: tuple[int, ...], channels: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pos = torch.randn(sum(sizes), 3)
    x = torch.randn(sum(sizes), channels)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return pos, x, batch


def test_top_level_export() -> None:
    assert pointcoc.Points is Points


def test_flat_fields() -> None:
    pos, x, batch = ragged((5, 9, 2))
    pts = Points(pos, x, batch)
    assert pts.num_clouds == len(pts) == 3 and pts.num_points == 16 and pts.pos_dim == 3
    assert pts.sizes == (5, 9, 2) and pts.uniform_size is None
    assert pts.counts.device.type == "cpu" and pts.ptr.device.type == "cpu"
    assert pts.counts.tolist() == [5, 9, 2] and pts.ptr.tolist() == [0, 5, 14, 16]
    assert pts.batch is batch and pts.x is x and pts.pos is pos
    assert not pts.from_dense_batch
    one = Points(pos)
    assert one.sizes == (16,) and torch.equal(one.batch, torch.zeros(16, dtype=torch.long))


def test_dense_and_flat_agree_cloud_by_cloud() -> None:
    pos, x = torch.randn(3, 7, 2), torch.randn(3, 7, 5)
    dense = Points.from_dense(pos, x)
    flat = Points(pos.reshape(21, 2), x.reshape(21, 5), torch.arange(3).repeat_interleave(7))
    assert dense.from_dense_batch and dense.sizes == flat.sizes == (7, 7, 7) and dense.uniform_size == 7
    for a, b in ((dense.pos, flat.pos), (dense.x, flat.x), (dense.batch, flat.batch), (dense.ptr, flat.ptr)):
        assert torch.equal(a, b)
    for b, (cloud_pos, cloud_x) in enumerate(zip(dense.split(), dense.split(dense.x))):
        assert torch.equal(cloud_pos, pos[b]) and torch.equal(cloud_x, x[b])
    assert torch.equal(dense.dense(dense.x), x)


def test_to_dense_pads_with_a_mask_and_round_trips() -> None:
    pos, x, batch = ragged((3, 6, 1))
    pts = Points(pos, x, batch)
    dpos, dx, mask = pts.to_dense(fill_value=-7.0)
    assert dpos.shape == (3, 6, 3) and dx.shape == (3, 6, 4) and mask.shape == (3, 6)
    assert mask.sum(1).tolist() == [3, 6, 1]
    assert torch.equal(dpos[mask], pos) and torch.equal(dx[mask], x)
    assert bool((dpos[~mask] == -7.0).all())
    with pytest.raises(ValueError, match=r"different sizes .* use to_dense\(\)"):
        pts.dense(pts.x)


def test_pyg_round_trip() -> None:
    clouds = [Data(pos=torch.randn(n, 3), x=torch.randn(n, 2)) for n in (4, 11)]
    data = Batch.from_data_list(clouds)
    pts = Points.from_pyg(data)
    assert pts.sizes == (4, 11) and torch.equal(pts.x, data.x)
    back = pts.to_pyg()
    assert back.num_graphs == 2 and torch.equal(back.pos, data.pos) and torch.equal(back.batch, data.batch)
    assert torch.equal(back.get_example(1).x, clouds[1].x)
    single = Points.from_pyg(clouds[0])
    assert single.sizes == (4,)
    with pytest.raises(ValueError, match="no `pos` attribute"):
        Points.from_pyg(Data(x=torch.randn(3, 2)))


def test_with_x_shares_the_geometry_cache() -> None:
    pts = Points(*ragged((6, 8)))
    calls = []
    first = pts.cached("key", lambda: calls.append(1) or "built")
    other = pts.with_x(torch.zeros(14, 2))
    assert other.cached("key", lambda: calls.append(1) or "again") == first == "built" and calls == [1]
    assert other.pos is pts.pos and other.sizes == pts.sizes and other.x.shape == (14, 2)
    moved = pts.to("cpu")
    assert moved.cached("key", lambda: "fresh") == "fresh"  # a copy does not carry the cache
    assert "num_clouds=2" in repr(pts) and "channels=4" in repr(pts)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Points(torch.tensor([[0.0, float("nan"), 0.0]] + [[1.0, 1, 1]])), r"NaN or inf coordinates in 1"),
        (lambda: Points(torch.randn(4, 3), torch.tensor([[1.0], [float("inf")], [0], [0]])),
         r"`x` .* NaN or inf features in 1 point"),
        (lambda: Points.from_dense(torch.randn(1, 3, 3), torch.full((1, 3, 2), float("nan"))), r"`x` .* NaN"),
        (lambda: Points(torch.randn(4, 3), batch=torch.tensor([0, 1, 0, 1])), r"must be sorted by cloud"),
        (lambda: Points(torch.randn(3, 3), batch=torch.tensor([-1, 0, 0])), r"negative cloud ids"),
        (lambda: Points(torch.randn(3, 3), batch=torch.tensor([0, 2, 2])), r"skips cloud id\(s\) \[1\].*empty"),
        (lambda: Points(torch.randn(3, 3), batch=torch.tensor([0, 0, 1]), num_clouds=4),
         r"clouds 2..3 of 4 have no points"),
        (lambda: Points(torch.randn(3, 3), batch=torch.tensor([0, 0])), r"2 entries but `pos` has 3 points"),
        (lambda: Points(torch.randn(3, 3), batch=torch.tensor([0.0, 0, 0])), r"1-D integer tensor"),
        (lambda: Points(torch.randn(0, 3)), r"`pos` is an empty cloud \(0 points\); every cloud needs points"),
        (lambda: Points(torch.arange(6).view(2, 3)), r"floating tensor .* `.float\(\)`"),
        (lambda: Points(torch.randn(2, 5, 3)), r"`pos` must be 2-D .* got shape \(2, 5, 3\)"),
        (lambda: Points(torch.randn(4, 3), torch.randn(5, 2)), r"`x` must be \(4, 'C'\)"),
        (lambda: Points(torch.randn(4, 3), torch.arange(4).view(4, 1)), r"`x` must be a floating tensor"),
        (lambda: Points.from_dense(torch.randn(2, 0, 3)), r"empty cloud"),
        (lambda: Points.from_dense(torch.randn(6, 3)), r"`pos` must be 3-D .* got shape \(6, 3\)"),
        (lambda: Points.from_dense(torch.randn(2, 5, 3), torch.randn(2, 4, 1)), r"`x` must be \(2, 5, 'C'\)"),
    ],
)
def test_bad_input_is_refused_with_what_to_do(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_torch_cluster_lists_knn_pairs_query_by_query() -> None:
    """knn_points relies on this order (it skips the reordering the checked knn does)."""
    for sizes, qsizes in (((50, 3, 200), (7, 3, 40)), ((1000,), (300,))):
        pos, _, batch = ragged(sizes)
        query, _, qbatch = ragged(qsizes)
        edge = torch_cluster.knn(pos, query, 3, batch, qbatch)
        assert torch.equal(edge[0], torch.arange(query.shape[0]).repeat_interleave(3))
