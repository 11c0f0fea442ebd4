#!/usr/bin/env python
"""Predict with a trained model on your own file.

Examples:
    python scripts/predict.py --checkpoint runs/partseg/best.pt --input mug.ply --category Mug --output out/mug.ply
    python scripts/predict.py --checkpoint runs/partseg/best.pt --input chair.txt --category Chair \
        --columns x,y,z,nx,ny,nz
    python scripts/predict.py --checkpoint runs/modelnet/best.pt --input cloud.npy            # top-5 classes
    python scripts/predict.py --checkpoint coc_tiny.pth.tar --model coc_tiny --input cat.jpg --output top5.json

Part segmenters write OUT.ply (points + per-point label and colour), OUT.npy (labels) and OUT.png;
classifiers print the top-k classes with probabilities (or write --output X.json). Bad input exits
with code 2 and a one-line error.
"""

from pointcoc.engine.predict import main

if __name__ == "__main__":
    main()
