"""Sparse optimizers: every type x update type against per-key math written out by hand."""

import math

import numpy as np
import pytest

from hugectr_lab.embedding import (DistributedSlotSparseEmbeddingHash, SparseAdaGrad, SparseAdam,
                                   SparseMomentumSGD, SparseNesterov, SparseOptimizer, SparseSGD)

LR, B1, B2, EPS, MU, ACC0, SCALER = 0.1, 0.9, 0.99, 1e-3, 0.5, 0.1, 4.0
KEYS = (1, 2, 3)
# Three steps of a batch of 2 samples x 1 slot: (keys of sample 0, keys of sample 1).
# Step 2 leaves keys 1 and 3 idle; key 3 is idle in steps 1-2 and returns in step 3 (LazyGlobal catch-up).
STEPS = [([1, 2], [1]), ([2], []), ([1, 3], [3, 3])]

CASES = [
    ("SGD", "Local", {}), ("SGD", "Global", {}),
    ("SGD", "Local", {"atomic_update": True}), ("SGD", "LazyGlobal", {"atomic_update": True}),
    ("MomentumSGD", "Local", {"momentum_factor": MU}), ("MomentumSGD", "Global", {"momentum_factor": MU}),
    ("Nesterov", "Local", {"momentum_factor": MU}), ("Nesterov", "Global", {"momentum_factor": MU}),
    ("Adam", "Local", {"beta1": B1, "beta2": B2, "epsilon": EPS}),
    ("Adam", "Global", {"beta1": B1, "beta2": B2, "epsilon": EPS}),
    ("Adam", "LazyGlobal", {"beta1": B1, "beta2": B2, "epsilon": EPS}),
    ("AdaGrad", "Local", {"initial_accu_value": ACC0, "epsilon": EPS}),
    ("AdaGrad", "Global", {"initial_accu_value": ACC0, "epsilon": EPS}),
]


def reference_update(opt, update_type, w, state, grads, t):
    """One step on dicts key -> float64 vector, HugeCTR's formulas per key; ``grads`` holds touched keys."""
    for key in KEYS:
        g, s = grads.get(key), state[key]
        if opt == "SGD":
            if g is not None:
                w[key] = w[key] - LR * g
        elif opt == "AdaGrad":
            if g is not None:
                s["accumulator"] = s["accumulator"] + g * g
                w[key] = w[key] - LR * g / (np.sqrt(s["accumulator"]) + EPS)
        elif opt == "MomentumSGD":
            if g is not None or update_type == "Global":
                s["momentum"] = MU * s["momentum"] - LR * (0 if g is None else g)
                w[key] = w[key] + s["momentum"]
        elif opt == "Nesterov":
            if g is not None or update_type == "Global":
                old = s["accumulator"]
                s["accumulator"] = MU * old - LR * (0 if g is None else g)
                w[key] = w[key] - MU * old + (1 + MU) * s["accumulator"]
        elif update_type == "LazyGlobal":
            if g is not None:
                p, k = s["prev_time"], t - s["prev_time"]
                alpha = LR / (1 - B1) * math.sqrt(1 - B2 ** p) / (1 - B1 ** p) * (1 - B1 ** k)
                w[key] = w[key] - alpha * s["m"] / (np.sqrt(s["v"]) + EPS)
                s["m"] = B1 ** k * s["m"] + (1 - B1) * g
                s["v"] = B2 ** k * s["v"] + (1 - B2) * g * g
                s["prev_time"] = t
        elif g is not None or update_type == "Global":
            g = 0 if g is None else g
            s["m"] = B1 * s["m"] + (1 - B1) * g
            s["v"] = B2 * s["v"] + (1 - B2) * g * g
            alpha = LR * math.sqrt(1 - B2 ** t) / (1 - B1 ** t)
            w[key] = w[key] - alpha * s["m"] / (np.sqrt(s["v"]) + EPS)


def key_grads(step_keys, top, combiner):
    """g per key = sum over occurrences of top grad (/count for mean) / S, as float64."""
    grads = {}
    for sample, keys in enumerate(step_keys):
        for key in keys:
            share = top[sample, 0] / (len(keys) if combiner == "mean" and len(keys) > 1 else 1)
            grads[key] = grads.get(key, 0) + share.astype(np.float64) / SCALER
    return grads


def run(optimizer, combiner="mean", mixed_precision=False, seed=0):
    """Train STEPS on keys 1..3 and, alongside, the per-key reference. Yields after every step."""
    rng = np.random.default_rng(seed)
    emb = DistributedSlotSparseEmbeddingHash(slot_num=1, embedding_vec_size=2, max_vocabulary_size_per_gpu=8,
                                             combiner=combiner, optimizer=optimizer, scaler=SCALER,
                                             mixed_precision=mixed_precision)
    start = rng.uniform(-1, 1, (3, 2)).astype(np.float32)
    emb.load(np.array(KEYS), start)
    w = {k: start[i].astype(np.float64) for i, k in enumerate(KEYS)}
    init = {"m": 0.0, "v": 0.0, "prev_time": 1, "momentum": 0.0, "accumulator": 0.0}
    if optimizer.type_name == "AdaGrad":
        init["accumulator"] = ACC0
    state = {k: {n: np.full(2, init[n]) if n != "prev_time" else 1 for n in optimizer.state_names} for k in KEYS}
    for t, step_keys in enumerate(STEPS, start=1):
        row_offsets = np.cumsum([0] + [len(k) for k in step_keys])
        emb.forward(row_offsets, np.concatenate([np.array(k, dtype=np.uint32) for k in step_keys]))
        top = (rng.standard_normal((2, 1, 2)) * SCALER).astype(emb.compute_dtype)
        emb.backward([top])
        emb.update()
        reference_update(optimizer.type_name, optimizer.update_type, w, state, key_grads(step_keys, top, combiner), t)
        yield emb, w, state


def by_key(emb):
    keys, vectors, _ = emb.dump()
    return dict(zip(keys.tolist(), vectors)), {n: dict(zip(keys.tolist(), a)) for n, a in
                                               emb.dump_optimizer_state().items()}


@pytest.mark.parametrize("opt, update_type, hparams", CASES, ids=[f"{o}-{u}-{len(h)}" for o, u, h in CASES])
def test_update_matches_per_key_formulas(opt, update_type, hparams):
    optimizer = SparseOptimizer.from_spec(type("Spec", (), dict(type=opt, update_type=update_type,
                                                                learning_rate=LR, **hparams)))
    for emb, w, state in run(optimizer):
        values, states = by_key(emb)
        for key in KEYS:
            np.testing.assert_allclose(values[key], w[key], rtol=2e-5, atol=1e-6, err_msg=f"w of key {key}")
            for name, array in states.items():
                np.testing.assert_allclose(array[key], state[key][name], rtol=2e-5, atol=1e-7,
                                           err_msg=f"{name} of key {key}")
    assert emb.step == len(STEPS)


@pytest.mark.parametrize("optimizer, idle_moves", [
    (SparseAdam(LR, "Local"), False), (SparseAdam(LR, "Global"), True),
    (SparseMomentumSGD(LR, "Global", MU), True), (SparseNesterov(LR, "Global", MU), True),
    (SparseAdam(LR, "LazyGlobal"), False), (SparseMomentumSGD(LR, "Local", MU), False),
])
def test_global_moves_idle_rows(optimizer, idle_moves):
    steps = run(optimizer)
    before = by_key(next(steps)[0])[0][1].copy()
    after = by_key(next(steps)[0])[0][1]            # key 1 is idle in step 2
    assert (not np.array_equal(before, after)) == idle_moves


def test_global_adam_moves_every_table_row_with_state():
    emb, _, _ = next(run(SparseAdam(LR, "Global")))
    values_before = emb.devices[0].values.copy()
    emb.forward(np.array([0, 0, 0]), np.array([], dtype=np.uint32))   # nothing touched
    emb.backward([np.zeros((2, 1, 2), np.float32)])
    emb.update()
    moved = np.any(emb.devices[0].values != values_before, axis=1)
    assert moved.tolist() == [True, True, False, False, False, False, False, False]   # keys 1, 2 had state


@pytest.mark.parametrize("combiner", ["sum", "mean"])
def test_atomic_sgd_equals_reduced_sgd(combiner):
    atomic = [by_key(e)[0] for e, _, _ in run(SparseSGD(LR, atomic_update=True), combiner)]
    reduced = [by_key(e)[0] for e, _, _ in run(SparseSGD(LR), combiner)]
    for a, r in zip(atomic, reduced):
        for key in KEYS:
            np.testing.assert_allclose(a[key], r[key], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("optimizer", [SparseAdam(LR, "Global", B1, B2, EPS), SparseMomentumSGD(LR, "Local", MU),
                                       SparseAdaGrad(LR, "Local", ACC0, EPS)])
def test_mixed_precision_keeps_fp32_states_and_stays_close(optimizer):
    fp32 = [by_key(e)[0] for e, _, _ in run(optimizer)]
    for values32, (emb, _, _) in zip(fp32, run(optimizer, mixed_precision=True)):
        assert all(a.dtype == np.float32 for a in emb.devices[0].state.values())
        values16 = by_key(emb)[0]
        for key in KEYS:
            np.testing.assert_allclose(values16[key], values32[key], rtol=1e-2, atol=2e-3)


@pytest.mark.parametrize("make, message", [
    (lambda: SparseMomentumSGD(LR, "LazyGlobal"), "MomentumSGD does not support update_type 'LazyGlobal'"),
    (lambda: SparseNesterov(LR, "LazyGlobal"), "Nesterov does not support update_type 'LazyGlobal'"),
    (lambda: SparseSGD(LR, "LazyGlobal"), "SGD does not support update_type 'LazyGlobal'"),
    (lambda: SparseAdaGrad(LR, "LazyGlobal"), "AdaGrad does not support update_type 'LazyGlobal'"),
    (lambda: SparseMomentumSGD(LR, "Global", 0.0), "needs momentum_factor != 0"),
    (lambda: SparseAdam(LR, "Lazy"), "update_type must be one of Local, Global, LazyGlobal"),
    (lambda: SparseOptimizer.from_spec(type("S", (), {"type": "RMSprop"})), "unknown optimizer type 'RMSprop'"),
])
def test_unsupported_combinations_are_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_atomic_sgd_accepts_lazy_global_and_momentum_zero_is_fine_locally():
    assert SparseSGD(LR, "LazyGlobal", atomic_update=True).update_op == "sparse_sgd_atomic_update"
    assert SparseMomentumSGD(LR, "Local", 0.0).momentum_factor == 0.0


def test_update_needs_backward_and_lr_can_be_set_per_call():
    emb = DistributedSlotSparseEmbeddingHash(slot_num=1, embedding_vec_size=2, max_vocabulary_size_per_gpu=4,
                                             optimizer=SparseSGD(1.0))
    with pytest.raises(RuntimeError, match="update\\(\\) needs a backward\\(\\) first"):
        emb.update()
    emb.load(np.array([5]), np.zeros((1, 2)))
    emb.forward(np.array([0, 1]), np.array([5], dtype=np.uint32))
    emb.backward([np.ones((1, 1, 2), np.float32)])
    emb.update(lr=0.25)
    assert emb.optimizer.learning_rate == 0.25
    np.testing.assert_allclose(emb.dump()[1], [[-0.25, -0.25]])


@pytest.mark.parametrize("opt, update_type, hparams", CASES, ids=[f"{o}-{u}-{len(h)}" for o, u, h in CASES])
def test_padding_rows_of_the_fixed_size_view_are_skipped(opt, update_type, hparams):
    """The update ops take the (K,) distinct-key view: -1 rows (and their gradient rows) change nothing."""
    from hugectr_lab.backend import REFERENCES
    from hugectr_lab.embedding.combine import embedding_reduce_grad

    optimizer = SparseOptimizer.from_spec(type("Spec", (), dict(type=opt, update_type=update_type,
                                                                learning_rate=LR, **hparams)))
    rng = np.random.default_rng(3)
    rows = np.array([4, 0, 6], dtype=np.int64)
    g = rng.standard_normal((3, 2)).astype(np.float32)
    padded_rows = np.array([4, 0, 6, -1, -1], dtype=np.int64)
    padded_g = np.concatenate([g, rng.standard_normal((2, 2)).astype(np.float32)])
    results = []
    for r, grad in ((rows, g), (padded_rows, padded_g)):
        values = rng.standard_normal((8, 2)).astype(np.float32) if not results else results[0][2].copy()
        state = optimizer.init_state(np, 8, 2)
        start = values.copy()
        if optimizer.update_op == "sparse_sgd_atomic_update":
            REFERENCES["sparse_sgd_atomic_update"](np, values, r, np.arange(r.size), grad, LR)
        else:
            REFERENCES[optimizer.update_op](np, values, *(state[n] for n in optimizer.state_names), r, grad,
                                            **optimizer.hparams(LR, 2))
        results.append((values, state, start))
    (v1, s1, _), (v2, s2, _) = results
    np.testing.assert_array_equal(v1, v2)
    for name in s1:
        np.testing.assert_array_equal(s1[name], s2[name])
    # the reduction leaves a slot no occurrence points at zero, and skips occurrences without a row
    wgrad = rng.standard_normal((3, 2)).astype(np.float32)
    reduced = embedding_reduce_grad(np, wgrad, np.array([0, 1, 2, 1]), np.array([1, -1, 0, 1]), 4, 2.0)
    np.testing.assert_allclose(reduced, np.stack([wgrad[2], wgrad[0] + wgrad[1], 0 * wgrad[0], 0 * wgrad[0]]) / 2)


@pytest.mark.parametrize("update_op, arrays, message", [
    ("sparse_sgd_atomic_update", 1, "update_op must be one of .*got 'sparse_sgd_atomic_update'"),
    ("sparse_rmsprop_update", 1, "got 'sparse_rmsprop_update'"),
    ("sparse_sgd_update", 0, "arrays must end with the touched rows"),
])
def test_reduce_update_names_what_it_cannot_run(update_op, arrays, message):
    """The fused op takes the update ops that read the reduced gradient (atomic SGD reduces nothing)."""
    from hugectr_lab.backend import get_backend

    values = np.zeros((4, 2), np.float32)
    rows = (np.array([0, -1]),)[:arrays]
    with pytest.raises(ValueError, match=message):
        get_backend("numpy").ops.sparse_reduce_update(update_op, np.ones((1, 2), np.float32), np.zeros(2, np.int64),
                                                      np.array([0, -1]), 1.0, values, *rows, lr=0.1)
