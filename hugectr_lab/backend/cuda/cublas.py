"""Row-major GEMM through cuBLAS called with ctypes, so that a CUDA graph can capture it.

CuPy's cuBLAS bindings refuse to run while the current stream captures ("calling cuBLAS API during
stream capture is currently unsupported"), although cuBLAS itself supports capture once a handle has
a workspace of its own. ``matmul(a, b, tf32)`` calls ``cublasGemmEx`` of the libcublas CuPy loaded, on
the current stream, and ``gemm_strided_batched`` ``cublasGemmStridedBatchedEx`` (the C prototypes and
the row-major to column-major argument plans are in ``cublas_abi``). Each stream gets a handle and a
32 MiB workspace of its own (NVIDIA's size for Hopper), released with the stream: cuBLAS promises
bit-wise reproducible results only while a handle serves one stream, and two streams sharing a
workspace could overwrite each other's. float16 operands
multiply with float32 accumulation, float32 ones in float32 or TF32.
"""

from __future__ import annotations

import ctypes
import functools
import weakref

import cupy
import numpy as np

from .cublas_abi import (ALGO_DEFAULT, ALIGN_BYTES, ALIGN_MIN, COMPUTE_32F, COMPUTE_32F_FAST_TF32, DATA_TYPE, OP_N,
                         OP_T, aligned_shape, bind, strided_batched_gemm)
from .rows import contiguous, zero_padded

_WORKSPACE_BYTES = 32 << 20
_vp = ctypes.c_void_p


@functools.lru_cache(maxsize=None)
def _library():
    cupy.cuda.device.get_cublas_handle()   # makes CuPy load libcublas; we bind the same copy
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "/libcublas.so" in line}
    if not paths:
        raise RuntimeError("CuPy's libcublas is not mapped into this process; cannot call cuBLAS directly")
    return bind(ctypes.CDLL(sorted(paths)[0]))


def _check(status, call):
    if status != 0:
        raise RuntimeError(f"{call} failed with cuBLAS status {status}")


_HANDLES = weakref.WeakKeyDictionary()   # stream -> {device id: (handle, workspace)}


def _handle(stream, device_id):
    """The cuBLAS handle bound to ``stream`` on ``device_id``. Its workspace is a plain allocation,
    outside every memory pool: it outlives any one CUDA graph's private pool."""
    handles = _HANDLES.setdefault(stream, {})
    if device_id not in handles:
        lib = _library()
        handle = _vp()
        _check(lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
        workspace = cupy.cuda.Memory(_WORKSPACE_BYTES)
        _check(lib.cublasSetWorkspace_v2(handle, workspace.ptr, _WORKSPACE_BYTES), "cublasSetWorkspace")
        _check(lib.cublasSetStream_v2(handle, stream.ptr), "cublasSetStream")
        handles[device_id] = handle, workspace
        weakref.finalize(stream, lib.cublasDestroy_v2, handle)
    return handles[device_id][0]


def workspace_bytes(stream):
    """Bytes of the cuBLAS workspaces bound to ``stream`` (one per device it ran a GEMM on): plain
    allocations, outside CuPy's memory pools (what the memory estimate's "workspace" counts)."""
    return _WORKSPACE_BYTES * len(_HANDLES.get(stream, {}))


def workspace(stream, device_id):
    """(address, bytes) of the workspace of ``stream``'s handle on ``device_id``: cuBLASLt calls on the
    same stream share it (calls on one stream run one after the other)."""
    _handle(stream, device_id)
    return _HANDLES[stream][device_id][1].ptr, _WORKSPACE_BYTES


def _operand(m):
    """(array, op, leading dimension) of a row-major matrix seen by column-major cuBLAS: a C-contiguous
    (r, c) array is the column-major (c, r) matrix m.T (op N); a transposed view is m itself (op T)."""
    if m.flags.c_contiguous:
        return m, OP_N, m.shape[1]
    if m.flags.f_contiguous:
        return m, OP_T, m.shape[0]
    return _operand(contiguous(cupy, m))


_ONE, _ZERO = ctypes.c_float(1.0), ctypes.c_float(0.0)


def aligned_operands(a, b):
    """``a`` (m, k) and ``b`` (k, n) copied zero-padded to ``aligned_shape`` and to 16-byte aligned
    addresses, or None when they are aligned already or an extent is below 64 (a memory-bound product:
    copies would cost more than they save). A contiguous extent that is not a multiple of 16 bytes (DCN's
    429 concatenated features, DeepFM's 390) keeps cuBLAS off its 16-byte tensor-core kernels, and so does
    an operand that starts off a 16-byte boundary (a weight at an odd offset of the flat weight buffer: in
    fp16 every FC weight after DCN's MultiCross; an H100 profile showed 2-element "align2" kernels there).
    The padding adds exact zeros (0 x 0) to every sum, and ``cut`` takes the (m, n) product back out of
    the padded one."""
    (m, k), n = a.shape, b.shape[1]
    mp, kp, np_ = aligned_shape(a, b)
    if min(m, k, n) < ALIGN_MIN or ((mp, kp, np_) == (m, k, n)
                                    and a.data.ptr % ALIGN_BYTES == 0 and b.data.ptr % ALIGN_BYTES == 0):
        return None
    return zero_padded(cupy, a, mp, kp), zero_padded(cupy, b, kp, np_)


def cut(c, m, n):
    """The C-contiguous (m, n) top-left corner of a padded product ``c``: a view when only rows were added."""
    return c[:m] if c.shape[1] == n else contiguous(cupy, c[:m, :n])


def matmul(a, b, tf32=False, align=True):
    """``a @ b`` for 2-D float16/float32 CuPy arrays of one dtype: (m, k) @ (k, n) -> (m, n); with
    ``align``, misaligned operands are padded first (``aligned_operands``)."""
    (m, k), n = a.shape, b.shape[1]
    padded = aligned_operands(a, b) if align else None
    if padded is not None:
        return cut(matmul(*padded, tf32, align=False), m, n)
    c = cupy.empty((m, n), dtype=a.dtype)
    if c.size == 0 or k == 0:
        c.fill(0)
        return c
    handle = _handle(cupy.cuda.get_current_stream(), cupy.cuda.runtime.getDevice())
    a, op_a, lda = _operand(a)
    b, op_b, ldb = _operand(b)
    dtype = DATA_TYPE[a.dtype]
    compute = _compute_type(a.dtype, tf32)
    # C^T (n, m) = op(B) op(A) in column-major terms is C (m, n) row-major.
    _check(_library().cublasGemmEx(handle, op_b, op_a, n, m, k, ctypes.addressof(_ONE), b.data.ptr, dtype, ldb,
                            a.data.ptr, dtype, lda, ctypes.addressof(_ZERO), c.data.ptr, dtype, n, compute,
                            ALGO_DEFAULT), f"cublasGemmEx ({m}x{k} @ {k}x{n}, {a.dtype})")
    return c


def _compute_type(dtype, tf32):
    return COMPUTE_32F_FAST_TF32 if tf32 and dtype == np.float32 else COMPUTE_32F


def gemm_strided_batched(a, b, c, batch, tf32=False):
    """C_i = op(A_i) op(B_i) for i < ``batch``, written into ``c.array`` in place: ``cublas_abi.Batched``
    operands over C-contiguous CuPy arrays of one dtype (float16: float32 accumulation on tensor cores;
    float32: float32, or TF32 with ``tf32``)."""
    call = strided_batched_gemm(a, b, c, batch)
    handle = _handle(cupy.cuda.get_current_stream(), cupy.cuda.runtime.getDevice())
    args = call.arguments(handle, _address, DATA_TYPE[c.array.dtype], _compute_type(c.array.dtype, tf32),
                          ctypes.addressof(_ONE), ctypes.addressof(_ZERO))
    _check(_library().cublasGemmStridedBatchedEx(*args),
           f"cublasGemmStridedBatchedEx ({batch} x {a.shape} @ {b.shape}, {c.array.dtype})")


def _address(operand):
    array, offset = operand
    return array.data.ptr + offset * array.itemsize
