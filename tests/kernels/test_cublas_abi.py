"""CPU lane: the ctypes side of the cuBLAS binding (hugectr_lab/backend/cuda/cublas_abi.py).

The prototype table is checked against the C declarations of cublas_api.h (copied below); the
arguments of a strided-batched call are checked against that table (C types and ranges) and then run
through a NumPy model of cublasGemmStridedBatchedEx -- column-major, pointers resolved by address to
host arrays -- so the Interaction wrappers' operands (interaction_gemms.py) must give the NumPy
reference's products before a GPU sees them.
"""

import ctypes
import re
from types import SimpleNamespace

import numpy as np
import pytest

from hugectr_lab.backend.cuda.cublas_abi import (OP_N, OP_T, PROTOTYPES, Batched, bind,
                                                 strided_batched_gemm)
from hugectr_lab.backend.cuda.interaction_gemms import backward_product, forward_products, scratch_ld
from hugectr_lab.layers.interaction import interaction_bwd, interaction_fwd

# cublas_api.h (cuBLAS 12.x / 13.0), the functions the binding calls.
HEADER = """
cublasStatus_t cublasCreate_v2(cublasHandle_t* handle);
cublasStatus_t cublasDestroy_v2(cublasHandle_t handle);
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId);
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace, size_t workspaceSizeInBytes);
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
    int m, int n, int k, const void* alpha, const void* A, cudaDataType Atype, int lda, const void* B,
    cudaDataType Btype, int ldb, const void* beta, void* C, cudaDataType Ctype, int ldc,
    cublasComputeType_t computeType, cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa,
    cublasOperation_t transb, int m, int n, int k, const void* alpha, const void* A, cudaDataType Atype,
    int lda, long long int strideA, const void* B, cudaDataType Btype, int ldb, long long int strideB,
    const void* beta, void* C, cudaDataType Ctype, int ldc, long long int strideC, int batchCount,
    cublasComputeType_t computeType, cublasGemmAlgo_t algo);
"""
ENUMS = {"int", "cublasOperation_t", "cudaDataType", "cublasComputeType_t", "cublasGemmAlgo_t"}
POINTERS = {"cublasHandle_t", "cudaStream_t"}   # opaque pointer typedefs


def c_to_ctypes(decl):
    """(name, ctypes type) of one C parameter declaration."""
    words = decl.replace("*", " * ").split()
    name, ctype = words[-1], " ".join(w for w in words[:-1] if w != "const")
    if ctype == "cublasHandle_t *":
        return name, ctypes.POINTER(ctypes.c_void_p)
    if ctype.endswith("*") or ctype in POINTERS:
        return name, ctypes.c_void_p
    return name, {"long long int": ctypes.c_longlong, "size_t": ctypes.c_size_t}.get(
        ctype, ctypes.c_int if ctype in ENUMS else None)


def header_prototypes():
    found = {}
    for name, params in re.findall(r"cublasStatus_t (\w+)\(([^)]*)\);", HEADER):
        found[name] = tuple(c_to_ctypes(p.strip()) for p in params.split(","))
    return found


def test_prototype_table_matches_the_header():
    assert PROTOTYPES == header_prototypes()


def test_bind_declares_argument_and_return_types():
    lib = SimpleNamespace(**{name: SimpleNamespace() for name in PROTOTYPES})
    bind(lib)
    for name, params in PROTOTYPES.items():
        assert getattr(lib, name).argtypes == [t for _, t in params]
        assert getattr(lib, name).restype is ctypes.c_int


def host_address(operand):
    array, offset = operand
    return array.ctypes.data + offset * array.itemsize


def marshal(call, dtype=0, compute=68):
    """The call's arguments, each checked to convert to its C type without wrapping around."""
    args = call.arguments(1234, host_address, dtype, compute, 111, 222)
    params = PROTOTYPES["cublasGemmStridedBatchedEx"]
    assert len(args) == len(params)
    for (name, ctype), value in zip(params, args):
        ctype.from_param(value)   # TypeError for a value ctypes would not pass (a float, a NumPy scalar)
        if ctype is ctypes.c_int:
            assert -(1 << 31) <= value < (1 << 31), name
    return dict(zip((name for name, _ in params), args))


def cublas_model(args, arrays):
    """cublasGemmStridedBatchedEx with alpha = 1, beta = 0, as cuBLAS defines it (column-major), on host
    arrays: each pointer argument is resolved to the array holding that address."""
    def locate(address):
        for a in arrays:
            start = a.ctypes.data
            if start <= address < start + a.nbytes:
                assert (address - start) % a.itemsize == 0
                return a.reshape(-1), (address - start) // a.itemsize
        raise AssertionError(f"pointer {address:#x} is in no operand array")

    def matrix(ptr, ld, stride, i, rows, cols):   # column-major (rows, cols), leading dimension ld
        assert ld >= max(1, rows), "cuBLAS rejects ld < rows (CUBLAS_STATUS_INVALID_VALUE)"
        flat, offset = locate(ptr)
        index = offset + i * stride + np.arange(rows)[:, None] + ld * np.arange(cols)[None, :]
        assert index.max() < flat.size
        return flat, index

    m, n, k = args["m"], args["n"], args["k"]
    for i in range(args["batchCount"]):
        operands = []
        for x, op, rows in (("A", args["transa"], m), ("B", args["transb"], n)):
            shape = (rows, k) if x == "A" else (k, rows)
            stored = shape if op == OP_N else shape[::-1]
            flat, index = matrix(args[x], args[f"ld{x.lower()}"], args[f"stride{x}"], i, *stored)
            value = flat[index].astype(np.float64)
            operands.append(value if op == OP_N else value.T)
        flat, index = matrix(args["C"], args["ldc"], args["strideC"], i, m, n)
        flat[index] = operands[0] @ operands[1]


SIZES = [(1, 27, 128), (7, 27, 13), (129, 5, 16), (3, 1, 7)]   # (m, F, w): odd batches, F = 27 and odd w


@pytest.mark.parametrize("m,fields,w", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_interaction_forward_products_through_the_model(m, fields, w, dtype):
    rng = np.random.default_rng(m * fields + w)
    mlp, emb = rng.normal(size=(m, w)).astype(dtype), rng.normal(size=(m, fields, w)).astype(dtype)
    dots = np.full((m, fields, scratch_ld(fields)), np.nan, dtype=dtype)
    for a, b, c in forward_products(mlp, emb, dots):
        call = strided_batched_gemm(a, b, c, m)
        cublas_model(marshal(call), (mlp, emb, dots))
    want = interaction_fwd(np, mlp, emb).astype(np.float64)
    n, tol = fields + 1, 1e-5 if dtype == np.float32 else 2e-3
    for i in range(1, n):   # the pack kernel's mapping: pair (i, j) at dots[i-1, j-1], pair (i, 0) at dots[i-1, F]
        for j in range(i):
            got = dots[:, i - 1, j - 1 if j else fields].astype(np.float64)
            np.testing.assert_allclose(got, want[:, w + i * (i - 1) // 2 + j], rtol=tol, atol=tol * np.sqrt(w))
    assert not np.isnan(dots[:, :, :n]).any()


@pytest.mark.parametrize("m,fields,w", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_interaction_backward_product_through_the_model(m, fields, w, dtype):
    rng = np.random.default_rng(m * fields + w + 1)
    n = fields + 1
    mlp, emb = rng.normal(size=(m, w)).astype(dtype), rng.normal(size=(m, fields, w)).astype(dtype)
    d_y = rng.normal(size=(m, w + n * (n - 1) // 2 + 1)).astype(dtype)
    # z and sym as the stack and unpack kernels lay them out (kernels/interaction.cu)
    z = np.concatenate([emb, mlp[:, None, :]], axis=1)
    g = np.zeros((m, n, n), dtype)
    rows, cols = np.tril_indices(n, -1)
    g[:, rows, cols] = d_y[:, w:w + len(rows)]
    s = g + g.transpose(0, 2, 1)
    sym = np.full((m, fields, scratch_ld(fields)), np.nan, dtype=dtype)
    sym[:, :, :fields] = s[:, 1:, 1:]
    sym[:, :, fields] = s[:, 1:, 0]
    d_emb = np.full((m, fields, w), np.nan, dtype=dtype)
    call = strided_batched_gemm(*backward_product(sym, z, d_emb), m)
    cublas_model(marshal(call, dtype=2), (sym, z, d_emb))
    _, want = interaction_bwd(np, d_y, mlp, emb)
    tol = 1e-5 if dtype == np.float32 else 2e-3
    np.testing.assert_allclose(d_emb.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol * np.sqrt(n))


def test_transposes_map_to_the_operations_cublas_expects():
    a = np.zeros((4, 3), np.float32)
    b = np.zeros((5, 3), np.float32)
    c = np.zeros((4, 5), np.float32)
    call = strided_batched_gemm(Batched(a, 0, 4, 3, 3, 0), Batched(b, 0, 5, 3, 3, 0, trans=True),
                                Batched(c, 0, 4, 5, 5, 0), 1)
    # row-major C = A Bᵀ is column-major Cᵀ = B Aᵀ: B first with op T, A second with op N; m, n swapped
    assert (call.transa, call.transb, call.m, call.n, call.k) == (OP_T, OP_N, 5, 4, 3)
    assert call.a[0] is b and call.b[0] is a and (call.lda, call.ldb, call.ldc) == (3, 3, 5)


@pytest.mark.parametrize("change,error,message", [
    (dict(b_rows=4), ValueError, "do not fit"),
    (dict(c_trans=True), ValueError, "do not fit"),
    (dict(batch=3), ValueError, "operand A addresses 36 elements of an array of 24"),
    (dict(batch=0), ValueError, "batch 0"),
    (dict(a_ld=2), ValueError, "operand A needs"),
    (dict(c_dtype=np.float16), TypeError, "share float16 or float32"),
    (dict(a_dtype=np.float64, b_dtype=np.float64, c_dtype=np.float64), TypeError, "share float16 or float32"),
    (dict(a_view=True), ValueError, "C-contiguous"),
])
def test_bad_operands_are_refused_before_cublas(change, error, message):
    p = dict(b_rows=3, c_trans=False, batch=2, a_ld=3, a_dtype=np.float32, b_dtype=np.float32, c_dtype=np.float32,
             a_view=False) | change
    a = np.zeros((2, 4, 3), p["a_dtype"])
    a = a[:, :, ::-1] if p["a_view"] else a
    b = np.zeros((2, p["b_rows"], 5), p["b_dtype"])
    c = np.zeros((2, 4, 5), p["c_dtype"])
    with pytest.raises(error, match=message):
        strided_batched_gemm(Batched(a, 0, 4, 3, p["a_ld"], 12), Batched(b, 0, p["b_rows"], 5, 5, p["b_rows"] * 5),
                             Batched(c, 0, 4, 5, 5, 20, trans=p["c_trans"]), p["batch"])
