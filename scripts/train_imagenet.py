#!/usr/bin/env python
"""Train a CoC image classifier on ImageNet-style folders (or the demo set) with the upstream recipe.

Examples:
    python scripts/train_imagenet.py --data-dir demo --model coc_tiny --img-size 64 --epochs 5 --batch-size 16
    torchrun --nproc_per_node=8 scripts/train_imagenet.py --data-dir data/imagenet --model coc_tiny \
        --batch-size 128 --drop-path 0.1 --amp fp16
See `--help` for every option (README).
"""

from pointcoc.engine.images import main

if __name__ == "__main__":
    main()
