"""pointcoc: Context Clusters ("Image as Set of Points", ICLR'23) for images and 3D point clouds.

Layers, lowest first (a lower layer never imports a higher one):
``pointcoc.ops`` -> ``pointcoc.blocks`` -> ``pointcoc.models`` -> ``pointcoc.data`` / ``pointcoc.engine``.

``pointcoc.create_model(name, **kwargs)`` and ``pointcoc.list_models()`` cover image and
point models; importing pointcoc registers the image zoo in timm. ``pointcoc.Points`` is the
batch of point clouds every point path takes (see :mod:`pointcoc.ops.points`).
"""

__version__ = "0.1.0"

import warnings

# Importing torch-geometric 2.8 warns twice about its own code: it calls torch.jit.script
# (deprecated in recent torch, unsupported on Python 3.14), and it ignores torch-cluster in favour
# of pyg-lib (pointcoc calls torch-cluster directly, so nothing is lost). Neither is the user's to
# act on; both are silenced for that import only.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is (deprecated|not supported)",
                            category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"'torch-cluster' is no longer necessary", category=DeprecationWarning)
    import torch_geometric  # noqa: F401

from pointcoc.models import create_model, list_models  # noqa: E402
from pointcoc.ops import Points  # noqa: E402

__all__ = ["Points", "create_model", "list_models", "__version__"]
