"""Farthest point sampling and k-nearest neighbours on torch-cluster.

This module (with :mod:`pointcoc.ops`) is the only place in pointcoc that calls
torch-cluster. Both ops accept the two batch forms used across the package:

* dense: ``pos [B, N, D]``, every cloud has ``N`` points;
* flat (PyTorch Geometric): ``pos [sum N, D]`` with a sorted ``batch [sum N]``
  vector, clouds of different sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch_cluster
from torch import Tensor

from pointcoc.ops._checks import check_batch, check_k, check_pos, check_same_device
from pointcoc.ops.points import Points

__all__ = ["fps", "knn", "gather", "canonical_order", "fps_points", "knn_points", "canonical_order_flat",
           "canonical_points", "knn_interpolate_points"]


def _as_index_dtype(pos: Tensor) -> Tensor:
    """torch-cluster works on float32/float64; half precision positions are upcast for indexing only."""
    return pos if pos.dtype in (torch.float32, torch.float64) else pos.float()


def _sample_counts(num_samples: int | Tensor, counts: Tensor) -> Tensor:
    """Validate ``num_samples`` against the cloud sizes ``counts [B]`` and return it per cloud ``[B]``."""
    if isinstance(num_samples, Tensor):
        if num_samples.dim() != 1 or num_samples.numel() != counts.numel() or num_samples.is_floating_point():
            raise ValueError(
                f"`num_samples` as a tensor must be an integer vector with one entry per cloud "
                f"({counts.numel()}), got shape {tuple(num_samples.shape)} and dtype {num_samples.dtype}"
            )
        samples = num_samples.detach().cpu().long()
    else:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int):
            raise ValueError(f"`num_samples` must be an int or a per-cloud LongTensor, got {num_samples!r}")
        samples = torch.full_like(counts, num_samples)
    if bool((samples < 1).any()):
        raise ValueError(f"`num_samples` must be >= 1, got {samples.min().item()}")
    too_many = samples > counts
    if bool(too_many.any()):
        b = int(torch.nonzero(too_many)[0])
        raise ValueError(
            f"`num_samples`={int(samples[b])} is more samples than points: cloud {b} of `pos` has only "
            f"{int(counts[b])} points; lower num_samples or give larger clouds"
        )
    return samples


def _fps_flat(pos: Tensor, cloud: Tensor, sizes: Sequence[int], num_samples: Sequence[int], random_start: bool,
              generator: torch.Generator | None) -> Tensor:
    """FPS on a flat, sorted batch; exactly ``num_samples[b]`` global indices per cloud, cloud by cloud.

    ``cloud [P]`` is the cloud id of every point (on ``pos``'s device); ``sizes`` and ``num_samples``
    are host ints per cloud. Apart from torch-cluster's own kernel, nothing here waits for the device.
    """
    device = pos.device
    B = len(sizes)
    counts = torch.tensor(list(sizes), dtype=torch.long)
    samples = torch.tensor(list(num_samples), dtype=torch.long)
    ptr_host = torch.zeros(B + 1, dtype=torch.long)
    torch.cumsum(counts, 0, out=ptr_host[1:])
    ptr = ptr_host.to(device, non_blocking=True)
    perm: Tensor | None = None
    if random_start:
        # Rotate every cloud so that a start point drawn from torch's RNG comes first: seeded runs
        # are reproducible (torch-cluster's own random start uses C rand()).
        start = (torch.rand(B, generator=generator) * counts).long().clamp_max(counts - 1)
        counts_d = counts.to(device, non_blocking=True)
        local = torch.arange(pos.shape[0], device=device) - ptr[cloud]
        perm = ptr[cloud] + (local + start.to(device, non_blocking=True)[cloud]) % counts_d[cloud]
        pos = pos[perm]
    # torch-cluster returns ceil(n * ratio) points per cloud. Asking for (S + 0.5) / n gives S + 1
    # (or n when S == n), and greedy FPS is a prefix property: the first S samples are the S-point FPS.
    src = _as_index_dtype(pos)
    ratio = ((samples.double() + 0.5) / counts.double()).clamp(max=1.0).to(device=device, dtype=src.dtype)
    idx = torch_cluster.fps(src, ratio=ratio, random_start=False, ptr=ptr)
    # Keep the first samples[b] of every cloud without a data-dependent shape: rank each sample in
    # its cloud, then move the kept ones (in order) to the front with a stable sort.
    idx_cloud = cloud[idx]
    out_counts = torch.zeros(B, dtype=torch.long, device=device).index_add_(0, idx_cloud, torch.ones_like(idx))
    out_ptr = torch.cumsum(out_counts, 0) - out_counts
    rank = torch.arange(idx.numel(), device=device) - out_ptr[idx_cloud]
    drop = rank >= samples.to(device, non_blocking=True)[idx_cloud]
    idx = idx[torch.argsort(drop.to(torch.uint8), stable=True)[: sum(num_samples)]]
    return idx if perm is None else perm[idx]


def fps_points(points: Points, samples: Sequence[int], random_start: bool = False,
               generator: torch.Generator | None = None) -> Tensor:
    """:func:`fps` on a validated :class:`~pointcoc.ops.Points`, without checks or host syncs.

    Args:
        points: the clouds.
        samples: samples per cloud, ``1 <= samples[b] <= points.sizes[b]`` (not checked).
        random_start, generator: as :func:`fps`.

    Returns:
        ``[sum S]`` global indices into ``points``, cloud by cloud, in sampling order.
    """
    return _fps_flat(points.pos, points.batch, points.sizes, samples, random_start, generator)


def fps(pos: Tensor, num_samples: int | Tensor, batch: Tensor | None = None, random_start: bool = False,
        generator: torch.Generator | None = None) -> Tensor:
    """Farthest point sampling with an exact number of samples per cloud.

    Greedily picks the point farthest (squared Euclidean distance) from those
    already picked; ties go to the lowest index. The deterministic mode starts
    at each cloud's first point (index 0), like the CUDA ``pointnet2_ops`` op
    that upstream PointMLP/CoC checkpoints were trained with. The random mode
    draws the start from torch's RNG (``generator`` or the global one), so
    ``torch.manual_seed`` makes it reproducible.

    Args:
        pos: point positions, dense ``[B, N, D]`` or flat ``[sum N, D]``.
        num_samples: samples per cloud ``S``; in the flat form also a ``LongTensor [B]``
            of per-cloud counts.
        batch: flat form only, the sorted cloud id of every point ``[sum N]``
            (``None``: one cloud).
        random_start: start at a random point of each cloud instead of index 0.
        generator: optional RNG for the random start.

    Returns:
        dense: ``[B, S]`` indices into each cloud (``0..N-1``), in sampling order;
        flat: ``[sum S]`` indices into ``pos``, cloud by cloud, in sampling order.

    Raises:
        ValueError: non-floating or non-finite positions, an empty cloud, a bad
            ``batch``, or more samples than points.
    """
    check_pos("pos", pos, (2, 3))
    check_same_device(pos=pos, batch=batch)
    if pos.dim() == 3:
        if batch is not None:
            raise ValueError("`batch` is only for the flat form pos [sum N, D]; dense pos [B, N, D] needs none")
        B, N, D = pos.shape
        if B == 0 or N == 0:
            raise ValueError(f"`pos` has shape {tuple(pos.shape)}: an empty batch or empty cloud cannot be sampled")
        counts = torch.full((B,), N, dtype=torch.long)
        samples = _sample_counts(num_samples, counts)
        cloud = torch.arange(B, device=pos.device).repeat_interleave(N)
        idx = _fps_flat(pos.reshape(B * N, D), cloud, counts.tolist(), samples.tolist(), random_start, generator)
        S = int(samples[0])
        return idx.view(B, S) - (torch.arange(B, device=pos.device) * N)[:, None]
    counts = check_batch("batch", batch, pos.shape[0], "pos")
    samples = _sample_counts(num_samples, counts)
    cloud = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device) if batch is None else batch.long()
    return _fps_flat(pos, cloud, counts.tolist(), samples.tolist(), random_start, generator)


def _sort_by_distance(pos: Tensor, query: Tensor, col: Tensor) -> Tensor:
    """Sort every row of neighbour indices ``col [Q, k]`` by distance to ``query [Q, D]`` (ties: lowest index)."""
    col = col.sort(dim=1).values  # a fixed order among equal distances, on every device
    dist = (pos[col] - query[:, None, :]).pow(2).sum(-1)
    order = dist.argsort(dim=1, stable=True)
    return col.gather(1, order)


def knn(pos: Tensor, query: Tensor, k: int, batch: Tensor | None = None,
        batch_query: Tensor | None = None) -> Tensor:
    """The ``k`` nearest points of ``pos`` to every query point (Euclidean).

    Args:
        pos: the point set, dense ``[B, N, D]`` or flat ``[sum N, D]``.
        query: the query points, dense ``[B, S, D]`` or flat ``[sum S, D]``.
        k: neighbours per query; must not exceed any cloud's size.
        batch: flat form, sorted cloud id of every point of ``pos`` ``[sum N]``.
        batch_query: flat form, sorted cloud id of every query ``[sum S]``.

    Returns:
        dense: ``[B, S, k]`` indices into each cloud of ``pos``, nearest first;
        flat: ``[2, sum S * k]`` pairs, row 0 the query index and row 1 the index
        into ``pos`` (torch-cluster/PyG convention), query by query, nearest first.

    Raises:
        ValueError: bad positions, mismatched batch sizes or dimensions, an
            empty cloud, or ``k`` larger than a cloud.
    """
    check_pos("pos", pos, (2, 3))
    check_pos("query", query, (2, 3))
    check_same_device(pos=pos, query=query, batch=batch, batch_query=batch_query)
    if pos.dim() != query.dim():
        raise ValueError(
            f"`pos` {tuple(pos.shape)} and `query` {tuple(query.shape)} must both be dense [B, N, D] or both flat"
        )
    if pos.shape[-1] != query.shape[-1]:
        raise ValueError(f"`pos` {tuple(pos.shape)} and `query` {tuple(query.shape)} differ in dimension D")
    src, qry = _as_index_dtype(pos), _as_index_dtype(query).to(_as_index_dtype(pos).dtype)
    if pos.dim() == 3:
        if batch is not None or batch_query is not None:
            raise ValueError("`batch`/`batch_query` are only for the flat form; dense inputs need none")
        B, N, D = pos.shape
        if query.shape[0] != B:
            raise ValueError(f"batch sizes differ: `pos` {tuple(pos.shape)} vs `query` {tuple(query.shape)}")
        if B == 0 or N == 0:
            raise ValueError(f"`pos` has shape {tuple(pos.shape)}: an empty batch or empty cloud has no neighbours")
        check_k(k, [N], "pos")
        S = query.shape[1]
        if S == 0:
            return torch.empty(B, 0, k, dtype=torch.long, device=pos.device)
        ar = torch.arange(B, device=pos.device)
        x, y = src.reshape(B * N, D), qry.reshape(B * S, D)
        edge = torch_cluster.knn(x, y, k, ar.repeat_interleave(N), ar.repeat_interleave(S), batch_size=B)
        col = _rows_to_matrix(edge, B * S, k)
        col = _sort_by_distance(x, y, col)
        return col.view(B, S, k) - (ar * N)[:, None, None]
    counts = check_batch("batch", batch, pos.shape[0], "pos")
    if batch_query is None and batch is not None and counts.numel() > 1:
        raise ValueError("`batch_query` is required when `batch` holds several clouds")
    if batch_query is not None and batch is None:
        raise ValueError("`batch` is required when `batch_query` is given")
    qcounts = check_batch("batch_query", batch_query, query.shape[0], "query") if query.shape[0] else counts[:0]
    if qcounts.numel() > counts.numel():
        raise ValueError(
            f"`batch_query` refers to {qcounts.numel()} clouds but `batch` has only {counts.numel()}: "
            "mismatched batch sizes"
        )
    check_k(k, counts[: max(qcounts.numel(), 1)].tolist(), "pos")
    if query.shape[0] == 0:
        return torch.empty(2, 0, dtype=torch.long, device=pos.device)
    edge = torch_cluster.knn(src, qry, k, batch, batch_query, batch_size=counts.numel())
    col = _sort_by_distance(src, qry, _rows_to_matrix(edge, query.shape[0], k))
    row = torch.arange(query.shape[0], device=pos.device).repeat_interleave(k)
    return torch.stack([row, col.reshape(-1)])


def knn_points(source: Points, query: Tensor, query_batch: Tensor, k: int, kdtree: bool | None = None) -> Tensor:
    """:func:`knn` from validated clouds, without checks or host syncs (on the CPU, clouds of at least
    :data:`KDTREE_MIN_POINTS` points are searched with scipy's ``cKDTree``).

    Args:
        source: the clouds searched; ``k`` must not exceed its smallest cloud (not checked).
        query: ``[Q, D]`` query positions, in cloud order.
        query_batch: ``[Q]`` sorted cloud id of every query (clouds of ``source``).
        k: neighbours per query.
        kdtree: search with scipy's ``cKDTree`` (CPU only); ``None``: for clouds of at least
            :data:`KDTREE_MIN_POINTS` points on the CPU.

    Returns:
        ``[Q, k]`` global indices into ``source``, nearest first (ties: lowest index).
    """
    src = _as_index_dtype(source.pos)
    qry = _as_index_dtype(query).to(src.dtype)
    Q = query.shape[0]
    if Q == 0:
        return torch.empty(0, k, dtype=torch.long, device=query.device)
    if kdtree is None:
        kdtree = src.device.type == "cpu" and max(source.sizes) >= KDTREE_MIN_POINTS
    if kdtree:
        if src.device.type != "cpu":
            raise ValueError(f"kdtree=True searches with scipy on the CPU; the points are on {src.device}")
        return _sort_by_distance(src, qry, _kdtree_knn(source, src, qry, query_batch, k))
    edge = torch_cluster.knn(src, qry, k, source.batch, query_batch, batch_size=source.num_clouds)
    if edge.shape[1] != Q * k:
        raise RuntimeError(f"torch_cluster.knn returned {edge.shape[1]} pairs, expected {Q * k}")
    # torch-cluster lists the pairs query by query (tests/ops check it), so no reordering is needed here.
    return _sort_by_distance(src, qry, edge[1].view(Q, k))


#: on the CPU, clouds of at least this many points are searched with scipy's ``cKDTree`` (scipy is a
#: dependency of torch-cluster): the same neighbours, 2.5x faster than torch-cluster's search at 10^6
#: points here (benchmark --section scale, side by side), on all threads. Object-size clouds stay on
#: torch-cluster.
KDTREE_MIN_POINTS = 65_536


def knn_interpolate_points(x: Tensor, source: Points, query: Points, k: int = 3) -> Tensor:
    """Inverse-distance kNN interpolation of ``x`` from ``source`` onto ``query``'s points (same clouds).

    PyTorch Geometric's ``knn_interpolate`` formula on pointcoc's kNN (torch-cluster, or cKDTree for
    large CPU clouds): each query point averages its ``k`` nearest source points' features, weighted by
    ``1 / max(|q - s|^2, 1e-16)``.

    Args:
        x: ``[sum S, C]`` features of ``source``'s points.
        source: the coarse clouds (every cloud at least ``k`` points; not checked).
        query: the fine clouds; cloud ``b`` of ``query`` reads cloud ``b`` of ``source``.
        k: neighbours per query point.

    Returns:
        ``[sum N, C]`` features at ``query``'s points, in ``x``'s dtype.
    """
    idx = knn_points(source, query.pos, query.batch, k)  # [Q, k]
    d2 = (source.pos[idx] - query.pos.unsqueeze(1)).float().pow(2).sum(-1)  # [Q, k]
    weight = 1.0 / d2.clamp_min(1e-16)
    weight = (weight / weight.sum(dim=1, keepdim=True)).to(x.dtype)
    return (x[idx] * weight.unsqueeze(-1)).sum(dim=1)


def _kdtree_knn(source: Points, src: Tensor, qry: Tensor, query_batch: Tensor, k: int) -> Tensor:
    """``[Q, k]`` global indices of the ``k`` nearest points of each query's cloud, by ``cKDTree`` (CPU)."""
    from scipy.spatial import cKDTree

    q_counts = torch.bincount(query_batch, minlength=source.num_clouds).tolist()
    out, q_start = [], 0
    for start, n, q in zip(source.ptr[:-1].tolist(), source.sizes, q_counts):
        if q:
            tree = cKDTree(src[start:start + n].detach().numpy())
            _, idx = tree.query(qry[q_start:q_start + q].detach().numpy(), k=k, workers=torch.get_num_threads())
            out.append(torch.from_numpy(idx.reshape(q, k).astype("int64")) + start)
        q_start += q
    return torch.cat(out)


def canonical_points(points: Points) -> tuple[Tensor, Points]:
    """``points`` in :func:`canonical_order` (features carried along): the permutation and the permuted clouds."""
    order = canonical_order_flat(points.pos, points.batch)
    x = None if points.x is None else points.x[order]
    return order, Points.trusted(points.pos[order], x, points.batch[order], points.sizes)


def canonical_order_flat(pos: Tensor, batch: Tensor) -> Tensor:
    """:func:`canonical_order` of a validated flat batch, without checks (``[P]`` global indices)."""
    perm = torch.arange(pos.shape[0], device=pos.device)
    for d in reversed(range(pos.shape[1])):
        perm = perm[pos[perm, d].argsort(stable=True)]
    return perm[batch[perm].argsort(stable=True)]


def _rows_to_matrix(edge: Tensor, num_queries: int, k: int) -> Tensor:
    """Turn torch-cluster's ``[2, Q*k]`` pairs into a ``[Q, k]`` matrix of neighbour indices."""
    if edge.shape[1] != num_queries * k:
        raise RuntimeError(f"torch_cluster.knn returned {edge.shape[1]} pairs, expected {num_queries * k}")
    row = edge[0]
    if row.numel() > 1 and bool((row[1:] < row[:-1]).any()):
        order = row.argsort(stable=True)
        edge = edge[:, order]
    return edge[1].view(num_queries, k)


def gather(x: Tensor, idx: Tensor) -> Tensor:
    """Pick rows of a dense batch by index.

    Args:
        x: ``[B, N, C]`` features (or positions) of each cloud.
        idx: ``[B, *]`` indices into ``N``, e.g. ``[B, S]`` from :func:`fps` or
            ``[B, S, k]`` from :func:`knn`.

    Returns:
        ``[B, *, C]``: ``out[b, ...] = x[b, idx[b, ...]]``.
    """
    if x.dim() != 3 or idx.dim() < 2 or idx.shape[0] != x.shape[0]:
        raise ValueError(f"gather expects x [B, N, C] and idx [B, ...], got {tuple(x.shape)} and {tuple(idx.shape)}")
    B, _, C = x.shape
    flat = idx.reshape(B, -1, 1).expand(-1, -1, C)
    return x.gather(1, flat).view(*idx.shape, C)


def canonical_order(pos: Tensor, batch: Tensor | None = None) -> Tensor:
    """A permutation that sorts every cloud's points lexicographically by coordinates.

    The order depends only on the set of positions, not on the order the points
    came in, so "start FPS at the first point" after this permutation is a
    permutation-invariant start (for clouds without duplicate positions).

    Args:
        pos: dense ``[B, N, D]`` or flat ``[sum N, D]``.
        batch: flat form, the sorted cloud id of every point.

    Returns:
        dense: ``[B, N]`` local indices; flat: ``[sum N]`` global indices that keep
        clouds contiguous and in order.
    """
    check_pos("pos", pos, (2, 3))
    if pos.dim() == 3:
        perm = torch.arange(pos.shape[1], device=pos.device).expand(pos.shape[0], -1)
        for d in reversed(range(pos.shape[2])):
            key = pos[..., d].gather(1, perm)
            perm = perm.gather(1, key.argsort(dim=1, stable=True))
        return perm
    if batch is None:
        batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
    return canonical_order_flat(pos, batch)
