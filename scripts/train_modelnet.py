#!/usr/bin/env python
"""Train a point-cloud classifier on ModelNet40, ScanObjectNN or the built-in demo set.

Examples:
    python scripts/train_modelnet.py --dataset demo --model pointcoc_tiny --epochs 15
    python scripts/train_modelnet.py --dataset modelnet40 --model pointmlp --output-dir runs/pointmlp_mn40
    python scripts/train_modelnet.py --dataset scanobjectnn --variant pb_t50_rs --model pointmlp_coc
    torchrun --nproc_per_node=4 scripts/train_modelnet.py --dataset modelnet40 --model pointmlp --batch-size 8
See `--help` for every option; defaults follow PointMLP's recipes (README).
"""

from pointcoc.engine.points import main

if __name__ == "__main__":
    main()
