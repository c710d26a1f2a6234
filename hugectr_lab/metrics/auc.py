"""Exact ROC AUC (no binning), and the AUC metric that accumulates it over eval batches and devices."""

from __future__ import annotations

from ..backend import array_module
from ..numerics import NonFiniteError, describe_nonfinite
from .base import Metric, per_device, undefined


def auc(preds, labels, xp=None) -> float:
    """Area under the ROC curve of ``preds`` (N,) against ``labels`` (N,), exactly.

    Samples with equal predictions form one threshold (one ROC point), and the curve is
    integrated with the trapezoid rule, so the value equals scikit-learn's ``roc_auc_score``.
    Labels are expected to be 0/1; like HugeCTR, a label y counts y as positive and 1 - y as
    negative. With no samples or a single label class the AUC is undefined: NaN and a
    ``MetricUndefinedWarning``. NaN or infinite predictions or labels raise ``NonFiniteError`` (an
    AUC of them would be meaningless, not undefined). O(N log N) (one sort); ``xp`` is numpy (default)
    or cupy.
    """
    xp = array_module(xp)
    preds = xp.asarray(preds).reshape(-1)
    labels = xp.asarray(labels, dtype=xp.float64).reshape(-1)
    if preds.shape != labels.shape:
        raise ValueError(f"preds and labels must have the same length, got {preds.shape[0]} "
                         f"and {labels.shape[0]}")
    for values, what in ((preds, "predictions"), (labels, "labels")):
        if not bool(xp.isfinite(values).all()):
            problem = describe_nonfinite(values.get() if hasattr(values, "get") else values, f"AUC: {what}")
            raise NonFiniteError(f"{problem}; the index is the sample's position among the evaluated samples "
                                 "(a diverged model, or NaN/inf in the input data)")
    order = xp.argsort(preds)
    preds, labels = preds[order], labels[order]
    tp = xp.cumsum(labels)  # (N,) positives at or below each prediction
    fp = xp.cumsum(1.0 - labels)
    positives, negatives = (float(tp[-1]), float(fp[-1])) if preds.size else (0.0, 0.0)
    if positives <= 0 or negatives <= 0:
        return undefined(f"AUC is undefined with {positives:g} positive and {negatives:g} negative "
                         "samples; returning nan")
    # Only the last sample of a run of equal predictions is a threshold.
    run_end = xp.concatenate([preds[1:] != preds[:-1], xp.ones(1, dtype=bool)])
    one = xp.ones(1)
    tpr = xp.concatenate([one, (positives - tp[run_end]) / positives])  # from (1, 1) to (0, 0)
    fpr = xp.concatenate([one, (negatives - fp[run_end]) / negatives])
    return float(xp.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]))) / 2


def valid_sample_counts(real_size, per_device_batch, num_devices) -> list[int]:
    """Real samples on each device when a batch of ``real_size`` fills devices in order.

    Device g holds rows ``[g*b, (g+1)*b)`` of the global batch, so it has
    ``min(max(real_size - g*b, 0), b)`` real samples; the rest is padding.
    """
    b = per_device_batch
    return [min(max(real_size - g * b, 0), b) for g in range(num_devices)]


class AUC(Metric):
    """AUC over every valid eval sample since the last ``get()``, across all devices.

    ``capacity`` (samples; HugeCTR: ``max_eval_batches * batchsize_eval``) is preallocated on
    first use. Unlike HugeCTR, whose buffer silently overflows, the buffer grows when more
    samples arrive, so the AUC always covers all of them.
    """

    name = "AUC"

    def __init__(self, threshold=1.0, capacity=0, xp=None):
        super().__init__(threshold)
        self.capacity = capacity
        self.xp = array_module(xp)
        self._preds = self._labels = None  # (capacity,) float32 buffers
        self._count = 0

    def update(self, preds, labels, real_size=None):
        """Accumulate one eval batch.

        ``preds``/``labels``: one (b,) or (b, L) array per device (a bare array = one device),
        post-sigmoid predictions and labels; only column 0 is used. ``real_size``: real samples
        in the global batch (default: all G*b rows); padding rows are ignored.
        """
        preds, labels = per_device(preds, "preds"), per_device(labels, "labels")
        if len(preds) != len(labels):
            raise ValueError(f"got preds for {len(preds)} devices but labels for {len(labels)}")
        b = preds[0].shape[0]
        rows = [a.shape[0] for a in preds + labels]
        if any(r != b for r in rows):
            raise ValueError(f"every device's preds and labels must have the same rows, got {rows}")
        g = len(preds)
        c = g * b if real_size is None else real_size
        if not 0 <= c <= g * b:
            raise ValueError(f"real_size must be in [0, {g * b}] ({g} devices x {b} rows), got {c}")
        counts = valid_sample_counts(c, b, g)
        self._reserve(self._count + c)
        for p, y, n in zip(preds, labels, counts):
            end = self._count + n
            # asarray: host labels (the reader's) into a device buffer (CuPy backend)
            self._preds[self._count:end] = self.xp.asarray(p.reshape(b, -1)[:n, 0])
            self._labels[self._count:end] = self.xp.asarray(y.reshape(b, -1)[:n, 0])
            self._count = end

    def _reserve(self, size):
        old = 0 if self._preds is None else self._preds.size
        if size <= old:
            return
        new = max(size, 2 * old, self.capacity)
        grown = [self.xp.empty(new, dtype=self.xp.float32) for _ in range(2)]
        if old:
            grown[0][:self._count] = self._preds[:self._count]
            grown[1][:self._count] = self._labels[:self._count]
        self._preds, self._labels = grown

    @property
    def num_samples(self) -> int:
        """Valid samples accumulated since the last read."""
        return self._count

    def reset(self):
        self._count = 0

    def _compute(self):
        if self._preds is None:
            return auc(self.xp.zeros(0), self.xp.zeros(0), self.xp)
        return auc(self._preds[:self._count], self._labels[:self._count], self.xp)
