"""Compile ``kernels/*.cu`` with NVRTC through ``cupy.RawModule`` once per file and device, and launch.

``launch(file, expression, n, args)`` runs the instantiation ``expression`` (listed for ``file`` in
``sources.SOURCES``) on a grid-stride grid for ``n`` work items; ``launch_grid`` takes an explicit
grid. Arguments are CuPy arrays, NumPy scalars of the kernel's parameter types, or ``NULL``.
Set ``HUGECTR_LAB_KERNEL_DEBUG=1`` to synchronise and log after every launch (errors then surface
at the launch that caused them, named).
"""

from __future__ import annotations

import functools
import logging
import os

import cupy
import numpy as np

from ...kernels import inlined_source
from .sources import NVRTC_OPTIONS, SOURCES

NULL = np.uint64(0)      # a null pointer argument
BLOCK = 256
MAX_BLOCKS = (1 << 31) - 1
_log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def _module(file_name, device_id):
    return cupy.RawModule(code=inlined_source(file_name), options=NVRTC_OPTIONS,
                          name_expressions=SOURCES[file_name])


@functools.lru_cache(maxsize=None)
def kernel(file_name, expression, device_id):
    """The compiled kernel ``expression`` of ``kernels/<file_name>`` on device ``device_id``."""
    if expression not in SOURCES[file_name]:
        raise KeyError(f"{expression} is not instantiated for {file_name}; add it to sources.SOURCES")
    return _module(file_name, device_id).get_function(expression)


@functools.lru_cache(maxsize=None)
def multiprocessors(device_id):
    return cupy.cuda.Device(device_id).attributes["MultiProcessorCount"]


def launch_grid(file_name, expression, grid, block, args, shared_mem=0):
    """Launch on an explicit ``grid`` and ``block`` (ints or tuples) on the current device."""
    device_id = cupy.cuda.runtime.getDevice()
    kernel(file_name, expression, device_id)(_dims(grid), _dims(block), tuple(args), shared_mem=shared_mem)
    if os.environ.get("HUGECTR_LAB_KERNEL_DEBUG"):
        cupy.cuda.get_current_stream().synchronize()
        _log.warning("kernel %s grid=%s block=%s shared=%d: ok", expression, grid, block, shared_mem)


def launch(file_name, expression, n, args, block=BLOCK):
    """Launch a grid-stride kernel over ``n`` work items, one per thread (nothing to do for ``n == 0``):
    the kernels are memory-bound gathers, and a thread per item keeps the most loads in flight."""
    if n <= 0:
        return
    launch_grid(file_name, expression, min(-(-n // block), MAX_BLOCKS), block, args)


def per_sample(m, elements):
    """(grid, block) of a kernel that gives each of ``m`` samples (rows) a row of x threads -- at most 128,
    striding over the sample's ``elements`` -- 256 threads a block (hctr_row_stride)."""
    lanes = min(128, -(-elements // 32) * 32)
    rows = 256 // lanes
    return min(-(-m // rows), MAX_BLOCKS), (lanes, rows)


def _dims(d):
    return d if isinstance(d, tuple) else (int(d),)
