"""GPU lane: the FC forward ``gemm_bias_act`` as one cuBLASLt matmul with the bias (+ ReLU) epilogue
(hugectr_lab/backend/cuda/cublaslt.py).

Against the NumPy reference (``gemm`` then ``bias_act_fwd``) on odd batches (67, 1001), n = 64, 130, 512
and k = 13, 429 (padded as cuBLAS pads it), 480, ReLU on and off, float16, float32 and TF32; tolerances:

* float16: the epilogue adds the bias to the float32 accumulator and rounds once, the reference rounds the
  product to float16 and again after the bias, so |z - want| <= ulp(y)/2 + ulp(z) (y: the reference's
  rounded product) plus the float32 accumulation-order difference (1e-4 on outputs of order 1);
* float32: the summation order of the algorithm only, rtol 1e-5; TF32: rtol 5e-3 (10-bit mantissas).

Then: a second call runs the cached plan (no heuristic); the call captures into a CUDA graph whose
replays give the eager bits; a misaligned operand is copied to aligned memory, except in a small product,
which falls back to the GEMM + epilogue kernel with one logged reason.

3xTF32 (the float32 inference FC, ``BuildContext.fp32_gemm="tf32x3"``): ``tf32_split`` + the TF32 matmul of
the split operands against the float32 reference at float32's tolerance (rtol 1e-5, where plain TF32 is off
by ~1e-3); the split of a row-strided view; a Network built for it against NumPy's plain float32, replayed
from a CUDA graph across a weight load (W' is rewritten in place).
"""

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from hugectr_lab.backend import REFERENCES, get_backend
from hugectr_lab.layers import BuildContext, Network
from hugectr_lab.layers.inner_product import gemm, gemm_bias_act, tf32_split_weight, tf32_width

pytestmark = pytest.mark.gpu

SHAPES = [(m, k, n) for m in (67, 1001) for k in (13, 429, 480) for n in (64, 130, 512)]
PRECISIONS = [("float16", False), ("float32", False), ("float32", True)]


@pytest.fixture(scope="module")
def cupy_backend():
    backend = get_backend("cupy")
    assert backend.ops.implementation("gemm_bias_act") == "kernel"
    return backend


def inputs(m, k, n, dtype, seed=0):
    rng = np.random.default_rng(seed + m * 7 + k * 3 + n)
    x = rng.normal(size=(m, k)).astype(dtype)
    w = (rng.normal(size=(k, n)) / np.sqrt(k)).astype(dtype)   # outputs of order 1
    b = rng.normal(size=(1, n)).astype(dtype)
    return x, w, b


def check(got, x, w, b, relu, dtype, tf32):
    want = gemm_bias_act(np, x, w, b, relu, tf32)
    assert got.dtype == want.dtype and got.shape == want.shape
    g64, w64 = got.astype(np.float64), want.astype(np.float64)
    if dtype == "float16":
        y = gemm(np, x, w, tf32)
        bound = 0.5 * np.spacing(np.abs(y)).astype(np.float64) + np.spacing(np.abs(want)).astype(np.float64) + 1e-4
        excess = np.abs(g64 - w64) - bound
        assert excess.max() <= 0, f"{(excess > 0).sum()} elements beyond one rounding, worst by {excess.max()}"
    else:
        tol = 5e-3 if tf32 else 1e-5
        np.testing.assert_allclose(g64, w64, rtol=tol, atol=tol * max(1.0, np.abs(w64).max()))


@pytest.mark.parametrize("dtype,tf32", PRECISIONS, ids=["fp16", "fp32", "tf32"])
@pytest.mark.parametrize("relu", [True, False], ids=["relu", "linear"])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_matches_the_reference(cupy_backend, m, k, n, relu, dtype, tf32):
    cp = cupy_backend.xp
    x, w, b = inputs(m, k, n, dtype)
    # NaN in the memory pool (freed at once, so the output likely reuses it): an element never written fails.
    cp.full(4 * (m * n + 1024), np.nan, dtype=np.float32)
    got = cupy_backend.ops.gemm_bias_act(*(cupy_backend.asarray(a) for a in (x, w, b)), relu, tf32)
    check(cupy_backend.to_host(got), x, w, b, relu, dtype, tf32)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_a_second_call_runs_the_cached_plan(cupy_backend, dtype, monkeypatch):
    from hugectr_lab.backend.cuda import cublaslt

    x, w, b = (cupy_backend.asarray(a) for a in inputs(1001, 480, 512, dtype, seed=1))
    first = cupy_backend.ops.gemm_bias_act(x, w, b, True, False)
    plans = cublaslt.plans()   # this stream's plans: earlier tests' too, some of which fall back on purpose
    mine = {key: failure for key, failure in plans.items()
            if key[1] == np.dtype(dtype) and (key[0].d.rows, key[0].d.cols) == (512, 1001)}   # D is (n, m)
    assert mine and all(failure is None for failure in mine.values()), mine   # DLRM-like shape: served

    def no_heuristic(*args, **kwargs):
        raise AssertionError("the second call asked the heuristic again")

    monkeypatch.setattr(cublaslt, "_make_plan", no_heuristic)
    second = cupy_backend.ops.gemm_bias_act(x, w, b, True, False)
    assert cublaslt.plans() == plans
    np.testing.assert_array_equal(cupy_backend.to_host(second), cupy_backend.to_host(first))


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_graph_replay_gives_the_eager_bits(cupy_backend, dtype):
    ops = cupy_backend.ops
    arrays = [cupy_backend.asarray(a) for a in inputs(1001, 429, 130, dtype, seed=2)]   # padded k and n
    x, w, b = arrays

    def step():   # a two-layer MLP: the second layer reads the first one's output
        h = ops.gemm_bias_act(x, w, b, True, False)
        return h, ops.gemm_bias_act(h, w[:130, :64].copy(), b[:, :64].copy(), False, False)

    eager = [cupy_backend.to_host(a) for a in step()]
    captured = cupy_backend.graph(step, "gemm_bias_act")
    runs = [[cupy_backend.to_host(a) for a in captured()] for _ in range(3)]   # eager, captured, replayed
    assert captured.graph is not None and captured.failure is None, captured.failure
    for result in runs:
        for got, want in zip(result, eager):
            np.testing.assert_array_equal(got, want)
    x[:] = -x   # a replay reads the inputs' current values
    flipped = [cupy_backend.to_host(a) for a in captured()]
    assert not np.array_equal(flipped[0], eager[0])
    np.testing.assert_array_equal(flipped[0], cupy_backend.to_host(step()[0]))


def _misaligned(cp, host):
    """A C-contiguous device copy of ``host`` that starts 2 bytes past a 16-byte boundary."""
    buffer = cp.empty(host.size + 1, dtype=host.dtype)
    a = buffer[1:].reshape(host.shape)
    a[:] = cp.asarray(host)
    return a


def test_a_misaligned_operand_is_copied_and_served(cupy_backend, caplog):
    # a weight at an odd offset of the flat weight buffer: copied to aligned memory, then one cuBLASLt call
    cp, ops = cupy_backend.xp, cupy_backend.ops
    x_host, w_host, b_host = inputs(67, 480, 64, "float16", seed=3)
    x, w, b = _misaligned(cp, x_host), _misaligned(cp, w_host), _misaligned(cp, b_host)
    with caplog.at_level(logging.WARNING, logger="hugectr_lab"):
        got = [ops.gemm_bias_act(x, w, b, True, False) for _ in range(2)]
    assert not [r.message for r in caplog.records if "cuBLASLt" in r.message]
    for z in got:
        check(cupy_backend.to_host(z), x_host, w_host, b_host, True, "float16", False)


def test_a_misaligned_small_product_falls_back_with_one_logged_reason(cupy_backend, caplog):
    # n < 64: no copies for a memory-bound product, so the misaligned operand takes the two-kernel path
    cp, ops = cupy_backend.xp, cupy_backend.ops
    x_host, w_host, b_host = inputs(67, 480, 32, "float16", seed=3)
    x = _misaligned(cp, x_host)
    w, b = cp.asarray(w_host), cp.asarray(b_host)
    with caplog.at_level(logging.WARNING, logger="hugectr_lab"):
        got = [ops.gemm_bias_act(x, w, b, True, False) for _ in range(2)]
    assert [r.message for r in caplog.records if "cuBLASLt" in r.message] == [
        "cuBLASLt bias epilogue: a pointer is only 2-byte aligned for (67, 480) @ (480, 32) (float16); the FC runs "
        "the GEMM and the epilogue kernel instead"]
    composed = ops.bias_act_fwd(ops.gemm(x, w, False), b, True)
    for z in got:
        np.testing.assert_array_equal(cupy_backend.to_host(z), cupy_backend.to_host(composed))


# ---- 3xTF32 ---------------------------------------------------------------------------------------------

def split_operands(backend, x, w):
    """x' (m, K) by the ``tf32_split`` kernel and W' (K, n) by the xp helper, as the InnerProduct makes them."""
    cp = backend.xp
    (m, k), n = x.shape, w.shape[1]
    x3, w3 = cp.empty((m, tf32_width(k)), cp.float32), cp.empty((tf32_width(k), n), cp.float32)
    backend.ops.tf32_split(x, x3)
    tf32_split_weight(cp, w, w3)
    return x3, w3


@pytest.mark.parametrize("relu", [True, False], ids=["relu", "linear"])
@pytest.mark.parametrize("m,k,n", [(1024, 429, 1024), (1001, 1024, 1024), (301, 13, 256)])
def test_tf32x3_matches_the_float32_reference(cupy_backend, m, k, n, relu):
    ops = cupy_backend.ops
    x, w, b = inputs(m, k, n, "float32")   # normal draws: full float32 mantissas
    xd, wd, bd = (cupy_backend.asarray(a) for a in (x, w, b))
    got = ops.gemm_bias_act(*split_operands(cupy_backend, xd, wd), bd, relu, True)
    check(cupy_backend.to_host(got), x, w, b, relu, "float32", False)   # float32's rtol 1e-5
    # the tolerance tells them apart: plain TF32 misses it
    tf32 = cupy_backend.to_host(ops.gemm_bias_act(xd, wd, bd, relu, True))
    with pytest.raises(AssertionError):
        check(tf32, x, w, b, relu, "float32", False)


def test_tf32_split_reads_row_strided_and_column_major_inputs(cupy_backend):
    cp, ops = cupy_backend.xp, cupy_backend.ops
    host = np.random.default_rng(4).normal(size=(1001, 1453)).astype(np.float32)
    wide = cupy_backend.asarray(host)
    for view, want_x in ((wide[:, 429:], host[:, 429:]),                   # rows 1453 apart, k = 1024: float4
                         (wide[:, 7:436], host[:, 7:436]),                 # k = 429 at an odd offset
                         (cp.asfortranarray(wide[:, :429]), host[:, :429])):   # copied first
        m, k = want_x.shape
        got = cp.full((m, tf32_width(k)), np.nan, cp.float32)
        ops.tf32_split(view, got)
        want = np.empty((m, tf32_width(k)), np.float32)
        REFERENCES["tf32_split"](np, want_x, want)
        np.testing.assert_array_equal(cupy_backend.to_host(got), want)


def test_tf32x3_network_replays_from_a_graph_across_a_weight_load(cupy_backend):
    specs = [SimpleNamespace(type=t, name=name, bottoms=bottom, tops=name, params=params) for t, name, bottom, params in (
        ("InnerProduct", "fc1", "dense", {"num_output": 1024}), ("ReLU", "relu1", "fc1", None),
        ("InnerProduct", "fc2", "relu1", {"num_output": 1024}), ("ReLU", "relu2", "fc2", None))]
    shapes = {"dense": (1024, 429)}
    net = Network(specs, shapes, BuildContext(backend=cupy_backend, training=False, fp32_gemm="tf32x3"))
    plain = Network(specs, shapes, BuildContext(backend=get_backend("numpy"), training=False))
    assert [fc.tf32x3 for fc in net.layers[::2]] == [True, True]
    rng = np.random.default_rng(5)
    host_x = rng.normal(size=shapes["dense"]).astype(np.float32)
    x = cupy_backend.asarray(host_x)   # a fixed input buffer, as the predict graph's
    captured = cupy_backend.graph(lambda: net.predict({"dense": x}), "the 3xTF32 MLP")
    for _ in range(2):   # two weight loads, each followed by an eager call, the capture, replays
        flat = (rng.normal(size=net.num_params) * 0.04).astype(np.float32)
        net.load_weights(flat)
        plain.load_weights(flat)
        want = plain.predict({"dense": host_x}).astype(np.float64)
        for _ in range(3):
            got = cupy_backend.to_host(captured()).astype(np.float64)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(want).max()))
    assert captured.graph is not None and captured.failure is None, captured.failure

