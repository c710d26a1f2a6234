"""Python's cyclic garbage collector held off while a CUDA graph is captured (no CuPy needed: tested on the CPU).

The collector runs at any allocation, and a finalizer it calls there -- another session's stream, cuBLAS
handle or pinned buffer being destroyed -- may synchronise the device, which invalidates an open capture
(seen on an H100: a predict graph's capture failed in one GPU lane run of two with the same code).
``graphs.CapturedCall`` captures inside ``no_cyclic_collection()``.
"""

from __future__ import annotations

import contextlib
import gc
import threading

_lock = threading.Lock()
_open = {"count": 0, "was_enabled": False}   # captures open in any thread; the switch before the first


@contextlib.contextmanager
def no_cyclic_collection():
    """One collection, then the collector off until every capture opened meanwhile (in any thread) has
    closed; the last to close restores the switch as the first found it (a user's ``gc.disable()`` stays)."""
    gc.collect()
    with _lock:
        if _open["count"] == 0:
            _open["was_enabled"] = gc.isenabled()
            gc.disable()
        _open["count"] += 1
    try:
        yield
    finally:
        with _lock:
            _open["count"] -= 1
            if _open["count"] == 0 and _open["was_enabled"]:
                gc.enable()
