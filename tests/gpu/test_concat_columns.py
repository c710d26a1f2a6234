"""GPU lane: the Concat copy kernel on row-strided views (what Concat's backward and Slice hand on), and the
wrappers that read such views in place or make them contiguous through it (FC epilogue, MultiCross) give the
contiguous input's bits."""

import numpy as np
import pytest

from hugectr_lab.backend import REFERENCES, get_backend

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cp():
    return get_backend("cupy")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_views_side_by_side(cp, dtype):
    rng = np.random.default_rng(3)
    host = rng.normal(size=(301, 1453)).astype(dtype)
    base = cp.asarray(host)
    views = (base[:, 0:429], base[:, 429:1453], base[:, 7:8], base[5:6, 3:40][:, ::1])
    got = cp.ops.concat_columns(*views[:3])
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(cp.to_host(got), np.concatenate([host[:, 0:429], host[:, 429:1453], host[:, 7:8]], 1))
    one = cp.ops.concat_columns(views[3])
    np.testing.assert_array_equal(cp.to_host(one), host[5:6, 3:40])
    # a column-strided or reversed view takes CuPy's copy first: same values
    odd = cp.ops.concat_columns(base[::-1, 0:9], base[:, 0:18:2])
    np.testing.assert_array_equal(cp.to_host(odd), REFERENCES["concat_columns"](np, host[::-1, 0:9], host[:, 0:18:2]))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_strided_gradients_give_the_contiguous_bits(cp, dtype):
    rng = np.random.default_rng(5)
    wide = cp.asarray(rng.normal(size=(1001, 132 + 45)).astype(dtype))
    y = cp.asarray(rng.normal(size=(1001, 132)).astype(dtype))
    d_view = wide[:, 45:]                      # (1001, 132), row stride 177: Concat's backward hands these on
    d_copy = cp.xp.ascontiguousarray(d_view)
    for a, b in zip(cp.ops.bias_act_bwd(d_view, y, True), cp.ops.bias_act_bwd(d_copy, y, True)):
        np.testing.assert_array_equal(cp.to_host(a), cp.to_host(b))
    # DCN's fc2: the last 1024 columns of the (m, 1453) Concat gradient, read in place by the dropout backward
    dcn = cp.asarray(rng.normal(size=(1001, 1453)).astype(dtype))
    z, seed = cp.asarray(rng.normal(size=(1001, 1024)).astype(dtype)), cp.asarray(np.array([77], np.uint64))
    view = dcn[:, 429:]
    assert not view.flags.c_contiguous
    for a, b in zip(cp.ops.bias_act_dropout_bwd(view, z, True, seed, 0.5),
                    cp.ops.bias_act_dropout_bwd(cp.xp.ascontiguousarray(view), z, True, seed, 0.5)):
        np.testing.assert_array_equal(cp.to_host(a), cp.to_host(b))
    w = cp.asarray((0.05 * rng.normal(size=(3, 45))).astype(dtype))
    bias = cp.asarray(rng.normal(size=(3, 45)).astype(dtype))
    x0 = wide[:, :45]
    for a, b in zip(cp.ops.multicross_fwd(x0, w, bias), cp.ops.multicross_fwd(cp.xp.ascontiguousarray(x0), w, bias)):
        np.testing.assert_array_equal(cp.to_host(a), cp.to_host(b))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_row_copies_pad_and_flatten_as_numpy_does(cp, dtype):
    """backend/cuda/rows.py: the padded GEMM operands and the embedding gradient's (B*S, E) rows."""
    from hugectr_lab.backend.cuda.rows import contiguous, zero_padded

    xp = cp.xp
    rng = np.random.default_rng(11)
    host = rng.normal(size=(301, 1453)).astype(dtype)
    base = cp.asarray(host)

    def padded(a, rows, cols):
        out = np.zeros((rows, cols), dtype)
        out[:a.shape[0], :a.shape[1]] = a
        return out

    view = base[:, 13:442]                                          # (301, 429), row stride 1453
    got = zero_padded(xp, view, 304, 432)
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(cp.to_host(got), padded(host[:, 13:442], 304, 432))
    # a transposed operand keeps its op: the padded copy of its transpose, seen transposed
    got = zero_padded(xp, view.T, 432, 304)
    assert got.flags.f_contiguous and not got.flags.c_contiguous
    np.testing.assert_array_equal(cp.to_host(got), padded(host[:, 13:442].T, 432, 304))
    # the right shape already, at an address off 16 bytes (a weight in the flat buffer): an aligned copy
    flat = cp.asarray(host[:3].reshape(-1))
    odd = flat[3:3 + 37 * 5].reshape(37, 5)
    got = zero_padded(xp, odd, 37, 5)
    assert got.data.ptr % 16 == 0
    np.testing.assert_array_equal(cp.to_host(got), host[:3].reshape(-1)[3:3 + 37 * 5].reshape(37, 5))
    # a column-strided view goes through CuPy: same values
    np.testing.assert_array_equal(cp.to_host(zero_padded(xp, base[:, 0:18:2], 301, 16)), padded(host[:, 0:18:2], 301, 16))
    # (B, S, E) columns of a wider gradient, made contiguous for its (B*S, E) rows
    emb = base[:, 13:13 + 26 * 16].reshape(301, 26, 16)
    got = contiguous(xp, emb)
    assert got.flags.c_contiguous and got.shape == (301, 26, 16)
    np.testing.assert_array_equal(cp.to_host(got).reshape(-1, 16), host[:, 13:13 + 26 * 16].reshape(-1, 16))
    np.testing.assert_array_equal(cp.to_host(cp.contiguous(emb)), host[:, 13:13 + 26 * 16].reshape(301, 26, 16))
