"""CUDA wrapper of the training step's finiteness check (kernels/numerics.cu); its reference is
``all_finite`` in ``hugectr_lab/numerics.py``."""

from __future__ import annotations

import numpy as np

from ..ops import kernel_op
from .common import ctype, floats, reference, row_view
from .loader import launch


@kernel_op("all_finite")
def all_finite(xp, first, *rest):
    flag = xp.zeros((), dtype=np.int32)   # set by the kernel where an element is not finite
    others = None                          # what the kernel does not take: float64, integers
    for a in (first, *rest):
        if not floats(a):
            finite = reference("all_finite", xp, a)
            others = finite if others is None else others & finite
            continue
        a, (rows, cols, ld) = row_view(xp, a)
        contiguous = ld == cols or rows == 1
        # a thread per 16-byte word of a contiguous array (plus the unaligned ends), else per element
        threads = -(-rows * cols * a.itemsize // 16) + 16 if contiguous else rows * cols
        launch("numerics.cu", f"hctr_all_finite<{ctype(a.dtype)}>", threads,
               (np.uint64(a.data.ptr), np.int64(rows), np.int64(cols), np.int64(ld), flag))   # a may be a view
    finite = flag == 0
    return finite if others is None else finite & others
