"""Process-wide CPU memory settings for training, validation and benchmarks.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves every
block above 32 MB (and, by its dynamic threshold, many smaller ones) with a
fresh ``mmap`` and returns it to the kernel on ``free``, so the large
activations of every step are page-faulted in again: the kernel zeroes each
4 KB page on first touch. On this project's 2-core CPU machine that cost
18-30 % of a training step; avoiding it made training 22-42 % faster
(coc_tiny at 224 px: 9.7 -> 11.8 images/s; pointmlp_elite at 1024 points:
8.1 -> 11.5 clouds/s) for 4-10 % more peak resident memory, because freed
blocks stay in the process for the next step.

:func:`reuse_freed_memory` does that for the current process. The training and
validation commands call it unless ``--cpu-allocator system`` is given, and
trim the kept memory (:func:`trim_freed_memory`) before a data loader starts
its worker processes, so forked workers do not pin a copy of it. The same
setting without code, for any PyTorch program, is the environment variable
``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647``
(set before Python starts). With another allocator preloaded (jemalloc,
tcmalloc, mimalloc through ``LD_PRELOAD``) nothing is changed: those keep
freed memory by themselves.

:func:`release_freed_memory` does the opposite, for memory measurements: every
large freed block goes back to the kernel, so the peak resident size of a
process follows its live tensors (``scripts/benchmark.py`` measures peaks so)."""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from typing import Literal

from pointcoc.errors import InputError

__all__ = ["reuse_freed_memory", "release_freed_memory", "trim_freed_memory", "apply_cpu_allocator",
           "CPU_ALLOCATORS"]

log = logging.getLogger(__name__)

# mallopt(3) parameters and glibc's defaults (malloc.h, malloc/malloc.c).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536
_INT_MAX = 2**31 - 1
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")

CPU_ALLOCATORS = ("reuse", "system")
_mode: str | None = None  # the mode this module set: "reuse" or "release"


def _libc() -> ctypes.CDLL | None:
    """glibc, when it is the allocator of this process; None otherwise (logged)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        log.info("CPU allocator left as is: not a glibc Linux process (%s, %s)", platform.system(),
                 platform.libc_ver()[0] or "unknown libc")
        return None
    preload = os.environ.get("LD_PRELOAD", "")
    other = next((name for name in _OTHER_ALLOCATORS if name in preload), None)
    if other:
        log.info("CPU allocator left as is: %s is preloaded (LD_PRELOAD=%s) and manages memory itself", other, preload)
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError) as err:
        log.warning("CPU allocator left as is: cannot load glibc's mallopt (%s)", err)
        return None
    return libc


def _mallopt(mode: str, settings: dict[int, int]) -> bool:
    """Apply glibc ``mallopt`` settings once per process; False when glibc is not the allocator."""
    global _mode
    if _mode == mode:
        return True
    if _mode is not None:
        raise RuntimeError(f"the CPU allocator of this process is already set to {_mode!r} (pointcoc.engine.runtime); "
                           f"it cannot switch to {mode!r}; use a new process")
    libc = _libc()
    if libc is None:
        return False
    refused = [param for param, value in settings.items() if libc.mallopt(param, value) != 1]
    if refused:  # glibc validates each value before setting it; the accepted ones stay in effect
        log.warning("CPU allocator %s: glibc refused the mallopt parameters %s of %s", mode, refused, settings)
        return False
    _mode = mode
    names = {_M_TRIM_THRESHOLD: "M_TRIM_THRESHOLD", _M_MMAP_THRESHOLD: "M_MMAP_THRESHOLD", _M_MMAP_MAX: "M_MMAP_MAX"}
    log.info("CPU allocator: freed memory is %s (glibc mallopt %s)",
             "kept for reuse" if mode == "reuse" else "returned to the kernel",
             ", ".join(f"{names[param]}={value}" for param, value in settings.items()))
    return True


def reuse_freed_memory() -> bool:
    """Keep memory freed by this process for reuse instead of returning it to the kernel.

    Calls ``mallopt(M_MMAP_MAX, 0)`` (large blocks come from the heap, not from
    ``mmap``) and ``mallopt(M_TRIM_THRESHOLD, INT_MAX)`` (the heap is not shrunk
    unless more than 2 GB at its top is free). Affects allocations made after the
    call; calling it again returns True and changes nothing.

    Returns:
        True when the settings are in effect (Linux with glibc), False when nothing
        was changed (another C library or a preloaded allocator; logged).

    Raises:
        RuntimeError: this process already called :func:`release_freed_memory`.
    """
    return _mallopt("reuse", {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: _INT_MAX})


def release_freed_memory(threshold: int = 128 * 1024) -> bool:
    """Return every freed block of at least ``threshold`` bytes to the kernel at once (for memory measurements).

    glibc's default starts like this but raises its thresholds after the first
    large ``free``, after which freed blocks stay resident and a process's peak
    resident size no longer follows its live tensors. Fixing the mmap and trim
    thresholds (and allowing ``mmap`` even under ``GLIBC_TUNABLES=...mmap_max=0``)
    keeps it that way, so ``VmHWM`` measures the peak of what a piece of code
    holds at once, also after a warm-up run.

    Args:
        threshold: bytes, ``4096 <= threshold <= 32 MB``.

    Returns:
        True when the settings are in effect (Linux with glibc), False when nothing was changed.

    Raises:
        ValueError: ``threshold`` out of range.
        RuntimeError: this process already called :func:`reuse_freed_memory`.
    """
    if not 4096 <= threshold <= 32 * 2**20:
        raise ValueError(f"`threshold` must be between 4096 bytes and 32 MB (glibc's limit), got {threshold}")
    return _mallopt("release", {_M_MMAP_MAX: _DEFAULT_MMAP_MAX, _M_MMAP_THRESHOLD: threshold,
                                _M_TRIM_THRESHOLD: threshold})


def trim_freed_memory() -> None:
    """Give the memory kept by :func:`reuse_freed_memory` back to the kernel (``malloc_trim(0)``).

    Called before a data loader forks its workers: a forked child shares the kept
    pages copy-on-write, and the parent's next writes would copy them while the
    child still holds the originals. Costs the page faults of one step. Does
    nothing unless this process keeps freed memory.
    """
    if _mode != "reuse":
        return
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def apply_cpu_allocator(choice: Literal["reuse", "system"]) -> bool:
    """Apply a ``--cpu-allocator`` choice: ``"reuse"`` (:func:`reuse_freed_memory`) or ``"system"``.

    ``"system"`` changes nothing; in a process that already keeps freed memory it
    logs a warning (the setting cannot be undone safely).

    Returns:
        whether this process now keeps freed memory for reuse.

    Raises:
        InputError (a ValueError): ``choice`` is not one of :data:`CPU_ALLOCATORS`.
    """
    if choice not in CPU_ALLOCATORS:
        raise InputError(f"--cpu-allocator must be one of {CPU_ALLOCATORS}, got {choice!r}")
    if choice == "reuse":
        return reuse_freed_memory()
    if _mode == "reuse":
        log.warning("--cpu-allocator system: this process already keeps freed memory (set earlier); it still does")
    return _mode == "reuse"
