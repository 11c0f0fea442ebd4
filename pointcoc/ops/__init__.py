"""Point-set ops: sampling, neighbours and gathering.

``pointcoc.ops`` is the lowest layer of the package and the only one that
calls torch-cluster; everything above it goes through these functions.

Shapes use ``B`` clouds, ``N`` points per cloud, ``S`` samples/queries,
``k`` neighbours and ``D`` coordinate dimensions. Dense batches are
``[B, N, D]``; flat PyTorch Geometric batches are ``[sum N, D]`` with a sorted
``batch [sum N]`` vector, carried with its per-cloud counts by :class:`Points`. The
``*_points`` forms take a validated ``Points`` and skip every check (no host syncs).
For clouds of 10^5 points and more, :mod:`pointcoc.ops.samplers` has ``O(N log N)``
samplers (space-filling curves, voxel grids) beside FPS, chosen by name (:func:`subsample`).
"""

from pointcoc.ops.padded import fps_padded, knn_padded
from pointcoc.ops.points import Points
from pointcoc.ops.samplers import (
    CURVES,
    SAMPLERS,
    Subsample,
    curve_codes,
    grid_pool,
    grid_sample,
    group_padded,
    sample_indices,
    serial_order,
    serial_sample,
    serial_windows,
    subsample,
    window_fps,
)
from pointcoc.ops.sampling import (
    canonical_order,
    canonical_order_flat,
    canonical_points,
    fps,
    fps_points,
    gather,
    knn,
    knn_interpolate_points,
    knn_points,
)

__all__ = ["Points", "fps", "knn", "gather", "canonical_order", "fps_padded", "knn_padded", "fps_points",
           "knn_points", "canonical_order_flat", "canonical_points", "SAMPLERS", "CURVES", "Subsample", "subsample",
           "curve_codes", "serial_order", "serial_sample", "grid_sample", "grid_pool", "sample_indices",
           "serial_windows", "group_padded", "window_fps", "knn_interpolate_points"]
