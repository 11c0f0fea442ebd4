#!/usr/bin/env python
"""Train a part segmenter on ShapeNetPart or the built-in demo part set.

Examples:
    python scripts/train_partseg.py --dataset demo --model pointcoc_seg_tiny
    python scripts/train_partseg.py --dataset shapenetpart --data-dir data --model pointcoc_seg_small --vote 10
    python scripts/train_partseg.py --dataset shapenetpart --model pointmlp_partseg   # PointMLP's recipe
    torchrun --nproc_per_node=4 scripts/train_partseg.py --dataset shapenetpart --model pointcoc_seg_tiny --batch-size 8
See `--help` for every option; defaults follow PointMLP's and PointNeXt's recipes (README).
"""

from pointcoc.engine.partseg import main

if __name__ == "__main__":
    main()
