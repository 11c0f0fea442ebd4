"""``Points``: one batch of point clouds, validated once, in the flat form every point path uses.

A batch of ``B`` clouds of ``N_b`` points each travels as one structure instead of a
loose ``(x, pos, batch)`` triple whose order and meaning depend on the caller (the role
Pointcept's ``Point`` and PyTorch Geometric's ``Batch`` play):

* ``pos [P, D]``: positions, ``P = sum N_b``, clouds contiguous and in order;
* ``x [P, C]``: per-point features (optional);
* ``batch [P]``: the cloud id of every point (sorted, on ``pos``'s device);
* ``counts [B]`` and ``ptr [B + 1]``: points per cloud and their offsets, held on the CPU,
  with ``sizes`` the same counts as Python ints: code that needs a cloud size reads it
  without a device-to-host sync.

The public constructors check the input once (shapes, dtypes, NaN/inf, a sorted batch
vector, no empty cloud) and raise a ``ValueError`` that says what is wrong; everything
inside pointcoc trusts a ``Points`` and never checks it again. A ``Points`` is treated as
immutable: :meth:`Points.with_x` gives new features on the same geometry and shares the
cache of geometry-derived data (a stage's partition), which :meth:`Points.cached` fills.

Example:
    >>> pts = Points.from_dense(torch.rand(2, 1024, 3))          # [B, N, D]
    >>> pts.num_clouds, pts.sizes
    (2, (1024, 1024))
    >>> pts = Points.from_pyg(data_batch)                        # a torch_geometric Batch
    >>> pos, x, mask = pts.to_dense()                            # [B, N_max, D], [B, N_max, C], [B, N_max]
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.utils import to_dense_batch

from pointcoc.ops._checks import check_batch, check_pos, check_same_device

__all__ = ["Points"]

T = TypeVar("T")


def _check_features(x: Tensor | None, lead: tuple[int, ...]) -> None:
    """``x`` must be a floating tensor with the leading shape of the positions (``lead``)."""
    if x is None:
        return
    if not isinstance(x, Tensor):
        raise ValueError(f"`x` must be a torch.Tensor of per-point features, got {type(x).__name__}")
    if x.dim() != len(lead) + 1 or tuple(x.shape[:-1]) != lead:
        raise ValueError(f"`x` must be {lead + ('C',)} (one feature row per point of `pos`), got shape "
                         f"{tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"`x` must be a floating tensor, got dtype {x.dtype}; convert it with `.float()`")


def _check_finite(pos: Tensor, x: Tensor | None) -> None:
    """One device sync for both tensors; the message names the one that holds NaN or inf."""
    checks = [torch.isfinite(pos).all()] if pos.numel() else []
    if x is not None and x.numel():
        checks.append(torch.isfinite(x).all())
    if not checks or bool(torch.stack(checks).all()):
        return
    check_pos("pos", pos, (pos.dim(),))  # raises with the positions' own message if they are the bad ones
    bad = int((~torch.isfinite(x)).any(dim=-1).sum())
    raise ValueError(f"`x` (shape {tuple(x.shape)}) holds NaN or inf features in {bad} point(s); clean or drop "
                     "those points first")


class Points:
    """A batch of point clouds in flat form (see the module docstring).

    Args:
        pos: ``[P, D]`` positions, clouds contiguous.
        x: ``[P, C]`` features, or ``None``.
        batch: ``[P]`` sorted cloud ids (``None``: one cloud).
        num_clouds: the number of clouds when ``batch`` may end before the last one (a PyG
            ``Batch`` knows it); a cloud without points is an error either way.

    Raises:
        ValueError: a non-floating or non-finite ``pos``/``x``, mismatched lengths, an unsorted
            ``batch``, negative ids or an empty cloud.

    Attributes:
        pos, x, batch: as above (``batch`` on ``pos``'s device).
        counts: ``[B]`` CPU ``LongTensor``, points per cloud.
        ptr: ``[B + 1]`` CPU ``LongTensor``, where each cloud starts (PyG's ``ptr``).
        sizes: the counts as a tuple of Python ints.
        from_dense_batch: True when built by :meth:`from_dense` (and kept by :meth:`with_x`);
            the compatibility paths use it to answer in the dense layout they were given.
    """

    __slots__ = ("pos", "x", "batch", "counts", "ptr", "sizes", "from_dense_batch", "_cache", "_device_counts")

    def __init__(self, pos: Tensor, x: Tensor | None = None, batch: Tensor | None = None,
                 num_clouds: int | None = None) -> None:
        check_pos("pos", pos, (2,), finite=False)
        _check_features(x, tuple(pos.shape[:1]))
        check_same_device(pos=pos, x=x, batch=batch if isinstance(batch, Tensor) else None)
        counts = check_batch("batch", batch, pos.shape[0], "pos")
        if num_clouds is not None and num_clouds != counts.numel():
            if num_clouds < counts.numel():
                raise ValueError(f"`batch` refers to {counts.numel()} clouds but num_clouds={num_clouds}")
            raise ValueError(f"clouds {counts.numel()}..{num_clouds - 1} of {num_clouds} have no points (empty "
                             "cloud); drop them before batching")
        _check_finite(pos, x)
        if batch is None:
            batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
        self._set(pos, x, batch.long(), counts, counts.tolist(), False, {})

    def _set(self, pos: Tensor, x: Tensor | None, batch: Tensor, counts: Tensor, sizes: Sequence[int],
             from_dense_batch: bool, cache: dict[Hashable, Any]) -> None:
        self.pos, self.x, self.batch = pos, x, batch
        self.counts = counts
        self.ptr = torch.zeros(counts.numel() + 1, dtype=torch.long)
        torch.cumsum(counts, 0, out=self.ptr[1:])
        self.sizes = tuple(int(s) for s in sizes)
        self.from_dense_batch = from_dense_batch
        self._cache = cache
        self._device_counts: Tensor | None = None

    @classmethod
    def trusted(cls, pos: Tensor, x: Tensor | None, batch: Tensor, sizes: Sequence[int],
                from_dense_batch: bool = False) -> Points:
        """A ``Points`` from parts already known to be valid (pointcoc's own ops); no checks, no syncs.

        ``sizes`` are the per-cloud counts as ints, in the order of the sorted ``batch``.
        """
        out = cls.__new__(cls)
        out._set(pos, x, batch, torch.tensor(list(sizes), dtype=torch.long), sizes, from_dense_batch, {})
        return out

    @classmethod
    def from_dense(cls, pos: Tensor, x: Tensor | None = None) -> Points:
        """Clouds of one size: ``pos [B, N, D]``, ``x [B, N, C]`` -> flat ``Points`` of ``B * N`` points."""
        check_pos("pos", pos, (3,), finite=False)
        B, N, D = pos.shape
        if B == 0 or N == 0:
            raise ValueError(f"`pos` has shape {tuple(pos.shape)}: an empty batch or an empty cloud (0 points); "
                             "every cloud needs points")
        _check_features(x, (B, N))
        check_same_device(pos=pos, x=x)
        _check_finite(pos, x)
        batch = torch.arange(B, device=pos.device).repeat_interleave(N)
        out = cls.__new__(cls)
        out._set(pos.reshape(B * N, D), None if x is None else x.reshape(B * N, x.shape[-1]), batch,
                 torch.full((B,), N, dtype=torch.long), (N,) * B, True, {})
        return out

    @classmethod
    def from_pyg(cls, data: Any) -> Points:
        """A PyTorch Geometric ``Data`` (one cloud) or ``Batch``: its ``pos``, ``x`` and ``batch``."""
        pos = getattr(data, "pos", None)
        if pos is None:
            raise ValueError(f"the {type(data).__name__} has no `pos` attribute; point clouds need positions")
        num = getattr(data, "num_graphs", None) if getattr(data, "batch", None) is not None else None
        return cls(pos, getattr(data, "x", None), getattr(data, "batch", None), num_clouds=num)

    # ------------------------------------------------------------------ views
    @property
    def num_clouds(self) -> int:
        """``B``."""
        return len(self.sizes)

    @property
    def num_points(self) -> int:
        """``P = sum N_b``."""
        return self.pos.shape[0]

    @property
    def pos_dim(self) -> int:
        """``D``."""
        return self.pos.shape[1]

    @property
    def uniform_size(self) -> int | None:
        """``N`` when every cloud has ``N`` points, else ``None``."""
        return self.sizes[0] if len(set(self.sizes)) == 1 else None

    def counts_on_device(self) -> Tensor:
        """``counts`` on ``pos``'s device (copied once, host to device: no sync)."""
        if self._device_counts is None:
            self._device_counts = self.counts.to(self.pos.device, non_blocking=True)
        return self._device_counts

    def with_x(self, x: Tensor) -> Points:
        """The same clouds with features ``x [P, C]``, sharing the geometry cache (no checks)."""
        out = copy.copy(self)  # shallow: the same tensors and the same cache dict
        out.x = x
        return out

    def cached(self, key: Hashable, build: Callable[[], T]) -> T:
        """``build()`` once per geometry and ``key`` (e.g. a stage's partition settings), then reused."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def dense(self, t: Tensor) -> Tensor:
        """Per-point ``t [P, ...]`` as ``[B, N, ...]``; every cloud must have ``N`` points (see :meth:`to_dense`)."""
        n = self.uniform_size
        if n is None:
            raise ValueError(f"clouds of different sizes {self.sizes[:8]} have no [B, N, ...] form; use to_dense(), "
                             "which pads and returns a mask")
        return t.reshape(self.num_clouds, n, *t.shape[1:])

    def to_dense(self, fill_value: float = 0.0) -> tuple[Tensor, Tensor | None, Tensor]:
        """Padded ``pos [B, N_max, D]``, ``x [B, N_max, C]`` (or ``None``) and ``mask [B, N_max]``."""
        n_max = max(self.sizes)
        pos, mask = to_dense_batch(self.pos, self.batch, fill_value, max_num_nodes=n_max, batch_size=self.num_clouds)
        x = None
        if self.x is not None:
            x, _ = to_dense_batch(self.x, self.batch, fill_value, max_num_nodes=n_max, batch_size=self.num_clouds)
        return pos, x, mask

    def to_pyg(self) -> Any:
        """A ``torch_geometric.data.Batch`` of one ``Data(pos=..., x=...)`` per cloud."""
        ptr = self.ptr.tolist()
        clouds = [Data(pos=self.pos[a:b], x=None if self.x is None else self.x[a:b])
                  for a, b in zip(ptr[:-1], ptr[1:])]
        return Batch.from_data_list(clouds)

    def split(self, t: Tensor | None = None) -> list[Tensor]:
        """``t [P, ...]`` (default: ``pos``) cut into one tensor per cloud."""
        return list(torch.split(self.pos if t is None else t, list(self.sizes)))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Points:
        """The same clouds on ``device`` (the cache is not carried)."""
        out = Points.__new__(Points)
        x = None if self.x is None else self.x.to(device, non_blocking=non_blocking)
        out._set(self.pos.to(device, non_blocking=non_blocking), x, self.batch.to(device, non_blocking=non_blocking),
                 self.counts, self.sizes, self.from_dense_batch, {})
        return out

    def __len__(self) -> int:
        return self.num_clouds

    def __repr__(self) -> str:
        channels = None if self.x is None else self.x.shape[-1]
        return (f"Points(num_clouds={self.num_clouds}, num_points={self.num_points}, pos_dim={self.pos_dim}, "
                f"channels={channels}, device={self.pos.device})")
