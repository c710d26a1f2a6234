"""Run inference work on the device an embedding cache or session was created for."""

from __future__ import annotations

import contextlib


def device_scope(backend, device_id):
    """``with device_scope(backend, id):`` makes GPU ``id`` current on CuPy; a no-op on NumPy, where
    device ids are logical."""
    if backend.name == "cupy":
        return backend.xp.cuda.Device(device_id)
    return contextlib.nullcontext()
