"""3xTF32 for float32 inference FC GEMMs (layers/inner_product.py): the TF32 rounding on the float's bits
against an independent rounding in float64, the split operands, and the InnerProduct path in a Network
against the plain float32 forward -- which FCs take it, W' rebuilt in place at every weight write and never
part of the weights. The rounding tests run on CuPy too in the gpu lane (the weight operand is built with
xp operations there)."""

import numpy as np
import pytest

from hugectr_lab.backend import get_backend
from hugectr_lab.layers import BuildContext, Network
from hugectr_lab.layers.fusion import DenseChain
from hugectr_lab.layers.inner_product import (TF32X3_MIN_EXTENT, tf32_parts, tf32_split, tf32_split_weight,
                                              tf32_width)
from models import layer

F32 = np.float32
LARGEST_TF32 = 0x7F7FE000   # TF32's largest finite value, as float32 bits


def floats(*bits):
    return np.array(bits, np.uint32).view(F32)


def parts(xp, x):
    """tf32_parts on ``xp`` for the host array ``x``, as host float32 arrays."""
    hi, lo = tf32_parts(xp, xp.asarray(x))
    hi, lo = (a.get() if hasattr(a, "get") else a for a in (hi, lo))
    assert hi.dtype == lo.dtype == F32
    return hi, lo


def nearest_tf32(x):
    """Finite float32 ``x`` rounded to TF32 independently of the bits: in float64, the quantum of x's binade
    (10 mantissa bits; 2^-136 for TF32's subnormals) times the nearest integer, ties to even (``rint``)."""
    x64 = x.astype(np.float64)
    return np.rint(x64 / quantum(x64)) * quantum(x64)


def quantum(a):
    """The TF32 ulp at the binade of float64 ``a`` (of float32 values)."""
    _, e = np.frexp(a)   # a = f 2^e, 1/2 <= |f| < 1; e = 0 for 0
    return np.ldexp(1.0, np.maximum(np.where(a == 0, -126, e) - 11, -136))


def random_finite(rng, n=200_000):
    """Float32 values of uniformly random bits (every exponent, subnormals, both signs), the finite ones below
    TF32's rounding limit, plus ties (the 13 dropped bits exactly half) of both kept-LSB parities."""
    bits = rng.integers(0, 1 << 32, size=n, dtype=np.uint64).astype(np.uint32)
    ties = (bits[: n // 4] & np.uint32(0xFFFFE000)) | np.uint32(0x1000)
    x = np.concatenate([bits, ties]).view(F32)
    return x[np.isfinite(x) & (np.abs(x) < floats(0x7F7FF000)[0])]


# ---- the rounding ------------------------------------------------------------------------------------

def test_hi_is_the_nearest_tf32_and_the_parts_add_up_exactly(xp):
    x = random_finite(np.random.default_rng(0))
    hi, lo = parts(xp, x)
    assert not (hi.view(np.uint32) & np.uint32(0x1FFF)).any()   # the 13 dropped mantissa bits are zero
    np.testing.assert_array_equal(hi.astype(np.float64), nearest_tf32(x))
    np.testing.assert_array_equal(hi.astype(np.float64) + lo.astype(np.float64), x.astype(np.float64))
    np.testing.assert_array_equal(hi + lo, x)   # lo is x - hi exactly, in float32
    assert (np.abs(lo.astype(np.float64)) <= quantum(hi.astype(np.float64)) / 2).all()


def test_ties_go_to_even_for_both_signs_and_subnormals(xp):
    x = floats(0x3F801000, 0x3F803000, 0xBF801000, 0xBF803000,   # 1 + 2^-11, 1 + 3·2^-11 and their negatives
               0x00001000, 0x00003000, 0x80003000)                # subnormal ties
    hi, lo = parts(xp, x)
    np.testing.assert_array_equal(hi.view(np.uint32), np.array(
        [0x3F800000, 0x3F804000, 0xBF800000, 0xBF804000, 0x00000000, 0x00004000, 0x80004000], np.uint32))
    np.testing.assert_array_equal(hi + lo, x)


def test_zeros_subnormals_infinities_nan_and_the_overflow_limit(xp):
    x = floats(0x00000000, 0x80000000, 0x00000001, 0x80000FFF, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC12345,
               0x7F7FEFFF, 0x7F7FF000, 0x7F7FFFFF, 0xFF7FFFFF)
    hi, lo = parts(xp, x)
    hi_bits = hi.view(np.uint32)
    np.testing.assert_array_equal(hi_bits[:2], [0, 0x80000000])              # signed zeros kept
    np.testing.assert_array_equal(hi_bits[2:4], [0, 0x80000000])             # subnormals below half a quantum
    np.testing.assert_array_equal(lo[2:4], x[2:4])
    np.testing.assert_array_equal(hi_bits[4:8], x[4:8].view(np.uint32))      # inf and NaN: hi = x (the payload too)
    assert not lo[4:8].view(np.uint32).any()                                 # ... and lo = +0
    # near the largest float: nearest where it stays finite, else truncated, so hi + lo is still x
    np.testing.assert_array_equal(hi_bits[8:], [LARGEST_TF32, LARGEST_TF32, LARGEST_TF32, 0x80000000 | LARGEST_TF32])
    np.testing.assert_array_equal(hi[8:].astype(np.float64) + lo[8:], x[8:].astype(np.float64))
    assert not lo[:2].view(np.uint32).any()


# ---- the split operands ---------------------------------------------------------------------------------

@pytest.mark.parametrize("m,k,width", [(37, 429, tf32_width(429)), (5, 7, 21), (3, 8, 28)])
def test_tf32_split_writes_hi_lo_hi_then_zeros(m, k, width):
    x = np.random.default_rng(1).normal(size=(m, k)).astype(F32)
    out = np.full((m, width), np.nan, F32)
    assert tf32_split(np, x, out) is None
    hi, lo = tf32_parts(np, x)
    for block, want in zip((out[:, :k], out[:, k:2 * k], out[:, 2 * k:3 * k]), (hi, lo, hi)):
        np.testing.assert_array_equal(block, want)
    assert not out[:, 3 * k:].view(np.uint32).any()


def test_tf32_split_reads_a_row_strided_view():
    wide = np.random.default_rng(2).normal(size=(37, 500)).astype(F32)
    view = wide[:, 40:469]   # (37, 429), rows 500 apart: a Concat's or Slice's columns
    got, want = (np.full((37, tf32_width(429)), np.nan, F32) for _ in range(2))
    tf32_split(np, view, got)
    tf32_split(np, np.ascontiguousarray(view), want)
    np.testing.assert_array_equal(got, want)


def test_tf32_width_keeps_rows_16_byte_aligned():
    assert [tf32_width(k) for k in (429, 1024, 13, 1)] == [1288, 3072, 40, 4]


def test_the_split_product_is_float32_accurate():
    rng = np.random.default_rng(3)
    m, k, n = 301, 429, 64
    x, w = rng.normal(size=(m, k)).astype(F32), (rng.normal(size=(k, n)) / np.sqrt(k)).astype(F32)
    x3, w3 = np.empty((m, tf32_width(k)), F32), np.full((tf32_width(k), n), np.nan, F32)
    tf32_split(np, x, x3)
    tf32_split_weight(np, w, w3)
    w_hi, w_lo = tf32_parts(np, w)
    for block, want in zip(np.split(w3[:3 * k], 3), (w_hi, w_hi, w_lo)):
        np.testing.assert_array_equal(block, want)
    assert not w3[3 * k:].any()
    exact = x.astype(np.float64) @ w.astype(np.float64)
    scale = np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64)   # the error bound's scale per element
    assert (np.abs(x3 @ w3 - exact) / scale).max() <= 2 * (np.abs(x @ w - exact) / scale).max()


# ---- the InnerProduct path ----------------------------------------------------------------------------

SPECS = [layer("InnerProduct", "fc1", "dense", "fc1", num_output=1024), layer("ReLU", "relu1", "fc1", "relu1"),
         layer("InnerProduct", "fc2", "relu1", "fc2", num_output=1024), layer("ReLU", "relu2", "fc2", "relu2"),
         layer("InnerProduct", "out", "relu2", "out", num_output=1)]   # DCN's MLP at 1024 x 429


def mlp(batch=1024, fp32_gemm="tf32x3", seed=5, **ctx):
    ctx = BuildContext(fp32_gemm=fp32_gemm, **{"backend": get_backend("numpy"), "training": False, **ctx})
    net = Network(SPECS, {"dense": (batch, 429)}, ctx)
    net.init_weights(np.random.default_rng(seed))
    return net


def feed(batch=1024):
    return {"dense": np.random.default_rng(6).normal(size=(batch, 429)).astype(F32)}


def split_calls(net, monkeypatch):
    """The x shapes of the network's ``tf32_split`` calls from now on."""
    ops, calls = net.ctx.backend.ops, []
    real = ops.tf32_split
    monkeypatch.setattr(ops, "tf32_split", lambda x, out: calls.append(x.shape) or real(x, out))
    return calls


def splits(net):
    return {fc.name: fc.tf32x3 for fc in net.layers if fc.type_name == "InnerProduct"}


def test_the_split_forward_matches_plain_float32(monkeypatch):
    split, plain = mlp(), mlp(fp32_gemm="fp32")
    calls = split_calls(split, monkeypatch)
    got, want = split.predict(feed()).copy(), plain.predict(feed())
    assert splits(split) == {"fc1": True, "fc2": True, "out": False}   # one output: a GEMV, kept plain
    assert [type(s.layer) for s in split.steps[:2]] == [DenseChain, DenseChain] and calls == [(1024, 429), (1024, 1024)]
    for name in ("fc1", "fc2"):
        a, b = split.tensor(name), plain.tensor(name)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=2e-6 * np.abs(b).max())
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=2e-6 * np.abs(want).max())
    # as accurate as the plain GEMM: errors against float64, per element over its sum of |products|
    x, (w, b) = feed()["dense"].astype(np.float64), (a.astype(np.float64) for a in plain.layers[0].weights)
    exact, scale = x @ w + b, np.abs(x) @ np.abs(w) + np.abs(b)
    errors = [(np.abs(net.tensor("fc1") - exact) / scale).max() for net in (split, plain)]
    assert errors[0] <= 2 * errors[1], errors


@pytest.mark.parametrize("why,batch,ctx", [
    ("below the threshold", TF32X3_MIN_EXTENT - 1, {}),
    ("plain", 1024, {"fp32_gemm": "fp32"}),
    ("training", 1024, {"training": True}),
    ("enable_tf32_compute", 1024, {"tf32": True}),
    ("unfused epilogues", 1024, {"fuse_epilogues": False}),
])
def test_other_networks_keep_the_plain_gemm(why, batch, ctx, monkeypatch):
    net, plain = mlp(batch, **ctx), mlp(batch, **{**ctx, "fp32_gemm": "fp32"})
    calls = split_calls(net, monkeypatch)
    assert not any(splits(net).values()) and all(fc._split_w is None for fc in net.layers if hasattr(fc, "tf32x3"))
    np.testing.assert_array_equal(net.predict(feed(batch)), plain.predict(feed(batch)))
    assert calls == []


def test_mixed_precision_keeps_the_plain_gemm():
    net = Network(SPECS, {"dense": (1024, 429)}, BuildContext(compute_dtype="float16", training=False,
                                                              fp32_gemm="tf32x3"))
    assert not any(splits(net).values())


def test_w_prime_follows_every_weight_write_in_place():
    net, plain = mlp(), mlp(fp32_gemm="fp32")
    fc2 = net.layers[2]
    w3 = fc2._split_w
    address = w3.ctypes.data   # a captured CUDA graph reads W' at its address

    def check():
        assert fc2._split_w is w3 and w3.ctypes.data == address
        rebuilt = np.empty_like(w3)
        tf32_split_weight(np, fc2.weights[0], rebuilt)
        np.testing.assert_array_equal(w3, rebuilt)
        want = plain.predict(feed())   # a stale W' would be off by the whole change of the weights
        np.testing.assert_allclose(net.predict(feed()), want, rtol=1e-6, atol=2e-6 * np.abs(want).max())

    check()
    flat = np.random.default_rng(8).normal(scale=0.03, size=net.num_params).astype(F32)
    net.load_weights(flat)   # InferenceSession's load (_read_dense_model's values)
    plain.load_weights(flat)
    check()
    net.init_weights(np.random.default_rng(9))
    plain.init_weights(np.random.default_rng(9))
    check()
    donor = mlp(fp32_gemm="fp32", seed=10)
    net.copy_weights_from(donor)
    plain.copy_weights_from(donor)
    check()


def test_w_prime_is_not_part_of_the_weights():
    net, plain = mlp(), mlp(fp32_gemm="fp32")
    assert net.num_params == plain.num_params == net.weights.size
    assert net.layout == plain.layout
    assert [fc.weight_shapes() for fc in net.layers] == [fc.weight_shapes() for fc in plain.layers]
    np.testing.assert_array_equal(net.weights, plain.weights)


def test_build_context_names_the_choices():
    with pytest.raises(ValueError, match="fp32_gemm must be one of 'fp32', 'tf32x3', got 'tf32'"):
        BuildContext(fp32_gemm="tf32")
