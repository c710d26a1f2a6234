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
