"""One harness over the layer registry: each case in layer_cases.CASES goes through every check."""

from types import SimpleNamespace

import numpy as np
import pytest

from hugectr_lab.layers import LAYERS, BuildContext, Network
from layer_cases import CASES, all_cases

CASE_PARAMS = [pytest.param(type_name, case, id=cid) for cid, type_name, case in all_cases()]
SEED = 123


def build(type_name, case, dtype="float64", scaler=1.0):
    layer = LAYERS[type_name](**case.params)
    ctx = BuildContext(compute_dtype=dtype, scaler=scaler, rng=np.random.default_rng(SEED))
    out_shapes = layer.build(case.shapes, ctx)
    return layer, ctx, out_shapes


def bind(layer, ctx, weights32, fill=0.0):
    """Bind copies of the float32 initial weights (cast like the Network does) and filled grads."""
    wdtype = ctx.master_dtype if layer.uses_master_weights else ctx.compute_dtype
    weights = [w.astype(wdtype) for w in weights32]
    grads = [np.full(w.shape, fill, ctx.compute_dtype) for w in weights32]
    layer.bind(weights, grads)
    return weights, grads


class Objective:
    """J = Σ_k <y_k, r_k> for a layer's outputs (or the loss value); runs forward with a fresh
    dropout generator each time so that repeated evaluations see the same mask."""

    def __init__(self, layer, ctx, out_shapes, rng):
        self.layer, self.ctx = layer, ctx
        self.r = [rng.normal(size=s).astype(np.float16).astype(np.float64) for s in out_shapes]

    def forward(self, xs, training=True):
        self.ctx.rng = np.random.default_rng(SEED)
        cast = [x.astype(self.ctx.master_dtype if (self.layer.is_loss and i == 1) else self.ctx.compute_dtype)
                for i, x in enumerate(xs)]
        out = self.layer.forward(cast, training)
        return out if self.layer.is_loss else list(out)

    def value(self, xs, training=True):
        out = self.forward(xs, training)
        if self.layer.is_loss:
            return float(out)
        return sum(float((y.astype(np.float64) * r).sum()) for y, r in zip(out, self.r))

    def backward(self):
        if self.layer.is_loss:
            return self.layer.backward()
        return self.layer.backward([r.astype(self.ctx.compute_dtype) for r in self.r])


def setup(type_name, case, dtype="float64", fill=0.0, scaler=1.0):
    layer, ctx, out_shapes = build(type_name, case, dtype, scaler)
    rng = np.random.default_rng(7)
    weights32 = layer.init_weights(np.random.default_rng(11))
    weights, grads = bind(layer, ctx, weights32, fill)
    xs = case.inputs(rng)
    return layer, ctx, Objective(layer, ctx, out_shapes, rng), xs, weights, grads


def test_every_registered_layer_has_a_case():
    missing = sorted(set(LAYERS) - set(CASES))
    assert not missing, f"add harness cases for {missing} to tests/layers/layer_cases.py"


@pytest.mark.parametrize("type_name,case", CASE_PARAMS)
def test_shapes_and_weights(type_name, case):
    layer, ctx, obj, xs, weights, _ = setup(type_name, case)
    out = obj.forward(xs)
    if layer.is_loss:
        assert np.ndim(out) == 0 and layer.output_shapes == []
    else:
        assert [y.shape for y in out] == layer.output_shapes
        assert all(y.dtype == np.float64 for y in out)
    init = layer.init_weights(np.random.default_rng(0))
    assert [w.shape for w in init] == layer.weight_shapes()
    assert all(w.dtype == np.float32 for w in init)
    assert len(layer.weight_names()) == len(layer.weight_shapes())
    assert set(layer.grad_overwrites) <= set(layer.weight_names())


@pytest.mark.parametrize("type_name,case", CASE_PARAMS)
def test_finite_difference_gradients(type_name, case):
    layer, ctx, obj, xs, weights, grads = setup(type_name, case)
    obj.forward(xs)
    d_xs = obj.backward()
    eps = 1e-6

    def numeric(array):
        g = np.zeros_like(array)
        for idx in np.ndindex(array.shape):
            old = array[idx]
            array[idx] = old + eps
            plus = obj.value(xs)
            array[idx] = old - eps
            minus = obj.value(xs)
            array[idx] = old
            g[idx] = (plus - minus) / (2 * eps)
        return g

    checked = range(len(xs)) if case.fd_inputs is None else case.fd_inputs
    for i in checked:
        np.testing.assert_allclose(d_xs[i], numeric(xs[i]), rtol=1e-6, atol=1e-8, err_msg=f"d_input[{i}]")
    for name, w, g in zip(layer.weight_names(), weights, grads):
        np.testing.assert_allclose(g, numeric(w), rtol=1e-6, atol=1e-8, err_msg=f"d_{name}")


# Dropout and BatchNorm (stateful cases) have their own train/eval tests in test_layers_behaviour.py.
@pytest.mark.parametrize("type_name,case", [p for p in CASE_PARAMS if not p.values[1].stateful])
def test_train_and_eval_agree_unless_stateful(type_name, case):
    layer, ctx, obj, xs, _, _ = setup(type_name, case)
    assert obj.value(xs, training=True) == obj.value(xs, training=False)


@pytest.mark.parametrize("type_name,case", CASE_PARAMS)
def test_grad_overwrites_honoured(type_name, case):
    runs = {}
    for fill in (0.0, 7.0):
        layer, ctx, obj, xs, _, grads = setup(type_name, case, fill=fill)
        obj.forward(xs)
        obj.backward()
        runs[fill] = grads
    for name, fresh, filled in zip(layer.weight_names(), runs[0.0], runs[7.0]):
        expected = fresh if name in layer.grad_overwrites else fresh + 7.0
        np.testing.assert_allclose(filled, expected, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("type_name,case", CASE_PARAMS)
def test_reduced_precision_matches_float64(type_name, case):
    reference = None
    for dtype in ("float64",) + case.modes:
        layer, ctx, obj, xs, _, grads = setup(type_name, case, dtype=dtype)
        out = obj.forward(xs)
        out = [out] if layer.is_loss else out
        d_xs = obj.backward()
        result = [np.asarray(a, dtype=np.float64) for a in out + [d for d in d_xs if d is not None] + grads]
        if reference is None:
            reference = result
            continue
        assert all(a.dtype == np.dtype(dtype) for a in out if not layer.is_loss)
        tol = 1e-5 if dtype == "float32" else 1e-2
        for got, want in zip(result, reference):
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.abs(want).max()))


def single_layer_network(type_name, case, dtype="float32"):
    layer = LAYERS[type_name](**case.params)
    n_out = len(layer.build(case.shapes, BuildContext(compute_dtype=dtype)))
    inputs = {f"x{i}": s for i, s in enumerate(case.shapes)}
    tops = ["loss"] if layer.is_loss else [f"y{i}" for i in range(n_out)]
    spec = SimpleNamespace(type=type_name, name="layer", bottoms=list(inputs), tops=tops, params=case.params)
    return Network([spec], inputs, BuildContext(compute_dtype=dtype)), tops


@pytest.mark.parametrize("type_name,case", CASE_PARAMS)
def test_weights_save_and_load_in_documented_order(type_name, case):
    dtype = case.modes[-1] if "float32" not in case.modes else "float32"
    net, tops = single_layer_network(type_name, case, dtype)
    layer = net.layers[0]
    net.init_weights(np.random.default_rng(5))
    expected = [w.ravel() for w in layer.init_weights(np.random.default_rng(5))]
    flat = np.concatenate(expected) if expected else np.zeros(0, np.float32)
    np.testing.assert_array_equal(net.weights, flat)  # dense-model-file order: weight_shapes() order
    assert [s.shape for s in net.layout] == layer.weight_shapes()
    assert net.num_params == flat.size and net.weights.dtype == np.float32

    feed = {f"x{i}": x for i, x in enumerate(case.inputs(np.random.default_rng(3)))}
    other, _ = single_layer_network(type_name, case, dtype)
    other.load_weights(np.asarray(net.weights).copy())
    if layer.is_loss:
        assert float(net.forward(feed, training=False)) == float(other.forward(feed, training=False))
    else:
        net.predict(feed)
        other.predict(feed)
        for t in tops:
            np.testing.assert_array_equal(net.tensor(t), other.tensor(t))


# HugeCTR 3.0's overwrite-instead-of-accumulate weight gradients (everything else accumulates).
HUGECTR_OVERWRITES = {
    ("BatchNorm", "float32"): {"gamma", "beta"},
    ("BatchNorm", "float16"): {"gamma", "beta"},
    ("InnerProduct", "float16"): {"b"},
    ("FusedInnerProduct", "float16"): {"b"},
    ("MultiCross", "float32"): {"b0", "b1", "b2"},
    ("MultiCross", "float16"): {"b0", "b1", "b2"},
}


@pytest.mark.parametrize("type_name,case", CASE_PARAMS)
def test_grad_overwrites_match_hugectr(type_name, case):
    for dtype in case.modes:
        layer, _, _ = build(type_name, case, dtype)
        assert set(layer.grad_overwrites) == HUGECTR_OVERWRITES.get((type_name, dtype), set()), dtype
