"""The metrics a Session evaluates, built from a metrics_spec and reported in HugeCTR's order."""

from __future__ import annotations

from .auc import AUC
from .average_loss import AverageLoss

# HugeCTR reports metrics in enum order: AUC first, then AverageLoss.
METRIC_TYPES = {"AUC": AUC, "AverageLoss": AverageLoss}


class Metrics:
    """Every metric of ``metrics_spec``, updated together, read (and reset) together.

    ``metrics_spec``: {metric name: threshold}, e.g. ``{"AUC": 1.0, "AverageLoss": 1.0}``
    (default ``{"AUC": 1.0}``). ``capacity`` sizes the AUC buffer in samples; ``xp`` is the array
    module (or Backend) holding the AUC samples.
    """

    def __init__(self, metrics_spec=None, *, capacity=0, xp=None):
        spec = {"AUC": 1.0} if metrics_spec is None else dict(metrics_spec)
        unknown = [name for name in spec if name not in METRIC_TYPES]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; expected some of {list(METRIC_TYPES)}")
        self.metrics = []
        if "AUC" in spec:
            self.metrics.append(AUC(spec["AUC"], capacity=capacity, xp=xp))
        if "AverageLoss" in spec:
            self.metrics.append(AverageLoss(spec["AverageLoss"]))

    def update(self, preds=None, labels=None, losses=None, real_size=None):
        """Accumulate one eval batch into every metric (see ``AUC.update``, ``AverageLoss.update``)."""
        for metric in self.metrics:
            if isinstance(metric, AUC):
                metric.update(preds, labels, real_size)
            else:
                metric.update(losses)

    def get(self) -> list[tuple[str, float]]:
        """``[(name, value), ...]`` with AUC first; resets every metric."""
        return [(metric.name, metric.get()) for metric in self.metrics]

    def reset(self):
        for metric in self.metrics:
            metric.reset()

    def __getitem__(self, name):
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(f"no {name!r} metric; this collection has {[m.name for m in self.metrics]}")

    def __repr__(self):
        return f"Metrics({ {m.name: m.threshold for m in self.metrics} })"
