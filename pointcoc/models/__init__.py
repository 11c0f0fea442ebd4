"""Models built from :mod:`pointcoc.blocks`."""

from pointcoc.models.point_coc import PointCoC

__all__ = ["PointCoC"]
