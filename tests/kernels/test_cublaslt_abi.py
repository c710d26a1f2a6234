"""CPU lane: the ctypes side of the cuBLASLt binding (hugectr_lab/backend/cuda/cublaslt_abi.py).

The prototype table, the enum values and the heuristic result's layout are checked against the
declarations of cublasLt.h (cuBLAS 12.x / 13.0; the parts the binding uses, copied below). The column-major
plan of ``act(x·W + b)`` is run through a NumPy model of cublasLtMatmul with the BIAS / RELU_BIAS epilogue
(layouts read from the operands' memory as cuBLASLt reads them, the bias added to each column of D), which
must give the NumPy reference ``gemm_bias_act`` before a GPU sees the plan.
"""

import ctypes
import re
from types import SimpleNamespace

import numpy as np
import pytest

from hugectr_lab.backend.cuda import cublaslt_abi as abi
from hugectr_lab.backend.cuda.cublas_abi import OP_N, OP_T
from hugectr_lab.layers.inner_product import gemm_bias_act

HEADER = """
cublasStatus_t cublasLtCreate(cublasLtHandle_t* lightHandle);
cublasStatus_t cublasLtDestroy(cublasLtHandle_t lightHandle);
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* matmulDesc, cublasComputeType_t computeType,
    cudaDataType_t scaleType);
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t matmulDesc);
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t matmulDesc, cublasLtMatmulDescAttributes_t attr,
    const void* buf, size_t sizeInBytes);
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* matLayout, cudaDataType type, uint64_t rows,
    uint64_t cols, int64_t ld);
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t matLayout);
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref);
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref);
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
    cublasLtMatmulPreferenceAttributes_t attr, const void* buf, size_t sizeInBytes);
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t operationDesc,
    cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc, cublasLtMatrixLayout_t Cdesc,
    cublasLtMatrixLayout_t Ddesc, cublasLtMatmulPreference_t preference, int requestedAlgoCount,
    cublasLtMatmulHeuristicResult_t heuristicResultsArray[], int* returnAlgoCount);
cublasStatus_t cublasLtMatmul(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t computeDesc, const void* alpha,
    const void* A, cublasLtMatrixLayout_t Adesc, const void* B, cublasLtMatrixLayout_t Bdesc, const void* beta,
    const void* C, cublasLtMatrixLayout_t Cdesc, void* D, cublasLtMatrixLayout_t Ddesc,
    const cublasLtMatmulAlgo_t* algo, void* workspace, size_t workspaceSizeInBytes, cudaStream_t stream);
"""
ENUMS = {"int", "cublasComputeType_t", "cudaDataType_t", "cudaDataType", "cublasLtMatmulDescAttributes_t",
         "cublasLtMatmulPreferenceAttributes_t"}
HANDLES = {"cublasLtHandle_t", "cublasLtMatmulDesc_t", "cublasLtMatrixLayout_t", "cublasLtMatmulPreference_t",
           "cudaStream_t"}   # opaque pointer typedefs
SCALARS = {"size_t": ctypes.c_size_t, "uint64_t": ctypes.c_uint64, "int64_t": ctypes.c_int64}

# The enumerators the binding uses, as cublasLt.h defines them.
ENUM_HEADER = """
CUBLASLT_EPILOGUE_DEFAULT = 1,
CUBLASLT_EPILOGUE_RELU = 2,
CUBLASLT_EPILOGUE_BIAS = 4,
CUBLASLT_EPILOGUE_RELU_BIAS = (CUBLASLT_EPILOGUE_RELU | CUBLASLT_EPILOGUE_BIAS),
CUBLASLT_MATMUL_DESC_TRANSA = 3,
CUBLASLT_MATMUL_DESC_TRANSB = 4,
CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
CUDA_R_32F = 0,
"""
OURS = {"CUBLASLT_EPILOGUE_DEFAULT": abi.EPILOGUE_DEFAULT, "CUBLASLT_EPILOGUE_RELU": abi.EPILOGUE_RELU,
        "CUBLASLT_EPILOGUE_BIAS": abi.EPILOGUE_BIAS, "CUBLASLT_EPILOGUE_RELU_BIAS": abi.EPILOGUE_RELU_BIAS,
        "CUBLASLT_MATMUL_DESC_TRANSA": abi.DESC_TRANSA, "CUBLASLT_MATMUL_DESC_TRANSB": abi.DESC_TRANSB,
        "CUBLASLT_MATMUL_DESC_EPILOGUE": abi.DESC_EPILOGUE, "CUBLASLT_MATMUL_DESC_BIAS_POINTER": abi.DESC_BIAS_POINTER,
        "CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES": abi.PREF_MAX_WORKSPACE_BYTES,
        "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES": abi.PREF_MIN_ALIGNMENT_A_BYTES,
        "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES": abi.PREF_MIN_ALIGNMENT_B_BYTES,
        "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES": abi.PREF_MIN_ALIGNMENT_C_BYTES,
        "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES": abi.PREF_MIN_ALIGNMENT_D_BYTES,
        "CUDA_R_32F": abi.SCALE_32F}


def c_to_ctypes(decl):
    """(name, ctypes type) of one C parameter declaration."""
    words = decl.replace("*", " * ").replace("[]", " [] ").split()
    if words[-1] == "[]":   # an array parameter is a pointer to its element type
        words = words[:-2] + ["*", words[-2]]
    name, ctype = words[-1], " ".join(w for w in words[:-1] if w != "const")
    if ctype.endswith(" *") and ctype[:-2] in HANDLES:
        return name, ctypes.POINTER(ctypes.c_void_p)
    special = {"cublasLtMatmulHeuristicResult_t *": ctypes.POINTER(abi.HeuristicResult),
               "cublasLtMatmulAlgo_t *": ctypes.POINTER(abi.MatmulAlgo), "int *": ctypes.POINTER(ctypes.c_int)}
    if ctype in special:
        return name, special[ctype]
    if ctype.endswith("*") or ctype in HANDLES:
        return name, ctypes.c_void_p
    return name, SCALARS.get(ctype, ctypes.c_int if ctype in ENUMS else None)


def header_prototypes():
    return {name: tuple(c_to_ctypes(p.strip()) for p in params.split(","))
            for name, params in re.findall(r"cublasStatus_t (\w+)\(([^)]*)\);", HEADER)}


def test_prototype_table_matches_the_header():
    found = header_prototypes()
    assert set(found) == set(abi.PROTOTYPES)
    for name, params in abi.PROTOTYPES.items():
        assert [n for n, _ in params] == [n for n, _ in found[name]], name
        for (param, ours), (_, theirs) in zip(params, found[name]):
            assert ours == theirs or (hasattr(ours, "_type_") and ours._type_ is getattr(theirs, "_type_", None)), \
                f"{name}.{param}: {ours} against the header's {theirs}"


def test_enum_values_match_the_header():
    values = {}
    for name, expression in re.findall(r"(\w+) = ([^,]+),", ENUM_HEADER):
        values[name] = eval(expression, {}, dict(values))   # "(A | B)" of enumerators defined above
    assert values == OURS
    assert values["CUBLASLT_EPILOGUE_RELU_BIAS"] == 6


def test_heuristic_result_layout():
    # typedef struct { uint64_t data[8]; } cublasLtMatmulAlgo_t;
    # typedef struct { cublasLtMatmulAlgo_t algo; size_t workspaceSize; cublasStatus_t state; float wavesCount;
    #                  int reserved[4]; } cublasLtMatmulHeuristicResult_t;
    assert ctypes.sizeof(abi.MatmulAlgo) == 64
    assert ctypes.sizeof(abi.HeuristicResult) == 96
    offsets = {name: getattr(abi.HeuristicResult, name).offset for name, _ in abi.HeuristicResult._fields_}
    assert offsets == {"algo": 0, "workspaceSize": 64, "state": 72, "wavesCount": 76, "reserved": 80}


def test_bind_declares_argument_and_return_types():
    lib = SimpleNamespace(**{name: SimpleNamespace() for name in abi.PROTOTYPES})
    abi.bind(lib)
    for name, params in abi.PROTOTYPES.items():
        assert getattr(lib, name).argtypes == [t for _, t in params]
        assert getattr(lib, name).restype is ctypes.c_int


def lt_model(call, w, x, bias):
    """cublasLtMatmul with alpha = 1, beta = 0 and the BIAS / RELU_BIAS epilogue, as cuBLASLt defines it:
    A and B read column-major from the operands' memory (rows, cols, ld of their layouts), D = op(A) op(B)
    (rows of D = the bias's length) plus the bias on every column, ReLU for RELU_BIAS; D's memory returned
    as the row-major (m, n) array it is."""
    def stored(array, layout):
        flat = np.ravel(array, order="K")   # the buffer in memory order (C- or F-contiguous operands)
        assert layout.ld >= layout.rows and flat.size >= layout.ld * (layout.cols - 1) + layout.rows
        index = np.arange(layout.rows)[:, None] + layout.ld * np.arange(layout.cols)[None, :]
        return flat[index].astype(np.float64)

    a, b = stored(w, call.a), stored(x, call.b)
    op_a = a if call.transa == OP_N else a.T
    op_b = b if call.transb == OP_N else b.T
    assert op_a.shape[1] == op_b.shape[0]
    d = op_a @ op_b
    assert d.shape == (call.d.rows, call.d.cols) and bias.size == call.d.rows
    d = d + bias.reshape(-1, 1).astype(np.float64)
    if call.epilogue == abi.EPILOGUE_RELU_BIAS:
        d = np.maximum(d, 0)
    else:
        assert call.epilogue == abi.EPILOGUE_BIAS
    flat = np.empty(call.d.ld * call.d.cols)
    flat[(np.arange(call.d.rows)[:, None] + call.d.ld * np.arange(call.d.cols)[None, :]).ravel(order="F")] = \
        d.ravel(order="F")
    return flat.reshape(call.d.cols, call.d.ld)[:, :call.d.rows]   # column j of D is row j of z


@pytest.mark.parametrize("m,k,n", [(67, 13, 130), (1001, 429, 64), (5, 1, 3)])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("x_view,w_view", [(False, False), (True, False), (False, True), (True, True)])
def test_epilogue_plan_through_the_model_gives_the_reference(m, k, n, relu, x_view, w_view):
    rng = np.random.default_rng(m + k + n)
    x_host, w_host = rng.normal(size=(m, k)), rng.normal(size=(k, n))
    b = rng.normal(size=(1, n))
    x = x_host.T.copy().T if x_view else x_host   # a transposed view: F-contiguous, op T
    w = w_host.T.copy().T if w_view else w_host
    call = abi.epilogue_gemm(x, w, relu)
    if min(m, k, n) > 1:   # an (r, 1) or (1, c) array is both C- and F-contiguous: op N
        assert (call.transa, call.transb) == (OP_T if w_view else OP_N, OP_T if x_view else OP_N)
    np.testing.assert_allclose(lt_model(call, w, x, b), gemm_bias_act(np, x_host, w_host, b, relu, False),
                               rtol=1e-12, atol=1e-12)


def test_epilogue_plan_refuses_what_cublaslt_cannot_take():
    with pytest.raises(ValueError, match="share k"):
        abi.epilogue_gemm(np.empty((4, 3)), np.empty((5, 2)), True)
    with pytest.raises(ValueError, match="share k"):
        abi.epilogue_gemm(np.empty((0, 3)), np.empty((3, 2)), True)
    with pytest.raises(ValueError, match="contiguous"):
        abi.epilogue_gemm(np.empty((4, 6))[:, ::2], np.empty((3, 2)), True)


def test_alignment_is_the_lowest_set_bit_up_to_256():
    assert abi.alignment(0x7f0000001000) == 256
    assert abi.alignment(0x7f0000001010) == 16
    assert abi.alignment(0x7f0000001006) == 2
    assert abi.alignment(0) == 256
