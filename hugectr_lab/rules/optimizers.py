"""Update formulas that the dense optimizers (optim/dense.py), the sparse optimizers' NumPy
references (embedding/sparse_optimizers.py) and their CUDA wrappers share, written once.

Each works on float32 working arrays of any shape: the whole flat buffer (N,) for a dense optimizer,
the touched rows (U, E) for a sparse one. Scalars keep the precision the caller passes (a float32
hyper-parameter of a dense optimizer, a Python float of a sparse one), so each caller rounds as
HugeCTR's matching kernel does.
"""

from __future__ import annotations

import math


def adam_step_size(lr, beta1, beta2, t):
    """Adam's bias-corrected step alpha_t = lr*sqrt(1-beta2^t)/(1-beta1^t), in double (as HugeCTR)."""
    return float(lr) * math.sqrt(1 - float(beta2) ** t) / (1 - float(beta1) ** t)


def momentum_step(m, g, lr, mu):
    """Momentum SGD: m = mu*m - lr*g, in place on ``m``; returns m, the weights' change."""
    m *= mu
    m -= lr * g
    return m


def nesterov_step(a, g, lr, mu):
    """Nesterov: a_new = mu*a - lr*g; returns (a_new, the weights' change -mu*a + (1+mu)*a_new)."""
    a_new = mu * a - lr * g
    return a_new, (1 + mu) * a_new - mu * a
