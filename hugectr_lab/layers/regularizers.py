"""L1/L2 regularizers over the network's entire flat master-weight buffer (embeddings excluded).

With λ = lambda and n = the per-device batch dimension of the loss input:

* None: rterm = 0; the weight-gradient buffer starts each step at 0.
* L1: rterm = (λ/n)·Σ|w|; the gradient starts at +λ/n where w > 0, else −λ/n (also at w = 0).
* L2: rterm = (λ/(2n))·Σw²; the gradient starts at (λ/n)·w.

As in HugeCTR the starting gradient is not multiplied by the loss scaler S (the optimizer still
divides by S), every device adds it before the all-reduce (so it counts G times), and layers that
overwrite their weight gradients (BatchNorm γ/β, fp16 FC biases, MultiCross biases) drop it.
"""

from __future__ import annotations

REGULARIZERS = (None, "L1", "L2")


class Regularizer:
    def __init__(self, kind, lambda_, batch):
        if kind not in REGULARIZERS:
            raise ValueError(f"regularizer must be None, 'L1' or 'L2', got {kind!r}")
        self.kind = kind
        self.scale = float(lambda_ or 0.0) / batch  # λ/n

    def term(self, xp, w):
        """rterm for the flat master weights ``w`` (N,) as a 0-d array (0 without a regularizer)."""
        if self.kind == "L1":
            return self.scale * xp.abs(w).sum()
        if self.kind == "L2":
            return 0.5 * self.scale * (w * w).sum()
        return xp.zeros((), w.dtype)

    def fill_grad(self, xp, w, grads):
        """Initialise the flat gradient buffer ``grads`` (N,) before backward."""
        if self.kind == "L1":
            grads[...] = xp.where(w > 0, self.scale, -self.scale)
        elif self.kind == "L2":
            grads[...] = self.scale * w
        else:
            grads[...] = 0
