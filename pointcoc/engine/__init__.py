"""Training and evaluation engine shared by ``scripts/train_modelnet.py``, ``scripts/train_imagenet.py``
and ``scripts/validate.py``.

It sits above :mod:`pointcoc.models` and :mod:`pointcoc.data` and imports both.
"""

from pointcoc.engine.checkpoint import save_atomic
from pointcoc.engine.losses import smooth_cross_entropy
from pointcoc.engine.metrics import ClassificationMeter, PartSegMeter
from pointcoc.engine.trainer import DataBundle, Task, evaluate, fit

__all__ = ["fit", "evaluate", "Task", "DataBundle", "ClassificationMeter", "PartSegMeter", "smooth_cross_entropy",
           "save_atomic"]
