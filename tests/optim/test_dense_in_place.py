"""Adam's in-place, block-by-block NumPy step against the textbook array expressions, bit for bit."""

import numpy as np
import pytest

from hugectr_lab.backend import scratch as scratch_module
from hugectr_lab.optim import AdamOptimizer, dense
from hugectr_lab.rules.optimizers import adam_step_size


@pytest.mark.parametrize("grad_dtype,scaler", [(np.float32, 1.0), (np.float16, 1024.0)])
def test_adam_in_blocks_equals_whole_array_expressions(monkeypatch, grad_dtype, scaler):
    monkeypatch.setattr(dense, "cache_blocks", lambda xp, n: scratch_module.cache_blocks(xp, n, block=100))
    rng = np.random.default_rng(0)
    n = 1037                                                      # 11 blocks, the last one partial
    weights = rng.normal(size=n).astype(np.float32)
    want_w, m, v = weights.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32)
    opt = AdamOptimizer(0.01, scaler=scaler)
    one, b1, b2 = np.float32(1), np.float32(0.9), np.float32(0.999)
    for t in range(1, 4):
        grads = (rng.normal(size=n) * scaler).astype(grad_dtype)
        kept = grads.copy()
        opt.update(weights, grads)
        np.testing.assert_array_equal(grads, kept)                # the caller's gradient stays intact
        g = grads.astype(np.float32) / np.float32(scaler)
        m = b1 * m + (one - b1) * g
        v = b2 * v + (one - b2) * g * g
        alpha = np.float32(adam_step_size(np.float32(0.01), b1, b2, t))
        want_w -= alpha * m / (np.sqrt(v) + np.float32(1e-7))
        np.testing.assert_array_equal(weights, want_w)
        np.testing.assert_array_equal(opt.state_arrays()[0], m)
        np.testing.assert_array_equal(opt.state_arrays()[1], v)
