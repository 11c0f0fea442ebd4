"""pointcoc: Context Clusters ("Image as Set of Points", ICLR'23) for images and 3D point clouds.

Layers, lowest first (a lower layer never imports a higher one):
``pointcoc.ops`` -> ``pointcoc.blocks`` -> ``pointcoc.models`` -> ``pointcoc.data`` / ``pointcoc.engine``.
"""

__version__ = "0.1.0"
