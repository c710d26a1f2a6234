"""``act(x·W + b)`` as one cuBLASLt matmul whose epilogue adds the bias (and applies ReLU) before the
output is written, called with ctypes as ``cublas.py`` calls cuBLAS, so that a CUDA graph captures it.

Unfused, the FC forward writes the GEMM's (m, n) output and the epilogue kernel reads it back and
writes z: on DLRM fp16 (batch 65536) about 1 GB of HBM traffic per step that the bias epilogue removes.

Per stream and device: a cuBLASLt handle, and the cuBLAS handle's workspace of ``cublas.py`` (one
stream's calls run one after the other, so its cuBLAS and cuBLASLt calls can share it). Per (shape,
dtype, TF32, operand storage, epilogue, pointer alignments) a plan: the matmul descriptor, the three
matrix layouts and the heuristic's algorithm, made on the first call; later calls set the bias pointer
on the plan's descriptor (host memory only) and call ``cublasLtMatmul`` -- nothing that a CUDA graph
cannot capture, and the same algorithm every time, so a graph replay gives the eager call's bits. A
shape cuBLASLt has no algorithm for gets ``None`` (remembered, logged once with the reason), and the
caller runs the GEMM and the epilogue kernel instead.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import logging
import os
import weakref

import cupy
import numpy as np

from . import cublas
from .cublas_abi import COMPUTE_32F, COMPUTE_32F_FAST_TF32, DATA_TYPE
from .cublaslt_abi import (DESC_BIAS_POINTER, DESC_EPILOGUE, DESC_TRANSA, DESC_TRANSB, PREF_MAX_WORKSPACE_BYTES,
                           PREF_MIN_ALIGNMENT_A_BYTES, PREF_MIN_ALIGNMENT_B_BYTES, PREF_MIN_ALIGNMENT_C_BYTES,
                           PREF_MIN_ALIGNMENT_D_BYTES, SCALE_32F, HeuristicResult, alignment, bind,
                           epilogue_gemm)
from .rows import zero_padded

_log = logging.getLogger("hugectr_lab")
_vp = ctypes.c_void_p
_ONE, _ZERO = ctypes.c_float(1.0), ctypes.c_float(0.0)   # alpha, beta: float32 scale type for both dtypes
_MIN_ALIGNMENT = 16   # bytes; below it the unfused kernels (cuBLAS pads, the epilogue kernel) serve better


@functools.lru_cache(maxsize=None)
def _library():
    """The libcublasLt beside the libcublas that ``cublas.py`` binds (libcublas loads it, so it is normally
    mapped already; else loaded from libcublas's directory)."""
    directory = os.path.dirname(cublas._library()._name)
    with open("/proc/self/maps") as maps:
        mapped = {line.split()[-1] for line in maps if "/libcublasLt.so" in line}
    paths = (sorted(p for p in mapped if os.path.dirname(p) == directory)
             or sorted(glob.glob(os.path.join(directory, "libcublasLt.so*"))) or sorted(mapped))
    if not paths:
        raise RuntimeError(f"no libcublasLt is mapped into this process or lies in {directory}")
    return bind(ctypes.CDLL(paths[0]))


def _check(status, call):
    if status != 0:
        raise RuntimeError(f"{call} failed with cuBLAS status {status}")


class _Plan:
    """The descriptor, layouts and algorithm of one cached matmul; ``None`` members until made."""

    def __init__(self):
        self.desc = self.layouts = self.result = None
        self.failure = None   # why cuBLASLt cannot run this plan (then the caller falls back)


class _StreamState:
    """One stream's cuBLASLt handle on one device, its workspace and its plans (destroyed with the stream)."""

    def __init__(self, stream, device_id):
        lib = _library()
        self.handle = _vp()
        _check(lib.cublasLtCreate(ctypes.byref(self.handle)), "cublasLtCreate")
        self.workspace, self.workspace_bytes = cublas.workspace(stream, device_id)
        self.plans = {}
        weakref.finalize(stream, _release, lib, self.handle, self.plans)


def _release(lib, handle, plans):
    for plan in plans.values():
        if plan.desc is not None:
            lib.cublasLtMatmulDescDestroy(plan.desc)
        for layout in plan.layouts or ():
            lib.cublasLtMatrixLayoutDestroy(layout)
    lib.cublasLtDestroy(handle)


_STATES = weakref.WeakKeyDictionary()   # stream -> {device id: _StreamState}


def _state(stream, device_id):
    states = _STATES.setdefault(stream, {})
    if device_id not in states:
        states[device_id] = _StreamState(stream, device_id)
    return states[device_id]


def _set(setter, obj, attr, value):
    _check(setter(obj, attr, ctypes.addressof(value), ctypes.sizeof(value)), setter.__name__)


def _make_plan(state, plan, call, dtype, tf32, aligns, bias_ptr):
    """Fill ``plan`` for ``call`` (an ``EpilogueGemm``); ``aligns``: the A, B and D pointers' alignments,
    which the heuristic may not exceed (it reads the bias pointer's from ``bias_ptr``). What it creates
    is kept on ``plan`` as it goes, so ``_release`` destroys it even when a step fails."""
    lib = _library()
    data_type = DATA_TYPE[dtype]
    compute = COMPUTE_32F_FAST_TF32 if tf32 and dtype == np.float32 else COMPUTE_32F
    plan.desc = _vp()
    _check(lib.cublasLtMatmulDescCreate(ctypes.byref(plan.desc), compute, SCALE_32F), "cublasLtMatmulDescCreate")
    set_desc = lib.cublasLtMatmulDescSetAttribute
    for attr, value in ((DESC_TRANSA, ctypes.c_int32(call.transa)), (DESC_TRANSB, ctypes.c_int32(call.transb)),
                        (DESC_EPILOGUE, ctypes.c_uint32(call.epilogue)), (DESC_BIAS_POINTER, _vp(bias_ptr))):
        _set(set_desc, plan.desc, attr, value)
    plan.layouts = []
    for layout in (call.a, call.b, call.d):
        handle = _vp()
        _check(lib.cublasLtMatrixLayoutCreate(ctypes.byref(handle), data_type, layout.rows, layout.cols, layout.ld),
               "cublasLtMatrixLayoutCreate")
        plan.layouts.append(handle)
    a, b, d = plan.layouts
    pref = _vp()
    _check(lib.cublasLtMatmulPreferenceCreate(ctypes.byref(pref)), "cublasLtMatmulPreferenceCreate")
    try:
        set_pref = lib.cublasLtMatmulPreferenceSetAttribute
        _set(set_pref, pref, PREF_MAX_WORKSPACE_BYTES, ctypes.c_uint64(state.workspace_bytes))
        for attr, value in zip((PREF_MIN_ALIGNMENT_A_BYTES, PREF_MIN_ALIGNMENT_B_BYTES, PREF_MIN_ALIGNMENT_C_BYTES,
                                PREF_MIN_ALIGNMENT_D_BYTES), (*aligns, aligns[2])):
            _set(set_pref, pref, attr, ctypes.c_uint32(value))
        result, count = HeuristicResult(), ctypes.c_int(0)
        status = lib.cublasLtMatmulAlgoGetHeuristic(state.handle, plan.desc, a, b, d, d, pref, 1,
                                                    ctypes.byref(result), ctypes.byref(count))
    finally:
        lib.cublasLtMatmulPreferenceDestroy(pref)
    if status != 0 or count.value < 1 or result.state != 0:
        plan.failure = (f"cublasLtMatmulAlgoGetHeuristic gave status {status}, {count.value} algorithms "
                        f"(state {result.state})")
    elif result.workspaceSize > state.workspace_bytes:
        plan.failure = f"its algorithm needs {result.workspaceSize} bytes of workspace"
    else:
        plan.result = result


def gemm_bias_act(x, w, b, relu, tf32=False):
    """z (m, n) = ``act(x (m, k) · w (k, n) + b (1, n))`` (ReLU when ``relu``) in one cublasLtMatmul, for
    float16/float32 CuPy arrays of one dtype (float16: float32 accumulation and epilogue, one rounding to
    float16; float32: float32, or TF32 with ``tf32``); misaligned extents padded as ``cublas.matmul`` pads
    them. None where cuBLASLt does not serve the call (the reason is logged once per plan)."""
    (m, k), n = x.shape, w.shape[1]
    if min(m, k, n) == 0:
        return None
    padded = cublas.aligned_operands(x, w)
    if padded is not None:
        xp_, wp = padded
        bp = zero_padded(cupy, b.reshape(1, n), 1, wp.shape[1])
        z = gemm_bias_act(xp_, wp, bp, relu, tf32)
        return None if z is None else cublas.cut(z, m, n)
    x, w = (a if a.flags.c_contiguous or a.flags.f_contiguous else cupy.ascontiguousarray(a) for a in (x, w))
    b = zero_padded(cupy, cupy.ascontiguousarray(b).reshape(1, n), 1, n)   # misaligned (a weight's): a copy
    z = cupy.empty((m, n), dtype=x.dtype)
    call = epilogue_gemm(x, w, relu)
    aligns = tuple(alignment(p) for p in (w.data.ptr, x.data.ptr, z.data.ptr))
    bias_align = alignment(b.data.ptr)
    key = (call, x.dtype, bool(tf32) and x.dtype == np.float32, aligns, bias_align)
    stream, device_id = cupy.cuda.get_current_stream(), cupy.cuda.runtime.getDevice()
    state = _state(stream, device_id)
    plan = state.plans.get(key)
    if plan is None:
        if min(*aligns, bias_align) < _MIN_ALIGNMENT:
            plan = _Plan()
            plan.failure = f"a pointer is only {min(*aligns, bias_align)}-byte aligned"
        else:
            plan = state.plans[key] = _Plan()
            try:
                _make_plan(state, plan, call, x.dtype, tf32, aligns, b.data.ptr)
            except RuntimeError as error:   # a descriptor cuBLASLt refuses: fall back as for no algorithm
                plan.failure = str(error)
        state.plans[key] = plan
        if plan.failure is not None:
            _log.warning("cuBLASLt bias epilogue: %s for %s @ %s (%s); the FC runs the GEMM and the epilogue "
                         "kernel instead", plan.failure, x.shape, w.shape, x.dtype)
    if plan.failure is not None:
        return None
    lib = _library()
    _set(lib.cublasLtMatmulDescSetAttribute, plan.desc, DESC_BIAS_POINTER, _vp(b.data.ptr))
    a_layout, b_layout, d_layout = plan.layouts
    _check(lib.cublasLtMatmul(state.handle, plan.desc, ctypes.addressof(_ONE), w.data.ptr, a_layout, x.data.ptr,
                              b_layout, ctypes.addressof(_ZERO), z.data.ptr, d_layout, z.data.ptr, d_layout,
                              ctypes.byref(plan.result.algo), state.workspace, state.workspace_bytes, stream.ptr),
           f"cublasLtMatmul ({m}x{k} @ {k}x{n}, {x.dtype}, bias epilogue)")
    return z


def plans(stream=None, device_id=None):
    """{plan key: why cuBLASLt does not serve it, or None} of ``stream`` (default: the current one) on
    ``device_id`` (default: the current device): what the tests read to see that a second call reuses the
    first call's plan and which calls fell back."""
    stream = stream or cupy.cuda.get_current_stream()
    device_id = cupy.cuda.runtime.getDevice() if device_id is None else device_id
    state = _STATES.get(stream, {}).get(device_id)
    return {} if state is None else {key: plan.failure for key, plan in state.plans.items()}
