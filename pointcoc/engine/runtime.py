"""Process-wide CPU settings for training, validation and benchmarks.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves every
block above 32 MB (and, by its dynamic threshold, many smaller ones) with a
fresh ``mmap`` and returns it to the kernel on ``free``, so every large
activation of every step is page-faulted in again: the kernel zeroes each 4 KB
page on first touch. On this project's 2-core CPU machine that is 20-40 % of a
training step (coc_tiny at 224 px: 9.7 -> 11.8 images/s; pointmlp_elite at 1024
points: 8.1 -> 11.5 clouds/s) for 4-10 % more peak resident memory, because
freed blocks now stay in the process for the next step.

:func:`reuse_freed_memory` turns that off for the current process (and the
data-loader workers it forks). The training and validation commands call it
unless ``--cpu-allocator system`` is given. The same effect without code, for
any PyTorch program, is the environment variable
``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647``
(set before Python starts).

:func:`release_freed_memory` does the opposite, for memory measurements: every
large freed block goes back to the kernel, so the peak resident size of a
process follows its live tensors (``scripts/benchmark.py`` measures peaks so).
"""

from __future__ import annotations

import ctypes
import logging
import platform

__all__ = ["reuse_freed_memory", "release_freed_memory", "CPU_ALLOCATORS", "apply_cpu_allocator"]

log = logging.getLogger(__name__)

# mallopt(3) parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1

CPU_ALLOCATORS = ("reuse", "system")
_mode: str | None = None  # the mode set by this module: "reuse" or "release"


def _mallopt(mode: str, settings: dict[int, int]) -> bool:
    """Apply glibc ``mallopt`` settings once per process; False (nothing changed) off glibc Linux."""
    global _mode
    if _mode == mode:
        return True
    if _mode is not None:
        raise RuntimeError(f"the allocator of this process is already set to {_mode!r}; cannot switch to {mode!r}")
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        log.debug("allocator %s: not a glibc Linux process (%s, %s); left as is", mode, platform.system(),
                  platform.libc_ver()[0] or "unknown libc")
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = all(libc.mallopt(param, value) == 1 for param, value in settings.items())
    except (OSError, AttributeError) as err:
        log.warning("allocator %s: cannot call mallopt (%s); left as is", mode, err)
        return False
    if not ok:
        log.warning("allocator %s: glibc refused the mallopt settings %s; left as is", mode, settings)
        return False
    _mode = mode
    log.debug("allocator %s: mallopt %s", mode, settings)
    return True


def reuse_freed_memory() -> bool:
    """Keep memory freed by this process for reuse instead of returning it to the kernel.

    Calls ``mallopt(M_MMAP_MAX, 0)`` (large blocks come from the heap, not from
    ``mmap``) and ``mallopt(M_TRIM_THRESHOLD, INT_MAX)`` (the heap is not shrunk
    unless more than 2 GB at its top is free). Affects allocations made after the
    call; calling it again does nothing.

    Returns:
        True when the settings are in effect (Linux with glibc), False elsewhere
        (other C libraries manage memory their own way; nothing is changed).
    """
    return _mallopt("reuse", {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: _INT_MAX})


def release_freed_memory(threshold: int = 128 * 1024) -> bool:
    """Return every freed block of at least ``threshold`` bytes to the kernel at once (for memory measurements).

    glibc's default starts like this but raises its thresholds after the first
    large ``free``, after which freed blocks stay resident and a process's peak
    resident size no longer follows its live tensors. Fixing the mmap and trim
    thresholds (``mallopt``) keeps it that way, so ``VmHWM`` measures the peak
    of what a piece of code holds at once, also after a warm-up run.

    Returns:
        True when the settings are in effect (Linux with glibc), False elsewhere.
    """
    return _mallopt("release", {_M_MMAP_THRESHOLD: threshold, _M_TRIM_THRESHOLD: threshold})


def apply_cpu_allocator(choice: str) -> bool:
    """Apply a ``--cpu-allocator`` choice: ``"reuse"`` (:func:`reuse_freed_memory`) or ``"system"`` (no change).

    Returns:
        whether freed memory is now kept for reuse.
    """
    if choice not in CPU_ALLOCATORS:
        raise ValueError(f"--cpu-allocator must be one of {CPU_ALLOCATORS}, got {choice!r}")
    return reuse_freed_memory() if choice == "reuse" else _mode == "reuse"
