"""Samplers for clouds of 10^5 to 10^7 points: space-filling curves, voxel grids and FPS, chosen by name.

Farthest point sampling (:func:`~pointcoc.ops.fps`) costs ``O(N * S)``: on this package's
reference CPU it takes minutes for ``10^6 -> 2.5 * 10^5`` points. The samplers here are
``O(N log N)`` (a sort) or ``O(N)``:

* **serialisation** (``"morton"``, ``"hilbert"``): every point gets the index of its cell
  on a space-filling curve over the cloud's bounding cube (:func:`curve_codes`); sorting
  by it (:func:`serial_order`) puts nearby points next to each other, and picking evenly
  spaced points of that order samples the cloud evenly in space. Consecutive windows of
  the order are compact neighbourhoods (the regions of a context-cluster partition at scale).
* **grid** (``"grid"``): one point per occupied voxel of side ``voxel_size``
  (:func:`grid_sample`), the point nearest the voxel centre, or the voxel means
  (:func:`grid_pool`); the number of samples follows the occupied volume.
* **window FPS** (``"window_fps"``): greedy FPS inside consecutive runs of the Hilbert order,
  64 samples per run, every run at once (:func:`window_fps`): ``O(64 N)``, and it covers the
  cloud almost as evenly as global FPS, which the evenly spaced curve samples do not.
* **FPS** (``"fps"``): torch-cluster's exact FPS, the object-size models' sampler; and
  ``"fpsample"``: the bucket/KD-tree FPS of the ``fpsample`` package on the CPU (exact
  torch-cluster FPS on CUDA, where it runs in parallel), about 40x faster than exact FPS
  at ``2.6 * 10^5`` points but not the same samples (it ignores the start point).

:func:`subsample` is the one entry point: ``subsample(points, "hilbert", num_samples=...)``.
Every sampler works on a flat batch of clouds of different sizes, is deterministic
(ties go to the lowest input index, except inside ``fpsample``), and returns global indices
cloud by cloud. Greedy FPS (``"fps"``, ``"window_fps"``) can pick coincident points twice
when a cloud has fewer distinct positions than samples.

On CUDA the curve, grid and window-FPS samplers are the same torch code; ``"fpsample"`` runs
torch-cluster's CUDA FPS, which is exact but ``O(N * S)`` (one thread block per cloud, the
samples one after another), and torch-cluster's CUDA kNN is a brute-force scan per query.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from pointcoc.ops.padded import fps_padded
from pointcoc.ops.points import Points
from pointcoc.ops.sampling import fps_points

__all__ = ["SAMPLERS", "CURVES", "Subsample", "subsample", "curve_codes", "serial_order", "serial_sample",
           "grid_sample", "grid_pool", "sample_indices", "serial_windows", "group_padded", "window_fps"]

#: the curves of :func:`curve_codes`
CURVES = ("morton", "hilbert")
#: the sampler names :func:`subsample` accepts (``"grid"`` takes a voxel size, the others a count)
SAMPLERS = ("fps", "fpsample", "window_fps", "morton", "hilbert", "grid")


@dataclass
class Subsample:
    """The samples of a batch of clouds.

    Attributes:
        index: ``[S]`` global indices into the sampled points, cloud by cloud (serial samplers:
            in curve order; FPS: in sampling order; grid: in voxel order).
        sizes: samples per cloud (host ints).
        cluster: grid only, ``[P]`` which sample (``0..S-1``) each input point's voxel is: the
            map from every original point to its voxel, to carry predictions back.
    """

    index: Tensor
    sizes: tuple[int, ...]
    cluster: Tensor | None = None

    def points(self, source: Points) -> Points:
        """The sampled points of ``source`` (features carried along) as a ``Points``."""
        x = None if source.x is None else source.x[self.index]
        return Points.trusted(source.pos[self.index], x, source.batch[self.index], self.sizes)


# ----------------------------------------------------------------------------- curves
def _cloud_bounds(points: Points) -> tuple[Tensor, Tensor]:
    """Per-cloud minimum corner ``[B, D]`` and the side of its bounding cube ``[B]``."""
    pos, B, D = points.pos, points.num_clouds, points.pos_dim
    idx = points.batch[:, None].expand(-1, D)
    lo = pos.new_full((B, D), math.inf).scatter_reduce_(0, idx, pos, "amin")
    hi = pos.new_full((B, D), -math.inf).scatter_reduce_(0, idx, pos, "amax")
    return lo, (hi - lo).amax(dim=1)


def _quantise(points: Points, bits: int) -> Tensor:
    """``[P, D]`` int64 cell coordinates in ``0 .. 2^bits - 1`` of each point in its cloud's bounding cube."""
    # float32 resolves 2^20 cells exactly enough; half precision would overflow cells / side
    dtype = torch.float64 if bits > 20 or points.pos.dtype == torch.float64 else torch.float32
    pos = points.pos.to(dtype)
    lo, side = _cloud_bounds(Points.trusted(pos, None, points.batch, points.sizes))
    cells = 1 << bits
    scale = torch.where(side > 0, cells / side.clamp_min(torch.finfo(dtype).tiny), torch.zeros_like(side))
    if points.num_clouds == 1:
        rel = (pos - lo) * scale
    else:
        rel = (pos - lo[points.batch]) * scale[points.batch, None]
    return rel.long().clamp_(0, cells - 1)  # rel >= 0: truncation is the floor


#: bit-spreading steps ``(shift, mask)``: insert ``D - 1`` zero bits between the low bits of an int64
_SPREAD = {
    2: ((16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF), (4, 0x0F0F0F0F0F0F0F0F), (2, 0x3333333333333333),
        (1, 0x5555555555555555)),
    3: ((32, 0x1F00000000FFFF), (16, 0x1F0000FF0000FF), (8, 0x100F00F00F00F00F), (4, 0x10C30C30C30C30C3),
        (2, 0x1249249249249249)),
}


def _interleave(q: Tensor, bits: int) -> Tensor:
    """Interleave the bits of ``q [P, D]``, most significant first, dimension 0 leading at every level."""
    D = q.shape[1]
    code = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    if D in _SPREAD:  # a few shifts and masks per coordinate
        for d in range(D):
            x = q[:, d].clone()
            for shift, mask in _SPREAD[D]:
                x = (x | (x << shift)) & mask
            code |= x << (D - 1 - d)
        return code
    shifts = torch.arange(D - 1, -1, -1, device=q.device)
    for b in range(bits):
        code |= (((q >> b) & 1) << (shifts + b * D)).sum(dim=1)
    return code


def _hilbert_transpose(q: Tensor, bits: int) -> Tensor:
    """Skilling's axes-to-transpose step (AIP Conf. Proc. 707, 2004): ``q [P, D]`` -> the Hilbert index, transposed.

    Interleaving the result (:func:`_interleave`) gives the index along the Hilbert curve.
    """
    dtype = torch.int32 if bits <= 31 else torch.long  # half the memory traffic; contiguous columns
    x = [q[:, i].to(dtype) for i in range(q.shape[1])]
    D = len(x)
    bit = 1 << (bits - 1)
    while bit > 1:  # undo excess work: invert or exchange the low bits, level by level
        low = bit - 1
        for i in range(D):
            on = (x[i] & bit) != 0
            if i == 0:
                x[0] = torch.where(on, x[0] ^ low, x[0])
                continue
            swap = (x[0] ^ x[i]) & low
            x[0] = x[0] ^ torch.where(on, low, swap)
            x[i] = x[i] ^ swap.masked_fill_(on, 0)
        bit >>= 1
    for i in range(1, D):  # Gray encode
        x[i] = x[i] ^ x[i - 1]
    t = torch.zeros_like(x[0])
    bit = 1 << (bits - 1)
    while bit > 1:
        t = t ^ ((x[D - 1] & bit) != 0).to(dtype) * (bit - 1)
        bit >>= 1
    return torch.stack([xi ^ t for xi in x], dim=1).long()


def default_bits(dims: int) -> int:
    """Bits per coordinate by default: 16 (65,536 cells per axis: 1.5 cm on a 1 km tile), fewer when
    ``16 * D`` exceeds the 62 bits of a code."""
    return max(1, min(16, 62 // dims))


def curve_codes(points: Points, curve: str = "morton", bits: int | None = None) -> Tensor:
    """The index of every point's cell along a space-filling curve over its cloud's bounding cube.

    Each cloud's bounding cube (its own: the codes do not depend on where the cloud sits) is
    cut into ``2^bits`` cells per axis; ``"morton"`` (Z-order) interleaves the cell
    coordinates' bits, ``"hilbert"`` follows the Hilbert curve, whose consecutive cells are
    always face neighbours.

    Args:
        points: the clouds (``D`` coordinates, any ``D >= 1``).
        curve: ``"morton"`` or ``"hilbert"``.
        bits: bits per coordinate, ``bits * D <= 62`` (default :func:`default_bits`).

    Returns:
        ``[P]`` int64 codes in ``0 .. 2^(bits * D) - 1``.
    """
    D = points.pos_dim
    bits = default_bits(D) if bits is None else bits
    if curve not in CURVES:
        raise ValueError(f"`curve` must be one of {CURVES}, got {curve!r}")
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1 or bits * D > 62:
        raise ValueError(f"`bits` must be an int with 1 <= bits and bits * D <= 62 (D={D}), got {bits!r}")
    q = _quantise(points, bits)
    if curve == "hilbert":
        q = _hilbert_transpose(q, bits)
    return _interleave(q, bits)


def serial_order(points: Points, curve: str = "morton", bits: int | None = None) -> Tensor:
    """``[P]`` global permutation: every cloud's points sorted along the curve, clouds kept in order.

    Points in one cell keep their input order. The result is cached on ``points`` (the
    sampler of a stage and the partition of its blocks share it).
    """
    def build() -> Tensor:
        codes = curve_codes(points, curve, bits)
        order = codes.argsort(stable=True)
        return order[points.batch[order].argsort(stable=True)] if points.num_clouds > 1 else order

    return points.cached(("serial order", curve, bits), build)


def _group_ranks(counts: Tensor) -> tuple[Tensor, Tensor]:
    """For ``counts [G]`` items per group (CPU): each item's group and its rank inside the group, ``[sum counts]``."""
    group = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    return group, torch.arange(group.numel()) - (torch.cumsum(counts, 0) - counts)[group]


def _evenly_spaced(sizes: Sequence[int], samples: Sequence[int], device: torch.device) -> Tensor:
    """``[sum S]`` flat positions ``ptr_b + floor((j + 1/2) n_b / S_b)``: ``S_b`` evenly spaced slots per cloud."""
    n = torch.tensor(list(sizes), dtype=torch.long)
    s = torch.tensor(list(samples), dtype=torch.long)
    cloud, j = _group_ranks(s)
    start = torch.cumsum(n, 0) - n
    return (start[cloud] + ((2 * j + 1) * n[cloud]) // (2 * s[cloud])).to(device, non_blocking=True)


def serial_sample(points: Points, samples: Sequence[int], curve: str = "morton", bits: int | None = None) -> Tensor:
    """``samples[b]`` points per cloud, evenly spaced along the curve (trusted: nothing checked).

    Returns:
        ``[sum S]`` global indices, cloud by cloud, in curve order.
    """
    return serial_order(points, curve, bits)[_evenly_spaced(points.sizes, samples, points.pos.device)]


def serial_windows(points: Points, curve: str, windows: Sequence[int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Cut every cloud's curve order into ``windows[b]`` consecutive runs of balanced size (trusted input).

    Window ``w`` of a cloud of ``n`` points holds the ranks ``ceil(w n / W) .. ceil((w + 1) n / W) - 1``
    of its curve order, so sizes differ by at most one; every size is known on the host.

    Returns:
        ``order [P]`` (:func:`serial_order`), ``window [P]`` (the global window id of ``points[order]``,
        cloud-major, non-decreasing), and on the CPU ``sizes [G]`` (points per window) and ``local [G]``
        (each window's index in its cloud), ``G = sum(windows)``.
    """
    windows = list(windows)
    if len(windows) != points.num_clouds or any(not 1 <= w <= n for w, n in zip(windows, points.sizes)):
        raise ValueError(f"`windows` must give 1..N_b windows for each of the {points.num_clouds} clouds "
                         f"(sizes {points.sizes}), got {windows}")
    return _curve_runs(points, curve, windows, list(points.sizes))


def _curve_runs(points: Points, curve: str, numer: list[int],
                denom: list[int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Runs of the curve order: rank ``r`` of cloud ``b`` goes to run ``floor(r numer_b / denom_b)``
    (:func:`serial_windows`' returns; no host read)."""
    device = points.pos.device
    order = serial_order(points, curve)
    a, d = torch.tensor(numer, dtype=torch.long), torch.tensor(denom, dtype=torch.long)
    runs = [((n - 1) * a_b) // d_b + 1 for n, a_b, d_b in zip(points.sizes, numer, denom)]  # last rank's run + 1
    count = torch.tensor(runs, dtype=torch.long)
    w_ptr = torch.cumsum(count, 0) - count
    w_cloud, local = _group_ranks(count)
    cloud = points.batch[order]
    rank = torch.arange(points.num_points, device=device) - points.ptr[:-1].to(device, non_blocking=True)[cloud]
    a_d, d_d = a.to(device, non_blocking=True), d.to(device, non_blocking=True)
    window = w_ptr.to(device, non_blocking=True)[cloud] + (rank * a_d[cloud]) // d_d[cloud]

    def start(w: Tensor) -> Tensor:  # the first rank of run w: ceil(w d / a), at most n
        return torch.minimum(-((-w * d[w_cloud]) // a[w_cloud]), points.counts[w_cloud])

    return order, window, start(local + 1) - start(local), local


def group_padded(members: Tensor, group: Tensor, sizes: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Lay out ``members [P]``, sorted by ``group [P]``, as padded rows ``[G, n]``.

    Args:
        members: point indices, groups contiguous and in order.
        group: the group of each (non-decreasing).
        sizes: ``[G]`` members per group (on ``members``' device), at most ``n``.
        n: the padded width.

    Returns:
        ``index [G, n]`` (0 at padding), ``mask [G, n]`` (real members) and ``slot [P]`` (each member's column).
    """
    G, device = sizes.numel(), members.device
    slot = torch.arange(members.numel(), device=device) - (torch.cumsum(sizes, 0) - sizes)[group]
    index = torch.zeros(G, n, dtype=torch.long, device=device)
    mask = torch.zeros(G, n, dtype=torch.bool, device=device)
    index[group, slot] = members
    mask[group, slot] = True
    return index, mask, slot


#: samples per window of the ``"window_fps"`` sampler (FPS iterations, whatever the cloud size)
WINDOW_FPS_SAMPLES = 64


def window_fps(points: Points, samples: Sequence[int], curve: str = "hilbert",
               per_window: int = WINDOW_FPS_SAMPLES) -> Tensor:
    """FPS inside consecutive windows of the curve order, all windows at once (trusted input).

    Each cloud's curve order is cut into ``ceil(S_b / per_window)`` windows that take ``per_window``
    of the cloud's ``S_b`` samples each (the last one the rest), each window spanning as many points
    as its share of ``S_b`` evenly spaced slots along the curve; greedy FPS (:func:`~pointcoc.ops.fps_padded`, from each
    window's first point along the curve) picks them. ``per_window`` loop steps over all points:
    ``O(N * per_window)`` time, ``O(N)`` memory (clouds whose windows differ in width by more than 2x
    are padded cloud by cloud), no host sync, the same code on every device. The
    samples cover the cloud almost as evenly as global FPS (the benchmark's covering radius).

    Returns:
        ``[sum S]`` global indices, cloud by cloud (window by window, FPS order inside).
    """
    device = points.pos.device
    width = [min(n_b, -(-n_b * per_window // s_b)) for n_b, s_b in zip(points.sizes, samples)]
    if max(width) > 2 * min(width):  # very different ratios: pad each cloud to its own window width
        out = []
        for b, (start, n_b) in enumerate(zip(points.ptr[:-1].tolist(), points.sizes)):
            cloud = Points.trusted(points.pos[start:start + n_b], None, points.batch[:n_b] * 0, [n_b])
            out.append(window_fps(cloud, [samples[b]], curve, per_window) + start)
        return torch.cat(out)
    # rank r of a cloud goes to window floor(floor(r S / n) / per_window): window w gets the sample
    # slots w * per_window .. of the cloud's S evenly spaced slots, and at least as many points
    order, window, sizes, local = _curve_runs(points, curve, list(samples), [n * per_window for n in points.sizes])
    w_cloud, _ = _group_ranks(torch.tensor([-(-s // per_window) for s in samples]))  # the runs of _curve_runs
    share = (torch.tensor(list(samples))[w_cloud] - local * per_window).clamp(max=per_window)
    index, mask, _ = group_padded(order, window, sizes.to(device, non_blocking=True), max(width))
    M = min(per_window, max(samples))
    pick, _ = fps_padded(points.pos[index], M, mask)
    # the first share[w] picks of every window, flat positions w * M + j built on the host (no device sync)
    w_of, j = _group_ranks(share)
    flat = w_of * M + j
    return index.gather(1, pick).view(-1)[flat.to(device, non_blocking=True)]


# ----------------------------------------------------------------------------- voxel grid
def _voxels(points: Points, voxel_size: float | Sequence[float]) -> tuple[Tensor, Tensor, Tensor]:
    """Every point's voxel: ``inverse [P]`` into the occupied voxels (cloud-major, then by cell), the voxel
    keys' clouds ``[V]``, the cell coordinates ``[P, D]`` (from each cloud's minimum corner), the float64
    offsets from that corner ``[P, D]`` and the voxel sides ``[1 or D]`` (float64, on the points' device)."""
    D = points.pos_dim
    try:
        size = torch.as_tensor(voxel_size, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError):
        size = torch.tensor([math.nan])
    if size.numel() not in (1, D) or not bool(torch.isfinite(size).all()) or bool((size <= 0).any()):
        raise ValueError(f"`voxel_size` must be a positive finite number (or one per coordinate, {D}), "
                         f"got {voxel_size!r}")
    pos = points.pos.to(torch.float64)
    lo, _ = _cloud_bounds(Points.trusted(pos, None, points.batch, points.sizes))
    size = size.to(pos.device)
    rel = pos - lo[points.batch]
    scaled = (rel / size).floor()
    extent = (scaled.amax(dim=0) + 1).cpu().tolist() if scaled.numel() else [1.0] * D
    total = points.num_clouds * math.prod(extent)  # as floats: no int64 overflow before the check
    if total >= 2**62:
        raise ValueError(f"`voxel_size`={voxel_size!r} gives {total:.3g} cells (more than an int64 key holds); "
                         "use a larger voxel size or crop the cloud first")
    cell = scaled.long()
    extent = [int(e) for e in extent]
    key = points.batch.clone()
    for d in range(D):
        key = key * extent[d] + cell[:, d]
    uniq, inverse = torch.unique(key, sorted=True, return_inverse=True)
    return inverse, uniq // math.prod(extent), cell, rel, size


def grid_sample(points: Points, voxel_size: float | Sequence[float]) -> Subsample:
    """One point per occupied voxel: the one nearest the voxel's centre (ties: the lowest index).

    Voxels are cubes (or boxes, one side per coordinate) of side ``voxel_size`` from each
    cloud's minimum corner. The sample of a voxel does not depend on the input order (up to
    exact ties in distance).

    Returns:
        a :class:`Subsample` with ``index [V]`` (voxel order: cloud by cloud, then by cell),
        ``sizes`` (occupied voxels per cloud) and ``cluster [P]`` (every point's voxel).
    """
    inverse, voxel_cloud, cell, rel, size = _voxels(points, voxel_size)
    dist = (rel - (cell.to(torch.float64) + 0.5) * size).pow(2).sum(-1)
    V = voxel_cloud.numel()
    best = dist.new_full((V,), math.inf).scatter_reduce_(0, inverse, dist, "amin")
    arange = torch.arange(points.num_points, device=dist.device)
    candidate = torch.where(dist == best[inverse], arange, points.num_points)
    index = candidate.new_full((V,), points.num_points).scatter_reduce_(0, inverse, candidate, "amin")
    sizes = torch.bincount(voxel_cloud, minlength=points.num_clouds).cpu().tolist()
    return Subsample(index, tuple(sizes), inverse)


def grid_pool(points: Points, voxel_size: float | Sequence[float]) -> tuple[Points, Tensor]:
    """The mean position (and mean features) of every occupied voxel.

    Returns:
        the voxel means as a ``Points`` (voxel order, as :func:`grid_sample`) and ``cluster [P]``,
        each input point's voxel. Independent of the input order (up to float rounding).
    """
    inverse, voxel_cloud, *_ = _voxels(points, voxel_size)
    V = voxel_cloud.numel()
    count = torch.zeros(V, dtype=torch.float64, device=points.pos.device).index_add_(
        0, inverse, torch.ones(points.num_points, dtype=torch.float64, device=points.pos.device))

    def mean(t: Tensor) -> Tensor:  # sums in float64: half-precision sums and counts saturate
        total = torch.zeros(V, t.shape[1], dtype=torch.float64, device=t.device).index_add_(0, inverse, t.double())
        return (total / count[:, None]).to(t.dtype)

    x = None if points.x is None else mean(points.x)
    sizes = torch.bincount(voxel_cloud, minlength=points.num_clouds).cpu().tolist()
    return Points.trusted(mean(points.pos), x, voxel_cloud, sizes), inverse


# ----------------------------------------------------------------------------- FPS by name
def _fpsample(points: Points, samples: Sequence[int]) -> Tensor:
    """Bucket/KD-tree FPS of the ``fpsample`` package on the CPU, cloud by cloud (it starts where it chooses)."""
    try:
        import fpsample
    except ImportError as err:
        raise ImportError("the 'fpsample' sampler needs the fpsample package on the CPU: "
                          "pip install 'fpsample>=0.3.3,<1' (or pointcoc[fpsample]); "
                          "or choose 'hilbert'/'morton'/'fps'") from err
    pos = points.pos.detach().to(torch.float32).numpy()
    out = []
    for b, (start, n) in enumerate(zip(points.ptr[:-1].tolist(), points.sizes)):
        s = samples[b]
        if s == n:
            local = torch.arange(n)
        else:
            # start_idx fixes the result (None draws from numpy's global RNG); the bucket FPS starts
            # elsewhere and lists its samples in its own order. The KD-tree needs 2^h <= n.
            h = min(7, n.bit_length() - 1)
            picked = fpsample.bucket_fps_kdline_sampling(pos[start:start + n], s, h=h, start_idx=0)
            local = torch.from_numpy(picked.astype("int64"))
        out.append(local + start)
    return torch.cat(out)


def sample_indices(points: Points, method: str, samples: Sequence[int]) -> Tensor:
    """``samples[b]`` indices per cloud by a count-based sampler (trusted: ``1 <= samples[b] <= sizes[b]``).

    ``method``: ``"fps"`` (exact, torch-cluster, start at each cloud's first point),
    ``"fpsample"`` (bucket FPS on the CPU; exact FPS on other devices), ``"window_fps"``
    (FPS in windows along the Hilbert curve, :func:`window_fps`), ``"morton"`` or
    ``"hilbert"`` (evenly along the curve).

    Returns:
        ``[sum S]`` global indices, cloud by cloud.
    """
    if method in CURVES:
        return serial_sample(points, samples, method)
    if method == "window_fps":
        return window_fps(points, samples)
    if method == "fps" or (method == "fpsample" and points.pos.device.type != "cpu"):
        return fps_points(points, samples)
    if method == "fpsample":
        return _fpsample(points, samples)
    raise ValueError(f"unknown sampler {method!r}; choose one of {SAMPLERS}")


def subsample(points: Points, method: str, num_samples: int | Sequence[int] | None = None, *,
              voxel_size: float | Sequence[float] | None = None) -> Subsample:
    """Sample every cloud of ``points`` with the sampler named ``method`` (checked input).

    Args:
        points: the clouds.
        method: one of :data:`SAMPLERS`: ``"fps"``, ``"fpsample"``, ``"window_fps"``, ``"morton"``,
            ``"hilbert"`` (these take ``num_samples``) or ``"grid"`` (takes ``voxel_size``).
        num_samples: samples per cloud, an int or one per cloud, each in ``1..N_b``.
        voxel_size: grid only, the voxel side (or one per coordinate).

    Returns:
        a :class:`Subsample` (indices cloud by cloud and samples per cloud).

    Raises:
        ValueError: an unknown method, a missing or extra argument, more samples than points,
            a bad voxel size.
    """
    if method not in SAMPLERS:
        raise ValueError(f"unknown sampler {method!r}; choose one of {SAMPLERS}")
    if method == "grid":
        if voxel_size is None or num_samples is not None:
            raise ValueError("the 'grid' sampler takes `voxel_size` (not `num_samples`); the number of samples "
                             "is the number of occupied voxels")
        return grid_sample(points, voxel_size)
    if voxel_size is not None or num_samples is None:
        raise ValueError(f"the {method!r} sampler takes `num_samples` (not `voxel_size`)")
    if isinstance(num_samples, int):
        samples = [num_samples] * points.num_clouds
    else:
        samples = list(num_samples) if isinstance(num_samples, Sequence) else []
    if len(samples) != points.num_clouds or any(isinstance(s, bool) or not isinstance(s, int) for s in samples):
        raise ValueError(f"`num_samples` must be an int or one int per cloud ({points.num_clouds}), got "
                         f"{num_samples!r}")
    for b, (s, n) in enumerate(zip(samples, points.sizes)):
        if not 1 <= s <= n:
            raise ValueError(f"`num_samples`={s} for cloud {b}, which has {n} points; each must be in 1..{n}")
    return Subsample(sample_indices(points, method, samples), tuple(samples))
