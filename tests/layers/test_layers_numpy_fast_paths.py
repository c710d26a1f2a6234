"""The NumPy backend's fast forms of Dropout and MultiCross against their plain definitions.

Dropout's mask is hashed block by block and compared on integer bits; it must equal, bit for bit, the
definition (u >= rate with u = the top 24 bits of splitmix64 / 2**24, the GPU kernel's numbers).
MultiCross's backward is a closed form of the per-layer loop; in float64 they agree to rounding.
"""

import functools

import numpy as np
import pytest

from hugectr_lab.layers import dropout as dropout_module
from hugectr_lab.layers.dropout import dropout_fwd, dropout_uniform
from hugectr_lab.layers.multi_cross import multicross_bwd, multicross_fwd

M64 = (1 << 64) - 1


@functools.lru_cache(maxsize=4)
def splitmix_uniform(seed, n):
    """u for flat indices 0..n-1, written out with Python integers (the definition); read-only."""
    out = np.empty(n, np.float32)
    for i in range(n):
        x = (seed + (i + 1) * 0x9E3779B97F4A7C15) & M64
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
        x ^= x >> 31
        out[i] = np.float32(x >> 40) * np.float32(1.0 / (1 << 24))
    out.flags.writeable = False
    return out


def test_dropout_uniform_equals_the_definition_across_blocks(monkeypatch):
    monkeypatch.setattr(dropout_module, "_BLOCK", 64)     # several blocks, the last one partial
    seed = np.array([(1 << 63) + 12345], np.uint64)        # seed + counter wraps mod 2**64
    want = splitmix_uniform(int(seed[0]), 3 * 7 * 11)
    np.testing.assert_array_equal(dropout_uniform(np, seed, (3, 7, 11)).reshape(-1), want)


@pytest.mark.parametrize("rate", [0.0, 0.1, 1 / 3, 0.5, 0.9, 0.999, np.float64(0.37), np.float32(0.37), 2.0 ** -24])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_dropout_mask_is_the_float_comparison_bit_for_bit(monkeypatch, rate, dtype):
    monkeypatch.setattr(dropout_module, "_BLOCK", 256)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(37, 29)).astype(dtype)
    seed = np.array([rng.integers(0, 1 << 62)], np.uint64)
    u = splitmix_uniform(int(seed[0]), x.size).reshape(x.shape)
    mask = (u >= rate).astype(dtype) * dtype(1.0 / (1.0 - rate))
    y, got_mask = dropout_fwd(np, x, seed, rate)
    assert got_mask.dtype == y.dtype == dtype
    np.testing.assert_array_equal(got_mask, mask)
    np.testing.assert_array_equal(y, x * mask)


def test_dropout_keep_threshold_is_exact_at_every_float32_boundary():
    for rate in np.linspace(0.0, 0.999, 1501).tolist() + [1 / 3, 1 - 2.0 ** -24]:
        k = dropout_module._keep_threshold(rate)
        assert np.float32(k / (1 << 24)) >= rate
        assert k == 0 or not np.float32((k - 1) / (1 << 24)) >= rate


def multicross_inputs(x0, w, b):
    """The layer inputs x_l and h_l of the module docstring's forward, layer by layer (L, m, D), (L, m, 1)."""
    xs, hs, x = [], [], x0
    for l in range(w.shape[0]):
        xs.append(x)
        hs.append(x @ w[l][:, None])
        x = x0 * hs[-1] + x + b[l]
    return np.stack(xs), np.stack(hs), x


def multicross_bwd_loop(d_y, x0, xs, hs, w):
    """The per-layer loop of multi_cross's module docstring."""
    g, acc = d_y.copy(), np.zeros_like(d_y)
    d_w, d_b = np.zeros_like(w), np.zeros_like(w)
    for l in reversed(range(w.shape[0])):
        acc += g * hs[l]
        v = (g * x0).sum(axis=1, keepdims=True)
        d_w[l] = (xs[l] * v).sum(axis=0)
        d_b[l] = g.sum(axis=0)
        g = g + v * w[l]
    return acc + g, d_w, d_b


@pytest.mark.parametrize("m,d,layers", [(1, 5, 1), (17, 13, 3), (64, 429, 6)])
def test_multicross_closed_form_backward_equals_the_loop(m, d, layers):
    rng = np.random.default_rng(m)
    x0, w, b = rng.normal(size=(m, d)), rng.normal(size=(layers, d)) / np.sqrt(d), rng.normal(size=(layers, d))
    y, hs = multicross_fwd(np, x0, w, b)
    xs, hs_loop, y_loop = multicross_inputs(x0, w, b)
    np.testing.assert_array_equal(hs, hs_loop)                    # the forward is the docstring's loop
    np.testing.assert_array_equal(y, y_loop)
    d_y = rng.normal(size=(m, d))
    before = [a.copy() for a in (d_y, x0, hs, w, b)]
    got = multicross_bwd(np, d_y, x0, hs, w, b)                   # rebuilds the x_l from x0, hs and b
    for a, k in zip((d_y, x0, hs, w, b), before):                 # inputs are read-only
        np.testing.assert_array_equal(a, k)
    for g, want in zip(got, multicross_bwd_loop(d_y, x0, xs, hs, w)):
        np.testing.assert_allclose(g, want, rtol=1e-11, atol=1e-11 * np.abs(want).max())


def test_multicross_forward_returns_fresh_arrays():
    rng = np.random.default_rng(0)
    x0, w, b = (rng.normal(size=s).astype(np.float32) for s in ((9, 7), (2, 7), (2, 7)))
    y1, hs1 = multicross_fwd(np, x0, w, b)
    kept = [a.copy() for a in (y1, hs1)]
    multicross_fwd(np, 2 * x0, w, b)                              # a second call leaves the first's results alone
    for a, k in zip((y1, hs1), kept):
        np.testing.assert_array_equal(a, k)
    assert not np.shares_memory(y1, x0)


def test_dropout_of_a_strided_view_writes_fresh_outputs():
    rng = np.random.default_rng(9)
    base = rng.normal(size=(40, 30)).astype(np.float32)
    x = base[:, ::3]                                              # not contiguous
    seed = np.array([77], np.uint64)
    y, mask = dropout_fwd(np, x, seed, 0.4)
    want_mask = (dropout_uniform(np, seed, x.shape) >= 0.4).astype(np.float32) * np.float32(1 / 0.6)
    np.testing.assert_array_equal(mask, want_mask)
    np.testing.assert_array_equal(y, x * want_mask)
