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
``--out DIR`` a ``benchmark.md``, ``benchmark.csv`` and ``benchmark.png``.

Sections:
    machine   fp32 matmul peak (GFLOP/s)
    ops       fps / knn (torch-cluster) against pure-torch references, 1k..1M points
    cluster   the cluster step: pointcoc's masked-similarity form, a scatter form and upstream's
              dense [G, M, n, c] form, against the number of centres and points
    models    training and inference throughput and peak memory (images 224 px, clouds 1024 points);
              FLOP utilisation of coc_tiny's training step
    data      HDF5 split load time (seconds per 10k clouds)

Usage:
    python scripts/benchmark.py --out runs/bench                    # everything, whole zoo (21 minutes on 2 cores)
    python scripts/benchmark.py --section cluster --no-memory       # one section, timings only
    python scripts/benchmark.py --section models --models coc_tiny pointcoc_tiny --batch-size 16
"""

from __future__ import annotations

import argparse
import csv
import logging
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pointcoc.blocks import cluster_mix
from pointcoc.engine.cli import add_allocator_arg
from pointcoc.engine.runtime import apply_cpu_allocator, release_freed_memory, trim_freed_memory

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


def _model_inputs(name: str, batch: int, img_size: int, num_points: int, device: torch.device) -> torch.Tensor:
    from pointcoc.models import model_kind

    gen = torch.Generator().manual_seed(0)
    if model_kind(name) == "image":
        return torch.randn(batch, 3, img_size, img_size, generator=gen).to(device)
    return torch.randn(batch, num_points, 3, generator=gen).to(device)


def case_model(device: torch.device, name: str, mode: str, batch: int, img_size: int = 224,
               num_points: int = 1024) -> Callable[[], object]:
    import pointcoc

    model = pointcoc.create_model(name).to(device)
    x = _model_inputs(name, batch, img_size, num_points, device)
    if mode == "infer":
        model.eval()

        def infer() -> None:
            with torch.no_grad():
                model(x)

        infer.model = model  # type: ignore[attr-defined]
        return infer
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        model(x).float().logsumexp(-1).mean().backward()
        opt.step()

    train_step.model = model  # type: ignore[attr-defined]
    return train_step


CASES: dict[str, Callable[..., Callable[[], object]]] = {"ops": case_ops, "cluster": case_cluster,
                                                          "models": case_model}


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

    rows = []
    for name in args.models:
        row: dict[str, Any] = {"section": "models", "case": name, "batch": args.batch_size}
        for mode in ("infer", "train"):
            params = {"name": name, "mode": mode, "batch": args.batch_size, "img_size": args.img_size,
                      "num_points": args.num_points}
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


def bench_data(args: argparse.Namespace, device: torch.device) -> list[dict]:
    from pointcoc.data import load_time_benchmark

    res = load_time_benchmark(num_clouds=args.data_clouds)
    return [{"section": "data", "case": f"{k}", "value": v} for k, v in res.items()]


SECTIONS = {"machine": bench_machine, "ops": bench_ops, "cluster": bench_cluster, "models": bench_models,
            "data": bench_data}


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
        out.append({"goal": f"{r['case']} without O(N^2) memory", "measured": f"{r['ms'] / 1e3:.1f} s, peak {_fmt_mb(mem)} MB "
                    f"(N^2 floats: {quadratic:,.0f} MB)", "met": isinstance(mem, float) and mem < 0.01 * quadratic})
    coc = next((r for r in rows if r["section"] == "models" and r["case"] == "coc_tiny"), None)
    if coc:
        out.append({"goal": "coc_tiny training >= 2x upstream (4.4 images/s at batch 16 on this kind of machine)",
                    "measured": f"{coc['train_samples_s']:.1f} images/s ({coc['train_samples_s'] / 4.4:.1f}x)",
                    "met": coc["train_samples_s"] >= 8.8})
        if peak and coc.get("train_gflops_s"):
            util = coc["train_gflops_s"] / peak
            out.append({"goal": "coc_tiny training toward 60% of the fp32 matmul peak",
                        "measured": f"{coc['train_gflops_s']:.1f} GFLOP/s of {peak:.1f} ({100 * util:.0f}%)",
                        "met": util >= 0.6})
    return out


def markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(dict.fromkeys(k for r in rows for k in r if k != "section" and not k.startswith("_")))

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 0.1 or v == 0 else f"{v:.3g}"
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
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
    parser.add_argument("--models", nargs="+", help="models to time (default: the whole zoo, pointcoc.list_models())")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--num-points", type=int, default=1024)
    parser.add_argument("--data-clouds", type=int, default=10_000)
    parser.add_argument("--out", type=Path, help="write benchmark.md, benchmark.csv and benchmark.png here")
    add_allocator_arg(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    apply_cpu_allocator(args.cpu_allocator)
    if args.models is None:
        import pointcoc

        args.models = pointcoc.list_models()
    device = torch.device(args.device)
    chosen = list(SECTIONS) if "all" in args.section else args.section
    log.info("device %s, torch %s, %d threads", device, torch.__version__, torch.get_num_threads())
    rows: list[dict] = []
    report = [f"device {device} ({'CUDA' if device.type == 'cuda' else 'CPU'} figures), torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, --cpu-allocator {args.cpu_allocator}"]
    for name in chosen:
        part = SECTIONS[name](args, device)
        rows += part
        report.append(f"\n## {name}\n\n{markdown(part)}")
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
        log.info("wrote %s/benchmark.{md,csv,png}", args.out)


if __name__ == "__main__":
    main()
