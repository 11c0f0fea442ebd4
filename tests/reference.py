"""Naive pure-torch references for the tests (slow, obvious, one cloud at a time).

Nothing here is imported by the library: these are the independent
implementations the fast paths are checked against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def naive_fps(pos: Tensor, num_samples: int, start: int = 0) -> Tensor:
    """FPS of one cloud ``pos [N, D]``: squared distances, ties to the lowest index."""
    n = pos.shape[0]
    dist = [float("inf")] * n
    picked = [start]
    for _ in range(num_samples - 1):
        last = pos[picked[-1]]
        best, best_i = -1.0, -1
        for i in range(n):
            d = float(((pos[i] - last) ** 2).sum())
            dist[i] = min(dist[i], d)
            if dist[i] > best:
                best, best_i = dist[i], i
        picked.append(best_i)
    return torch.tensor(picked, dtype=torch.long)


def naive_knn(pos: Tensor, query: Tensor, k: int) -> Tensor:
    """``[S, k]`` nearest points of ``pos [N, D]`` to each ``query [S, D]``, nearest first, ties to lowest index."""
    out = []
    for q in query:
        d = [(float(((p - q) ** 2).sum()), i) for i, p in enumerate(pos)]
        out.append([i for _, i in sorted(d)[:k]])
    return torch.tensor(out, dtype=torch.long).view(query.shape[0], k)


def lexsort(pos: Tensor) -> Tensor:
    """Indices of ``pos [N, D]`` in lexicographic order of the coordinates."""
    keys = [tuple(float(v) for v in p) for p in pos]
    return torch.tensor(sorted(range(len(keys)), key=lambda i: keys[i]), dtype=torch.long)


def dense_cluster(feat: Tensor, value: Tensor, centers: Tensor, value_centers: Tensor, alpha: Tensor,
                  beta: Tensor, denominator: str = "weights") -> Tensor:
    """Upstream-style cluster step on dense groups, materialising ``[G, M, n, c]``.

    ``feat, value [G, n, c]``, ``centers, value_centers [G, M, c]`` -> ``[G, n, c]``.
    The mask is the one-hot of the argmax and is not differentiated. ``denominator="count"``
    divides by ``1 + mask.sum`` (upstream before 2023-05-31) instead of ``1 + sim.sum``.
    """
    cos = F.normalize(centers, dim=-1) @ F.normalize(feat, dim=-1).transpose(1, 2)  # [G, M, n]
    sim = torch.sigmoid(beta + alpha * cos)
    mask = F.one_hot(sim.detach().argmax(dim=1), centers.shape[1]).transpose(1, 2).to(sim.dtype)
    sim = sim * mask
    total = (sim if denominator == "weights" else mask).sum(-1, keepdim=True)
    agg = ((value.unsqueeze(1) * sim.unsqueeze(-1)).sum(dim=2) + value_centers) / (total + 1.0)
    return (agg.unsqueeze(2) * sim.unsqueeze(-1)).sum(dim=1)


def dense_grid_mixer(mixer, x: Tensor) -> Tensor:
    """Reference of ``ContextCluster`` on an image map ``x [B, H, W, C]``, the upstream way.

    NCHW 1x1 projections, ``nn.AdaptiveAvgPool2d`` centres, region folding, dense aggregation.
    """
    B, H, W, C = x.shape
    e, c = mixer.num_heads, mixer.head_dim
    fr, fc = mixer.regions
    xc = x.permute(0, 3, 1, 2)
    f = F.conv2d(xc, mixer.f.weight[:, :, None, None], mixer.f.bias)
    v = F.conv2d(xc, mixer.v.weight[:, :, None, None], mixer.v.bias)
    h, w = H // fr, W // fc

    def regions(t: Tensor) -> Tensor:  # [B, e*c, H, W] -> [B*e*fr*fc, c, h, w]
        t = t.reshape(B, e, c, fr, h, fc, w).permute(0, 1, 3, 5, 2, 4, 6)
        return t.reshape(B * e * fr * fc, c, h, w)

    f, v = regions(f), regions(v)
    pool = torch.nn.AdaptiveAvgPool2d(mixer.centers)
    centers = pool(f).flatten(2).transpose(1, 2)
    vcenters = pool(v).flatten(2).transpose(1, 2)
    out = dense_cluster(f.flatten(2).transpose(1, 2), v.flatten(2).transpose(1, 2), centers, vcenters,
                        mixer.sim_alpha, mixer.sim_beta, mixer.denominator)  # [G, h*w, c]
    out = out.view(B, e, fr, fc, h, w, c).permute(0, 2, 4, 3, 5, 1, 6).reshape(B, H, W, e * c)
    return mixer.proj(out)


def naive_point_mixer(mixer, x: Tensor, pos: Tensor) -> Tensor:
    """Reference of ``ContextCluster`` on ONE point set ``x [N, C]``, ``pos [N, D]``, region by region.

    Regions: FPS anchors from the lexicographically first point, each point to its
    nearest anchor. Centres: FPS inside the region from its first member (canonical
    order), each centre the mean of its ``max(1, n // M)`` nearest members.
    """
    N = x.shape[0]
    R, M = mixer.num_regions, mixer.num_centers
    e, c = mixer.num_heads, mixer.head_dim
    order = lexsort(pos)
    ps = pos[order]
    if R == 1:
        region = torch.zeros(N, dtype=torch.long)
    else:
        anchors = naive_fps(ps, R)
        region = naive_knn(ps[anchors], ps, 1)[:, 0]
    f = mixer.f(x)[order].view(N, e, c)
    v = mixer.v(x)[order].view(N, e, c)
    out = torch.zeros(N, e * c, dtype=x.dtype)
    for r in range(R):
        members = torch.nonzero(region == r).flatten()  # canonical order inside the region
        n = members.numel()
        if n == 0:
            continue
        m_eff = min(M, n)
        cpos = ps[members]
        if M == 1:
            near = [torch.arange(n)]
        else:
            k = min(n, max(1, n // M)) if mixer.center_k is None else min(mixer.center_k, n)
            anchors = naive_fps(cpos, m_eff)
            near = list(naive_knn(cpos, cpos[anchors], k))
        fr_, vr = f[members].transpose(0, 1), v[members].transpose(0, 1)  # [e, n, c]
        centers = torch.stack([fr_[:, nb].mean(1) for nb in near], dim=1)  # [e, m, c]
        vcenters = torch.stack([vr[:, nb].mean(1) for nb in near], dim=1)
        res = dense_cluster(fr_, vr, centers, vcenters, mixer.sim_alpha, mixer.sim_beta,
                            mixer.denominator)  # [e, n, c]
        out[members] = res.transpose(0, 1).reshape(n, e * c)
    unsorted = torch.empty_like(out)
    unsorted[order] = out
    return mixer.proj(unsorted)


def naive_curve_cells(pos: Tensor, bits: int) -> list[tuple[int, ...]]:
    """Each point's cell in ``2^bits`` cells per axis of its bounding cube (one cloud ``[N, D]``), in Python."""
    rows = pos.tolist()
    lo = [min(r[d] for r in rows) for d in range(pos.shape[1])]
    side = max(max(r[d] for r in rows) - lo[d] for d in range(pos.shape[1]))
    cells = 1 << bits
    return [tuple(min(int((r[d] - lo[d]) * (cells / side)), cells - 1) for d in range(len(r))) for r in rows]


def naive_morton(cell: tuple[int, ...], bits: int) -> int:
    """Z-order index of a cell: bits interleaved most significant first, coordinate 0 leading at every level."""
    D, code = len(cell), 0
    for level in range(bits - 1, -1, -1):
        for d in range(D):
            code = (code << 1) | ((cell[d] >> level) & 1)
    return code


def naive_serial_sample(pos: Tensor, samples: int, codes: list[int]) -> list[int]:
    """Evenly spaced points of one cloud sorted by ``codes`` (ties by index): ``floor((j + 1/2) n / S)``."""
    order = sorted(range(len(codes)), key=lambda i: (codes[i], i))
    n = len(codes)
    return [order[((2 * j + 1) * n) // (2 * samples)] for j in range(samples)]


def naive_grid(pos: Tensor, voxel: float) -> dict[tuple[int, ...], list[int]]:
    """The points of every occupied voxel (side ``voxel`` from the cloud's minimum corner), in Python."""
    rows = pos.double().tolist()
    lo = [min(r[d] for r in rows) for d in range(pos.shape[1])]
    out: dict[tuple[int, ...], list[int]] = {}
    for i, r in enumerate(rows):
        out.setdefault(tuple(int((r[d] - lo[d]) // voxel) for d in range(len(r))), []).append(i)
    return out


def assert_fps_knn_records(pos: Tensor, fx: dict) -> None:
    """pointcoc's FPS and kNN, stage by stage from ``pos [B, N, 3]``, pick the upstream fixture's recorded points
    (``fps_idx``, ``fps_idx_all_stages``, ``knn_idx_sorted_all_stages``)."""
    from pointcoc.ops import fps, gather, knn

    assert torch.equal(fps(pos, fx["fps_idx"].shape[1]), fx["fps_idx"])
    for idx_ref, knn_ref in zip(fx["fps_idx_all_stages"], fx["knn_idx_sorted_all_stages"]):
        idx = fps(pos, idx_ref.shape[1])
        assert torch.equal(idx, idx_ref)
        anchors = gather(pos, idx)
        assert torch.equal(knn(pos, anchors, knn_ref.shape[2]).sort(dim=-1).values, knn_ref)
        pos = anchors
