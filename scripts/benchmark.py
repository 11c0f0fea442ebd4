#!/usr/bin/env python
"""Benchmarks: point ops, the context-cluster op, and model throughput.

Warm-up, several repetitions, medians. Prints a markdown table per section
and, with ``--csv``, writes all rows to a CSV file.

Usage:
    python scripts/benchmark.py                       # every section, default sizes
    python scripts/benchmark.py --section cluster     # one section
    python scripts/benchmark.py --section models --models coc_tiny pointmlp_coc --batch-size 16
"""

from __future__ import annotations

import argparse
import csv
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import pointcoc
from pointcoc.blocks import cluster_mix
from pointcoc.models import model_kind
from pointcoc.ops import fps, knn

log = logging.getLogger("pointcoc.benchmark")


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


# ----------------------------------------------------------------------------- ops
def bench_ops(args: argparse.Namespace, device: torch.device) -> list[dict]:
    rows = []
    for n in args.points:
        pos = torch.rand(1, n, 3, device=device)
        s = max(1, n // 4) if n <= 100_000 else 1024
        t_fps = measure(lambda: fps(pos, s), device, 1, args.repeats)
        query = pos[:, :: max(1, n // s)][:, :s]
        t_knn = measure(lambda: knn(pos, query, 16), device, 1, args.repeats)
        rows.append({"section": "ops", "case": f"N={n}", "fps_samples": s, "fps_ms": 1e3 * t_fps,
                     "knn16_queries": s, "knn_ms": 1e3 * t_knn})
    return rows


# ----------------------------------------------------------------------------- cluster op
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


def bench_cluster(args: argparse.Namespace, device: torch.device) -> list[dict]:
    rows = []
    impls = {"pointcoc (masked sim + bmm)": lambda *a: cluster_mix(*a)[0], "scatter/gather": scatter_cluster,
             "dense [G,M,n,c] (upstream)": dense_cluster}
    G, c = args.cluster_groups, args.cluster_channels
    for n in args.cluster_points:
        for m in args.centers:
            feat = torch.randn(G, n, c, device=device, requires_grad=True)
            value = torch.randn(G, n, c, device=device, requires_grad=True)
            centers = torch.randn(G, m, c, device=device, requires_grad=True)
            vcent = torch.randn(G, m, c, device=device, requires_grad=True)
            alpha = torch.ones(1, device=device, requires_grad=True)
            beta = torch.zeros(1, device=device, requires_grad=True)
            inputs = (feat, value, centers, vcent, alpha, beta)
            for name, impl in impls.items():
                def step() -> None:
                    impl(*inputs).sum().backward()

                fwd = measure(lambda: impl(*inputs), device, 2, args.repeats)
                fb = measure(step, device, 2, args.repeats)
                rows.append({"section": "cluster", "case": f"G={G} n={n} c={c} M={m}", "impl": name,
                             "forward_ms": 1e3 * fwd, "fwd_bwd_ms": 1e3 * fb})
    return rows


# ----------------------------------------------------------------------------- models
def bench_models(args: argparse.Namespace, device: torch.device) -> list[dict]:
    rows = []
    for name in args.models:
        model = pointcoc.create_model(name).to(device)
        if model_kind(name) == "image":
            x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device)
            inputs: tuple = (x,)
        else:
            inputs = (torch.randn(args.batch_size, args.num_points, 3, device=device),)
        model.eval()
        with torch.no_grad():
            t_inf = measure(lambda: model(*inputs), device, 1, args.repeats)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)

        def train_step() -> None:
            opt.zero_grad(set_to_none=True)
            model(*inputs).float().logsumexp(-1).mean().backward()
            opt.step()

        t_train = measure(train_step, device, 1, args.repeats)
        rows.append({"section": "models", "case": name, "batch": args.batch_size,
                     "params": sum(p.numel() for p in model.parameters()),
                     "infer_samples_s": args.batch_size / t_inf, "train_samples_s": args.batch_size / t_train})
    return rows


def markdown(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r if k != "section"))
    fmt = lambda v: f"{v:,.1f}" if isinstance(v, float) else (f"{v:,}" if isinstance(v, int) else str(v))  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", choices=["ops", "cluster", "models", "all"], default="all")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--points", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--cluster-points", type=int, nargs="+", default=[64, 3136])
    parser.add_argument("--centers", type=int, nargs="+", default=[4, 16, 49])
    parser.add_argument("--cluster-groups", type=int, default=16)
    parser.add_argument("--cluster-channels", type=int, default=24)
    parser.add_argument("--models", nargs="+", default=["coc_tiny", "pointmlp_coc", "pointmlp_elite",
                                                        "pointcoc_tiny", "pointcoc_small"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--num-points", type=int, default=1024)
    parser.add_argument("--csv", type=Path, help="write every row to this CSV file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device(args.device)
    log.info("device %s, torch %s, %d threads", device, torch.__version__, torch.get_num_threads())
    sections = {"ops": bench_ops, "cluster": bench_cluster, "models": bench_models}
    rows: list[dict] = []
    for name, fn in sections.items():
        if args.section in (name, "all"):
            part = fn(args, device)
            log.info("\n## %s\n\n%s\n", name, markdown(part))
            rows += part
    if args.csv:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with args.csv.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        log.info("wrote %s", args.csv)


if __name__ == "__main__":
    main()
