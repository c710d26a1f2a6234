"""The cuBLAS C functions ``cublas.py`` calls through ctypes, and how a row-major batched product
becomes their column-major arguments. No CuPy here, so the CPU tests check both (tests/kernels).

cuBLAS is column-major: a row-major (rows, cols) matrix with row stride ``ld`` is, to cuBLAS, the
column-major (cols, rows) matrix with leading dimension ``ld`` -- its transpose. So the row-major
product C = op(A) op(B) is the column-major Cᵀ = op(B)ᵀ op(A)ᵀ: cuBLAS gets B first, then A, each
with op T when the row-major product uses that operand transposed.
"""

from __future__ import annotations

import ctypes
from typing import NamedTuple

import numpy as np

OP_N, OP_T = 0, 1                                                  # cublasOperation_t
DATA_TYPE = {np.dtype(np.float16): 2, np.dtype(np.float32): 0}     # cudaDataType_t: CUDA_R_16F, CUDA_R_32F
COMPUTE_32F, COMPUTE_32F_FAST_TF32 = 68, 77                        # cublasComputeType_t
ALGO_DEFAULT = -1                                                  # cublasGemmAlgo_t: CUBLAS_GEMM_DEFAULT

_vp, _int, _i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong

# (parameter, ctypes type) in the order of cublas_api.h (cuBLAS 12/13); each returns cublasStatus_t (int).
# Enumerations (cublasOperation_t, cudaDataType_t, cublasComputeType_t, cublasGemmAlgo_t) are C ints.
PROTOTYPES = {
    "cublasCreate_v2": (("handle", ctypes.POINTER(_vp)),),
    "cublasDestroy_v2": (("handle", _vp),),
    "cublasSetStream_v2": (("handle", _vp), ("streamId", _vp)),
    "cublasSetWorkspace_v2": (("handle", _vp), ("workspace", _vp), ("workspaceSizeInBytes", ctypes.c_size_t)),
    "cublasGemmEx": (
        ("handle", _vp), ("transa", _int), ("transb", _int), ("m", _int), ("n", _int), ("k", _int),
        ("alpha", _vp), ("A", _vp), ("Atype", _int), ("lda", _int), ("B", _vp), ("Btype", _int), ("ldb", _int),
        ("beta", _vp), ("C", _vp), ("Ctype", _int), ("ldc", _int), ("computeType", _int), ("algo", _int)),
    "cublasGemmStridedBatchedEx": (
        ("handle", _vp), ("transa", _int), ("transb", _int), ("m", _int), ("n", _int), ("k", _int),
        ("alpha", _vp), ("A", _vp), ("Atype", _int), ("lda", _int), ("strideA", _i64),
        ("B", _vp), ("Btype", _int), ("ldb", _int), ("strideB", _i64), ("beta", _vp),
        ("C", _vp), ("Ctype", _int), ("ldc", _int), ("strideC", _i64), ("batchCount", _int),
        ("computeType", _int), ("algo", _int)),
}


def bind(lib, prototypes=None):
    """Declare every function of ``prototypes`` (default: this module's ``PROTOTYPES``; cuBLASLt passes
    its own) on the ctypes library ``lib``: argument types, and the int status each returns."""
    for name, params in (PROTOTYPES if prototypes is None else prototypes).items():
        fn = getattr(lib, name)
        fn.argtypes = [t for _, t in params]
        fn.restype = ctypes.c_int
    return lib


class Batched(NamedTuple):
    """``batch`` row-major (rows, cols) matrices inside the C-contiguous ``array``: element (r, c) of
    matrix i is flat element ``offset + i*stride + r*ld + c``. ``trans``: the product uses its transpose."""
    array: object
    offset: int
    rows: int
    cols: int
    ld: int
    stride: int
    trans: bool = False

    @property
    def shape(self):
        """(rows, cols) of the matrix the product sees."""
        return (self.cols, self.rows) if self.trans else (self.rows, self.cols)

    def span(self, batch):
        """One past the last flat element that ``batch`` matrices address."""
        return self.offset + (batch - 1) * self.stride + (self.rows - 1) * self.ld + self.cols


class StridedBatchedGemm(NamedTuple):
    """The matrix arguments of cublasGemmStridedBatchedEx (column-major terms), as (array, offset)
    pairs where the C call takes pointers."""
    transa: int
    transb: int
    m: int
    n: int
    k: int
    a: tuple
    lda: int
    stride_a: int
    b: tuple
    ldb: int
    stride_b: int
    c: tuple
    ldc: int
    stride_c: int
    batch: int

    def arguments(self, handle, pointer, data_type, compute_type, alpha, beta):
        """The call's arguments in ``PROTOTYPES`` order; ``pointer((array, offset))`` is an operand's address."""
        return (handle, self.transa, self.transb, self.m, self.n, self.k, alpha,
                pointer(self.a), data_type, self.lda, self.stride_a, pointer(self.b), data_type, self.ldb,
                self.stride_b, beta, pointer(self.c), data_type, self.ldc, self.stride_c, self.batch,
                compute_type, ALGO_DEFAULT)


_INT_MAX = (1 << 31) - 1
ALIGN_BYTES = 16   # tensor-core GEMM kernels load 16 bytes at a time along every contiguous extent
ALIGN_MIN = 64     # smaller extents make a memory-bound product (a GEMV): padded copies would cost more


def transposed(m):
    """Whether cuBLAS reads the row-major matrix ``m`` through op T: a transposed view (F- but not
    C-contiguous)."""
    return m.flags.f_contiguous and not m.flags.c_contiguous


def aligned_shape(a, b):
    """(m, k, n) of ``a @ b`` with each extent that an operand or the product stores contiguously rounded
    up to 16 bytes: k for a C-ordered ``a`` or a transposed ``b``, m for a transposed ``a``, n always (the
    product's rows). ``cublas.matmul`` pads to it."""
    (m, k), n = a.shape, b.shape[1]
    step = ALIGN_BYTES // a.itemsize

    def up(x, contiguous):
        return -(-x // step) * step if contiguous else x

    return up(m, transposed(a)), up(k, not transposed(a) or transposed(b)), up(n, True)


def strided_batched_gemm(a, b, c, batch):
    """The column-major call computing C_i = op(A_i) op(B_i) for i < ``batch`` (``Batched`` operands over
    C-contiguous float16 or float32 arrays of one dtype, C not transposed); TypeError for other dtypes,
    ValueError when the shapes disagree or an operand reaches past its array."""
    arrays = (a.array, b.array, c.array)
    if len({x.dtype for x in arrays}) != 1 or a.array.dtype not in DATA_TYPE:
        raise TypeError(f"batched GEMM: operands must share float16 or float32, got {[str(x.dtype) for x in arrays]}")
    if not all(x.flags.c_contiguous for x in arrays):
        raise ValueError("batched GEMM: operand arrays must be C-contiguous (Batched addresses their flat elements)")
    (rows, inner), (inner_b, cols) = a.shape, b.shape
    if inner != inner_b or c.shape != (rows, cols) or c.trans:
        raise ValueError(f"batched GEMM: op(A) {a.shape} @ op(B) {b.shape} -> C {c.shape}"
                         f"{' (transposed)' if c.trans else ''} do not fit")
    if batch < 1 or min(rows, cols, inner) < 1 or max(rows, cols, inner, batch) > _INT_MAX:
        raise ValueError(f"batched GEMM: sizes {rows}x{inner}x{cols} and batch {batch} must be in [1, 2^31)")
    for name, x in (("A", a), ("B", b), ("C", c)):
        if x.ld < x.cols or x.ld > _INT_MAX or x.stride < 0 or x.offset < 0:
            raise ValueError(f"batched GEMM: operand {name} needs offset >= 0, stride >= 0 and "
                             f"cols {x.cols} <= ld {x.ld} < 2^31")
        if x.span(batch) > x.array.size:
            raise ValueError(f"batched GEMM: operand {name} addresses {x.span(batch)} elements of an array of "
                             f"{x.array.size}")
    op = {False: OP_N, True: OP_T}
    return StridedBatchedGemm(op[b.trans], op[a.trans], cols, rows, inner, (b.array, b.offset), b.ld, b.stride,
                              (a.array, a.offset), a.ld, a.stride, (c.array, c.offset), c.ld, c.stride, batch)
