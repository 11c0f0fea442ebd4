#!/usr/bin/env python
"""Train a scene segmenter on S3DIS, ScanNet, your own scene folders or the built-in demo rooms.

Examples:
    python scripts/train_semseg.py --dataset demo --model pointcoc_seg_tiny
    python scripts/prepare_s3dis.py --raw-dir data/Stanford3dDataset_v1.2_Aligned_Version --out-dir data/s3dis
    python scripts/train_semseg.py --dataset s3dis --data-dir data/s3dis --model pointcoc_seg_small
    python scripts/train_semseg.py --dataset folder --data-dir data/my_scenes --features color,height
    torchrun --nproc_per_node=4 scripts/train_semseg.py --dataset s3dis --batch-size 8
See `--help` for every option; defaults follow PointNeXt's S3DIS recipe (README).
"""

from pointcoc.engine.semseg import main

if __name__ == "__main__":
    main()
