#!/usr/bin/env python
"""Benchmarks with performance goals: point ops, the context-cluster op, models, data loading.

Every timing is the median of ``--repeats`` runs after a warm-up. Peak memory is
measured in a fresh process per case, so one case's allocations cannot hide
another's: on CPU the peak resident size above the inputs (Linux ``VmHWM``,
reset through ``/proc/self/clear_refs`` after the set-up and one warm-up run),
on CUDA ``torch.cuda.max_memory_allocated`` after a warm-up run. Timings run
with ``--cpu-allocator reuse`` (the training scripts' default, see
``pointcoc.engine.runtime``); the memory processes return freed blocks to the
kernel (``release_freed_memory``), so their resident size follows the live
tensors (with ``reuse`` a training process keeps freed blocks and stays 4-10 %
above that peak). Results: a markdown table per section on stderr, and with
``--out DIR`` a ``benchmark.md``, ``benchmark.csv`` and ``benchmark.png`` (and ``benchmark_scale.png``).

Sections:
    machine   fp32 matmul peak (GFLOP/s)
    ops       fps / knn (torch-cluster) against pure-torch references, 1k..1M points
    cluster   the cluster step: pointcoc's masked-similarity form, a scatter form and upstream's
              dense [G, M, n, c] form, against the number of centres and points
    models    training and inference throughput and peak memory (images 224 px, clouds 1024 points, part
              segmenters 2048 points with normals and a category);
              FLOP utilisation of coc_tiny's training step
    upstream  training steps of pointcoc and of the upstream reference code side by side, in this process,
              with the same weights and inputs (needs --upstream-cc, a Context-Cluster checkout; skipped
              without it)
    data      HDF5 split load time (seconds per 10k clouds)
    semseg    scene segmentation: a training step (and peak memory) at 24,000-point crops; with
              --semseg-epochs E a demo-room run (test mIoU on every point) beside per-point baselines
              (height + colour: kNN and linear), and predict.py on 10^6-point scene files (in memory and
              streamed; --semseg-predict 10000000:on adds a 10^7 run); issue 15's goals
    partseg   part segmenters side by side (pointcoc_seg_tiny, pointmlp_partseg): training step rate and
              peak training memory at 2,048 points; with --partseg-epochs E also E epochs each on the demo
              part set (best instance / class mIoU); issue 14's goals
    scale     clouds of 10^3 to 10^6 points: each sampler (N -> N/4; time, peak memory, covering radius),
              kNN (N/4 queries, k=16; torch-cluster and, on the CPU, scipy's cKDTree), one forward and
              one training step of pointcoc_scale_tiny; with
              --out also benchmark_scale.png (log-log, fitted slopes)

Usage:
    python scripts/benchmark.py --out runs/bench                    # everything, whole zoo (21 minutes on 2 cores)
    python scripts/benchmark.py --section cluster --no-memory       # one section, timings only
    python scripts/benchmark.py --section models --models coc_tiny pointcoc_tiny --batch-size 16
    python scripts/benchmark.py --section upstream --upstream-cc ~/src/Context-Cluster   # against upstream

The upstream section imports upstream's own files from the checkout given at run time (nothing of it
is copied into pointcoc): ``--upstream-cc`` is a work tree (``git clone
https://github.com/ma-xu/Context-Cluster``) or a git directory, bare or not, whose ``HEAD`` the
benchmark extracts with ``git archive`` into a temporary directory. Upstream's imports that do not
exist on a CPU-only machine with timm 1.x are served by small stand-ins written here (see
:func:`upstream_stand_ins`): the CUDA-only ``pointnet2_ops`` FPS is pointcoc's (torch-cluster, from
index 0, so both sides sample the same anchors with the same op), the old timm paths point to
timm 1.x's layers, and ``register_model`` leaves timm's registry alone (pointcoc's image zoo is
registered there under the same names).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import gc
import importlib
import io
import json
import logging
import multiprocessing as mp
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointcoc.blocks import cluster_mix
from pointcoc.engine.cli import add_allocator_arg, exit_on_input_error
from pointcoc.engine.runtime import apply_cpu_allocator, release_freed_memory, trim_freed_memory
from pointcoc.errors import InputError

log = logging.getLogger("pointcoc.benchmark")

Case = Callable[[], Callable[[], object]]  # setup -> the function to measure


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_interleaved(fns: dict[str, Callable[[], object]], device: torch.device, rounds: int,
                        calls: int = 1) -> dict[str, float]:
    """Median seconds per call of each of ``fns``, timed side by side: every round runs ``calls`` calls of
    each in turn, so drifts of the machine (clocks, other load) reach them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            sync(device)
            times[name].append((time.perf_counter() - t0) / calls)
    return {name: statistics.median(t) for name, t in times.items()}


# ----------------------------------------------------------------------------- peak memory
def _status_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _memory_worker(section: str, params: dict[str, Any], device: str, queue: Any) -> None:
    release_freed_memory()  # freed blocks leave the process, so the warm-up run cannot hide the measured one's
    try:
        fn = CASES[section](torch.device(device), **params)
        dev = torch.device(device)
        if dev.type == "cuda":
            fn()
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
            fn()
            torch.cuda.synchronize(dev)
            queue.put((torch.cuda.max_memory_allocated(dev) - base) / 2**20)
        else:
            fn()  # warm-up: lazy imports and one-time library set-up are not the op's memory
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # reset the peak resident size (VmHWM) to the current one
            base = _status_mb("VmRSS")
            fn()
            queue.put(max(_status_mb("VmHWM") - base, 0.0))
    except Exception as err:  # reported, not raised: one failing case must not end the run
        queue.put(f"error: {type(err).__name__}: {err}")


def peak_memory_mb(section: str, params: dict[str, Any], device: torch.device, timeout: float = 1800) -> float | str:
    """Peak memory (MB) of one run of a case, measured in a fresh process."""
    trim_freed_memory()  # this process may keep GBs of freed timing buffers; return them before another starts
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_worker, args=(section, params, str(device), queue))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        return "timeout"
    return queue.get() if not queue.empty() else f"exit code {proc.exitcode}"


# ----------------------------------------------------------------------------- cases
def _naive_knn(pos: torch.Tensor, query: torch.Tensor, k: int) -> torch.Tensor:
    """Brute force: all distances [B, S, N], then top-k (O(S * N) memory)."""
    return torch.cdist(query, pos).topk(k, largest=False).indices


def _samples(n: int) -> int:
    """FPS samples / kNN queries of an ops case on ``n`` points."""
    return min(1024, max(1, n // 4))


def case_ops(device: torch.device, op: str, impl: str, n: int, batch: int) -> Callable[[], object]:
    from pointcoc.ops import fps, fps_padded, knn

    gen = torch.Generator().manual_seed(0)
    pos = torch.rand(batch, n, 3, generator=gen).to(device)
    s = _samples(n)
    if op == "fps":
        return (lambda: fps(pos, s)) if impl == "torch-cluster" else (lambda: fps_padded(pos, s))
    query = pos[:, torch.randperm(n, generator=gen)[:s].to(device)]
    return (lambda: knn(pos, query, 16)) if impl == "torch-cluster" else (lambda: _naive_knn(pos, query, 16))


def dense_cluster(feat, value, centers, value_centers, alpha, beta):
    """Upstream's formulation: a [G, M, n, c] product for aggregation and dispatch (benchmark only)."""
    cos = F.normalize(centers, dim=-1) @ F.normalize(feat, dim=-1).transpose(-1, -2)
    sim = torch.sigmoid(beta + alpha * cos)
    mask = torch.zeros_like(sim).scatter_(-2, sim.argmax(-2, keepdim=True), 1.0)
    sim = sim * mask
    agg = ((value.unsqueeze(-3) * sim.unsqueeze(-1)).sum(-2) + value_centers) / (sim.sum(-1, keepdim=True) + 1)
    return (agg.unsqueeze(-2) * sim.unsqueeze(-1)).sum(-3)


def scatter_cluster(feat, value, centers, value_centers, alpha, beta):
    """Aggregation by scatter_add over the assignment, dispatch by gather (benchmark alternative)."""
    cos = F.normalize(centers, dim=-1) @ F.normalize(feat, dim=-1).transpose(-1, -2)
    sim = torch.sigmoid(beta + alpha * cos)
    assign = sim.detach().argmax(-2)  # [..., n]
    w = sim.gather(-2, assign.unsqueeze(-2)).squeeze(-2)  # [..., n]
    idx = assign.unsqueeze(-1).expand_as(value)
    num = value_centers.scatter_add(-2, idx, w.unsqueeze(-1) * value)
    den = torch.ones_like(value_centers[..., :1]).scatter_add(-2, assign.unsqueeze(-1), w.unsqueeze(-1))
    return w.unsqueeze(-1) * (num / den).gather(-2, idx)


def _pointcoc_cluster(*args):
    return cluster_mix(*args)[0]


CLUSTER_IMPLS = {"pointcoc": _pointcoc_cluster, "scatter": scatter_cluster, "dense": dense_cluster}


def case_cluster(device: torch.device, impl: str, groups: int, n: int, m: int, c: int,
                 backward: bool = True) -> Callable[[], object]:
    gen = torch.Generator().manual_seed(0)
    tensors = [torch.randn(groups, size, c, generator=gen).to(device).requires_grad_(backward)
               for size in (n, n, m, m)]
    alpha = torch.ones(1, device=device, requires_grad=backward)
    beta = torch.zeros(1, device=device, requires_grad=backward)
    fn = CLUSTER_IMPLS[impl]
    if not backward:
        return lambda: fn(*tensors, alpha, beta)
    return lambda: fn(*tensors, alpha, beta).sum().backward()


def _model_inputs(name: str, batch: int, img_size: int, num_points: int, device: torch.device) -> tuple[Tensor, ...]:
    """Random inputs of ``name``: an image batch; clouds ``[B, N, 3]``; for part segmenters clouds, normals and
    categories (``seg_points`` points)."""
    from pointcoc.models import model_kind

    gen = torch.Generator().manual_seed(0)
    kind = model_kind(name)
    if kind == "image":
        return (torch.randn(batch, 3, img_size, img_size, generator=gen).to(device),)
    pos = torch.randn(batch, num_points, 3, generator=gen)
    if kind == "point":
        return (pos.to(device),)
    normals = F.normalize(torch.randn(batch, num_points, 3, generator=gen), dim=-1)
    return pos.to(device), normals.to(device), (torch.arange(batch) % 16).to(device)


def case_model(device: torch.device, name: str, mode: str, batch: int, img_size: int = 224,
               num_points: int = 1024) -> Callable[[], object]:
    import pointcoc

    model = pointcoc.create_model(name).to(device)
    x = _model_inputs(name, batch, img_size, num_points, device)
    if mode == "infer":
        model.eval()

        def infer() -> None:
            with torch.no_grad():
                model(*x)

        infer.model = model  # type: ignore[attr-defined]
        return infer
    return make_train_step(model, *x)


def make_train_step(model: nn.Module, *x: Tensor, **kwargs: Tensor) -> Callable[[], None]:
    """One training step of ``model`` on ``x`` (and keyword inputs such as a flat batch's ``batch``): forward,
    ``logsumexp`` loss, backward, SGD step (lr 1e-3).

    Puts the model in training mode; the returned function carries it as ``.model``.
    """
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        model(*x, **kwargs).float().logsumexp(-1).mean().backward()
        opt.step()

    train_step.model = model  # type: ignore[attr-defined]
    return train_step


SCALE_SAMPLERS = ("fps", "fpsample", "window_fps", "morton", "hilbert", "grid")
SCALE_MODEL = "pointcoc_scale_tiny"


def _scale_points(n: int, device: torch.device) -> Tensor:
    """``[n, 3]`` uniform random points in the unit cube (seeded)."""
    return torch.rand(n, 3, generator=torch.Generator().manual_seed(0)).to(device)


def grid_voxel_for(n: int, ratio: int = 4) -> float:
    """The voxel side that leaves about ``n / ratio`` occupied voxels of ``n`` uniform points in the unit cube
    (98 % of the ``n / ratio`` cells hold a point)."""
    return (ratio / n) ** (1 / 3)


def case_scale(device: torch.device, kind: str, impl: str, n: int) -> Callable[[], object]:
    """One case of the scale section: ``kind`` "sample" (``impl`` a sampler), "knn", "forward" or "train"."""
    import pointcoc
    from pointcoc.ops import Points, knn_points, subsample

    pos = _scale_points(n, device)
    batch = torch.zeros(n, dtype=torch.long, device=device)
    if kind == "sample":
        # a fresh Points per call: a cached curve order must not make the repeats free
        if impl == "grid":
            return lambda: subsample(Points.trusted(pos, None, batch, [n]), "grid", voxel_size=grid_voxel_for(n))
        return lambda: subsample(Points.trusted(pos, None, batch, [n]), impl, -(-n // 4))
    if kind == "knn":  # a reducer's search: N/4 queries, k = 16, by torch-cluster or (CPU) scipy's cKDTree
        source = Points.trusted(pos, None, batch, [n])
        query = pos[torch.randperm(n, generator=torch.Generator().manual_seed(1))[: -(-n // 4)].to(device)]
        qbatch = torch.zeros(query.shape[0], dtype=torch.long, device=device)
        return lambda: knn_points(source, query, qbatch, 16, kdtree=impl == "kdtree")
    model = pointcoc.create_model(impl).to(device)
    x = pos[None]
    if kind == "forward":
        model.eval()

        def forward() -> None:
            with torch.no_grad():
                model(x)

        return forward
    return make_train_step(model, x)


CASES: dict[str, Callable[..., Callable[[], object]]] = {"ops": case_ops, "cluster": case_cluster,
                                                          "models": case_model, "scale": case_scale}


# ----------------------------------------------------------------------------- sections
def bench_machine(args: argparse.Namespace, device: torch.device) -> list[dict]:
    n = 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    t = measure(lambda: a @ b, device, 3, max(args.repeats, 5))
    return [{"section": "machine", "case": f"fp32 matmul {n}x{n}", "gflops": 2 * n**3 / t / 1e9,
             "threads": torch.get_num_threads()}]


def _memory(args: argparse.Namespace, section: str, params: dict, device: torch.device) -> float | str | None:
    return peak_memory_mb(section, params, device) if args.memory else None


def bench_ops(args: argparse.Namespace, device: torch.device) -> list[dict]:
    rows = []
    for n in args.points:
        for batch in args.op_batches:
            if n * batch > 1_000_000 and batch > 1:
                continue
            for op in ("fps", "knn"):
                for impl in ("torch-cluster", "pure torch"):
                    if impl == "pure torch" and op == "knn" and n * _samples(n) * batch > 2e8:
                        continue  # the brute-force reference needs S x N distances: several GB at this size
                    params = {"op": op, "impl": impl, "n": n, "batch": batch}
                    fn = case_ops(device, **params)
                    t = measure(fn, device, 1, args.repeats if n <= 100_000 else 1)
                    rows.append({"section": "ops", "case": f"{op} N={n:,} B={batch}", "impl": impl,
                                 "ms": 1e3 * t, "peak_mb": _memory(args, "ops", params, device), "_params": params})
                    log.info("ops %s %s %s: %.1f ms", op, impl, n, 1e3 * t)
    return rows


def bench_cluster(args: argparse.Namespace, device: torch.device) -> list[dict]:
    rows = []
    for n in args.cluster_points:
        for m in args.centers:
            for impl in CLUSTER_IMPLS:
                params = {"impl": impl, "groups": args.cluster_groups, "n": n, "m": m, "c": args.cluster_channels}
                if impl == "dense" and args.cluster_groups * n * m * args.cluster_channels * 4 > 2**31:
                    rows.append({"section": "cluster", "case": f"n={n} M={m}", "impl": impl, "forward_ms": None,
                                 "fwd_bwd_ms": None, "peak_mb": "skipped (> 2 GB per tensor)", "_params": params})
                    continue
                fwd = measure(case_cluster(device, backward=False, **params), device, 1, args.repeats)
                fb = measure(case_cluster(device, **params), device, 1, args.repeats)
                rows.append({"section": "cluster", "case": f"n={n} M={m}", "impl": impl, "forward_ms": 1e3 * fwd,
                             "fwd_bwd_ms": 1e3 * fb, "peak_mb": _memory(args, "cluster", params, device),
                             "_params": params})
                log.info("cluster n=%d M=%d %s: %.1f ms", n, m, impl, 1e3 * fb)
    return rows


def bench_models(args: argparse.Namespace, device: torch.device) -> list[dict]:
    from torch.utils.flop_counter import FlopCounterMode

    from pointcoc.models import model_kind

    rows = []
    for name in args.models:
        points = args.seg_points if model_kind(name) == "partseg" else args.num_points
        row: dict[str, Any] = {"section": "models", "case": name, "batch": args.batch_size,
                               "points": None if model_kind(name) == "image" else points}
        for mode in ("infer", "train"):
            params = {"name": name, "mode": mode, "batch": args.batch_size, "img_size": args.img_size,
                      "num_points": points}
            fn = case_model(device, **params)
            t = measure(fn, device, 1, args.repeats)
            row[f"{mode}_samples_s"] = args.batch_size / t
            row[f"{mode}_peak_mb"] = _memory(args, "models", params, device)
            if mode == "train" and name == "coc_tiny":
                with FlopCounterMode(display=False) as counter:
                    fn()
                row["train_gflops_s"] = counter.get_total_flops() / t / 1e9
        row["params"] = sum(p.numel() for p in fn.model.parameters())  # type: ignore[attr-defined]
        rows.append(row)
        log.info("model %s: %.1f / %.1f samples/s", name, row["infer_samples_s"], row["train_samples_s"])
    return rows


# ----------------------------------------------------------------------------- upstream, side by side
UPSTREAM_URL = "https://github.com/ma-xu/Context-Cluster"
# The upstream files the section imports, relative to the root of a Context-Cluster checkout.
_UPSTREAM_FILES = ("models/context_cluster.py", "pointcloud/models/contextcluster.py",
                   "pointcloud/models/model_utils.py", "pointcloud/models/pointmlp.py")
_UPSTREAM_PACKAGE = "_pointcoc_benchmark_upstream"  # private sys.modules namespace of the imported files
_PARITY_TOL = 1e-4  # rtol and atol of the forward check (float64; equal computations stay near 1e-13)


class UpstreamSpec(NamedTuple):
    """Where a pointcoc model's upstream counterpart is built.

    Attributes:
        file: the upstream file, relative to the checkout.
        factory: the function of that file that builds the model (called with ``num_classes``).
        num_classes: output classes on both sides (the README zoo's: ImageNet 1000, ScanObjectNN 15,
            ModelNet40 40).
    """

    file: str
    factory: str
    num_classes: int


UPSTREAM_MODELS: dict[str, UpstreamSpec] = {
    **{name: UpstreamSpec("models/context_cluster.py", name, 1000)
       for name in ("coc_tiny", "coc_tiny2", "coc_tiny_plain", "coc_small", "coc_medium", "coc_base_dim64",
                    "coc_base_dim96")},
    "pointmlp_coc": UpstreamSpec("pointcloud/models/contextcluster.py", "pointMLP_CoC", 15),
    "pointmlp": UpstreamSpec("pointcloud/models/pointmlp.py", "pointMLP", 40),
    "pointmlp_elite": UpstreamSpec("pointcloud/models/pointmlp.py", "pointMLPElite", 40),
}
UPSTREAM_DEFAULT_MODELS = ("coc_tiny", "coc_tiny_plain", "pointmlp_coc")


class UpstreamCode:
    """Upstream's imported files and where they came from.

    Attributes:
        modules: the imported modules by relative path (:data:`_UPSTREAM_FILES`).
        revision: the checkout's commit (``"unknown"`` outside git; `` (modified)`` when those files
            differ from it).
        source: the ``--upstream-cc`` path.
    """

    def __init__(self, modules: dict[str, ModuleType], revision: str, source: str,
                 cleanup: contextlib.ExitStack) -> None:
        self.modules, self.revision, self.source = modules, revision, source
        self._cleanup = cleanup

    def close(self) -> None:
        """Remove the temporary extraction, if there is one."""
        self._cleanup.close()


def _git(git_dir: Path, *args: str) -> bytes:
    """``git --git-dir=git_dir args...``'s stdout; InputError with git's message when it fails."""
    try:
        res = subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, check=False)
    except FileNotFoundError as err:
        raise InputError(f"{git_dir} is not a work tree and `git` is not installed to read it as a git dir") from err
    if res.returncode != 0:
        msg = res.stderr.decode(errors="replace").strip().splitlines()
        raise InputError(f"git {' '.join(args[:1])} in {git_dir} failed: {msg[-1] if msg else res.returncode}")
    return res.stdout


def _rev_parse(path: Path, option: str) -> Path | None:
    """``git -C path rev-parse option`` as a resolved path, or None (not in git, or no git installed)."""
    try:
        res = subprocess.run(["git", "-C", str(path), "rev-parse", option], capture_output=True, text=True,
                             check=False)
    except FileNotFoundError:
        return None
    return Path(res.stdout.strip()).resolve() if res.returncode == 0 else None


def open_upstream_checkout(path: Path, stack: contextlib.ExitStack) -> tuple[Path, str]:
    """The root holding upstream's files, and its commit (``"unknown"`` for a folder outside git).

    Args:
        path: a Context-Cluster work tree, or a git directory (bare or ``.git``) whose ``HEAD`` is
            extracted with ``git archive`` (only :data:`_UPSTREAM_FILES`) into a temporary directory
            that ``stack`` removes.
        stack: owns the temporary directory.

    Raises:
        InputError: ``path`` is neither, or lacks one of the files.
    """
    path = path.expanduser()
    if not path.is_dir():
        raise InputError(f"--upstream-cc {path}: no such directory; get a checkout with "
                         f"`git clone {UPSTREAM_URL}`")
    if (path / _UPSTREAM_FILES[0]).is_file():  # a work tree (or a plain copy of one)
        missing = [f for f in _UPSTREAM_FILES if not (path / f).is_file()]
        if missing:
            raise InputError(f"--upstream-cc {path} lacks {missing}: not a Context-Cluster checkout ({UPSTREAM_URL})")
        revision = "unknown"
        if _rev_parse(path, "--show-toplevel") == path.resolve():  # its own repository, not one around a copy
            git_dir = _rev_parse(path, "--absolute-git-dir")
            assert git_dir is not None
            rev = _git(git_dir, "rev-parse", "HEAD").decode().strip()
            dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--", *_UPSTREAM_FILES],
                                   capture_output=True, text=True, check=False).stdout.strip()
            revision = rev + (" (modified)" if dirty else "")
        return path, revision
    git_dir = _rev_parse(path, "--absolute-git-dir")
    if git_dir != path.resolve():  # not a git directory itself (a folder elsewhere, or inside some repository)
        raise InputError(f"--upstream-cc {path} is neither a Context-Cluster work tree (no {_UPSTREAM_FILES[0]}) "
                         f"nor a git directory; get one with `git clone {UPSTREAM_URL}`")
    rev = _git(git_dir, "rev-parse", "--verify", "HEAD^{commit}").decode().strip()
    archive = _git(git_dir, "archive", "--format=tar", rev, "--", *_UPSTREAM_FILES)
    root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pointcoc-upstream-")))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: refuse links and paths out of root
            tar.extractall(root, filter="data")
        else:  # git archive of the named files: regular files at relative paths
            tar.extractall(root)
    log.info("upstream: extracted %s of %s (commit %s) into %s", ", ".join(_UPSTREAM_FILES), git_dir, rev[:12], root)
    return root, rev


def furthest_point_sample(xyz: Tensor, npoint: int) -> Tensor:
    """Stand-in for ``pointnet2_ops.pointnet2_utils.furthest_point_sample`` (a CUDA-only op).

    Farthest point sampling from each cloud's index 0 with pointcoc's op (torch-cluster), the one
    pointcoc's own models call, so both sides pick the same anchors at the same cost.

    Shapes: ``xyz [B, N, 3]`` -> ``int32 [B, npoint]`` indices into each cloud (as the CUDA op).
    """
    from pointcoc.ops import fps

    return fps(xyz.detach(), npoint).to(torch.int32)


def upstream_stand_ins() -> dict[str, ModuleType | None]:
    """``sys.modules`` entries that upstream's imports find while it is imported (written here).

    * ``timm.models.layers`` and ``timm.models.layers.helpers``: the old timm paths of ``DropPath``,
      ``trunc_normal_`` and ``to_2tuple``, served from timm 1.x's ``timm.layers`` (``helpers`` no
      longer exists there).
    * ``timm.models.registry``: a ``register_model`` that returns the function unchanged; timm's own
      would replace pointcoc's registrations of the same names (``coc_tiny`` ...) in timm's registry.
    * ``pointnet2_ops`` and ``pointnet2_ops.pointnet2_utils``: :func:`furthest_point_sample`.
    * ``model_utils``: None, so that upstream's first ``from model_utils import ...`` fails and its
      fallback, the relative import of its own ``model_utils.py``, is taken whatever is on ``sys.path``.
    """
    from timm.layers import DropPath, to_2tuple, trunc_normal_

    def module(name: str, **attrs: object) -> ModuleType:
        mod = ModuleType(name, f"pointcoc benchmark stand-in for upstream's `import {name}`")
        mod.__dict__.update(attrs)
        return mod

    fps_utils = module("pointnet2_ops.pointnet2_utils", furthest_point_sample=furthest_point_sample)
    return {
        "timm.models.layers": module("timm.models.layers", DropPath=DropPath, trunc_normal_=trunc_normal_,
                                     to_2tuple=to_2tuple),
        "timm.models.layers.helpers": module("timm.models.layers.helpers", to_2tuple=to_2tuple),
        "timm.models.registry": module("timm.models.registry", register_model=lambda fn: fn),
        "pointnet2_ops": module("pointnet2_ops", pointnet2_utils=fps_utils),
        "pointnet2_ops.pointnet2_utils": fps_utils,
        "model_utils": None,
    }


@contextlib.contextmanager
def _shadowed_modules(entries: dict[str, ModuleType | None]) -> Iterator[None]:
    """Put ``entries`` into ``sys.modules`` for the duration, then restore what was there."""
    saved = {name: sys.modules.get(name) for name in entries}
    sys.modules.update(entries)
    try:
        yield
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


def import_upstream(root: Path) -> dict[str, ModuleType]:
    """Import upstream's files under ``root`` as private modules, with :func:`upstream_stand_ins`.

    Each folder becomes a package of the private ``_pointcoc_benchmark_upstream`` namespace without
    running its ``__init__.py``; upstream's top-level output (its notes about mmdet / mmseg, whose
    imports fail harmlessly inside ``try``) goes to the log.

    Returns:
        the modules by relative path (:data:`_UPSTREAM_FILES`).
    """
    for name in [n for n in sys.modules if n == _UPSTREAM_PACKAGE or n.startswith(_UPSTREAM_PACKAGE + ".")]:
        del sys.modules[name]  # a previous checkout's modules
    top = ModuleType(_UPSTREAM_PACKAGE)
    top.__path__ = []
    sys.modules[_UPSTREAM_PACKAGE] = top
    modules: dict[str, ModuleType] = {}
    printed = io.StringIO()
    with _shadowed_modules(upstream_stand_ins()), contextlib.redirect_stdout(printed), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        for rel in _UPSTREAM_FILES:
            folder, stem = rel.rsplit("/", 1)
            package = f"{_UPSTREAM_PACKAGE}.{folder.replace('/', '__')}"
            if package not in sys.modules:
                pkg = ModuleType(package)
                pkg.__path__ = [str(root / folder)]
                pkg.__package__ = package
                sys.modules[package] = pkg
            modules[rel] = importlib.import_module(f"{package}.{stem.removesuffix('.py')}")
    for line in printed.getvalue().splitlines():
        if line.strip():
            log.info("upstream import: %s", line.strip())
    return modules


def load_upstream(path: Path) -> UpstreamCode:
    """Open the checkout at ``path`` (:func:`open_upstream_checkout`) and import upstream's files.

    Raises:
        InputError: not a usable checkout, or its files fail to import.
    """
    stack = contextlib.ExitStack()
    try:
        root, revision = open_upstream_checkout(path, stack)
        try:
            modules = import_upstream(root)
        except Exception as err:
            raise InputError(f"importing upstream's files from {path} failed: {type(err).__name__}: {err}") from err
    except BaseException:
        stack.close()
        raise
    log.info("upstream: Context-Cluster %s, commit %s", path, revision)
    return UpstreamCode(modules, revision, str(path), stack)


def _set_upstream_points(model: nn.Module, num_points: int) -> None:
    """Resize an upstream point ``Model`` built for ``model.points`` points to clouds of ``num_points``.

    Upstream fixes each stage's anchor count at construction (``points // reducer`` per stage, in each
    ``LocalGrouper.groups``; nothing else depends on it); pointcoc keeps ``n // reducer`` of the actual
    cloud. This sets upstream's counts to pointcoc's for the benchmark's cloud size.
    """
    designed, actual = model.points, num_points  # points entering the stage: upstream's design, this benchmark's
    for grouper in model.local_grouper_list:
        reduction = designed // grouper.groups
        if actual < grouper.kneighbors or actual // reduction < 1:
            raise InputError(f"--num-points {num_points} is too few for upstream's model: a stage gets {actual} "
                             f"points and needs {grouper.kneighbors} neighbours and at least {reduction}")
        designed, actual = grouper.groups, actual // reduction
        grouper.groups = actual
    model.points = num_points


def _randomise_layer_scales(model: nn.Module, seed: int = 0) -> None:
    """Draw the image models' layer scales from U(0.5, 1.5).

    At upstream's initial 1e-5 the token mixers and MLPs hardly reach the output, so the forward check
    would not see them; the step's cost does not depend on these values.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.rsplit(".", 1)[-1] in ("layer_scale_1", "layer_scale_2"):
                param.copy_(torch.rand(param.shape, generator=gen) + 0.5)


def build_upstream_pair(code: UpstreamCode, name: str, num_points: int) -> tuple[nn.Module, nn.Module]:
    """Upstream's model and the pointcoc one with upstream's weights (on the CPU).

    The upstream model is built by its factory (:data:`UPSTREAM_MODELS`) with torch's default
    initialisation after ``torch.manual_seed(0)`` (image layer scales: :func:`_randomise_layer_scales`);
    pointcoc's is ``pointcoc.create_model(name, num_classes=...)`` loaded strictly with upstream's
    ``state_dict()`` through :func:`pointcoc.models.load_upstream_state_dict`.
    """
    import pointcoc
    from pointcoc.models import load_upstream_state_dict, model_kind

    spec = UPSTREAM_MODELS[name]
    torch.manual_seed(0)
    upstream = getattr(code.modules[spec.file], spec.factory)(num_classes=spec.num_classes)
    if model_kind(name) == "point":
        _set_upstream_points(upstream, num_points)
    _randomise_layer_scales(upstream)
    ours = pointcoc.create_model(name, num_classes=spec.num_classes)
    load_upstream_state_dict(ours, upstream.state_dict(), source=f"upstream {spec.factory} ({spec.file})")
    return upstream, ours


def build_upstream_pairs(code: UpstreamCode, args: argparse.Namespace) -> dict[str, tuple[nn.Module, nn.Module]]:
    """:func:`build_upstream_pair` for every model of ``--upstream-models``."""
    return {name: build_upstream_pair(code, name, args.num_points) for name in args.upstream_models}


def forward_difference(upstream: nn.Module, ours: nn.Module, x_upstream: Tensor, x_ours: Tensor
                       ) -> tuple[float, float, bool]:
    """Max abs and relative-norm difference of the two models' eval-mode outputs, and whether they agree.

    Compared in float64, on copies of both models: in float32 the cluster step's hard assignment
    flips where two centres' similarities lie within one rounding step (seen for 2 of 25,088
    points of one block of ``coc_tiny_plain`` at batch 16, margins of 6e-8), and the flipped
    points move two clusters' aggregates, so float32 logits differed by 1e-2 between two equal
    computations. In float64 those ties resolve alike. Agreement: ``torch.allclose`` with
    ``rtol = atol = 1e-4``.
    """
    upstream64, ours64 = copy.deepcopy(upstream).double().eval(), copy.deepcopy(ours).double().eval()
    with torch.no_grad():
        ref, out = upstream64(x_upstream.double()), ours64(x_ours.double())
    del upstream64, ours64
    if ref.shape != out.shape:
        raise ValueError(f"upstream returns {tuple(ref.shape)}, pointcoc {tuple(out.shape)}")
    diff = (out - ref).abs()
    rel = float((out - ref).norm() / ref.norm().clamp_min(1e-300))
    return float(diff.max()), rel, bool(torch.allclose(out, ref, rtol=_PARITY_TOL, atol=_PARITY_TOL))


def bench_upstream(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """pointcoc's training step against upstream's, alternately, with equal weights and inputs.

    Per model: build both (:func:`build_upstream_pair`), check their eval forward agrees on the batch,
    run one warm-up step each, then ``--repeats`` rounds of one upstream step and one pointcoc step.
    ``speedup`` is upstream's median step time over pointcoc's.
    """
    from pointcoc.models import model_kind

    code: UpstreamCode | None = getattr(args, "upstream_code", None)
    if code is None:
        log.info("upstream: skipped (give --upstream-cc DIR, a checkout of %s, to time upstream side by side)",
                 UPSTREAM_URL)
        return []
    batch = args.upstream_batch_size or args.batch_size
    rows = []
    pairs = getattr(args, "upstream_pairs", None) or build_upstream_pairs(code, args)  # main built them first
    for name in args.upstream_models:
        upstream, ours = pairs.pop(name)
        upstream, ours = upstream.to(device), ours.to(device)
        (x,) = _model_inputs(name, batch, args.img_size, args.num_points, device)  # a classifier: one input
        # Upstream's point models take [B, 3, N]; its image models take the same NCHW images.
        x_upstream = x.transpose(1, 2).contiguous() if model_kind(name) == "point" else x
        max_abs, rel, agree = forward_difference(upstream, ours, x_upstream, x)
        log.info("upstream %s: float64 forward max abs diff %.3g (relative %.3g)%s", name, max_abs, rel,
                 "" if agree else f"; NOT within {_PARITY_TOL:g}, the timings compare different computations")
        steps = {"upstream": make_train_step(upstream, x_upstream), "pointcoc": make_train_step(ours, x)}
        for step in steps.values():  # warm-up
            step()
        median = measure_interleaved(steps, device, args.repeats)
        what = f"{args.img_size} px" if model_kind(name) == "image" else f"{args.num_points} points"
        rows.append({"section": "upstream", "case": name, "input": what,
                     "classes": UPSTREAM_MODELS[name].num_classes, "batch": batch,
                     "params": sum(p.numel() for p in ours.parameters()),
                     "upstream_step_s": median["upstream"], "pointcoc_step_s": median["pointcoc"],
                     "upstream_samples_s": batch / median["upstream"], "pointcoc_samples_s": batch / median["pointcoc"],
                     "speedup": median["upstream"] / median["pointcoc"], "fwd_max_abs_diff": max_abs,
                     "fwd_rel_diff": rel, "outputs_agree": agree, "upstream_commit": code.revision[:12]})
        log.info("upstream %s: %.3f s/step upstream, %.3f s/step pointcoc (%.2fx)", name, median["upstream"],
                 median["pointcoc"], rows[-1]["speedup"])
        del steps, upstream, ours
        gc.collect()
    return rows


def jpeg_decode_ms(rounds: int = 5, decodes: int = 200) -> dict[str, float]:
    """Milliseconds per decode of one photo-like 512x600 JPEG: Pillow alone against ``load_image`` (strict
    libjpeg-turbo), interleaved round by round in this process; the median round of each."""
    from PIL import Image

    from pointcoc.data.images import load_image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:512, :600] * 0.45
    pixels = np.clip(np.stack([xx, yy, (xx + yy) / 2], -1) + rng.normal(0, 10, (512, 600, 3)), 0, 255)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "photo.jpg"
        Image.fromarray(pixels.astype(np.uint8)).save(path, "JPEG", quality=90)

        def pillow() -> Image.Image:
            with Image.open(path) as im:
                return im.convert("RGB")

        decoders = {"jpeg 512x600 ms, Pillow": pillow, "jpeg 512x600 ms, load_image (strict)": lambda: load_image(path)}
        seconds = measure_interleaved(decoders, torch.device("cpu"), rounds, decodes)
    return {name: 1e3 * s for name, s in seconds.items()}


def covering_radius(pos: Tensor, samples: Tensor) -> tuple[float, float]:
    """The largest and the mean distance from a point of ``pos [N, 3]`` to its nearest sample (lower: more even)."""
    from pointcoc.ops import Points, knn_points

    zeros = torch.zeros(samples.shape[0], dtype=torch.long, device=pos.device)
    src = Points.trusted(samples, None, zeros, [samples.shape[0]])
    nearest = knn_points(src, pos, torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device), 1)[:, 0]
    dist = (pos - samples[nearest]).norm(dim=1)
    return float(dist.max()), float(dist.mean())


def bench_scale(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Samplers, kNN and the scale preset against the number of points (one cloud of uniform random points)."""
    from pointcoc.ops import Points, subsample

    rows = []
    for n in args.scale_points:
        repeats = args.repeats if n <= 200_000 else 1
        pos = _scale_points(n, device)
        cases = [("sample", impl) for impl in SCALE_SAMPLERS] + [("knn", "torch-cluster")]
        if device.type == "cpu":
            cases.append(("knn", "kdtree"))
        cases += [("forward", SCALE_MODEL), ("train", SCALE_MODEL)]
        for kind, impl in cases:
            exact = impl == "fps" or (impl == "fpsample" and device.type != "cpu")  # fpsample: exact FPS on CUDA
            if exact and n > args.scale_fps_max:
                continue  # O(N S): minutes per call beyond this
            params = {"kind": kind, "impl": impl, "n": n}
            t = measure(case_scale(device, **params), device, 1, repeats)
            row: dict[str, Any] = {"section": "scale", "case": f"{kind} {impl}", "n": n, "ms": 1e3 * t,
                                   "points_s": round(n / t), "peak_mb": _memory(args, "scale", params, device),
                                   "_params": params}
            if kind == "sample":
                points = Points.trusted(pos, None, torch.zeros(n, dtype=torch.long, device=device), [n])
                sub = subsample(points, "grid", voxel_size=grid_voxel_for(n)) if impl == "grid" \
                    else subsample(points, impl, -(-n // 4))
                row["samples"] = sub.index.numel()
                row["cover_max"], row["cover_mean"] = covering_radius(pos, pos[sub.index])
            rows.append(row)
            log.info("scale %s %s N=%d: %.1f ms", kind, impl, n, 1e3 * t)
    return rows


def fitted_slope(points: list[tuple[int, float]], from_n: int = 10_000) -> float | None:
    """The slope of log(time) against log(N) by least squares, over ``N >= from_n`` (None with fewer than 2)."""
    pts = [(n, t) for n, t in points if n >= from_n and t > 0]
    if len(pts) < 2:
        return None
    return float(np.polyfit(np.log([p[0] for p in pts]), np.log([p[1] for p in pts]), 1)[0])


def bench_data(args: argparse.Namespace, device: torch.device) -> list[dict]:
    from pointcoc.data import load_time_benchmark

    res = {**load_time_benchmark(num_clouds=args.data_clouds), **jpeg_decode_ms()}
    return [{"section": "data", "case": f"{k}", "value": v} for k, v in res.items()]


PARTSEG_MODELS = ("pointcoc_seg_tiny", "pointmlp_partseg")


def bench_partseg(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Part segmenters side by side: a training step and peak training memory at ``--batch-size`` and
    ``--seg-points``; with ``--partseg-epochs E`` each also trains E epochs on the demo part set (the demo
    recipe, the same for both) and reports its best instance / class mIoU and its logged training rate."""
    rows = []
    for name in args.partseg_models:
        params = {"name": name, "mode": "train", "batch": args.batch_size, "num_points": args.seg_points}
        fn = case_model(device, **params)
        t = measure(fn, device, 1, args.repeats)
        row: dict[str, Any] = {"section": "partseg", "case": name, "batch": args.batch_size,
                               "points": args.seg_points, "train_samples_s": args.batch_size / t,
                               "train_peak_mb": _memory(args, "models", params, device),
                               "params": sum(p.numel() for p in fn.model.parameters())}  # type: ignore[attr-defined]
        del fn
        rows.append(row)
        log.info("partseg %s: %s", name, {k: v for k, v in row.items() if k != "section"})
    for row in rows if args.partseg_epochs else ():  # after every timing: the runs do not disturb them
        row.update(demo_partseg_run(row["case"], args.partseg_epochs, device, args.out))
        log.info("partseg %s on the demo parts: %s", row["case"], {k: v for k, v in row.items() if "demo" in k})
    return rows


def demo_partseg_run(name: str, epochs: int, device: torch.device, out: Path | None) -> dict[str, Any]:
    """Train ``name`` on the demo part set with ``scripts/train_partseg.py``'s demo recipe; its best mIoUs and
    median logged training rate (samples/s)."""
    from pointcoc.engine.partseg import main as train_partseg

    with tempfile.TemporaryDirectory() as tmp:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = (out / f"partseg_{name}_{stamp}") if out is not None else Path(tmp) / name  # never a used folder
        summary = train_partseg(["--dataset", "demo", "--model", name, "--epochs", str(epochs), "--workers", "1",
                                 "--device", device.type, "--output-dir", str(run_dir), "--no-tensorboard"])
        with (run_dir / "metrics.csv").open() as fh:
            rates = [float(r["train_samples_s"]) for r in csv.DictReader(fh)]
    return {"demo_epochs": epochs, "demo_instance_miou": summary["best_instance_miou"],
            "demo_class_miou": summary["best_class_miou"],
            "demo_full_instance_miou": summary["final_full_instance_miou"],
            "demo_train_samples_s": statistics.median(rates)}


def partseg_goals(rows: list[dict]) -> list[dict]:
    """Issue 14's goals: pointcoc_seg_tiny at least pointmlp_partseg's demo instance mIoU at 3x its training
    throughput, and at most 1/4 of its peak training memory."""
    by = {r["case"]: r for r in rows}
    ours, ref = by.get("pointcoc_seg_tiny"), by.get("pointmlp_partseg")
    if not ours or not ref:
        return []
    out = []
    speed = ours["train_samples_s"] / ref["train_samples_s"]
    if "demo_instance_miou" in ours and "demo_instance_miou" in ref:
        out.append({"goal": "pointcoc_seg_tiny: at least pointmlp_partseg's demo instance mIoU at >= 3x its training "
                            f"throughput ({ours['points']} points, batch {ours['batch']})",
                    "measured": f"{ours['demo_instance_miou']:.2f} vs {ref['demo_instance_miou']:.2f} mIoU "
                                f"({ours['demo_epochs']} epochs each); {speed:.1f}x the training step rate "
                                f"({ours['train_samples_s']:.1f} vs {ref['train_samples_s']:.1f} samples/s)",
                    "met": ours["demo_instance_miou"] >= ref["demo_instance_miou"] and speed >= 3})
    else:
        out.append({"goal": "pointcoc_seg_tiny at >= 3x pointmlp_partseg's training throughput (the mIoU half needs "
                            "--partseg-epochs)", "measured": f"{speed:.1f}x ({ours['train_samples_s']:.1f} vs "
                                                             f"{ref['train_samples_s']:.1f} samples/s)",
                    "met": None if speed >= 3 else False})
    mo, mr = ours.get("train_peak_mb"), ref.get("train_peak_mb")
    if isinstance(mo, float) and isinstance(mr, float):
        out.append({"goal": f"pointcoc_seg_tiny peak training memory at batch {ours['batch']}, {ours['points']} "
                            "points: at most 1/4 of pointmlp_partseg's",
                    "measured": f"{mo:,.0f} vs {mr:,.0f} MB ({mr / max(mo, 1e-3):.1f}x less)", "met": mo <= mr / 4})
    return out


SEMSEG_MODELS = ("pointcoc_seg_tiny",)
#: predict.py runs of the semseg section: (points, stream mode)
SEMSEG_PREDICT = ((1_000_000, "off"), (1_000_000, "on"))


def case_semseg(device: torch.device, name: str, batch: int, num_points: int) -> Callable[[], object]:
    """One training step of a scene segmenter on ``batch`` crops of ``num_points`` room-sized random points (a flat
    batch, colour and height features, 13 classes as S3DIS)."""
    import pointcoc

    gen = torch.Generator().manual_seed(0)
    model = pointcoc.create_model(name, num_classes=13, num_categories=0, in_chans=4).to(device)
    pos = (torch.rand(batch * num_points, 3, generator=gen) * torch.tensor([4.0, 4.0, 3.0])).to(device)
    x = torch.cat([torch.rand(batch * num_points, 3, generator=gen), pos[:, 2:].cpu()], dim=1).to(device)
    index = torch.arange(batch).repeat_interleave(num_points).to(device)
    return make_train_step(model, pos, x, batch=index)


CASES["semseg"] = case_semseg


def scene_file(path: Path, num_points: int, seed: int = 0) -> Path:
    """A ``.npy`` scene of exactly ``num_points`` points (``x y z r g b`` float32 columns, then ``label``): demo
    rooms (:func:`pointcoc.data.demo_rooms.make_room`) side by side on a grid, 9 m apart."""
    from pointcoc.data.demo_rooms import RoomDemoConfig, make_room

    rng = np.random.default_rng(seed)
    config = RoomDemoConfig()
    parts, total, i = [], 0, 0
    per_row = max(1, int(np.ceil(np.sqrt(num_points / 50_000))))
    while total < num_points:
        scene, _ = make_room(rng, config)
        offset = np.array([9.0 * (i % per_row), 9.0 * (i // per_row), 0.0])
        parts.append(np.c_[scene.coord + offset, scene.color, scene.segment].astype(np.float32))
        total += scene.num_points
        i += 1
    np.save(path, np.concatenate(parts)[:num_points])
    return path


def per_point_baseline(train: list[Path], test: list[Path], num_classes: int, voxel: float = 0.08,
                       k: int = 15) -> dict[str, float]:
    """Per-point baselines on the scene features alone, no geometry context: each point is ``[height above the
    scene's floor, r, g, b]`` (standardised). ``knn``: the majority class of the ``k`` nearest training points in
    that feature space (scipy cKDTree); ``linear``: softmax regression (L-BFGS). Trained on the voxelised training
    scenes, tested on every point of the test scenes; returns each one's test mIoU and OA."""
    from scipy.spatial import cKDTree

    from pointcoc.data.scene_sets import voxelize
    from pointcoc.data.scenes import read_scene
    from pointcoc.engine.metrics import SemSegMeter

    def features(folder: Path, sub: bool) -> tuple[np.ndarray, np.ndarray]:
        scene = read_scene(folder, num_classes=num_classes)
        index = voxelize(scene.coord, voxel)[0] if sub else np.arange(scene.num_points)
        z = scene.coord[index, 2:3] - scene.coord[:, 2].min()
        assert scene.color is not None and scene.segment is not None, f"{folder} needs colours and labels"
        return np.c_[z, scene.color[index] / 255.0].astype(np.float32), scene.segment[index]

    xs, ys = zip(*(features(f, True) for f in train))
    x_train, y_train = np.concatenate(xs), np.concatenate(ys)
    keep = y_train >= 0
    x_train, y_train = x_train[keep], y_train[keep]
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train = (x_train - mean) / std
    tree = cKDTree(x_train)
    w = torch.zeros(x_train.shape[1] + 1, num_classes, requires_grad=True)
    xt = torch.from_numpy(np.c_[x_train, np.ones(len(x_train))]).float()
    yt = torch.from_numpy(y_train).long()
    opt = torch.optim.LBFGS([w], max_iter=200)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xt @ w, yt)
        loss.backward()
        return loss

    opt.step(closure)
    meters = {"knn": SemSegMeter(num_classes), "linear": SemSegMeter(num_classes)}
    for folder in test:
        x, y = features(folder, False)
        x = (x - mean) / std
        _, nn_idx = tree.query(x, k=k)
        votes = np.apply_along_axis(np.bincount, 1, y_train[nn_idx], minlength=num_classes)
        meters["knn"].update(torch.from_numpy(votes.argmax(1)), torch.from_numpy(y))
        with torch.no_grad():
            meters["linear"].update(torch.from_numpy(np.c_[x, np.ones(len(x))]).float() @ w, torch.from_numpy(y))
    out = {}
    for name, meter in meters.items():
        res = meter.compute()
        out[f"{name}_miou"], out[f"{name}_oa"] = res["miou"], res["oa"]
    return out


# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report the benchmark's own peak
_PREDICT_CHILD = """
import json, sys, time
t = time.perf_counter()
from pointcoc.engine.predict import main
r = main(sys.argv[1:])
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"predict_s": time.perf_counter() - t, "streamed": r["streamed"], "points": r["points"],
                  "peak_rss_mb": hwm / 1024}))
"""


def predict_run(checkpoint: Path, scene: Path, out: Path, stream: str, device: torch.device) -> dict[str, Any]:
    """``scripts/predict.py`` on ``scene`` in a fresh process: its wall time (start-up included), the time inside
    ``main`` and its peak resident memory (``VmHWM``)."""
    cmd = [sys.executable, "-c", _PREDICT_CHILD, "--checkpoint", str(checkpoint), "--input", str(scene),
           "--columns", "x,y,z,r,g,b,label", "--output", str(out), "--stream", stream, "--device", device.type]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}"}
    info = json.loads(res.stdout.strip().splitlines()[-1])
    return {**info, "wall_s": wall}


def bench_semseg(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Scene segmentation: a training step and its peak memory at ``--semseg-points`` crops; with
    ``--semseg-epochs E`` a demo-room training run (mIoU) beside the per-point baselines; ``predict.py`` on
    scene files of ``--semseg-predict`` points (in memory and streamed). Issue 15's goals."""
    rows: list[dict] = []
    for name in args.semseg_models:
        params = {"name": name, "batch": args.semseg_batch, "num_points": args.semseg_points}
        t = measure(case_semseg(device, **params), device, 1, args.repeats)
        row = {"section": "semseg", "case": f"{name} train step", "batch": args.semseg_batch,
               "points": args.semseg_points, "crops_s": args.semseg_batch / t,
               "points_s": args.semseg_batch * args.semseg_points / t,
               "train_peak_mb": _memory(args, "semseg", params, device)}
        rows.append(row)
        log.info("semseg %s", row)
    work = Path(tempfile.mkdtemp(prefix="pointcoc-bench-semseg-"))
    checkpoint = args.semseg_checkpoint
    try:
        if args.semseg_epochs:
            from pointcoc.engine.semseg import main as train_semseg
            from pointcoc.engine.semseg import scene_split

            name = args.semseg_models[0]
            run_dir = (args.out or work) / f"semseg_{name}_{time.strftime('%Y%m%d-%H%M%S')}"
            t = time.perf_counter()
            summary = train_semseg(["--dataset", "demo", "--model", name, "--epochs", str(args.semseg_epochs),
                                    "--workers", "1", "--device", device.type, "--output-dir", str(run_dir),
                                    "--no-tensorboard"])
            rows.append({"section": "semseg", "case": f"{name} demo rooms", "epochs": args.semseg_epochs,
                         "miou": summary["final_full_miou"], "oa": summary["final_full_oa"],
                         "val_best_miou": summary["best_miou"], "train_s": time.perf_counter() - t})
            checkpoint = run_dir / "best.pt"
            cfg = {"dataset": "demo", "data_dir": None}
            train_folders, classes = scene_split(cfg, "train")
            test_folders, _ = scene_split(cfg, "test")
            base = per_point_baseline(train_folders, test_folders, len(classes))
            for kind in ("knn", "linear"):
                rows.append({"section": "semseg", "case": f"baseline {kind} (height + colour) demo rooms",
                             "miou": base[f"{kind}_miou"], "oa": base[f"{kind}_oa"]})
            log.info("semseg demo: %s", rows[-3:])
        if checkpoint is not None:
            for n, stream in args.semseg_predict:
                scene = scene_file(work / f"scene_{n}.npy", n)
                res = predict_run(checkpoint, scene, work / f"pred_{n}_{stream}", stream, device)
                rows.append({"section": "semseg", "case": f"predict.py {n:,} points, stream {stream}", **res})
                log.info("semseg %s", rows[-1])
                scene.unlink()
    finally:  # scene files, predictions (and the demo run without --out) are not kept
        shutil.rmtree(work, ignore_errors=True)
    return rows


def semseg_goals(rows: list[dict]) -> list[dict]:
    """Issue 15's goals: predict.py on 10^6 points in under 60 s and 4 GB; streamed memory flat in the file size;
    the demo model clearly (>= 10 mIoU) above the per-point baselines."""
    out = []
    pred = {r["case"]: r for r in rows if r["case"].startswith("predict.py") and "wall_s" in r}
    one = pred.get("predict.py 1,000,000 points, stream off")
    if one:
        out.append({"goal": "predict.py on a 10^6-point scene: < 60 s, peak memory < 4 GB",
                    "measured": f"{one['wall_s']:.1f} s wall ({one['predict_s']:.1f} s in predict), "
                                f"{one['peak_rss_mb']:,.0f} MB",
                    "met": one["wall_s"] < 60 and one["peak_rss_mb"] < 4096})
    streamed = sorted((r["points"], r) for r in pred.values() if r["streamed"])
    if len(streamed) >= 2:
        (n0, small), (n1, large) = streamed[0], streamed[-1]
        if n1 > n0:
            out.append({"goal": "predict.py streamed: peak memory flat in the file size",
                        "measured": f"{small['peak_rss_mb']:,.0f} MB at {n0:,} points, {large['peak_rss_mb']:,.0f} MB "
                                    f"at {n1:,} ({large['wall_s']:.0f} s)",
                        "met": large["peak_rss_mb"] <= 1.25 * small["peak_rss_mb"]})
    model = next((r for r in rows if r["case"].endswith("demo rooms") and not r["case"].startswith("baseline")), None)
    base = [r for r in rows if r["case"].startswith("baseline")]
    if model and base:
        best = max(base, key=lambda r: r["miou"])
        out.append({"goal": "demo rooms: the model clearly (>= 10 mIoU) above a per-point baseline",
                    "measured": f"{model['miou']:.1f} vs {best['miou']:.1f} mIoU ({best['case']}), test split, every "
                                "point", "met": model["miou"] >= best["miou"] + 10})
    return out


SECTIONS = {"machine": bench_machine, "ops": bench_ops, "cluster": bench_cluster, "models": bench_models,
            "upstream": bench_upstream, "data": bench_data, "scale": bench_scale, "partseg": bench_partseg,
            "semseg": bench_semseg}


# ----------------------------------------------------------------------------- goals and output
def _fmt_mb(mem: Any) -> str:
    return f"{mem:,.1f}" if isinstance(mem, float) else str(mem)


def goals(rows: list[dict]) -> list[dict]:
    """The performance goals, with the measured numbers and whether each is met."""
    out = []
    by = {(r["section"], r["case"], r.get("impl")): r for r in rows}
    peak = next((r["gflops"] for r in rows if r["section"] == "machine"), None)
    for r in rows:
        if r["section"] == "cluster" and r["impl"] == "pointcoc" and r["_params"]["m"] == 49:
            dense = by.get(("cluster", r["case"], "dense"))
            if dense and isinstance(dense.get("peak_mb"), float) and isinstance(r.get("peak_mb"), float):
                ratio = dense["peak_mb"] / max(r["peak_mb"], 1e-3)
                speed = dense["fwd_bwd_ms"] / r["fwd_bwd_ms"]
                out.append({"goal": f"cluster op at 49 centres ({r['case']}): several times less memory than dense, "
                            "equal or better speed", "measured": f"{ratio:.1f}x less memory, {speed:.1f}x the speed",
                            "met": ratio >= 3 and speed >= 1})
    big = [r for r in rows if r["section"] == "ops" and r["impl"] == "torch-cluster"
           and r["_params"]["n"] == 1_000_000 and r["_params"]["batch"] == 1]
    for r in big:
        mem = r.get("peak_mb")
        quadratic = 1e6 * 1e6 * 4 / 2**20
        out.append({"goal": f"{r['case']} without O(N^2) memory",
                    "measured": f"{r['ms'] / 1e3:.1f} s, peak {_fmt_mb(mem)} MB (N^2 floats: {quadratic:,.0f} MB)",
                    "met": isinstance(mem, float) and mem < 0.01 * quadratic})
    out += scale_goals([r for r in rows if r["section"] == "scale"])
    out += partseg_goals([r for r in rows if r["section"] == "partseg"])
    out += semseg_goals([r for r in rows if r["section"] == "semseg"])
    side_by_side = [r for r in rows if r["section"] == "upstream"]
    for r in side_by_side:  # measured against upstream's code in this run, never against a figure from elsewhere
        out.append({"goal": f"{r['case']} training step at least 2x upstream's (side by side in this run, "
                            f"batch {r['batch']}, same weights and input)",
                    "measured": f"{r['speedup']:.2f}x ({r['pointcoc_samples_s']:.1f} against "
                                f"{r['upstream_samples_s']:.1f} samples/s)"
                                + ("" if r["outputs_agree"] else "; the forward outputs differ, not comparable"),
                    "met": r["speedup"] >= 2 and r["outputs_agree"]})
    coc = next((r for r in rows if r["section"] == "models" and r["case"] == "coc_tiny"), None)
    if not side_by_side and any(r["section"] == "models" for r in rows):
        out.append({"goal": "coc_tiny training step at least 2x upstream's (side by side in the same run)",
                    "measured": "not measured (run with --upstream-cc)", "met": None})
    if coc:
        if peak and coc.get("train_gflops_s"):
            util = coc["train_gflops_s"] / peak
            out.append({"goal": "coc_tiny training toward 60% of the fp32 matmul peak",
                        "measured": f"{coc['train_gflops_s']:.1f} GFLOP/s of {peak:.1f} ({100 * util:.0f}%)",
                        "met": util >= 0.6})
    return out


def scale_goals(rows: list[dict]) -> list[dict]:
    """Issue 13's goals: 10^6 -> 2.5 * 10^5 sampling under 1 s; the scale preset's training step near-linear."""
    out = []
    by = {(r["case"], r["n"]): r for r in rows}
    for impl in ("window_fps", "hilbert", "morton", "grid", "fpsample"):
        r = by.get((f"sample {impl}", 1_000_000))
        if r:
            out.append({"goal": f"sampling 10^6 -> 2.5x10^5 points under 1 s ({impl})",
                        "measured": f"{r['ms'] / 1e3:.2f} s ({r['samples']:,} samples)", "met": r["ms"] < 1000})
    small, big = by.get((f"train {SCALE_MODEL}", 16_384)), by.get((f"train {SCALE_MODEL}", 131_072))
    if small and big:
        ratio = big["points_s"] / small["points_s"]
        text = f"{big['points_s']:,.0f} vs {small['points_s']:,.0f} points/s ({100 * ratio:.0f} %)"
        met = ratio >= 0.5
        if isinstance(small.get("peak_mb"), float) and isinstance(big.get("peak_mb"), float):
            mem = big["peak_mb"] / max(small["peak_mb"], 1e-3)
            text += f"; peak {big['peak_mb']:,.0f} vs {small['peak_mb']:,.0f} MB ({mem:.1f}x)"
            met = met and mem <= 10
        out.append({"goal": f"{SCALE_MODEL} training step at 131,072 points: >= 50 % of the points/s at 16,384, "
                            "peak memory within 10x", "measured": text, "met": met})
    return out


def plot_scale(rows: list[dict], path: Path) -> None:
    """Time against N on log-log axes, one line per case, the fitted slope in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for case in dict.fromkeys(r["case"] for r in rows):
        pts = sorted((r["n"], r["ms"]) for r in rows if r["case"] == case)
        slope = fitted_slope(pts)
        label = case + ("" if slope is None else f" (slope {slope:.2f})")
        ax.loglog(*zip(*pts), marker="o", label=label)
    ax.set(xlabel="points N", ylabel="ms", title="scale: samplers (N -> N/4), kNN (N/4 queries, k=16), "
                                                 f"{SCALE_MODEL}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


_UPSTREAM_SKIPPED = f"skipped: no --upstream-cc (a checkout of {UPSTREAM_URL})"
# shown with 3 significant digits
_THREE_DIGITS = {"speedup", "upstream_step_s", "pointcoc_step_s", "cover_max", "cover_mean"}


def markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(dict.fromkeys(k for r in rows for k in r if k != "section" and not k.startswith("_")))

    def fmt(key: str, v: Any) -> str:
        if isinstance(v, float):
            if key in _THREE_DIGITS:
                return f"{v:.3g}"
            return f"{v:,.1f}" if abs(v) >= 0.1 or v == 0 else f"{v:.3g}"
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(k, r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    ops = [r for r in rows if r["section"] == "ops"]
    for (op, impl) in sorted({(r["_params"]["op"], r["impl"]) for r in ops}):
        pts = sorted((r["_params"]["n"], r["ms"]) for r in ops
                     if r["_params"]["op"] == op and r["impl"] == impl and r["_params"]["batch"] == 1)
        if pts:
            axes[0].loglog(*zip(*pts), marker="o", label=f"{op} {impl}")
    axes[0].set(xlabel="points", ylabel="ms", title="fps (1024 samples) / knn (k=16)")
    clus = [r for r in rows if r["section"] == "cluster" and r.get("fwd_bwd_ms") is not None]
    for n in sorted({r["_params"]["n"] for r in clus}):
        for impl in CLUSTER_IMPLS:
            pts = sorted((r["_params"]["m"], r["fwd_bwd_ms"], r.get("peak_mb")) for r in clus
                         if r["_params"]["n"] == n and r["impl"] == impl)
            if pts:
                axes[1].loglog([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{impl} n={n}")
                mem = [(p[0], p[2]) for p in pts if isinstance(p[2], float)]
                if mem:
                    axes[2].loglog(*zip(*mem), marker="s", label=f"{impl} n={n}")
    axes[1].set(xlabel="centres M", ylabel="forward + backward ms", title="cluster step time")
    axes[2].set(xlabel="centres M", ylabel="peak MB", title="cluster step peak memory")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _predict_case(text: str) -> tuple[int, str]:
    n, _, stream = text.partition(":")
    if not n.isdigit() or stream not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected N:on or N:off, e.g. 10000000:on; got {text!r}")
    return int(n), stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", nargs="+", choices=[*SECTIONS, "all"], default=["all"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory processes")
    parser.add_argument("--points", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--op-batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--cluster-points", type=int, nargs="+", default=[64, 3136])
    parser.add_argument("--centers", type=int, nargs="+", default=[4, 16, 49, 196])
    parser.add_argument("--cluster-groups", type=int, default=16)
    parser.add_argument("--cluster-channels", type=int, default=24)
    parser.add_argument("--models", nargs="+", help="models to time (default: every image and point classifier)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--num-points", type=int, default=1024)
    parser.add_argument("--seg-points", type=int, default=2048, help="points per shape of the part segmenters")
    parser.add_argument("--partseg-models", nargs="+", default=list(PARTSEG_MODELS), metavar="MODEL",
                        help="models of the partseg section")
    parser.add_argument("--partseg-epochs", type=int, default=0,
                        help="partseg section: also train each model this many epochs on the demo part set")
    parser.add_argument("--semseg-models", nargs="+", default=list(SEMSEG_MODELS), metavar="MODEL")
    parser.add_argument("--semseg-points", type=int, default=24_000, help="semseg section: points per training crop")
    parser.add_argument("--semseg-batch", type=int, default=2, help="semseg section: crops per training step")
    parser.add_argument("--semseg-epochs", type=int, default=0,
                        help="semseg section: also train the first --semseg-models this many epochs on the demo rooms "
                             "(and run the baselines and predict.py with it)")
    parser.add_argument("--semseg-checkpoint", type=Path, help="semseg section: the scene segmenter of the predict.py "
                                                               "runs when --semseg-epochs trains none")
    parser.add_argument("--semseg-predict", type=_predict_case, nargs="+", default=list(SEMSEG_PREDICT),
                        metavar="N:STREAM", help="semseg section: predict.py runs, points and stream mode (off/on)")
    parser.add_argument("--data-clouds", type=int, default=10_000)
    parser.add_argument("--scale-points", type=int, nargs="+",
                        default=[1_000, 10_000, 16_384, 100_000, 131_072, 1_000_000],
                        help="cloud sizes of the scale section")
    parser.add_argument("--scale-fps-max", type=int, default=16_384,
                        help="largest cloud the scale section runs exact FPS on (O(N S): minutes at 10^5)")
    parser.add_argument("--upstream-cc", type=Path, metavar="DIR",
                        help=f"a Context-Cluster checkout ({UPSTREAM_URL}): a work tree, or a git dir whose HEAD is "
                             "extracted with git archive; enables the upstream section")
    parser.add_argument("--upstream-models", nargs="+", choices=list(UPSTREAM_MODELS),
                        default=list(UPSTREAM_DEFAULT_MODELS), metavar="MODEL",
                        help=f"models to time against upstream (default: {' '.join(UPSTREAM_DEFAULT_MODELS)}; "
                             f"choices: {', '.join(UPSTREAM_MODELS)})")
    parser.add_argument("--upstream-batch-size", type=int, help="batch of the upstream section (default: --batch-size)")
    parser.add_argument("--out", type=Path, help="write benchmark.md, benchmark.csv and benchmark.png here")
    add_allocator_arg(parser)
    args = parser.parse_args()
    if "upstream" in args.section and args.upstream_cc is None:
        parser.exit(2, f"{parser.prog}: error: --section upstream needs --upstream-cc DIR, a checkout of "
                       f"{UPSTREAM_URL} (git clone {UPSTREAM_URL})\n")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    apply_cpu_allocator(args.cpu_allocator)  # the same setting for every section, upstream's steps included
    args.upstream_code = None
    with exit_on_input_error(log):
        if args.upstream_cc is not None:  # before any timing: a bad checkout fails now, not after an hour of sections
            args.upstream_code = load_upstream(args.upstream_cc)
        try:
            if args.upstream_code is not None and "upstream" in chosen_sections(args):
                # weights that do not fit, too few points: fail before timing; the section then uses these pairs
                args.upstream_pairs = build_upstream_pairs(args.upstream_code, args)
            _run(args)
        finally:
            if args.upstream_code is not None:
                args.upstream_code.close()


def chosen_sections(args: argparse.Namespace) -> list[str]:
    """The sections ``--section`` asks for, in run order."""
    return list(SECTIONS) if "all" in args.section else list(args.section)


def _run(args: argparse.Namespace) -> None:
    """Run the chosen sections and write the report."""
    if args.models is None:
        import pointcoc

        args.models = pointcoc.list_models("image") + pointcoc.list_models("point") + pointcoc.list_models("partseg")
    device = torch.device(args.device)
    chosen = chosen_sections(args)
    log.info("device %s, torch %s, %d threads", device, torch.__version__, torch.get_num_threads())
    rows: list[dict] = []
    report = [f"device {device} ({'CUDA' if device.type == 'cuda' else 'CPU'} figures), torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, --cpu-allocator {args.cpu_allocator}"]
    for name in chosen:
        part = SECTIONS[name](args, device)
        rows += part
        empty = _UPSTREAM_SKIPPED if name == "upstream" else "no rows"
        report.append(f"\n## {name}\n\n{markdown(part) or empty}")
        if name == "upstream" and part:
            code = args.upstream_code
            report[-1] += (f"\n\nUpstream: Context-Cluster {code.source}, commit {code.revision}. In this process, per "
                           "model: upstream's weights loaded into pointcoc, the same input, one warm-up step each, "
                           f"then {args.repeats} rounds of one upstream and one pointcoc training step (forward, "
                           "backward, SGD); medians; "
                           "speedup = upstream step time / pointcoc step time. fwd_*_diff: eval-mode outputs on the "
                           "batch before timing, both models in float64 (float32 rounding ties can flip a cluster "
                           "assignment, see forward_difference).")
        log.info(report[-1])
    met = goals(rows)
    if met:
        report.append(f"\n## goals\n\n{markdown(met)}")
        log.info(report[-1])
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "benchmark.md").write_text("\n".join(report) + "\n")
        keys = list(dict.fromkeys(k for r in rows for k in r if not k.startswith("_")))  # "_params": internal
        with (args.out / "benchmark.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        plot(rows, args.out / "benchmark.png")
        scale = [r for r in rows if r["section"] == "scale"]
        if scale:
            plot_scale(scale, args.out / "benchmark_scale.png")
        log.info("wrote %s/benchmark.{md,csv,png}", args.out)


if __name__ == "__main__":
    main()
