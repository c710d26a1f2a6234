"""GPU lane: MultiCross's backward adds in a fixed order (kernels/multicross.cu: a row pass, per-chunk
column sums, the chunks in order), so reruns, CUDA-graph replays and eager calls give the same bits,
and stay within rounding of the NumPy reference, at DCN's width (D = 429, L = 6) on an odd batch
large enough to spread over many chunks of rows."""

import numpy as np
import pytest

from hugectr_lab.backend import get_backend
from hugectr_lab.layers.multi_cross import multicross_bwd, multicross_fwd

pytestmark = pytest.mark.gpu


def inputs(m, dim, layers, dtype):
    rng = np.random.default_rng(m + dim)
    x0, w, b = (rng.normal(size=s).astype(np.float16).astype(dtype) for s in ((m, dim), (layers, dim), (layers, dim)))
    w *= np.asarray(0.5 / np.sqrt(dim), dtype)   # keeps x_l bounded over the layers (fp16 range)
    _, hs = multicross_fwd(np, x0, w, b)
    return rng.normal(size=(m, dim)).astype(dtype), x0, hs, w, b


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_backward_bits_repeat_across_reruns_and_graph_replays(dtype):
    from hugectr_lab.backend.cuda.graphs import CapturedCall

    backend = get_backend("cupy")
    assert backend.ops.implementation("multicross_bwd") == "kernel"
    host = inputs(4099, 429, 6, dtype)
    args = [backend.asarray(a) for a in host]

    def backward():
        return backend.ops.multicross_bwd(*args)

    eager = [backend.to_host(a) for a in backward()]
    for got, want in zip(eager, multicross_bwd(np, *host)):
        assert got.dtype == want.dtype and got.shape == want.shape
        tol, w64 = (1e-5 if dtype == "float32" else 2e-3), want.astype(np.float64)
        np.testing.assert_allclose(got.astype(np.float64), w64, rtol=tol, atol=tol * max(1.0, np.abs(w64).max()))
    reruns = [[backend.to_host(a) for a in backward()] for _ in range(3)]
    captured = CapturedCall(backward, "multicross_bwd")
    replays = [[backend.to_host(a) for a in captured()] for _ in range(3)]   # eager, captured, replayed
    assert captured.graph is not None and captured.failure is None, captured.failure
    for result in reruns + replays:
        for got, want in zip(result, eager):   # d_x0, d_w, d_b
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("layers", [6, 11])   # 11: more planes than a block sums in one walk (two z groups)
def test_strided_operands_are_read_in_place(dtype, layers):
    """As the DCN step hands them over -- d_y the first 429 columns of the (m, 1453) Concat gradient, w and
    b the interleaved rows w0, b0, w1, ... of the network's flat weight buffer -- the operands give the bits
    of their contiguous copies (the kernels take row strides instead of copies)."""
    backend = get_backend("cupy")
    d_y, x0, hs, w, b = inputs(1031, 429, layers, dtype)
    wide = np.random.default_rng(3).normal(size=(1031, 1453)).astype(dtype)
    wide[:, :429] = d_y
    flat = np.empty((2 * layers, 429), dtype)
    flat[0::2], flat[1::2] = w, b
    d_y_view, flat_dev = backend.asarray(wide)[:, :429], backend.asarray(flat)
    w_view, b_view = flat_dev[0::2], flat_dev[1::2]
    assert not (d_y_view.flags.c_contiguous or w_view.flags.c_contiguous or b_view.flags.c_contiguous)
    x0_dev, hs_dev = backend.asarray(x0), backend.asarray(hs)
    dense = [backend.asarray(a) for a in (w, b)]
    for strided, contiguous in (
            (backend.ops.multicross_fwd(x0_dev, w_view, b_view), backend.ops.multicross_fwd(x0_dev, *dense)),
            (backend.ops.multicross_bwd(d_y_view, x0_dev, hs_dev, w_view, b_view),
             backend.ops.multicross_bwd(backend.asarray(d_y), x0_dev, hs_dev, *dense))):
        for got, want in zip(strided, contiguous):
            np.testing.assert_array_equal(backend.to_host(got), backend.to_host(want))
    got_bwd = backend.ops.multicross_bwd(d_y_view, x0_dev, hs_dev, w_view, b_view)
    for got, want in zip(got_bwd, multicross_bwd(np, d_y, x0, hs, w, b)):
        tol, w64 = (1e-5 if dtype == "float32" else 2e-3), want.astype(np.float64)
        np.testing.assert_allclose(backend.to_host(got).astype(np.float64), w64, rtol=tol,
                                   atol=tol * max(1.0, np.abs(w64).max()))
