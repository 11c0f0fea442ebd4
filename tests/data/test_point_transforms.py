"""Point transforms: shapes, geometry (normals follow xyz), determinism under seeds and DataLoader workers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from pointcoc.data import (
    Compose,
    Jitter,
    NormalizeUnitSphere,
    RandomDropout,
    Resample,
    RotateAxis,
    ScaleTranslate,
    Shuffle,
    default_train_transform,
    modelnet40,
    vote_scales,
)

from data_builders import make_modelnet


def cloud(n: int = 50, extra: int = 0, seed: int = 0) -> torch.Tensor:
    """xyz, unit normals pointing along xyz (a sphere-like cloud), then ``extra`` feature columns."""
    g = torch.Generator().manual_seed(seed)
    xyz = torch.randn(n, 3, generator=g)
    return torch.cat([xyz, xyz / xyz.norm(dim=1, keepdim=True), torch.randn(n, extra, generator=g)], 1)


RANDOM = [ScaleTranslate, Jitter, RotateAxis, RandomDropout, Shuffle, lambda generator=None: Resample(30, generator)]
ALL = RANDOM + [lambda generator=None: NormalizeUnitSphere()]


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("channels", [3, 6, 8])
def test_shape_dtype_and_input_untouched(make, channels: int) -> None:
    pts = cloud(extra=2)[:, :channels]
    before = pts.clone()
    out = make(generator=torch.Generator().manual_seed(1))(pts)
    n = 30 if isinstance(make(), Resample) else 50
    assert out.shape == (n, channels) and out.dtype == pts.dtype
    torch.testing.assert_close(pts, before)


@pytest.mark.parametrize("make", RANDOM)
def test_generator_and_global_seed_determinism(make) -> None:
    pts = cloud(extra=1)
    a = make(generator=torch.Generator().manual_seed(5))(pts)
    b = make(generator=torch.Generator().manual_seed(5))(pts)
    c = make(generator=torch.Generator().manual_seed(6))(pts)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    torch.manual_seed(3)
    d = make()(pts)
    torch.manual_seed(3)
    torch.testing.assert_close(make()(pts), d)


def test_scale_translate_is_pointmlp_recipe() -> None:
    pts = cloud()
    for seed in range(20):
        out = ScaleTranslate(generator=torch.Generator().manual_seed(seed))(pts)
        scale = (out[1, :3] - out[0, :3]) / (pts[1, :3] - pts[0, :3])
        shift = out[0, :3] - pts[0, :3] * scale
        torch.testing.assert_close(out[:, :3], pts[:, :3] * scale + shift)
        assert bool(((scale >= 2 / 3 - 1e-5) & (scale <= 1.5 + 1e-5)).all())
        assert bool((shift.abs() <= 0.2 + 1e-5).all())


def test_anisotropic_scale_keeps_normals_perpendicular_to_the_surface() -> None:
    # points on the plane n . p = 1 with their normal n; after x -> s x + t the plane's normal is n / s
    n = torch.tensor([1.0, 2.0, -1.0]) / math.sqrt(6)
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(2, 40, 1, generator=g)
    a = torch.tensor([2.0, -1.0, 0.0])
    b = torch.linalg.cross(n, a)
    xyz = n + u * a + v * b
    pts = torch.cat([xyz, n.expand(40, 3)], 1)
    out = ScaleTranslate(generator=torch.Generator().manual_seed(4))(pts)
    tangents = out[1:, :3] - out[:1, :3]
    assert float((tangents @ out[0, 3:6]).abs().max()) < 1e-4
    torch.testing.assert_close(out[:, 3:6].norm(dim=1), torch.ones(40))
    torch.testing.assert_close(out[:, 3:6], out[:1, 3:6].expand(40, 3))


def test_rotation_about_y_moves_normals_with_xyz() -> None:
    pts = cloud(extra=1)
    out = RotateAxis("y", generator=torch.Generator().manual_seed(0))(pts)
    torch.testing.assert_close(out[:, 1], pts[:, 1])  # the axis coordinate is kept
    torch.testing.assert_close(out[:, :3].norm(dim=1), pts[:, :3].norm(dim=1))
    torch.testing.assert_close(out[:, 3:6], out[:, :3] / out[:, :3].norm(dim=1, keepdim=True))  # normals rotated too
    torch.testing.assert_close(out[:, 6], pts[:, 6])  # extra features carried along
    assert not torch.allclose(out[:, :3], pts[:, :3])


@pytest.mark.parametrize("axis, expected", [("x", [1.0, -1.0, 1.0]), ("y", [1.0, 1.0, -1.0]), ("z", [-1.0, 1.0, 1.0])])
def test_rotation_is_right_handed(axis: str, expected: list[float]) -> None:
    # a quarter turn of (1, 1, 1): about x (y, z) -> (-z, y); about y (z, x) -> (-x, z); about z (x, y) -> (-y, x)
    out = RotateAxis(axis, angle_range=(math.pi / 2, math.pi / 2))(torch.ones(1, 3))
    torch.testing.assert_close(out[0], torch.tensor(expected), atol=1e-6, rtol=0)


def test_jitter_is_clipped_and_leaves_normals() -> None:
    pts = cloud()
    out = Jitter(sigma=1.0, clip=0.05, generator=torch.Generator().manual_seed(0))(pts)
    delta = out[:, :3] - pts[:, :3]
    assert float(delta.abs().max()) <= 0.05 + 1e-6 and float(delta.abs().max()) > 0.04
    torch.testing.assert_close(out[:, 3:], pts[:, 3:])


def test_dropout_replaces_points_by_the_first() -> None:
    pts = cloud(n=400)
    out = RandomDropout(max_ratio=0.875, generator=torch.Generator().manual_seed(2))(pts)
    same = (out == pts).all(dim=1)
    first = (out == pts[0]).all(dim=1)
    assert bool((same | first).all()) and int((~same).sum()) > 0
    assert torch.equal(RandomDropout(max_ratio=0.0)(pts), pts)


def test_shuffle_permutes_whole_rows() -> None:
    pts = cloud(extra=2)
    out = Shuffle(generator=torch.Generator().manual_seed(0))(pts)
    assert not torch.equal(out, pts)
    order = [int(torch.nonzero((pts == row).all(dim=1))[0]) for row in out]
    assert sorted(order) == list(range(50))


def test_normalize_unit_sphere() -> None:
    pts = cloud() * 3 + 7
    out = NormalizeUnitSphere()(pts)
    torch.testing.assert_close(out[:, :3].mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    assert abs(float(out[:, :3].norm(dim=1).max()) - 1) < 1e-5
    torch.testing.assert_close(out[:, 3:], pts[:, 3:])
    torch.testing.assert_close(NormalizeUnitSphere()(torch.ones(4, 3)), torch.zeros(4, 3))


def test_resample_down_and_up() -> None:
    pts = cloud(n=20)
    down = Resample(12, generator=torch.Generator().manual_seed(0))(pts)
    rows = {tuple(r.tolist()) for r in pts}
    assert len({tuple(r.tolist()) for r in down}) == 12 and all(tuple(r.tolist()) in rows for r in down)
    up = Resample(50, generator=torch.Generator().manual_seed(0))(pts)
    assert up.shape == (50, 6) and {tuple(r.tolist()) for r in up} == rows
    with pytest.raises(ValueError, match="empty cloud"):
        Resample(5)(torch.zeros(0, 3))


def test_compose_order() -> None:
    pts = cloud()
    out = Compose([NormalizeUnitSphere(), lambda p: p * 2])(pts + 5)
    assert abs(float(out[:, :3].norm(dim=1).max()) - 2) < 1e-5


@pytest.mark.parametrize("name", ["modelnet40", "scanobjectnn", "demo", "ScanObjectNN"])
def test_default_train_transform(name: str) -> None:
    t = default_train_transform(name)
    assert [type(x) for x in t.transforms] == [ScaleTranslate, Shuffle]
    assert t.transforms[0].scale == (2 / 3, 3 / 2) and t.transforms[0].shift == 0.2
    assert t(cloud()).shape == (50, 6)
    with pytest.raises(ValueError, match="no default train transform"):
        default_train_transform("shapenet")


def test_vote_scales() -> None:
    pts = torch.stack([cloud(seed=s) for s in range(4)])
    before = pts.clone()
    out = vote_scales(pts, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(pts, before)
    scale = out[:, 0, :3] / pts[:, 0, :3]
    torch.testing.assert_close(out[..., :3], pts[..., :3] * scale[:, None])
    assert bool(((scale >= 0.85 - 1e-5) & (scale <= 1.15 + 1e-5)).all())
    assert len({tuple(s.tolist()) for s in scale}) == 4  # one scale per cloud
    torch.testing.assert_close(out[..., 3:].norm(dim=-1), torch.ones(4, 50))
    torch.testing.assert_close(vote_scales(pts, torch.Generator().manual_seed(0)), out)
    with pytest.raises(ValueError, match=r"\[B, N, C\]"):
        vote_scales(pts[0])


@pytest.mark.parametrize("bad, problem", [(torch.zeros(5, 2), r"C >= 3"),
                                          (torch.zeros(5, 3, dtype=torch.int64), "floating")])
def test_bad_input(bad: torch.Tensor, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ScaleTranslate()(bad)


def _epoch(ds, seed: int) -> list[torch.Tensor]:
    torch.manual_seed(123)
    loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=2, generator=torch.Generator().manual_seed(seed))
    return [torch.cat([x.flatten(), y.float()]) for x, y in loader]


def test_dataloader_with_workers_is_reproducible(tmp_path: Path) -> None:
    root = tmp_path / "mn"
    make_modelnet(root, train=(8, 8), points=16)
    ds = modelnet40(root, "train", num_points=16, transform=default_train_transform("modelnet40"))
    a, b, c = _epoch(ds, 1), _epoch(ds, 1), _epoch(ds, 2)
    assert len(a) == 4
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
