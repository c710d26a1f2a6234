"""Copies of row-strided float arrays through the row-walking kernel of ``kernels/concat.cu``.

CuPy copies a row-strided view (a Concat gradient's columns, a Slice's output, a corner of a padded
product) with an index division per element, about 0.5 TB/s on an H100; the kernel walks rows at HBM
speed, writes up to five inputs side by side in one launch (Concat: one graph node, not one per input)
and can zero-extend each row in the same pass (the padded GEMM operands of ``cublas``).
"""

from __future__ import annotations

import numpy as np

from .common import COLUMN_BLOCKS, block_args, ctype, floats, row_layout
from .cublas_abi import ALIGN_BYTES
from .loader import launch_grid, per_sample


def copy_parts(parts, out, start=0, width=None):
    """Write ``parts`` -- ``(x, layout)`` pairs, ``layout`` = ``row_layout(x)``: m rows of w > 0 elements, ld
    apart, the same m for all -- side by side into columns ``start`` .. of the first m rows of the C-contiguous
    ``out`` (>= m, n), ``COLUMN_BLOCKS`` of them per launch; with ``width``, the columns after them up to
    ``start + width`` get zeros."""
    m = parts[0][1][0]
    if not m:
        return
    width = sum(layout[1] for _, layout in parts) if width is None else width
    for first in range(0, len(parts), COLUMN_BLOCKS):
        group = parts[first:first + COLUMN_BLOCKS]
        w = sum(layout[1] for _, layout in group)
        end = width if first + COLUMN_BLOCKS >= len(parts) else w   # the zero columns go with the last group
        launch_grid("concat.cu", f"hctr_concat_columns<{ctype(out.dtype)}>", *per_sample(m, end),
                    (*block_args(group), np.uint64(out.data.ptr + start * out.itemsize), np.int64(out.shape[1]),
                     np.int64(m), np.int32(end)))
        start += w
        width -= w


def contiguous(xp, a):
    """``a`` C-contiguous: itself if it is, a row-strided float array (a (B, S, E) view too) through the kernel,
    else through CuPy."""
    if a.flags.c_contiguous:
        return a
    layout = row_layout(a) if floats(a) else None
    if layout is None:
        return xp.ascontiguousarray(a)
    out = xp.empty(a.shape, dtype=a.dtype)
    copy_parts([(a, layout)], out.reshape(layout[:2]))
    return out


def zero_padded(xp, a, rows, cols):
    """``a`` (r, c) inside a zero (rows, cols) array of the same storage order: a copy (C-contiguous, or the
    transposed view of one for a transposed ``a``, so that cuBLAS keeps its op); ``a`` itself when it has
    that shape and a 16-byte aligned address already (fresh memory is aligned)."""
    if a.ndim == 2 and not a.flags.c_contiguous and a.strides[0] == a.itemsize:   # a transposed (row-strided) view
        return zero_padded(xp, a.T, cols, rows).T
    if a.shape == (rows, cols) and a.flags.c_contiguous:
        return a if a.data.ptr % ALIGN_BYTES == 0 else a.copy()
    layout = row_layout(a) if a.ndim == 2 and floats(a) else None
    if layout is None:
        out = xp.zeros((rows, cols), dtype=a.dtype)
        out[:a.shape[0], :a.shape[1]] = a
        return out
    out = xp.empty((rows, cols), dtype=a.dtype)
    copy_parts([(a, layout)], out, width=cols)
    if rows > a.shape[0]:
        out[a.shape[0]:] = 0   # contiguous rows: one fill
    return out
