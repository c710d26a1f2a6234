"""Temporaries that NumPy hot paths reuse from one step to the next.

A fresh multi-megabyte NumPy array is page-faulted in 4 KiB at a time on first touch, which costs more
than one arithmetic pass over it; a training step makes dozens of them. ``scratch`` hands out one
buffer per (name, shape, dtype) and thread (a dashboard trains in a background thread), kept for the
next call with the same key. Use it only for values that die inside the call that asked for them:
the next call with the same key overwrites the buffer. On CuPy (whose memory pool already recycles
device memory) it is ``xp.empty``.
"""

from __future__ import annotations

import threading

import numpy as np

_LOCAL = threading.local()
_MAX_BUFFERS = 64   # distinct keys per thread before the pool starts over (several batch sizes in one process)


def scratch(xp, name, shape, dtype):
    """An uninitialised array of ``shape`` and ``dtype``; on NumPy the same one for the same key."""
    if xp is not np:
        return xp.empty(shape, dtype)
    pool = getattr(_LOCAL, "pool", None)
    if pool is None or len(pool) > _MAX_BUFFERS:
        pool = _LOCAL.pool = {}
    key = (name, tuple(shape), np.dtype(dtype))
    buf = pool.get(key)
    if buf is None:
        buf = pool[key] = np.empty(shape, dtype)
    return buf


CACHE_BLOCK = 1 << 15   # elements per block of an element-wise chain: its temporaries stay in the L2 cache


def cache_blocks(xp, n, block=CACHE_BLOCK):
    """Slices that cover ``range(n)``: blocks of ``block`` elements on NumPy, where a chain of in-place
    passes over one block at a time reads memory once instead of once per pass; one slice on CuPy."""
    if xp is not np or n <= block:
        return [slice(0, n)]
    return [slice(i, min(n, i + block)) for i in range(0, n, block)]
