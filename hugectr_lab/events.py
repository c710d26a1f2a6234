"""Typed, frozen events that the training and inference loops publish; views subscribe and only read.

A subscriber is any callable taking one event. The engine never imports widgets: dashboards,
progress bars and loggers hold a reference to an ``EventBus`` and subscribe to it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field


@dataclass(frozen=True)
class IterationEnd:
    """After every ``Session.train()`` that trained (one global batch)."""

    iteration: int          # 1-based count of trained batches
    loss: float             # mean over devices of the batch loss (incl. regularizer term)
    learning_rate: float
    samples_per_sec: float  # global batch size / wall time of this train() call
    batch_size: int


@dataclass(frozen=True)
class EvalEnd:
    """After ``Session.get_eval_metrics()`` / ``evaluation()`` finalised the metrics."""

    iteration: int
    metrics: tuple          # (("AUC", 0.77), ...) in HugeCTR's order
    batches: int            # eval batches accumulated into these metrics


@dataclass(frozen=True)
class SourceChange:
    """A data reader was pointed at a new source (epoch mode) or rewound."""

    reader: str             # "train" or "eval"
    source: str


@dataclass(frozen=True)
class ModelSaved:
    """Model files were written by ``download_params_to_files`` or the oversubscriber."""

    iteration: int
    files: tuple


@dataclass
class EventBus:
    """Publish/subscribe. A failing subscriber is reported once and never stops the loop."""

    _subscribers: list = field(default_factory=list)
    _warned: set = field(default_factory=set)

    def subscribe(self, callback):
        """Call ``callback(event)`` for every future event; returns ``callback`` for ``unsubscribe``."""
        if not callable(callback):
            raise TypeError(f"subscribe() needs a callable, got {type(callback).__name__}")
        self._subscribers.append(callback)
        return callback

    def unsubscribe(self, callback):
        self._subscribers = [s for s in self._subscribers if s != callback]  # == so bound methods match

    def publish(self, event):
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception as exc:  # a view's bug must not stop training
                if id(callback) not in self._warned:
                    self._warned.add(id(callback))
                    warnings.warn(f"event subscriber {callback!r} raised {exc!r}; it keeps receiving events",
                                  RuntimeWarning, stacklevel=2)
