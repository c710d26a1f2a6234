"""AverageLoss: the mean eval loss over batches, each batch's loss averaged over devices."""

from __future__ import annotations

from .base import Metric, per_device, undefined


def _scalar(value) -> float:
    return float(value.item() if hasattr(value, "item") else value)


class AverageLoss(Metric):
    """Mean over eval batches of (mean over devices of each device's loss).

    Each device's loss is its loss layer's value for the whole per-device batch, padding
    included, as HugeCTR reports it. No batches since the last read: NaN and a warning.
    """

    name = "AverageLoss"

    def __init__(self, threshold=1.0):
        super().__init__(threshold)
        self.reset()

    def update(self, losses):
        """Accumulate one eval batch: one scalar loss per device (a bare scalar = one device)."""
        losses = per_device(losses, "losses")
        self._total += sum(_scalar(v) for v in losses) / len(losses)
        self._batches += 1

    def reset(self):
        self._total = 0.0
        self._batches = 0

    def _compute(self):
        if not self._batches:
            return undefined("AverageLoss is undefined without eval batches; returning nan")
        return self._total / self._batches
