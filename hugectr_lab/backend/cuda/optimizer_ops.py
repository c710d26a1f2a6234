"""CUDA wrapper of the dense optimizer step (kernels/dense_update.cu): the whole update of the flat master
weights -- the gradient's division by the loss scaler, the rule, the states -- in one kernel, which reads
the step's rate from device memory (a CUDA graph of the step replays with the current rate)."""

from __future__ import annotations

import numpy as np

from ..ops import kernel_op
from .common import FLOATS, ctype, reference
from .loader import NULL, launch

_F32 = np.dtype(np.float32)

# Per dense optimizer type: its rule struct in optimizer_rules.cuh, its number of states and the names of
# the constants c0..c2 the struct takes (DenseOptimizer.constant_names, in the struct's order).
_RULES = {
    "SGD": ("Sgd", 0, ()),
    "MomentumSGD": ("Momentum", 1, ("momentum_factor",)),
    "Nesterov": ("Nesterov", 1, ("momentum_factor",)),
    "Adam": ("Adam", 2, ("beta1", "beta2", "epsilon")),
    "AdaGrad": ("AdaGrad", 1, ("epsilon",)),
}


def _covered(rule, weights, grads, states, constants):
    """Whether the kernel takes these arguments (else the reference runs, and names what is wrong)."""
    if rule not in _RULES:
        return False
    _, num_states, names = _RULES[rule]
    flat = (weights, *states)
    return (len(states) == num_states and set(constants) == set(names) and grads.dtype in FLOATS
            and all(a.dtype == _F32 for a in flat) and all(a.flags.c_contiguous for a in (*flat, grads))
            and all(a.size == weights.size for a in (*states, grads)))


def _device_rate(xp, rate):
    """The rate as a float32 device scalar: ``rate`` itself when it is one (what DenseOptimizer.prepare
    writes, and a CUDA graph reads at each replay), a new one for a Python or float32 number (the reference
    rounds it to float32 too), else None: the reference runs (it computes with a float64 rate in float64)."""
    if hasattr(rate, "__cuda_array_interface__"):
        return rate if rate.dtype == _F32 and rate.size == 1 else None
    # a NumPy float64 is a float too, but the reference computes with it in float64
    if isinstance(rate, np.float32) or (isinstance(rate, (float, int)) and not isinstance(rate, np.generic)):
        return xp.full((), rate, dtype=xp.float32)
    return None


@kernel_op("dense_update")
def dense_update(xp, rule, weights, grads, scaler, rate, *states, **constants):
    device_rate = _device_rate(xp, rate)
    if device_rate is None or not _covered(rule, weights, grads, states, constants):
        return reference("dense_update", xp, rule, weights, grads, scaler, rate, *states, **constants)
    struct, _, names = _RULES[rule]
    # constants are float32 values (the reference rounds them so): as double, the rule's (float)c, 1 - c
    # and 1 + c round as the reference's float32 expressions
    c = [np.float64(np.float32(constants[n])) for n in names] + [np.float64(0)] * (3 - len(names))
    launch("dense_update.cu", f"hctr_dense_update<hctr::{struct}, {ctype(grads.dtype)}>", weights.size,
           (weights, *(tuple(states) + (NULL, NULL))[:2], grads, np.int64(weights.size), np.float32(scaler),
            device_rate, *c))
