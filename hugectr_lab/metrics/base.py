"""What every metric shares: accumulate per batch, read once (reading resets)."""

from __future__ import annotations

from abc import ABC, abstractmethod
import warnings


class MetricUndefinedWarning(RuntimeWarning):
    """A metric was read when its value is undefined (no samples, or one label class only)."""


def undefined(message) -> float:
    """Warn and return NaN (HugeCTR divides by zero here)."""
    warnings.warn(message, MetricUndefinedWarning, stacklevel=3)
    return float("nan")


def per_device(values, what) -> list:
    """``values`` as a list with one entry per logical device (a bare value = one device)."""
    if values is None:
        raise ValueError(f"{what} is required")
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if not values:
        raise ValueError(f"{what} must hold one entry per device, got none")
    return values


class Metric(ABC):
    """Base class: ``update(...)`` per eval batch, ``get()`` returns the value and resets.

    ``name`` is HugeCTR's metric name; ``threshold`` is the metrics_spec value (the CLI stops
    training once AUC reaches it).
    """

    name = ""

    def __init__(self, threshold=1.0):
        self.threshold = threshold

    def get(self) -> float:
        """The metric over everything accumulated since the last read; then reset."""
        value = self._compute()
        self.reset()
        return value

    @abstractmethod
    def reset(self):
        """Forget everything accumulated."""

    @abstractmethod
    def _compute(self) -> float:
        """The metric over everything accumulated."""

    def __repr__(self):
        return f"<{type(self).__name__} threshold={self.threshold}>"
