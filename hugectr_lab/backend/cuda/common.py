"""Helpers shared by the wrappers: dtype checks, contiguous inputs, and the reference fallback."""

from __future__ import annotations

import numpy as np

from ..ops import REFERENCES
from .sources import CTYPE

FLOATS = (np.dtype(np.float32), np.dtype(np.float16))


def ctype(dtype):
    """The C type name of a NumPy dtype in the kernels (float, hctr_half, unsigned int, long long)."""
    return CTYPE[np.dtype(dtype)]


def floats(*arrays):
    """True when every array is float32 or float16 and they share one dtype (what the kernels take)."""
    dtypes = {a.dtype for a in arrays}
    return len(dtypes) == 1 and dtypes.pop() in FLOATS


def vector_width(n, arrays, widths=(4, 1)):
    """Elements per access of a kernel that reads rows of ``n`` elements in pieces: the widest of ``widths``
    that divides ``n`` and keeps every array's pieces aligned to their size (a view may start anywhere)."""
    return next(w for w in widths if n % w == 0 and all(a.data.ptr % (w * a.itemsize) == 0 for a in arrays))


def reference(name, *args, **kwargs):
    """Run the NumPy reference ``name`` (arguments from ``xp`` on) for inputs the kernel does not cover."""
    return REFERENCES[name](*args, **kwargs)


def f32(*values):
    """Python floats as float32 kernel arguments, rounded as NumPy rounds a weak scalar."""
    return tuple(np.float32(v) for v in values)


def row_layout(a):
    """``(rows, cols, ld)``: ``a`` as ``rows`` = ``shape[0]`` rows of ``cols`` contiguous elements, ``ld``
    elements apart (a row-strided view -- a Concat gradient's or a Slice's columns -- has ld > cols; a 1-D
    contiguous array is one row), or None where its strides are not of that form (copy it first)."""
    if a.ndim < 2:
        return (1, a.size, a.size) if a.flags.c_contiguous else None
    rows = a.shape[0]
    cols = a.size // rows if rows else 0
    expect = a.itemsize
    for n, stride in zip(reversed(a.shape[1:]), reversed(a.strides[1:])):
        if n != 1 and stride != expect:
            return None
        expect *= n
    if rows <= 1:
        return rows, cols, cols
    if a.strides[0] % a.itemsize or a.strides[0] // a.itemsize < cols:
        return None
    return rows, cols, a.strides[0] // a.itemsize


def row_view(xp, a):
    """``(a, (rows, cols, ld))`` for a kernel that reads rows ``ld`` elements apart: ``a`` itself where
    ``row_layout`` reads it in place, else its C-contiguous copy (hold the returned array while the kernel
    is queued) and that copy's layout."""
    layout = row_layout(a)
    if layout is None:
        a = xp.ascontiguousarray(a)
        layout = row_layout(a)
    return a, layout


COLUMN_BLOCKS = 5   # column blocks per launch of the concat and GEMV kernels (HCTR_COLUMN_BLOCKS)


def block_args(blocks):
    """The kernel arguments of up to ``COLUMN_BLOCKS`` column blocks side by side (``(x, row_layout(x))``
    pairs): per block its address, row stride and columns -- an unused one (NULL, 0, 0)."""
    args = []
    for x, (_, cols, ld) in blocks + [(None, (0, 0, 0))] * (COLUMN_BLOCKS - len(blocks)):
        args += [np.uint64(0 if x is None else x.data.ptr), np.int64(ld), np.int32(cols)]
    return args
