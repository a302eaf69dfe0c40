"""glibc's allocator, set up once per process for the data path's 64 KiB buffers.

Every chunk the data path seals or opens is a fresh ~64 KiB ``bytes`` (zstd output, AES output,
the block itself). glibc serves those from the heap and, by default, gives the heap's free top back
to the kernel as soon as it exceeds 128 KiB. The next allocation then faults the pages in again
and the kernel zeroes them: measured here, python-zstandard's ``decompress`` of a 64 KiB chunk cost
~100 us of CPU with the default settings and ~52 us with the heap kept, and a 1 GiB restore spent
2.60 CPU-s instead of 2.49 (medians of six, alternated; docs/BENCHMARK-FIGURES.md, stop 34).

``tune()`` keeps up to ``TRIM_THRESHOLD`` of free heap per arena and serves allocations below
``MMAP_THRESHOLD`` (8 MiB packs included) from the heap. The cost is resident memory that is not
handed back between ships: bounded by the data path's own peak (the seed's peak RSS stays
under 512 MiB, benchmarks.datapath). An operator's ``MALLOC_TRIM_THRESHOLD_`` or
``MALLOC_MMAP_THRESHOLD_`` in the environment wins; other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading

TRIM_THRESHOLD = 256 * 1024 * 1024
MMAP_THRESHOLD = 32 * 1024 * 1024
_M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")

_lock = threading.Lock()
_state: str | None = None


def tune() -> str:
    """Set the thresholds once; returns what this process runs with (``tuned``, ``environment``,
    ``not glibc`` or ``mallopt failed``), for the benchmarks to report."""
    global _state
    with _lock:
        if _state is None:
            _state = _apply()
        return _state


def _apply() -> str:
    if any(name in os.environ for name in _ENV):
        return "environment"
    if platform.libc_ver()[0] != "glibc":
        return "not glibc"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "not glibc"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return "tuned" if ok else "mallopt failed"
