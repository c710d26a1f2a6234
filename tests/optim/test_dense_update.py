"""The dense optimizers' step as one op, ``dense_update``: its NumPy reference reproduces the float32
arithmetic of each optimizer bit for bit, ``DenseOptimizer.run`` is exactly one call of it, and (gpu lane)
its CUDA kernel, replayed from a CUDA graph, follows a changing rate bit for bit."""

import numpy as np
import pytest

from hugectr_lab.backend import get_backend, to_host
from hugectr_lab.optim import create_dense_optimizer
from hugectr_lab.optim.dense import dense_update
from recording_ops import RecordingOps
from test_dense_optimizers import HPARAMS

F32 = np.float32
SCHEDULE = (0.05, 0.04, 0.0125, 0.3)   # a learning rate per step: decay, then a jump (a restart)


def expected_steps(opt_type, w, grads, scaler, lrs, hp):
    """Each optimizer's update as whole-array float32 expressions, rounded in the order the docstring of
    optim/dense.py writes them; the float32 hyper-parameters as the optimizers hold them."""
    hp = {k: F32(v) for k, v in hp.items()}
    one, w, n = F32(1), w.copy(), w.size
    s1 = np.full(n, hp.get("initial_accu_value", 0), F32)
    s2 = np.zeros(n, F32)
    for t, (grad, lr) in enumerate(zip(grads, lrs), start=1):
        g = grad.astype(F32) / F32(scaler)
        lr = F32(lr)
        if opt_type == "SGD":
            w = w - lr * g
        elif opt_type == "MomentumSGD":
            s1 = hp["momentum_factor"] * s1 - lr * g
            w = w + s1
        elif opt_type == "Nesterov":
            mu = hp["momentum_factor"]
            new = mu * s1 - lr * g
            w = w + ((one + mu) * new - mu * s1)
            s1 = new
        elif opt_type == "Adam":
            b1, b2 = hp["beta1"], hp["beta2"]
            s1 = b1 * s1 + (one - b1) * g
            s2 = b2 * s2 + ((one - b2) * g) * g
            alpha = F32(lr * np.sqrt(1 - np.float64(b2) ** t) / (1 - np.float64(b1) ** t))
            w = w - (alpha * s1) / (np.sqrt(s2) + hp["epsilon"])
        elif opt_type == "AdaGrad":
            s1 = s1 + g * g
            w = w - (lr * g) / (np.sqrt(s1) + hp["epsilon"])
    states = {"SGD": [], "Adam": [s1, s2]}.get(opt_type, [s1])
    return w, states


def gradients(rng, n, steps, grad_dtype, scaler):
    grads = [(rng.normal(size=n) * scaler).astype(grad_dtype) for _ in range(steps)]
    for g in grads:
        g[::97] = 0   # zero gradients: Adam's and AdaGrad's states decay or stay, Nesterov's change is -mu*a
    return grads


@pytest.mark.parametrize("n", [1001, 70001])      # one NumPy cache block, and three (the last one partial)
@pytest.mark.parametrize("grad_dtype,scaler", [(np.float32, 1.0), (np.float16, 1024.0)])
@pytest.mark.parametrize("opt_type", HPARAMS)
def test_steps_with_a_changing_rate_match_the_float32_expressions_bit_for_bit(opt_type, grad_dtype, scaler, n):
    rng = np.random.default_rng(n)
    w0 = rng.normal(size=n).astype(F32)
    grads = gradients(rng, n, len(SCHEDULE), grad_dtype, scaler)
    opt = create_dense_optimizer(opt_type, learning_rate=SCHEDULE[0], scaler=scaler,
                                 mixed_precision=grad_dtype == np.float16, xp=get_backend("numpy"),
                                 **HPARAMS[opt_type])
    w = w0.copy()
    for g, lr in zip(grads, SCHEDULE):
        kept = g.copy()
        opt.update(w, g, lr=lr)
        np.testing.assert_array_equal(g, kept)   # the caller's gradient stays intact
    want_w, want_states = expected_steps(opt_type, w0, grads, scaler, SCHEDULE, HPARAMS[opt_type])
    np.testing.assert_array_equal(w, want_w)
    assert len(opt.state_arrays()) == len(want_states)
    for got, want in zip(opt.state_arrays(), want_states):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("opt_type", HPARAMS)
def test_a_step_is_one_dense_update_that_reads_the_rate_array(opt_type, monkeypatch):
    backend = get_backend("numpy")
    ops = RecordingOps(backend.ops)
    monkeypatch.setattr(backend, "ops", ops)
    opt = create_dense_optimizer(opt_type, learning_rate=0.05, xp=backend, **HPARAMS[opt_type]).init(5)
    assert opt.ops is ops
    w, g = np.ones(5, F32), np.full(5, 0.5, F32)
    opt.update(w, g)
    opt.update(w, g, lr=0.01)
    # each step: the rate written into its device scalar (Backend.write), then one update
    assert [name for name, _ in ops.calls] == ["write_table", "dense_update"] * 2
    assert ops.calls[2][1][0] is opt.persistent_arrays()[0]   # (lr, or Adam's alpha_t)
    rule, weights, grads, scaler, rate, *states = ops.calls[3][1]
    assert rule == opt_type and weights is w and grads is g and scaler == opt.scaler
    # the device scalar prepare() writes (a graph of run() reads it at each replay), not a host number
    assert rate is opt.persistent_arrays()[0] and rate.dtype == F32 and rate.shape == ()
    assert all(a is b for a, b in zip(states, opt.state_arrays())) and len(states) == len(opt.state_names)


def test_an_array_module_runs_the_reference():
    opt = create_dense_optimizer("Adam", learning_rate=0.05, xp=np)
    assert opt.xp is np and opt.ops.implementation("dense_update") == "reference"


def test_python_float_constants_round_as_float32():
    rng = np.random.default_rng(3)
    base = [rng.normal(size=11).astype(F32), rng.normal(size=11).astype(F32)]
    results = []
    for constants in ({"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7},
                      {"beta1": F32(0.9), "beta2": F32(0.999), "epsilon": F32(1e-7)}):
        w, grads, m, v = base[0].copy(), base[1], np.zeros(11, F32), np.zeros(11, F32)
        dense_update(np, "Adam", w, grads, 4.0, np.array(0.01, F32), m, v, **constants)
        results.append((w, m, v))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_unknown_rule_is_named():
    with pytest.raises(ValueError, match="unknown rule 'RMSProp'; expected one of Adam, AdaGrad"):
        dense_update(np, "RMSProp", np.zeros(3, F32), np.zeros(3, F32), 1.0, np.array(0.1, F32))


def test_the_cuda_rules_constants_round_as_the_float32_expressions():
    """optimizer_rules.cuh computes (float)(1.0 - c) and (float)(1.0 + c) in double from the float32
    hyper-parameter c; the reference computes 1 - c and 1 + c in float32: the same float32 for every c in
    [0, 1) (exact in double for c >= 2**-29, then rounded once; below, both give 1)."""
    rng = np.random.default_rng(0)
    c = np.concatenate([rng.random(200_000, dtype=F32), F32([0, 1e-30, 2**-29, 2**-25, 0.5, 0.9, 0.999, 0.9999999]),
                        np.nextafter(F32(1), F32(0), dtype=F32)[None]])
    wide = c.astype(np.float64)
    np.testing.assert_array_equal((1.0 - wide).astype(F32), F32(1) - c)
    np.testing.assert_array_equal((1.0 + wide).astype(F32), F32(1) + c)


def test_nesterov_in_the_cuda_rules_order_gives_the_reference_bits():
    """The Nesterov rule adds (-mu)*a + (1+mu)*a_new; the reference subtracts (1+mu)*a_new - mu*a."""
    rng = np.random.default_rng(1)
    n, mu, lr = 100_001, F32(0.9), F32(0.05)
    w, a, g = (rng.normal(size=n).astype(F32) for _ in range(3))
    a[::7], g[::5] = 0, 0
    a[::11] = -0.0
    want_w, want_a = w.copy(), a.copy()
    dense_update(np, "Nesterov", want_w, g, 1.0, np.array(lr, F32), want_a, momentum_factor=mu)
    a_new = mu * a - lr * g
    got_w = w + ((-mu) * a + (F32(1) + mu) * a_new)
    np.testing.assert_array_equal(got_w, want_w)
    np.testing.assert_array_equal(a_new, want_a)


@pytest.mark.gpu
@pytest.mark.parametrize("grad_dtype,scaler", [(np.float32, 1.0), (np.float16, 1024.0)])
@pytest.mark.parametrize("opt_type", HPARAMS)
def test_graph_replays_follow_the_rate_bit_for_bit(opt_type, grad_dtype, scaler):
    """The kernel captured once in a CUDA graph reads each step's rate (lr, Adam's alpha_t) from device
    memory at replay: the same bits as the NumPy optimizer under a changing learning rate."""
    backend = get_backend("cupy")
    rng = np.random.default_rng(5)
    n = 100_003
    w0 = rng.normal(size=n).astype(F32)
    grads = gradients(rng, n, len(SCHEDULE), grad_dtype, scaler)

    def make(xp):
        return create_dense_optimizer(opt_type, learning_rate=SCHEDULE[0], scaler=scaler, xp=xp,
                                      mixed_precision=grad_dtype == np.float16, **HPARAMS[opt_type]).init(n)

    host, device = make(get_backend("numpy")), make(backend)
    assert device.ops.implementation("dense_update") == "kernel"
    w_host, w_dev = w0.copy(), backend.asarray(w0)
    g_dev = backend.asarray(grads[0])
    step = backend.graph(lambda: device.run(w_dev, g_dev), "dense optimizer step")
    for g, lr in zip(grads, SCHEDULE):
        host.update(w_host, g, lr=lr)
        g_dev[...] = backend.asarray(g)
        device.set_learning_rate(lr)
        device.prepare()
        step()
    assert step.graph is not None and step.failure is None
    np.testing.assert_array_equal(to_host(w_dev), w_host)
    for got, want in zip(device.state_arrays(), host.state_arrays()):
        np.testing.assert_array_equal(to_host(got), want)
