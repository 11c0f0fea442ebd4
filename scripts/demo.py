#!/usr/bin/env python
"""Forward + backward of a point model made of pointcoc blocks, on generated clouds.

Prints shapes and timings. No data or weights are needed.
Usage: python scripts/demo.py [--batch-size 8] [--num-points 1024] [--steps 3]
"""

from __future__ import annotations

import argparse
import logging
import time

import torch

from pointcoc.models import PointCoC

log = logging.getLogger("pointcoc.demo")


def make_clouds(batch_size: int, num_points: int, generator: torch.Generator) -> torch.Tensor:
    """Random anisotropic ellipsoid surfaces ``[B, N, 3]``."""
    pts = torch.randn(batch_size, num_points, 3, generator=generator)
    pts = pts / pts.norm(dim=-1, keepdim=True)
    scale = 0.5 + torch.rand(batch_size, 1, 3, generator=generator)
    return pts * scale + 0.01 * torch.randn(batch_size, num_points, 3, generator=generator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-points", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    gen = torch.Generator().manual_seed(0)
    model = PointCoC(num_classes=10).to(args.device)
    params = sum(p.numel() for p in model.parameters())
    log.info("PointCoC: %s parameters, %d threads, device %s", f"{params:,}", torch.get_num_threads(), args.device)
    pos = make_clouds(args.batch_size, args.num_points, gen).to(args.device)
    labels = torch.randint(0, 10, (args.batch_size,), generator=gen).to(args.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    log.info("input pos %s", tuple(pos.shape))
    for step in range(args.steps):
        t0 = time.perf_counter()
        logits = model(pos)
        t1 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        log.info("step %d: logits %s, loss %.4f, forward %.1f ms, backward+step %.1f ms (%.1f clouds/s)",
                 step, tuple(logits.shape), loss.item(), 1e3 * (t1 - t0), 1e3 * (t2 - t1),
                 args.batch_size / (t2 - t0))
    # the same model on a flat PyG-style batch of clouds of different sizes
    sizes = [700, 1024, 900]
    flat = torch.cat([make_clouds(1, n, gen)[0] for n in sizes]).to(args.device)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)).to(args.device)
    t0 = time.perf_counter()
    with torch.no_grad():
        logits = model.eval()(flat, batch=batch)
    log.info("flat batch of clouds %s: logits %s in %.1f ms", sizes, tuple(logits.shape),
             1e3 * (time.perf_counter() - t0))


if __name__ == "__main__":
    main()
