"""The cuBLASLt C functions ``cublaslt.py`` calls through ctypes, their enum values and the heuristic
result struct (cublasLt.h of cuBLAS 12/13), and how the row-major ``act(x·W + b)`` becomes one
column-major ``cublasLtMatmul`` with a bias epilogue. No CuPy here, so the CPU tests check all of it.

Row-major z (m, n) = x (m, k) · W (k, n) + b is, to column-major cuBLASLt, D = zᵀ (n, m) = Wᵀ xᵀ: A is
W's buffer, B is x's, and D has n rows. The BIAS epilogue adds a vector as long as D's rows to every
column of D, so b (n values) lands on each sample's n outputs, as the row-major bias does.
"""

from __future__ import annotations

import ctypes
from typing import NamedTuple

from . import cublas_abi
from .cublas_abi import OP_N, OP_T

# cublasLtEpilogue_t
EPILOGUE_DEFAULT, EPILOGUE_RELU, EPILOGUE_BIAS, EPILOGUE_RELU_BIAS = 1, 2, 4, 6
# cublasLtMatmulDescAttributes_t
DESC_TRANSA, DESC_TRANSB, DESC_EPILOGUE, DESC_BIAS_POINTER = 3, 4, 7, 8
# cublasLtMatmulPreferenceAttributes_t
PREF_MAX_WORKSPACE_BYTES = 1
PREF_MIN_ALIGNMENT_A_BYTES, PREF_MIN_ALIGNMENT_B_BYTES = 5, 6
PREF_MIN_ALIGNMENT_C_BYTES, PREF_MIN_ALIGNMENT_D_BYTES = 7, 8
SCALE_32F = 0                 # cudaDataType_t CUDA_R_32F: alpha, beta and the epilogue's arithmetic
MAX_ALIGNMENT = 256           # the preferences' default: what cuBLASLt assumes of a pointer unless told less

_vp, _int, _size = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t


class MatmulAlgo(ctypes.Structure):
    """cublasLtMatmulAlgo_t: opaque, 64 bytes."""
    _fields_ = [("data", ctypes.c_uint64 * 8)]


class HeuristicResult(ctypes.Structure):
    """cublasLtMatmulHeuristicResult_t: an algorithm, the workspace it needs, whether it applies."""
    _fields_ = [("algo", MatmulAlgo), ("workspaceSize", _size), ("state", _int), ("wavesCount", ctypes.c_float),
                ("reserved", _int * 4)]


# (parameter, ctypes type) in the order of cublasLt.h; each returns cublasStatus_t (int). Enumerations
# (cudaDataType_t, cublasComputeType_t, the attribute enums) are C ints; descriptors and handles are opaque
# pointers; uint64_t/int64_t are the layout's extents and leading dimension.
PROTOTYPES = {
    "cublasLtCreate": (("lightHandle", ctypes.POINTER(_vp)),),
    "cublasLtDestroy": (("lightHandle", _vp),),
    "cublasLtMatmulDescCreate": (("matmulDesc", ctypes.POINTER(_vp)), ("computeType", _int), ("scaleType", _int)),
    "cublasLtMatmulDescDestroy": (("matmulDesc", _vp),),
    "cublasLtMatmulDescSetAttribute": (("matmulDesc", _vp), ("attr", _int), ("buf", _vp), ("sizeInBytes", _size)),
    "cublasLtMatrixLayoutCreate": (("matLayout", ctypes.POINTER(_vp)), ("type", _int), ("rows", ctypes.c_uint64),
                                   ("cols", ctypes.c_uint64), ("ld", ctypes.c_int64)),
    "cublasLtMatrixLayoutDestroy": (("matLayout", _vp),),
    "cublasLtMatmulPreferenceCreate": (("pref", ctypes.POINTER(_vp)),),
    "cublasLtMatmulPreferenceDestroy": (("pref", _vp),),
    "cublasLtMatmulPreferenceSetAttribute": (("pref", _vp), ("attr", _int), ("buf", _vp), ("sizeInBytes", _size)),
    "cublasLtMatmulAlgoGetHeuristic": (
        ("lightHandle", _vp), ("operationDesc", _vp), ("Adesc", _vp), ("Bdesc", _vp), ("Cdesc", _vp),
        ("Ddesc", _vp), ("preference", _vp), ("requestedAlgoCount", _int),
        ("heuristicResultsArray", ctypes.POINTER(HeuristicResult)), ("returnAlgoCount", ctypes.POINTER(_int))),
    "cublasLtMatmul": (
        ("lightHandle", _vp), ("computeDesc", _vp), ("alpha", _vp), ("A", _vp), ("Adesc", _vp), ("B", _vp),
        ("Bdesc", _vp), ("beta", _vp), ("C", _vp), ("Cdesc", _vp), ("D", _vp), ("Ddesc", _vp),
        ("algo", ctypes.POINTER(MatmulAlgo)), ("workspace", _vp), ("workspaceSizeInBytes", _size),
        ("stream", _vp)),
}


def bind(lib):
    """Declare every cuBLASLt function of ``PROTOTYPES`` on the ctypes library ``lib``."""
    return cublas_abi.bind(lib, PROTOTYPES)


class Layout(NamedTuple):
    """A column-major matrix as cublasLtMatrixLayoutCreate takes it: stored rows, cols, leading dimension."""
    rows: int
    cols: int
    ld: int


class EpilogueGemm(NamedTuple):
    """The column-major arguments of ``act(x·W + b)``: D (n, m) = op(A) op(B) + bias, A = W's buffer,
    B = x's buffer, bias (n,) added to every column of D, then ReLU with EPILOGUE_RELU_BIAS."""
    transa: int
    transb: int
    a: Layout
    b: Layout
    d: Layout
    epilogue: int


def _stored(matrix):
    """(op, layout) of a row-major 2-D array seen by column-major cuBLASLt, whose product needs its
    transpose: a C-contiguous (r, c) array is the column-major (c, r) matrix, already the transpose (op
    N); an F-contiguous one (a transposed view) is the column-major (r, c) matrix itself (op T)."""
    r, c = matrix.shape
    if matrix.flags.c_contiguous:
        return OP_N, Layout(c, r, c)
    if matrix.flags.f_contiguous:
        return OP_T, Layout(r, c, r)
    raise ValueError(f"GEMM epilogue: a ({r}, {c}) operand must be C- or F-contiguous")


_INT_MAX = (1 << 31) - 1


def epilogue_gemm(x, w, relu):
    """The ``EpilogueGemm`` of ``act(x (m, k) · w (k, n) + b)`` for C- or F-contiguous 2-D arrays (anything
    with ``shape`` and ``flags``); output z (m, n) C-contiguous. ValueError when the shapes do not fit or an
    extent is outside [1, 2^31)."""
    (m, k), (k_w, n) = x.shape, w.shape
    if k != k_w or min(m, k, n) < 1 or max(m, k, n) > _INT_MAX:
        raise ValueError(f"GEMM epilogue: x {x.shape} @ w {w.shape} must share k, every extent in [1, 2^31)")
    op_a, a = _stored(w)
    op_b, b = _stored(x)
    return EpilogueGemm(op_a, op_b, a, b, Layout(n, m, n), EPILOGUE_RELU_BIAS if relu else EPILOGUE_BIAS)


def alignment(address):
    """The largest power of two dividing ``address``, at most ``MAX_ALIGNMENT`` bytes."""
    return min(address & -address, MAX_ALIGNMENT) if address else MAX_ALIGNMENT
