#!/usr/bin/env python
"""Generate pointcoc's built-in demo data (idempotent) and log what was written.

root/points: synthetic 3D shapes in the ModelNet40 HDF5 layout (read with pointcoc.data.modelnet40(root/points));
root/images: drawn shapes and textures in the ImageNet folder layout (pointcoc.data.image_folder(root/images)).
Existing complete folders are left alone; nothing is ever deleted.

Usage: python scripts/make_demo_data.py [--root data/demo] [--baseline] [--benchmark]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from pointcoc.data import DemoConfig, ensure_demo_data, image_folder, load_time_benchmark, modelnet40
from pointcoc.data.demo import MARKER, linear_baseline_accuracy

log = logging.getLogger("pointcoc.make_demo_data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/demo", help="output folder (default: data/demo)")
    parser.add_argument("--seed", type=int, default=DemoConfig.seed)
    parser.add_argument("--train-per-class", type=int, default=DemoConfig.train_per_class,
                        help="training clouds per class (12 classes)")
    parser.add_argument("--test-per-class", type=int, default=DemoConfig.test_per_class)
    parser.add_argument("--images-per-class", type=int, default=DemoConfig.image_train_per_class,
                        help="training images per class (5 classes); val gets a third of it")
    parser.add_argument("--baseline", action="store_true",
                        help="also report a linear classifier's test accuracy on global statistics of the clouds")
    parser.add_argument("--benchmark", action="store_true",
                        help="also time loading a synthetic 10k x 2048-point split in the ModelNet40 layout")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    config = DemoConfig(train_per_class=args.train_per_class, test_per_class=args.test_per_class,
                        image_train_per_class=args.images_per_class,
                        image_val_per_class=max(1, args.images_per_class // 3), seed=args.seed)
    start = time.perf_counter()
    root = ensure_demo_data(args.root, config)
    log.info("ensure_demo_data(%s): %.2f s", root, time.perf_counter() - start)
    for name in ("points", "images"):
        meta = json.loads((Path(root) / name / MARKER).read_text())
        log.info("  %s/: %s (generated in %.2f s)", name, meta["counts"], meta["seconds"])
    train, test = modelnet40(Path(root) / "points", "train"), modelnet40(Path(root) / "points", "test")
    images = image_folder(Path(root) / "images", "train")
    log.info("  points: %d train / %d test clouds x %d points, %d classes: %s", len(train), len(test),
             train.num_points, train.num_classes, ", ".join(train.classes))
    log.info("  images: %d train images, %d classes: %s", len(images), images.num_classes, ", ".join(images.classes))
    if args.baseline:
        acc = linear_baseline_accuracy((train.points, train.labels), (test.points, test.labels))
        log.info("linear classifier on global statistics: test accuracy %.1f %% (chance %.1f %%)", 100 * acc,
                 100 / train.num_classes)
    if args.benchmark:
        out = load_time_benchmark()
        log.info("load time, 10k clouds x 2048 points (%.0f MB, 5 files, warm cache): %.3f s for the first 1024 "
                 "points, %.3f s for all 2048, %.3f s with normals (per 10k clouds)", out["size_mb"],
                 out["s_per_10k_first"], out["s_per_10k_all"], out["s_per_10k_normals"])


if __name__ == "__main__":
    main()
