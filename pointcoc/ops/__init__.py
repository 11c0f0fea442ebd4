"""Point-set ops: sampling, neighbours and gathering.

``pointcoc.ops`` is the lowest layer of the package and the only one that
calls torch-cluster; everything above it goes through these functions.

Shapes use ``B`` clouds, ``N`` points per cloud, ``S`` samples/queries,
``k`` neighbours and ``D`` coordinate dimensions. Dense batches are
``[B, N, D]``; flat PyTorch Geometric batches are ``[sum N, D]`` with a sorted
``batch [sum N]`` vector.
"""

from pointcoc.ops.padded import fps_padded, knn_padded
from pointcoc.ops.sampling import canonical_order, fps, gather, knn

__all__ = ["fps", "knn", "gather", "canonical_order", "fps_padded", "knn_padded"]
