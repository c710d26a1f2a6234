import math

import numpy as np
import pytest

from hugectr_lab.backend import get_backend
from hugectr_lab.optim import (
    AdaGradOptimizer,
    AdamOptimizer,
    MomentumSGDOptimizer,
    NesterovOptimizer,
    SGDOptimizer,
    create_dense_optimizer,
)

HPARAMS = {
    "SGD": {},
    "MomentumSGD": {"momentum_factor": 0.9},
    "Nesterov": {"momentum_factor": 0.9},
    "Adam": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7},
    "AdaGrad": {"initial_accu_value": 0.1, "epsilon": 1e-7},
}
STATE_COUNT = {"SGD": 0, "MomentumSGD": 1, "Nesterov": 1, "Adam": 2, "AdaGrad": 1}


def reference_steps(opt_type, w, grads, lr, scaler=1.0, round_state=float, **hp):
    """Independent per-element loop in float64; ``round_state`` stores a state (fp16 rounding).

    Hyper-parameters are float32 values, as in HugeCTR (1 - float32(0.999) != 0.001).
    """
    lr = float(np.float32(lr))
    hp = {k: float(np.float32(v)) for k, v in hp.items()}
    w = [float(x) for x in w]
    n = len(w)
    m, v = [0.0] * n, [0.0] * n
    if opt_type == "AdaGrad":
        m = [round_state(hp["initial_accu_value"])] * n
    for t, grad in enumerate(grads, start=1):
        for i in range(n):
            g = float(grad[i]) / scaler
            if opt_type == "SGD":
                w[i] -= lr * g
            elif opt_type == "MomentumSGD":
                new = hp["momentum_factor"] * m[i] - lr * g
                m[i] = round_state(new)
                w[i] += new
            elif opt_type == "Nesterov":
                mu = hp["momentum_factor"]
                new = mu * m[i] - lr * g
                w[i] += -mu * m[i] + (1 + mu) * new
                m[i] = round_state(new)
            elif opt_type == "Adam":
                b1, b2 = hp["beta1"], hp["beta2"]
                new_m = b1 * m[i] + (1 - b1) * g
                new_v = b2 * v[i] + (1 - b2) * g * g
                alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                w[i] -= alpha * new_m / (math.sqrt(new_v) + hp["epsilon"])
                m[i], v[i] = round_state(new_m), round_state(new_v)
            elif opt_type == "AdaGrad":
                acc = m[i] + g * g
                w[i] -= lr * g / (math.sqrt(acc) + hp["epsilon"])
                m[i] = round_state(acc)
    return np.array(w), [np.array(s) for s in (m, v)][:STATE_COUNT[opt_type]]


def host(a):
    return a if isinstance(a, np.ndarray) else a.get()


W0 = np.array([0.5, -1.0, 2.0, 0.0], dtype=np.float32)
GRADS = [np.array(g, dtype=np.float32) for g in
         ([0.1, -0.2, 0.3, 0.0], [0.5, 0.1, -0.4, 1e-3], [-0.3, 0.2, 0.2, -2.0])]


@pytest.mark.parametrize("opt_type", HPARAMS)
def test_three_steps_match_an_independent_loop(xp, opt_type):
    opt = create_dense_optimizer(opt_type, learning_rate=0.05, xp=xp, **HPARAMS[opt_type])
    w = xp.asarray(W0.copy())
    for g in GRADS:
        opt.update(w, xp.asarray(g))
    expected_w, expected_states = reference_steps(opt_type, W0, GRADS, 0.05, **HPARAMS[opt_type])
    np.testing.assert_allclose(host(w), expected_w, rtol=1e-5, atol=1e-7)
    states = [host(s) for s in opt.state_arrays()]
    assert len(states) == STATE_COUNT[opt_type]
    for got, want in zip(states, expected_states):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)


# Hand-computed: constant gradient 1 on a single weight starting at 1, lr 0.1, three steps.
def run_three_unit_steps(opt):
    w = np.ones(1, dtype=np.float32)
    for _ in range(3):
        opt.update(w, np.ones(1, dtype=np.float32))
    return float(w[0])


def test_sgd_by_hand():
    assert run_three_unit_steps(SGDOptimizer(0.1)) == pytest.approx(0.7, abs=1e-6)


def test_momentum_by_hand():
    # m: -0.1, -0.19, -0.271 -> w: 0.9, 0.71, 0.439
    opt = MomentumSGDOptimizer(0.1, momentum_factor=0.9)
    assert run_three_unit_steps(opt) == pytest.approx(0.439, abs=1e-6)
    assert float(opt.state_arrays()[0][0]) == pytest.approx(-0.271, abs=1e-6)


def test_nesterov_by_hand():
    # a: -0.1, -0.19, -0.271; w += -0.9*a_old + 1.9*a_new: -0.19, -0.271, -0.3439
    opt = NesterovOptimizer(0.1, momentum_factor=0.9)
    assert run_three_unit_steps(opt) == pytest.approx(1 - 0.19 - 0.271 - 0.3439, abs=1e-6)


def test_adam_by_hand():
    # Constant g: m_t = (1-b1^t) g, v_t = (1-b2^t) g^2, so with eps 0 every step moves lr*sign(g).
    opt = AdamOptimizer(0.1, epsilon=0.0)
    assert run_three_unit_steps(opt) == pytest.approx(0.7, abs=1e-6)
    assert opt.t == 3


def test_adagrad_by_hand():
    # acc: 1, 2, 3 -> w -= 0.1/1 + 0.1/sqrt(2) + 0.1/sqrt(3)
    opt = AdaGradOptimizer(0.1, epsilon=0.0)
    assert run_three_unit_steps(opt) == pytest.approx(1 - 0.228445705, abs=1e-6)


@pytest.mark.parametrize("opt_type", HPARAMS)
def test_gradient_is_divided_by_the_scaler(opt_type):
    plain = create_dense_optimizer(opt_type, learning_rate=0.05, **HPARAMS[opt_type])
    scaled = create_dense_optimizer(opt_type, learning_rate=0.05, scaler=1024.0, **HPARAMS[opt_type])
    w_plain, w_scaled = W0.copy(), W0.copy()
    for g in GRADS:
        plain.update(w_plain, g)
        scaled.update(w_scaled, g * np.float32(1024))
    np.testing.assert_array_equal(w_plain, w_scaled)  # power-of-two scaling is exact


@pytest.mark.parametrize("opt_type", HPARAMS)
def test_mixed_precision_keeps_fp32_states_and_divides_by_the_scaler(opt_type):
    # fp16 states (HugeCTR) underflow Adam's v and diverge; ours stay float32, the file is fp16.
    opt = create_dense_optimizer(opt_type, learning_rate=0.05, mixed_precision=True, scaler=128.0,
                                 **HPARAMS[opt_type])
    w = W0.copy()
    grads = [(g * 128).astype(np.float16) for g in GRADS]
    for g in grads:
        opt.update(w, g)
    assert w.dtype == np.float32
    assert all(s.dtype == np.float32 for s in opt.state_arrays())
    expected_w, expected_states = reference_steps(
        opt_type, W0, [g.astype(np.float64) for g in grads], 0.05, scaler=128.0, **HPARAMS[opt_type])
    np.testing.assert_allclose(w, expected_w, rtol=1e-5, atol=1e-7)
    for got, want in zip(opt.state_arrays(), expected_states):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
    assert opt.state_bytes() == b"".join(s.astype(np.float16).tobytes() for s in opt.state_arrays())


def test_mixed_precision_small_gradients_do_not_underflow_adam():
    opt = AdamOptimizer(0.001, mixed_precision=True)
    w = np.zeros(3, dtype=np.float32)
    opt.update(w, np.full(3, 1e-4, dtype=np.float16))  # (1-b2)*g^2 = 1e-11 is 0 in fp16
    assert np.isfinite(w).all() and np.abs(w).max() <= 0.0011


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan")])
def test_learning_rate_must_be_positive(bad):
    opt = SGDOptimizer(0.1)
    with pytest.raises(ValueError, match="learning rate must be > 0"):
        opt.set_learning_rate(bad)
    with pytest.raises(ValueError, match="learning rate must be > 0"):
        opt.update(W0.copy(), GRADS[0], lr=bad)
    with pytest.raises(ValueError, match="learning rate must be > 0"):
        SGDOptimizer(bad)


def test_update_lr_argument_sets_the_learning_rate():
    opt = SGDOptimizer(0.1)
    w = np.ones(1, dtype=np.float32)
    opt.update(w, np.ones(1, dtype=np.float32), lr=0.5)
    assert (float(w[0]), float(opt.learning_rate)) == (0.5, 0.5)


def test_states_are_allocated_lazily():
    opt = AdaGradOptimizer(0.1, initial_accu_value=0.25)
    assert opt.num_params is None
    with pytest.raises(RuntimeError, match="call init"):
        opt.state_arrays()
    opt.init(3)
    np.testing.assert_array_equal(opt.state_arrays()[0], [0.25, 0.25, 0.25])
    opt2 = AdamOptimizer(0.1)
    opt2.update(W0.copy(), GRADS[0])
    assert opt2.num_params == W0.size


def test_buffer_mismatches_are_reported():
    opt = SGDOptimizer(0.1).init(4)
    with pytest.raises(ValueError, match="4 parameters"):
        opt.update(np.zeros(3, np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="weights must be float32"):
        opt.update(np.zeros(4, np.float64), np.zeros(4, np.float32))


@pytest.mark.parametrize("mixed_precision", [False, True])
@pytest.mark.parametrize("opt_type", HPARAMS)
def test_state_bytes_round_trip(opt_type, mixed_precision):
    def make():
        return create_dense_optimizer(opt_type, learning_rate=0.05, mixed_precision=mixed_precision,
                                      **HPARAMS[opt_type])

    trained, w = make(), W0.copy()
    for g in GRADS[:2]:
        trained.update(w, g)
    data = trained.state_bytes()
    itemsize = 2 if mixed_precision else 4
    assert len(data) == STATE_COUNT[opt_type] * W0.size * itemsize
    file_dtype = np.float16 if mixed_precision else np.float32
    assert data == b"".join(s.astype(file_dtype).tobytes() for s in trained.state_arrays())  # file order

    reloaded = make().init(W0.size)
    reloaded.load_state_bytes(data)
    if opt_type == "Adam":
        reloaded.t = trained.t  # the file has no step counter
    w2 = w.copy()
    trained.update(w, GRADS[2])
    reloaded.update(w2, GRADS[2])
    if mixed_precision:  # the file rounds the states to fp16
        np.testing.assert_allclose(w, w2, rtol=1e-3, atol=1e-6)
    else:
        np.testing.assert_array_equal(w, w2)


def test_adam_reload_restarts_bias_correction():
    trained, w = AdamOptimizer(0.05), W0.copy()
    for g in GRADS[:2]:
        trained.update(w, g)
    reloaded = AdamOptimizer(0.05).init(W0.size)
    reloaded.load_state_bytes(trained.state_bytes())
    assert reloaded.t == 0
    w2 = w.copy()
    trained.update(w, GRADS[2])
    reloaded.update(w2, GRADS[2])
    assert reloaded.t == 1
    assert not np.array_equal(w, w2)


def test_state_bytes_are_validated():
    opt = AdamOptimizer(0.1).init(10)
    with pytest.raises(ValueError, match=r"must be 80 bytes \(m then v, 10 float32 values each\), got 72"):
        opt.load_state_bytes(bytes(72))
    with pytest.raises(RuntimeError, match="call init"):
        AdamOptimizer(0.1).load_state_bytes(bytes(80))
    sgd = SGDOptimizer(0.1).init(10)
    sgd.load_state_bytes(b"")
    assert sgd.state_bytes() == b""
    with pytest.raises(ValueError, match="SGD has no state"):
        sgd.load_state_bytes(b"\0")


def test_load_state_arrays_checks_count_and_size():
    opt = AdamOptimizer(0.1)
    opt.load_state_arrays([np.ones(3, np.float32), np.full(3, 2, np.float32)])
    assert opt.num_params == 3
    with pytest.raises(ValueError, match="2 state arrays"):
        opt.load_state_arrays([np.ones(3, np.float32)])
    with pytest.raises(ValueError, match="'v' must have 3 elements"):
        opt.load_state_arrays([np.ones(3, np.float32), np.ones(4, np.float32)])


def test_factory():
    for name, cls in [("SGD", SGDOptimizer), ("MomentumSGD", MomentumSGDOptimizer),
                      ("Nesterov", NesterovOptimizer), ("Adam", AdamOptimizer),
                      ("AdaGrad", AdaGradOptimizer)]:
        opt = create_dense_optimizer(name, learning_rate=0.1, momentum_factor=0.5, beta1=0.8,
                                     atomic_update=True, xp=get_backend("numpy"))
        assert type(opt) is cls and opt.xp is np
    assert create_dense_optimizer("Adam", learning_rate=0.1, beta1=0.8).beta1 == np.float32(0.8)
    with pytest.raises(ValueError, match="unknown dense optimizer type 'RMSProp'"):
        create_dense_optimizer("RMSProp", learning_rate=0.1)
    with pytest.raises(TypeError, match="unknown optimizer hyper-parameter"):
        create_dense_optimizer("SGD", learning_rate=0.1, momentum=0.9)
    with pytest.raises(TypeError, match="momentum_factor"):
        create_dense_optimizer("MomentumSGD", learning_rate=0.1)


def test_adam_rejects_betas_outside_unit_interval():
    with pytest.raises(ValueError, match="beta2 must be in"):
        AdamOptimizer(0.1, beta2=1.0)
