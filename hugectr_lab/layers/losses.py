"""Loss layers: BinaryCrossEntropyLoss, CrossEntropyLoss, MultiCrossEntropyLoss.

A loss takes bottoms [logits, label] (labels stay fp32 in mixed precision) and produces no tensor.
``forward`` returns the loss value (mean + regularizer term, a 0-d array); in training it also computes
d(logits) = dL_mean/d(logits)·S/G (S = loss scaler, G = devices), which ``backward`` returns. In eval it
sets ``predictions`` (σ(logits) for the BCE losses, the untouched logits for CrossEntropyLoss), the
values HugeCTR writes over the logits buffer for AUC and export.
"""

from __future__ import annotations

from ..backend import reference_op
from .activations import sigmoid
from .base import Layer
from .registry import register_layer
from .regularizers import Regularizer


def bce_with_logits(xp, x, y):
    """Per-element stable BCE: x(1−y) + log(1+e⁻ˣ) for x >= 0, −xy + log(1+eˣ) otherwise."""
    return xp.maximum(x, 0) - x * y + xp.log1p(xp.exp(-xp.abs(x)))


@reference_op
def bce_loss_fwd(xp, logits, labels):
    """Mean binary cross-entropy over (c, 1) logits and labels, as a 0-d array in the labels' dtype."""
    return bce_with_logits(xp, logits.astype(labels.dtype), labels).mean()


@reference_op
def bce_loss_bwd(xp, logits, labels, scale):
    """d(logits) = (σ(x) − y)·scale in the logits' dtype; scale = S/(c·G)."""
    x = logits.astype(labels.dtype)
    return ((sigmoid(xp, x) - labels) * scale).astype(logits.dtype)


class _Loss(Layer):
    is_loss = True

    def __init__(self, regularizer=None, lambda_=0.0):
        self.regularizer = regularizer
        self.lambda_ = lambda_

    def _build(self, shapes):
        logits, labels = shapes
        self._require_rank(logits, (2,), "input 0 (the logits)")
        self._require_rank(labels, (2,), "input 1 (the label)")
        if logits[0] != labels[0]:
            raise self.error(f"logits and label must have the same batch dimension, got {list(logits)} "
                             f"and {list(labels)}")
        try:
            self._regularizer = Regularizer(self.regularizer, self.lambda_, logits[0])
        except ValueError as e:
            raise self.error(str(e)) from None
        self._check_widths(logits[1], labels[1])
        self._reg_weights = None
        return []

    def bind_regularized(self, master):
        """The network's flat master-weight buffer (N,), which the regularizer reads."""
        self._reg_weights = master

    def regularizer_term(self):
        if self._reg_weights is None:
            return 0.0
        return self._regularizer.term(self.xp, self._reg_weights)

    def init_weight_grads(self, grads):
        """Fill the network's flat gradient buffer with the regularizer's gradient (or zeros)."""
        w = self._reg_weights if self._reg_weights is not None else self.xp.zeros(grads.shape, grads.dtype)
        self._regularizer.fill_grad(self.xp, w, grads)

    def forward(self, inputs, training):
        logits, labels = inputs
        labels = labels.astype(self.ctx.master_dtype, copy=False)   # read only: no copy of fp32 labels
        scale = self.ctx.scaler / (logits.shape[0] * self.ctx.device_count)
        if training:
            self.d_logits = self._grad(logits, labels, scale)
        else:
            self.predictions = self.predict(logits)
        return self._value(logits, labels) + self.regularizer_term()

    def backward(self, d_outputs=()):
        """[d(logits), None]: the gradient computed by the last training forward; none for the label."""
        return [self.d_logits, None]

    def predict(self, logits):
        return sigmoid(self.xp, logits.astype(self.ctx.master_dtype))


@register_layer("BinaryCrossEntropyLoss")
class BinaryCrossEntropyLoss(_Loss):
    """Logits (c, 1), label (c, 1): mean stable BCE; d(logits) = (σ(x) − y)·S/(c·G)."""

    def _check_widths(self, logits_width, label_width):
        if logits_width != 1 or label_width != 1:
            raise self.error(f"logits and label must be (batch, 1), got widths {logits_width} and {label_width}")

    def _value(self, logits, labels):
        return self.ctx.backend.ops.bce_loss_fwd(logits, labels)

    def _grad(self, logits, labels, scale):
        return self.ctx.backend.ops.bce_loss_bwd(logits, labels, scale)


@register_layer("CrossEntropyLoss")
class CrossEntropyLoss(_Loss):
    """Logits (c, 2), one label per sample (c, 1): class = label >= 0.5; softmax cross-entropy;
    d(logits) = (p − onehot)·S/(c·G). Eval predictions are the logits (HugeCTR leaves them as is)."""

    def _check_widths(self, logits_width, label_width):
        if logits_width != 2:
            raise self.error(f"logits must be (batch, 2), got width {logits_width}")
        if label_width != 1:
            raise self.error(f"CrossEntropyLoss reads one label value per sample (label_dim 1), "
                             f"got a label of width {label_width}")

    def _softmax_onehot(self, logits, labels):
        x = logits.astype(labels.dtype)
        e = self.xp.exp(x - x.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        cls = (labels >= 0.5).astype(labels.dtype)  # (c, 1)
        return p, self.xp.concatenate([1 - cls, cls], axis=1)

    def _value(self, logits, labels):
        p, onehot = self._softmax_onehot(logits, labels)
        return -(self.xp.log((p * onehot).sum(axis=1))).mean()

    def _grad(self, logits, labels, scale):
        p, onehot = self._softmax_onehot(logits, labels)
        return ((p - onehot) * scale).astype(logits.dtype)

    def predict(self, logits):
        return logits


@register_layer("MultiCrossEntropyLoss")
class MultiCrossEntropyLoss(_Loss):
    """Logits and label (c, L): Σ w_l·BCE over unmasked elements / (c·L); an element whose label is
    < −0.5 is masked (no loss, zero gradient); d(logits) = w_l·(σ(x) − y)·S/(c·L·G)."""

    def __init__(self, target_weight, regularizer=None, lambda_=0.0):
        super().__init__(regularizer, lambda_)
        self.target_weight = target_weight

    def _check_widths(self, logits_width, label_width):
        if logits_width != label_width:
            raise self.error(f"logits and label must have the same width, got {logits_width} and {label_width}")
        if len(self.target_weight) != logits_width:
            raise self.error(f"target_weight has {len(self.target_weight)} entries, expected one per "
                             f"label column ({logits_width})")
        self._weights = self.xp.asarray(self.target_weight, dtype=self.ctx.master_dtype)[None, :]  # (1, L)

    def _masked_weights(self, labels):
        return self._weights * (labels >= -0.5)

    def _value(self, logits, labels):
        x = logits.astype(labels.dtype)
        return (self._masked_weights(labels) * bce_with_logits(self.xp, x, labels)).sum() / labels.size

    def _grad(self, logits, labels, scale):
        x = logits.astype(labels.dtype)
        d = self._masked_weights(labels) * (sigmoid(self.xp, x) - labels) * (scale / labels.shape[1])
        return d.astype(logits.dtype)
