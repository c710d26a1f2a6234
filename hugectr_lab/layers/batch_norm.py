"""BatchNorm: per-column normalisation over the batch (cuDNN's per-activation mode).

Train: μ, σ² = batch mean and biased variance per column; y = γ·(x − μ)/√(σ² + eps) + β;
running = (1 − factor)·running + factor·batch, with the unbiased variance σ²·m/(m − 1) for the
running variance (as cuDNN). Eval: y uses the running mean/var. Running stats start at mean 0 and
var 1 (HugeCTR leaves them uninitialised). γ, β and the statistics stay fp32 in mixed precision;
dγ, dβ are overwritten, so a regularizer's gradient on them is dropped, as in HugeCTR.
"""

from __future__ import annotations

import numpy as np

from .base import Layer
from .initializers import check_kind, constant
from .registry import register_layer


@register_layer("BatchNorm")
class BatchNorm(Layer):
    """Weights γ (1, n) then β (1, n); ``state_dict()`` holds the running mean/var (the .ntp.json)."""

    uses_master_weights = True

    def __init__(self, factor, eps, gamma_init=None, beta_init=None):
        self.factor = factor
        self.eps = eps
        self.gamma_init = gamma_init
        self.beta_init = beta_init

    def _build(self, shapes):
        (shape,) = shapes
        self._require_rank(shape, (2,))
        if not (isinstance(self.factor, (int, float)) and 0 <= self.factor <= 1):
            raise self.error(f"factor must be a number in [0, 1], got {self.factor!r}")
        if not (isinstance(self.eps, (int, float)) and self.eps > 0):
            raise self.error(f"eps must be a positive number, got {self.eps!r}")
        check_kind(self, "gamma_init", self.gamma_init)
        check_kind(self, "beta_init", self.beta_init)
        n = shape[1]
        self._add_weight("gamma", (1, n))
        self._add_weight("beta", (1, n))
        self.stat_dtype = self.ctx.master_dtype
        self.running_mean = self.xp.zeros((1, n), self.stat_dtype)
        self.running_var = self.xp.ones((1, n), self.stat_dtype)
        return [shape]

    def init_weights(self, rng):
        # Any initializer name other than Zero falls back to the Default (γ = 1, β = 0).
        shape = self.weight_shapes()[0]
        gamma = constant(shape, 0.0 if self.gamma_init == "Zero" else 1.0)
        beta = constant(shape, 0.0)
        return [gamma, beta]

    @property
    def grad_overwrites(self):
        return ("gamma", "beta")

    def forward(self, inputs, training):
        (x,) = inputs  # (m, n)
        x = x.astype(self.stat_dtype)
        gamma, beta = (w.astype(self.stat_dtype) for w in self.weights)
        if training:
            m = x.shape[0]
            mean = x.mean(axis=0, keepdims=True)
            var = ((x - mean) ** 2).mean(axis=0, keepdims=True)  # biased: used to normalise
            f = self.factor
            self.running_mean[...] = (1 - f) * self.running_mean + f * mean
            self.running_var[...] = (1 - f) * self.running_var + f * var * (m / max(m - 1, 1))
        else:
            mean, var = self.running_mean, self.running_var
        self.inv_std = 1.0 / self.xp.sqrt(var + self.eps)
        self.x_hat = (x - mean) * self.inv_std
        return [(gamma * self.x_hat + beta).astype(self.dtype)]

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        d_y = d_y.astype(self.stat_dtype)
        gamma = self.weights[0].astype(self.stat_dtype)
        x_hat = self.x_hat
        self._write_grad(0, (d_y * x_hat).sum(axis=0, keepdims=True))
        self._write_grad(1, d_y.sum(axis=0, keepdims=True))
        d_xhat = d_y * gamma
        d_x = self.inv_std * (d_xhat - d_xhat.mean(axis=0, keepdims=True)
                              - x_hat * (d_xhat * x_hat).mean(axis=0, keepdims=True))
        return [d_x.astype(self.dtype)]

    def state_dict(self):
        """``{"type": "BatchNorm", "mean": [...], "var": [...]}``: one entry of the .ntp.json."""
        to_host = self.ctx.backend.to_host
        return {"type": "BatchNorm",
                "mean": [float(v) for v in to_host(self.running_mean).ravel()],
                "var": [float(v) for v in to_host(self.running_var).ravel()]}

    def load_state_dict(self, state):
        n = self.running_mean.shape[1]
        for key, target in (("mean", self.running_mean), ("var", self.running_var)):
            values = np.asarray(state[key], dtype=np.float64).ravel()
            if values.size != n:
                raise self.error(f"running {key} has {values.size} values, expected {n}")
            target[...] = self.ctx.backend.asarray(values.reshape(1, n), dtype=self.stat_dtype)
