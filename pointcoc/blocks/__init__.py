"""Building blocks shared by every pointcoc model, for images and point clouds.

* :class:`ContextCluster` - the token mixer (cluster, aggregate, dispatch);
* :class:`ClusterBlock` - norm -> mixer -> residual, norm -> MLP -> residual;
* :class:`ClusterStage` - the blocks of one stage, sharing one partition of the points;
* :class:`PointReducer` - FPS + kNN downsampling (a strided conv on grids);
* :class:`SampleNorm`, :class:`DropPath` - per-sample layers that understand flat PyG batches.

Every block has explicit forms, ``forward_grid`` (image maps ``[B, H, W, C]``) and
``forward_points`` (a :class:`pointcoc.ops.Points`), and a compatibility ``forward(x, pos, batch)``
that picks one from the rank of ``x``.
"""

from pointcoc.blocks.block import ClusterBlock, ClusterStage, cluster_stage
from pointcoc.blocks.cluster import (
    REGION_MODES,
    ClusterAssignment,
    ContextCluster,
    PointPartition,
    cluster_mix,
    grid_proposal,
    point_partition,
    record_assignments,
)
from pointcoc.blocks.layers import DropPath, SampleNorm, apply_norm, drop_path
from pointcoc.blocks.reducer import PointReducer

__all__ = [
    "ContextCluster",
    "ClusterAssignment",
    "record_assignments",
    "ClusterBlock",
    "ClusterStage",
    "cluster_stage",
    "PointReducer",
    "PointPartition",
    "point_partition",
    "REGION_MODES",
    "cluster_mix",
    "grid_proposal",
    "SampleNorm",
    "DropPath",
    "apply_norm",
    "drop_path",
]
