"""Independent implementations of a few layers, written from HugeCTR's math with plain Python loops,
compared with the library's layers (float64) on outputs and gradients."""

import math

import numpy as np
import pytest

from hugectr_lab.layers import LAYERS, BuildContext


def run_layer(type_name, params, inputs, d_outputs, weights=()):
    layer = LAYERS[type_name](**params)
    layer.build([x.shape for x in inputs], BuildContext(compute_dtype="float64"))
    grads = [np.zeros_like(w) for w in weights]
    layer.bind([w.copy() for w in weights], grads)
    out = layer.forward(inputs, training=True)
    d_inputs = layer.backward(d_outputs) if d_outputs is not None else layer.backward()
    return out, d_inputs, grads


def loop_inner_product(x, w, b, dy):
    m, k = x.shape
    n = w.shape[1]
    y = [[b[0][j] + sum(x[i][p] * w[p][j] for p in range(k)) for j in range(n)] for i in range(m)]
    dw = [[sum(x[i][p] * dy[i][j] for i in range(m)) for j in range(n)] for p in range(k)]
    db = [[sum(dy[i][j] for i in range(m)) for j in range(n)]]
    dx = [[sum(dy[i][j] * w[p][j] for j in range(n)) for p in range(k)] for i in range(m)]
    return y, dx, dw, db


def loop_multi_cross(x0, ws, bs, dy):
    """Per sample: forward keeping every xₗ and hₗ, then the chain rule backwards."""
    m, d = x0.shape
    n_layers = len(ws)
    y = np.zeros((m, d))
    dx0 = np.zeros((m, d))
    dws = np.zeros((n_layers, d))
    dbs = np.zeros((n_layers, d))
    for i in range(m):
        xs, hs = [list(x0[i])], []
        for l in range(n_layers):
            h = sum(xs[l][e] * ws[l][e] for e in range(d))
            hs.append(h)
            xs.append([x0[i][e] * h + xs[l][e] + bs[l][e] for e in range(d)])
        y[i] = xs[-1]
        g = list(dy[i])  # dL/dx_{l+1}
        direct = [0.0] * d  # dL/dx0 through the x0 ⊙ h terms
        for l in reversed(range(n_layers)):
            dh = sum(g[e] * x0[i][e] for e in range(d))
            for e in range(d):
                direct[e] += g[e] * hs[l]
                dws[l][e] += dh * xs[l][e]
                dbs[l][e] += g[e]
            g = [g[e] + dh * ws[l][e] for e in range(d)]
        dx0[i] = [direct[e] + g[e] for e in range(d)]
    return y, dx0, dws, dbs


def loop_interaction(mlp, emb, dy):
    m, w = mlp.shape
    f = emb.shape[1]
    n = f + 1
    out_w = w + n * (n - 1) // 2 + 1
    y = np.zeros((m, out_w))
    d_mlp = np.zeros_like(mlp)
    d_emb = np.zeros_like(emb)
    for s in range(m):
        z = [mlp[s]] + [emb[s, t] for t in range(f)]
        dz = [np.zeros(w) for _ in range(n)]
        for c in range(w):
            y[s, c] = mlp[s, c]
            d_mlp[s, c] += dy[s, c]
        col = w
        for i in range(1, n):
            for j in range(i):
                y[s, col] = sum(z[i][c] * z[j][c] for c in range(w))
                for c in range(w):
                    dz[i][c] += dy[s, col] * z[j][c]
                    dz[j][c] += dy[s, col] * z[i][c]
                col += 1
        y[s, col] = 0.0  # padding column
        d_mlp[s] += dz[0]
        for t in range(f):
            d_emb[s, t] = dz[t + 1]
    return y, d_mlp, d_emb


def loop_fm_order2(x, k, dy):
    m = x.shape[0]
    f = x.shape[1] // k
    y = np.zeros((m, k))
    dx = np.zeros_like(x)
    for i in range(m):
        for j in range(k):
            vals = [x[i, t * k + j] for t in range(f)]
            total = sum(vals)
            y[i, j] = 0.5 * (total * total - sum(v * v for v in vals))
            for t in range(f):
                dx[i, t * k + j] = dy[i, j] * (total - vals[t])
    return y, dx


def loop_bce(x, labels, scaler, devices):
    c = len(x)
    total, grad = 0.0, []
    for xi, yi in zip(x[:, 0], labels[:, 0]):
        if xi >= 0:
            total += xi * (1 - yi) + math.log(1 + math.exp(-xi))
        else:
            total += -xi * yi + math.log(1 + math.exp(xi))
        grad.append([(1 / (1 + math.exp(-xi)) - yi) * scaler / c / devices])
    return total / c, np.array(grad)


@pytest.fixture
def rng():
    return np.random.default_rng(2021)


def test_inner_product_matches_loops(rng):
    x, w, b, dy = rng.normal(size=(4, 3)), rng.normal(size=(3, 5)), rng.normal(size=(1, 5)), rng.normal(size=(4, 5))
    (y,), (dx,), (dw, db) = run_layer("InnerProduct", {"num_output": 5}, [x], [dy], [w, b])
    ry, rdx, rdw, rdb = loop_inner_product(x, w, b, dy)
    for got, want in ((y, ry), (dx, rdx), (dw, rdw), (db, rdb)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_multi_cross_matches_loops(rng):
    x0, dy = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    ws, bs = rng.normal(size=(3, 4)) * 0.5, rng.normal(size=(3, 4))
    weights = [a[None] for pair in zip(ws, bs) for a in pair]  # w0, b0, w1, b1, ...
    (y,), (dx0,), grads = run_layer("MultiCross", {"num_layers": 3}, [x0], [dy], weights)
    ry, rdx0, rdws, rdbs = loop_multi_cross(x0, ws, bs, dy)
    np.testing.assert_allclose(y, ry, rtol=1e-12)
    np.testing.assert_allclose(dx0, rdx0, rtol=1e-10)
    np.testing.assert_allclose(np.concatenate(grads[0::2]), rdws, rtol=1e-10)
    np.testing.assert_allclose(np.concatenate(grads[1::2]), rdbs, rtol=1e-10)


def test_interaction_matches_loops(rng):
    mlp, emb = rng.normal(size=(2, 3)), rng.normal(size=(2, 4, 3))
    dy = rng.normal(size=(2, 3 + 10 + 1))
    (y,), (d_mlp, d_emb), _ = run_layer("Interaction", {}, [mlp, emb], [dy])
    ry, rd_mlp, rd_emb = loop_interaction(mlp, emb, dy)
    np.testing.assert_allclose(y, ry, rtol=1e-12)
    np.testing.assert_allclose(d_mlp, rd_mlp, rtol=1e-12)
    np.testing.assert_allclose(d_emb, rd_emb, rtol=1e-12)


def test_fm_order2_matches_loops(rng):
    x, dy = rng.normal(size=(3, 8)), rng.normal(size=(3, 2))
    (y,), (dx,), _ = run_layer("FmOrder2", {"out_dim": 2}, [x], [dy])
    ry, rdx = loop_fm_order2(x, 2, dy)
    np.testing.assert_allclose(y, ry, rtol=1e-12)
    np.testing.assert_allclose(dx, rdx, rtol=1e-12)


@pytest.mark.parametrize("scaler,devices", [(1.0, 1), (1024.0, 4)])
def test_bce_matches_loops(rng, scaler, devices):
    x = rng.normal(size=(8, 1)) * 4
    labels = rng.integers(0, 2, size=(8, 1)).astype(np.float64)
    layer = LAYERS["BinaryCrossEntropyLoss"]()
    layer.build([x.shape, labels.shape],
                BuildContext(compute_dtype="float64", scaler=scaler, device_count=devices))
    layer.bind([], [])
    value = layer.forward([x, labels], training=True)
    (d_x, d_label) = layer.backward()
    r_value, r_grad = loop_bce(x, labels, scaler, devices)
    assert float(value) == pytest.approx(r_value, rel=1e-12)
    np.testing.assert_allclose(d_x, r_grad, rtol=1e-12)
    assert d_label is None
