"""``cublas.matmul`` pads a contiguous extent that is not a multiple of 16 bytes (DCN's 429 features)
so cuBLAS can use its 16-byte tensor-core kernels: which extents it pads (CPU: only array flags), and on
the GPU that the padded product equals the unpadded one and NumPy's."""

import numpy as np
import pytest

from hugectr_lab.backend.cuda.cublas_abi import aligned_shape


def test_only_extents_that_some_operand_stores_contiguously_are_padded():
    x = np.empty((16384, 429), np.float16)      # DCN's concatenated input, C-ordered
    w = np.empty((429, 1024), np.float16)
    d = np.empty((16384, 1024), np.float16)
    assert aligned_shape(x, w) == (16384, 432, 1024)        # forward: k is x's row
    assert aligned_shape(d, w.T) == (16384, 1024, 432)      # data gradient: n is the product's row
    assert aligned_shape(x.T, d) == (432, 16384, 1024)      # weight gradient: m is x's row, the batch is not
    assert aligned_shape(np.empty((13, 5), np.float32), np.empty((5, 7), np.float32)) == (13, 8, 8)
    assert aligned_shape(np.empty((1, 64), np.float32), np.empty((64, 3), np.float32)) == (1, 64, 4)


SHAPES = [(16384 // 8 + 3, 429, 1024), (517, 390, 400), (200, 1024, 429), (67, 96, 130)]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("misaligned", [False, True], ids=["aligned", "misaligned-b"])
def test_padded_product_equals_the_unpadded_one(dtype, m, k, n, trans_a, trans_b, misaligned):
    import cupy

    from hugectr_lab.backend.cuda.cublas import matmul

    rng = np.random.default_rng(m + k + n)
    a_host = rng.normal(size=(m, k)).astype(dtype)
    b_host = rng.normal(size=(k, n)).astype(dtype)
    a = cupy.asarray(a_host.T.copy()).T if trans_a else cupy.asarray(a_host)
    b = cupy.asarray(b_host.T.copy()).T if trans_b else cupy.asarray(b_host)
    if misaligned:   # b starts 2 or 4 bytes past a 16-byte boundary, as a weight inside the flat buffer
        flat = cupy.empty(b.size + 1, dtype=dtype)
        b = flat[1:].reshape(b.shape[::-1]).T if trans_b else flat[1:].reshape(b.shape)
        b[...] = cupy.asarray(b_host)
        assert b.data.ptr % 16
    padded, plain = matmul(a, b), matmul(a, b, align=False)
    assert padded.shape == (m, n) and padded.flags.c_contiguous and padded.dtype == dtype
    exact = a_host.astype(np.float64) @ b_host.astype(np.float64)
    bound = np.abs(a_host.astype(np.float64)) @ np.abs(b_host.astype(np.float64))
    ulp = np.finfo(dtype).eps
    for got in (padded, plain):   # float32 accumulation of k products, then one rounding to dtype
        err = np.abs(cupy.asnumpy(got).astype(np.float64) - exact)
        assert np.all(err <= ulp * np.abs(exact) + 4 * k * 2.0 ** -23 * bound), float(err.max())
