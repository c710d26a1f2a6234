"""Sparse (embedding) optimizers: HugeCTR's per-key update rules for every update type.

Per device and step, ``g_r`` = (sum of the top gradients of all occurrences of row r's key) / S, in
float32. "Local" updates the touched rows, "Global" every row of the table (decaying the state of
untouched rows), "LazyGlobal" (Adam only) applies that decay to a row the next time it is touched.
Tables are float32; state arrays (V, E) have the compute dtype (float16 in mixed precision) and are
read into float32 for the arithmetic. Every update op below changes ``values`` and the state in place.
"""

from __future__ import annotations

import numpy as np

from ..backend import REFERENCES, reference_op
from .combine import embedding_reduce_grad, fold_segments
from ..config import UPDATE_TYPES
from ..rules.optimizers import adam_step_size, momentum_step, nesterov_step

SPARSE_OPTIMIZERS: dict = {}


class SparseOptimizer:
    """Hyper-parameters and update rule; the state arrays live with the embedding, one set per device.

    Subclasses set ``type_name``, ``ops_by_update_type`` (update type -> reference op name; a missing
    update type is rejected) and ``hparams``; the step counter ``step`` is owned by the embedding.
    """

    type_name = ""
    ops_by_update_type: dict = {}
    state_names: tuple = ()
    hparam_names: tuple = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.type_name:
            SPARSE_OPTIMIZERS[cls.type_name] = cls

    def __init__(self, learning_rate=0.001, update_type="Local"):
        if update_type not in UPDATE_TYPES:
            raise ValueError(f"update_type must be one of {', '.join(UPDATE_TYPES)}, got {update_type!r}")
        self.learning_rate = float(learning_rate)
        self.update_type = update_type
        if update_type not in self.ops_by_update_type:
            raise ValueError(f"sparse optimizer {self.type_name} does not support update_type {update_type!r} "
                             f"(supported: {', '.join(self.ops_by_update_type)})")

    @staticmethod
    def from_spec(spec):
        """Build from an object with HugeCTR's optimizer attributes (``type``, ``update_type``,
        ``learning_rate``, ``beta1``, ``beta2``, ``epsilon``, ``momentum_factor``, ``atomic_update``,
        ``initial_accu_value``); attributes that are missing or None take the defaults."""
        try:
            cls = SPARSE_OPTIMIZERS[spec.type]
        except KeyError:
            raise ValueError(f"unknown optimizer type {spec.type!r} for an embedding "
                             f"(known: {', '.join(SPARSE_OPTIMIZERS)})") from None
        names = ("learning_rate", "update_type") + cls.hparam_names
        kwargs = {n: getattr(spec, n) for n in names if getattr(spec, n, None) is not None}
        return cls(**kwargs)

    @property
    def update_op(self):
        """Name of the reference op that this optimizer's update type runs."""
        return self.ops_by_update_type[self.update_type]

    def init_state(self, xp, num_rows, vec_size):
        """Fresh state arrays of one device: ``{name: (V, E) float32 array}``.

        float32 in mixed precision too: HugeCTR keeps fp16 states, where Adam's v underflows for
        small gradients and the update m/(sqrt(v)+eps) explodes."""
        return {name: xp.zeros((num_rows, vec_size), dtype=xp.float32) for name in self.state_names}

    def hparams(self, lr, step):
        """Keyword arguments of the update op besides the arrays."""
        return {"lr": lr}

    def apply(self, ops, values, state, lookup, row_ids, wgrad, hyper, scaler):
        """One update of one device's table from the top gradient of the batch.

        values (V, E) float32; lookup: the ``Lookup`` of the batch's keys on this device (fixed-size
        distinct-key view: -1 rows are padding, skipped by the update ops); row_ids (K,) CSR row of
        each key occurrence; wgrad (R, E) per (sample, slot) row, compute dtype, times S; hyper (3,)
        float64 learning rate, step and lr/S of this update, in the table's array module (the ops take
        its entries as 0-d arrays: a CUDA graph reads them at each replay). Nothing here reads the device.
        The reduction of duplicate keys and the update are one op (``sparse_reduce_update``), so a
        backend may fuse them.
        """
        ops.sparse_reduce_update(self.update_op, wgrad, row_ids, lookup.inverse, scaler, values,
                                 *(state[n] for n in self.state_names), lookup.unique_rows,
                                 **self.hparams(hyper[0], hyper[1]))

    def __repr__(self):
        params = ", ".join(f"{n}={getattr(self, n)!r}" for n in ("learning_rate", "update_type") + self.hparam_names)
        return f"{type(self).__name__}({params})"


class SparseSGD(SparseOptimizer):
    """w_r -= lr * g_r. With ``atomic_update`` every key occurrence adds -(lr/S) * wgrad directly
    (HugeCTR's atomicAdd path; any update type, LazyGlobal included)."""

    type_name = "SGD"
    ops_by_update_type = {"Local": "sparse_sgd_update", "Global": "sparse_sgd_update"}
    hparam_names = ("atomic_update",)

    def __init__(self, learning_rate=0.001, update_type="Local", atomic_update=False):
        self.atomic_update = bool(atomic_update)
        if self.atomic_update:
            # HugeCTR checks atomic_update before the update type, so every update type runs it.
            self.ops_by_update_type = dict.fromkeys(UPDATE_TYPES, "sparse_sgd_atomic_update")
        super().__init__(learning_rate, update_type)

    def apply(self, ops, values, state, lookup, row_ids, wgrad, hyper, scaler):
        if not self.atomic_update:
            return super().apply(ops, values, state, lookup, row_ids, wgrad, hyper, scaler)
        return ops.sparse_sgd_atomic_update(values, lookup.rows, row_ids, wgrad, hyper[2])


class _Momentum(SparseOptimizer):
    """Shared hyper-parameter of MomentumSGD and Nesterov: the momentum factor mu."""

    hparam_names = ("momentum_factor",)

    def __init__(self, learning_rate=0.001, update_type="Local", momentum_factor=0.1):
        super().__init__(learning_rate, update_type)
        self.momentum_factor = float(momentum_factor)

    def hparams(self, lr, step):
        return {"lr": lr, "momentum_factor": self.momentum_factor}


class SparseMomentumSGD(_Momentum):
    """m_r = mu*m_r - lr*g_r; w_r += m_r. Global: every row's m decays and moves w."""

    type_name = "MomentumSGD"
    ops_by_update_type = {"Local": "sparse_momentum_sgd_update", "Global": "sparse_momentum_sgd_global_update"}
    state_names = ("momentum",)

    def __init__(self, learning_rate=0.001, update_type="Local", momentum_factor=0.1):
        super().__init__(learning_rate, update_type, momentum_factor)
        if update_type == "Global" and self.momentum_factor == 0.0:
            raise ValueError("MomentumSGD with update_type Global needs momentum_factor != 0 "
                             "(HugeCTR's Global update divides the gradient by it); use Local or SGD")


class SparseNesterov(_Momentum):
    """a_new = mu*a_old - lr*g_r; w_r += -mu*a_old + (1+mu)*a_new."""

    type_name = "Nesterov"
    ops_by_update_type = {"Local": "sparse_nesterov_update", "Global": "sparse_nesterov_global_update"}
    state_names = ("accumulator",)

    def __init__(self, learning_rate=0.001, update_type="Local", momentum_factor=0.9):
        super().__init__(learning_rate, update_type, momentum_factor)


class SparseAdam(SparseOptimizer):
    """Adam with bias-corrected step alpha_t = lr*sqrt(1-beta2^t)/(1-beta1^t) (epsilon-hat form).

    LazyGlobal keeps a per-row ``prev_time`` (the step a row was last touched; all E elements of a row
    are always touched together, so one value per row equals HugeCTR's per-element table).
    """

    type_name = "Adam"
    ops_by_update_type = {"Local": "sparse_adam_update", "Global": "sparse_adam_global_update",
                          "LazyGlobal": "sparse_adam_lazy_global_update"}
    hparam_names = ("beta1", "beta2", "epsilon")

    def __init__(self, learning_rate=0.001, update_type="Local", beta1=0.9, beta2=0.999, epsilon=1e-7):
        super().__init__(learning_rate, update_type)
        self.beta1, self.beta2, self.epsilon = float(beta1), float(beta2), float(epsilon)

    @property
    def state_names(self):
        return ("m", "v", "prev_time") if self.update_type == "LazyGlobal" else ("m", "v")

    def init_state(self, xp, num_rows, vec_size):
        state = {name: xp.zeros((num_rows, vec_size), dtype=xp.float32) for name in ("m", "v")}
        if self.update_type == "LazyGlobal":
            state["prev_time"] = xp.ones(num_rows, dtype=xp.int64)
        return state

    def hparams(self, lr, step):
        return {"lr": lr, "beta1": self.beta1, "beta2": self.beta2, "epsilon": self.epsilon, "step": step}


class SparseAdaGrad(SparseOptimizer):
    """HugeCTR v3.1 AdaGrad: acc_r += g_r^2; w_r -= lr*g_r/(sqrt(acc_r) + eps). Global equals Local
    (an untouched row has g = 0 and does not move)."""

    type_name = "AdaGrad"
    ops_by_update_type = {"Local": "sparse_adagrad_update", "Global": "sparse_adagrad_update"}
    state_names = ("accumulator",)
    hparam_names = ("initial_accu_value", "epsilon")

    def __init__(self, learning_rate=0.001, update_type="Local", initial_accu_value=0.0, epsilon=1e-7):
        super().__init__(learning_rate, update_type)
        self.initial_accu_value, self.epsilon = float(initial_accu_value), float(epsilon)

    def init_state(self, xp, num_rows, vec_size):
        return {"accumulator": xp.full((num_rows, vec_size), self.initial_accu_value, dtype=xp.float32)}

    def hparams(self, lr, step):
        return {"lr": lr, "epsilon": self.epsilon}


@reference_op
def sparse_reduce_update(xp, update_op, wgrad, row_ids, inverse, scaler, values, *arrays, **hparams):
    """The update op named ``update_op`` (one that takes the reduced gradient: every update op below
    but ``sparse_sgd_atomic_update``) with g formed from the unreduced gradient:
    ``g = embedding_reduce_grad(wgrad, row_ids, inverse, U, scaler)``, then
    ``update_op(values, *arrays, g, **hparams)``.

    wgrad (R, E) compute dtype; row_ids, inverse (K,) int64 (inverse -1: an occurrence without a row);
    values (V, E) float32; arrays: the update op's state arrays, then rows (U,) int64 (the distinct-key
    view: -1 rows are padding); hparams: the update op's lr, step and constants. Changes ``values``
    and the states in place.
    """
    takes_g = {op for cls in SPARSE_OPTIMIZERS.values() for op in cls.ops_by_update_type.values()}
    takes_g.discard("sparse_sgd_atomic_update")
    if update_op not in takes_g:
        raise ValueError(f"sparse_reduce_update: update_op must be one of {', '.join(sorted(takes_g))}, "
                         f"got {update_op!r}")
    if not arrays:
        raise ValueError("sparse_reduce_update: arrays must end with the touched rows (U,)")
    g = embedding_reduce_grad(xp, wgrad, row_ids, inverse, arrays[-1].size, scaler)
    REFERENCES[update_op](xp, values, *arrays, g, **hparams)


# ---- update ops: rows (U,) int64, distinct except -1 (padding: no row, skipped); g (U, E) float32;
# values (V, E) float32; states (V, E) -------------------------------------------------------------

def _touched(rows, g):
    """The rows that are not padding (-1) and their gradients; views where the padding is a suffix
    (as in a ``Lookup``'s distinct rows) on NumPy, where checking costs no device read."""
    hit = rows >= 0
    if isinstance(hit, np.ndarray):
        count = int(hit.sum())
        if hit[:count].all():
            return rows[:count], g[:count]
    return rows[hit], g[hit]


def _scalars(*values):
    """The per-step scalars (lr, step, lr/S) as Python numbers: callers may pass the float64 device
    scalars an embedding keeps for CUDA graphs (read here: the references are the specification, not
    the graph path)."""
    return tuple(float(v) for v in values)


@reference_op
def sparse_sgd_update(xp, values, rows, g, lr):
    """w_r -= lr * g_r."""
    lr, = _scalars(lr)
    rows, g = _touched(rows, g)
    values[rows] -= lr * g


@reference_op
def sparse_sgd_atomic_update(xp, values, rows, row_ids, wgrad, lr_over_scaler):
    """Per key occurrence k with rows[k] >= 0: w[rows[k]] -= (lr/S) * wgrad[row_ids[k]] (unreduced), in
    occurrence order (the GPU's atomics add in no fixed order)."""
    lr_over_scaler, = _scalars(lr_over_scaler)
    hit = rows >= 0
    rows, updates = rows[hit], wgrad[row_ids[hit]].astype(xp.float32, copy=False)   # a fresh gathered copy
    updates *= -lr_over_scaler
    if xp is np and rows.size:
        fold_segments(values, updates, rows)      # add.at's values, several times faster
    else:
        xp.add.at(values, rows, updates)


@reference_op
def sparse_momentum_sgd_update(xp, values, momentum, rows, g, lr, momentum_factor):
    """m_r = mu*m_r - lr*g_r; w_r += m_r."""
    lr, = _scalars(lr)
    rows, g = _touched(rows, g)
    m = momentum_step(momentum[rows].astype(xp.float32), g, lr, momentum_factor)
    momentum[rows] = m
    values[rows] += m


@reference_op
def sparse_momentum_sgd_global_update(xp, values, momentum, rows, g, lr, momentum_factor):
    """Touched rows m_r -= lr*g_r/mu; then every row m = mu*m, w += m."""
    lr, = _scalars(lr)
    rows, g = _touched(rows, g)
    momentum[rows] = momentum[rows].astype(xp.float32) - lr * g / momentum_factor
    m = momentum_factor * momentum.astype(xp.float32)
    momentum[...] = m
    values += m


@reference_op
def sparse_nesterov_update(xp, values, accumulator, rows, g, lr, momentum_factor):
    """a_new = mu*a_old - lr*g_r; w_r += -mu*a_old + (1+mu)*a_new."""
    lr, = _scalars(lr)
    rows, g = _touched(rows, g)
    accumulator[rows], change = nesterov_step(accumulator[rows].astype(xp.float32), g, lr, momentum_factor)
    values[rows] += change


@reference_op
def sparse_nesterov_global_update(xp, values, accumulator, rows, g, lr, momentum_factor):
    """Every row a = mu*a, w += mu*a; then touched rows a_r -= lr*g_r, w_r -= (1+mu)*lr*g_r."""
    lr, = _scalars(lr)
    rows, g = _touched(rows, g)
    a = momentum_factor * accumulator.astype(xp.float32)
    accumulator[...] = a
    values += momentum_factor * a
    accumulator[rows] = accumulator[rows].astype(xp.float32) - lr * g
    values[rows] -= (1 + momentum_factor) * lr * g


@reference_op
def sparse_adam_update(xp, values, m, v, rows, g, lr, beta1, beta2, epsilon, step):
    """m_r = b1*m_r + (1-b1)*g_r; v_r = b2*v_r + (1-b2)*g_r^2; w_r -= alpha_t*m_r/(sqrt(v_r) + eps)."""
    lr, step = _scalars(lr, step)
    rows, g = _touched(rows, g)
    # In place on the gathered copies, rounded in the order of the formulas above.
    m_r = m[rows].astype(xp.float32, copy=False)
    m_r *= beta1
    m_r += (1 - beta1) * g
    v_r = v[rows].astype(xp.float32, copy=False)
    v_r *= beta2
    t = (1 - beta2) * g
    t *= g
    v_r += t
    m[rows], v[rows] = m_r, v_r
    denom = xp.sqrt(v_r, out=t)
    denom += epsilon
    m_r *= adam_step_size(lr, beta1, beta2, step)
    m_r /= denom
    values[rows] -= m_r


@reference_op
def sparse_adam_global_update(xp, values, m, v, rows, g, lr, beta1, beta2, epsilon, step):
    """Touched rows m_r += (1-b1)*g_r/b1, v_r += (1-b2)*g_r^2/b2; then every row m = b1*m, v = b2*v,
    w -= alpha_t*m/(sqrt(v) + eps) -- untouched rows keep moving on their decaying moments."""
    lr, step = _scalars(lr, step)
    rows, g = _touched(rows, g)
    m[rows] = m[rows].astype(xp.float32) + (1 - beta1) * g / beta1
    v[rows] = v[rows].astype(xp.float32) + (1 - beta2) * g * g / beta2
    m_all = beta1 * m.astype(xp.float32)
    v_all = beta2 * v.astype(xp.float32)
    m[...], v[...] = m_all, v_all
    values -= adam_step_size(lr, beta1, beta2, step) * m_all / (xp.sqrt(v_all) + epsilon)


@reference_op
def sparse_adam_lazy_global_update(xp, values, m, v, prev_time, rows, g, lr, beta1, beta2, epsilon, step):
    """Touched rows only, with p = prev_time_r, k = t - p:
    w_r -= (lr/(1-b1))*sqrt(1-b2^p)/(1-b1^p)*(1-b1^k) * m_r/(sqrt(v_r) + eps)   (old m, v: catch-up of
    the idle steps), then m_r = b1^k*m_r + (1-b1)*g_r, v_r = b2^k*v_r + (1-b2)*g_r^2, prev_time_r = t."""
    lr, step = _scalars(lr, step)
    rows, g = _touched(rows, g)
    p = prev_time[rows].astype(xp.float64)
    k = step - p
    prev_time[rows] = step
    alpha = (lr / (1 - beta1)) * xp.sqrt(1 - beta2 ** p) / (1 - beta1 ** p) * (1 - beta1 ** k)
    m_old = m[rows].astype(xp.float32)
    v_old = v[rows].astype(xp.float32)
    values[rows] -= alpha.astype(xp.float32)[:, None] * m_old / (xp.sqrt(v_old) + epsilon)
    m[rows] = (beta1 ** k).astype(xp.float32)[:, None] * m_old + (1 - beta1) * g
    v[rows] = (beta2 ** k).astype(xp.float32)[:, None] * v_old + (1 - beta2) * g * g


@reference_op
def sparse_adagrad_update(xp, values, accumulator, rows, g, lr, epsilon):
    """acc_r += g_r^2; w_r -= lr*g_r/(sqrt(acc_r) + eps)."""
    lr, = _scalars(lr)
    rows, g = _touched(rows, g)
    acc = accumulator[rows].astype(xp.float32) + g * g
    accumulator[rows] = acc
    values[rows] -= lr * g / (xp.sqrt(acc) + epsilon)
