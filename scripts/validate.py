#!/usr/bin/env python
"""Evaluate a checkpoint (pointcoc's or upstream's) on a dataset split, images or points.

Examples:
    python scripts/validate.py --model pointmlp --checkpoint runs/pointmlp_mn40/best.pt --dataset modelnet40
    python scripts/validate.py --model pointmlp_coc --checkpoint best_checkpoint.pth --dataset scanobjectnn --vote 10
    python scripts/validate.py --model coc_tiny --checkpoint coc_tiny.pth.tar --dataset images --data-dir data/imagenet
The metrics are logged, and printed as one JSON line on stdout (OA/mAcc or top-1/top-5, loss, damaged samples skipped).
"""

import json

from pointcoc.engine.validate import main

if __name__ == "__main__":
    metrics = main()
    print(json.dumps({k: metrics[k] for k in ("oa", "macc", "top1", "top5", "loss", "skipped") if k in metrics}))
