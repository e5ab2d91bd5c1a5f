"""Keeping a long-running engine process's memory flat.

After a free of a large block glibc raises its mmap threshold (up to 32 MiB), so the
tens-of-MiB arrays of later generations (decoder activations, marching-cubes grids, meshes)
come from the heap, where freed blocks of ever-different sizes fragment it and stay
resident: the engine grew ~40 MB per generation, without bound (docs/results.md).
`malloc_trim` hands every free page of the heap back to the system; the worker calls it after
each job. It costs milliseconds, where a fixed low mmap threshold (the other cure) makes
every large allocation a fresh mapping.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return getattr(libc, "malloc_trim", None)


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system; False where the C library is not glibc."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
