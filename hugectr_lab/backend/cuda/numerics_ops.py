"""CUDA wrapper of the training step's finiteness check (kernels/numerics.cu); its reference is
``all_finite`` in ``hugectr_lab/numerics.py``."""

from __future__ import annotations

import numpy as np

from ..ops import kernel_op
from .common import ctype, floats, reference
from .loader import launch


def _rows(a):
    """``(rows, cols, ld)``: ``a``'s elements as rows of ``cols`` contiguous values ``ld`` apart (a contiguous
    array is one row), or None where its strides are not of that form."""
    if a.flags.c_contiguous:
        return 1, a.size, a.size
    if a.ndim < 2 or a.strides[0] % a.itemsize:
        return None
    expect = a.itemsize
    for n, stride in zip(reversed(a.shape[1:]), reversed(a.strides[1:])):
        if n != 1 and stride != expect:
            return None
        expect *= n
    cols, ld = a.size // a.shape[0], a.strides[0] // a.itemsize
    return (a.shape[0], cols, ld) if ld >= cols else None


@kernel_op("all_finite")
def all_finite(xp, first, *rest):
    flag = xp.zeros((), dtype=np.int32)   # set by the kernel where an element is not finite
    others = None                          # what the kernel does not take: float64, integers
    for a in (first, *rest):
        if not floats(a):
            finite = reference("all_finite", xp, a)
            others = finite if others is None else others & finite
            continue
        layout = _rows(a)
        if layout is None:
            a = xp.ascontiguousarray(a)
            layout = 1, a.size, a.size
        rows, cols, ld = layout
        launch("numerics.cu", f"hctr_all_finite<{ctype(a.dtype)}>", rows * cols,
               (np.uint64(a.data.ptr), np.int64(rows), np.int64(cols), np.int64(ld), flag))   # a may be a view
    finite = flag == 0
    return finite if others is None else finite & others
