"""Device-to-host syncs per forward: counted on the CPU, bounded and independent of depth.

Every Python-level read of a tensor's value (``item``, ``tolist``, ``bool``, ``int``,
``index``, ``.cpu()``) would stall a GPU; ``Points`` carries the per-cloud counts on the host
and validates once, so a forward needs one such read for the input check and one per stage
with several regions (the padded region size of its partition).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch

import pointcoc
from pointcoc.blocks import ClusterBlock, ClusterStage
from pointcoc.models import PointCoC
from pointcoc.ops import Points

READS = ("item", "tolist", "__bool__", "__int__", "__index__", "cpu")


@contextmanager
def count_reads() -> Iterator[Counter]:
    """Count calls of the tensor methods that read a value back to the host."""
    counts: Counter = Counter()
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def counting(name: str, method: Callable) -> Callable:
        def wrapper(self, *args, **kwargs):
            counts[name] += 1
            return method(self, *args, **kwargs)
        return wrapper

    for name, method in originals.items():
        setattr(torch.Tensor, name, counting(name, method))
    try:
        yield counts
    finally:
        for name, method in originals.items():
            setattr(torch.Tensor, name, method)


def reads_of(fn: Callable[[], object]) -> int:
    fn()  # warm: lazily built caches (grid proposals) are not part of the count
    with torch.no_grad(), count_reads() as counts:
        fn()
    return sum(counts.values())


def test_the_counter_sees_reads() -> None:
    t = torch.ones(3)
    with count_reads() as counts:
        bool(t.all()), int(t[0]), t.tolist(), t.cpu(), t.sum().item()
    assert sum(counts.values()) == 5


@pytest.mark.parametrize("name", ["pointcoc_tiny", "pointcoc_small"])
def test_point_coc_forward_makes_at_most_12_reads(name: str) -> None:
    """Before Points (commit 15015a6, counted the same way): 141 reads (82 bool, 35 int, 24 cpu) for either
    model on [2, 1024, 3]. Now: the input check, and one per stage with several regions (3 in all)."""
    model = pointcoc.create_model(name).eval()
    pos = torch.rand(2, 1024, 3)
    n = reads_of(lambda: model(pos))
    assert n <= 12, n
    stages_with_regions = sum(1 for s in model.stages if s[0].token_mixer.num_regions > 1)
    assert n == 1 + stages_with_regions == 3, n


@pytest.mark.parametrize("name", ["pointmlp_elite", "pointmlp_coc", "pointcoc_scale_tiny"])
def test_forward_reads_only_the_input_check(name: str) -> None:
    """PointMLP; and the scale preset, whose curve windows have sizes known on the host."""
    model = pointcoc.create_model(name).eval()
    assert reads_of(lambda: model(torch.rand(2, 1024, 3))) == 1


def test_reads_do_not_grow_with_depth() -> None:
    """Blocks after the first in a stage reuse its partition: zero reads of their own."""
    cfg = dict(num_classes=5, embed_dim=16, dims=(32, 64), reductions=(4, 4), num_neighbors=(8, 8), num_heads=(2, 2),
               head_dim=(8, 16), centers=(4, 2), regions=(4, 1))
    pos = torch.rand(2, 512, 3)
    shallow, deep = PointCoC(depths=(1, 1), **cfg).eval(), PointCoC(depths=(4, 3), **cfg).eval()
    assert reads_of(lambda: deep(pos)) == reads_of(lambda: shallow(pos))
    one = ClusterStage([ClusterBlock(16, num_heads=2, head_dim=8, centers=4, regions=4)]).eval()
    four = ClusterStage([ClusterBlock(16, num_heads=2, head_dim=8, centers=4, regions=4) for _ in range(4)]).eval()
    points = Points.from_dense(torch.rand(2, 300, 3), torch.randn(2, 300, 16))
    assert reads_of(lambda: four.forward_points(points.with_x(points.x))) == 0  # partition cached on the geometry
    fresh = [Points.from_dense(points.dense(points.pos), points.dense(points.x)) for _ in range(4)]
    n_one = reads_of(lambda: one.forward_points(fresh.pop()))
    assert reads_of(lambda: four.forward_points(fresh.pop())) == n_one == 1
