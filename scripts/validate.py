#!/usr/bin/env python
"""Evaluate a checkpoint (pointcoc's or upstream's) on a dataset split, images or points.

Examples:
    python scripts/validate.py --model pointmlp --checkpoint runs/pointmlp_mn40/best.pt --dataset modelnet40
    python scripts/validate.py --model pointmlp_coc --checkpoint best_checkpoint.pth --dataset scanobjectnn --vote 10
    python scripts/validate.py --model coc_tiny --checkpoint coc_tiny.pth.tar --dataset images --data-dir data/imagenet
    python scripts/validate.py --model pointcoc_seg_tiny --checkpoint runs/partseg/best.pt --dataset shapenetpart
    python scripts/validate.py --model pointcoc_seg_tiny --checkpoint runs/semseg/best.pt --dataset s3dis --split test
The metrics are logged, and printed as one JSON line on stdout (OA/mAcc or top-1/top-5, loss, damaged samples
skipped; part segmenters: instance / class mIoU and point accuracy on every stored point of each shape; scene
segmenters: mIoU / OA / mAcc on every original point of each scene).
"""

import json

from pointcoc.engine.validate import main

KEYS = ("miou", "oa", "macc", "top1", "top5", "instance_miou", "class_miou", "accuracy", "points", "vote", "loss",
        "skipped")

if __name__ == "__main__":
    metrics = main()
    print(json.dumps({k: metrics[k] for k in KEYS if k in metrics}))
