"""pointcoc: Context Clusters ("Image as Set of Points", ICLR'23) for images and 3D point clouds.

Layers, lowest first (a lower layer never imports a higher one):
``pointcoc.ops`` -> ``pointcoc.blocks`` -> ``pointcoc.models`` -> ``pointcoc.data`` / ``pointcoc.engine``.

``pointcoc.create_model(name, **kwargs)`` and ``pointcoc.list_models()`` cover image and
point models; importing pointcoc registers the image zoo in timm.
"""

__version__ = "0.1.0"

from pointcoc.models import create_model, list_models  # noqa: E402

__all__ = ["create_model", "list_models", "__version__"]
