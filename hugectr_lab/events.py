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


@dataclass(frozen=True)
class TrainerStatus:
    """The trainer (``hugectr_lab.fit.Trainer``) changed state, or has something to say about a request."""

    state: str              # "idle", "running", "paused", "stopped", "finished" or "error"
    iteration: int          # the session's iteration at the change
    message: str            # for a status line: "paused", "finished (max_iter reached)", "error: ...", ...


@dataclass(frozen=True)
class VocabularyOverflow:
    """The first time a Session finds an embedding table refusing keys in training (once per embedding
    and device; with CuPy found at the next eval, save or ``check_overflow``)."""

    iteration: int
    embedding: str
    device: int             # global device id
    capacity: int           # max_vocabulary_size_per_gpu
    refused: tuple          # (low, high) bounds of the distinct keys refused so far (equal when exact)
    message: str


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


@dataclass(frozen=True)
class CacheStats:
    """Embedding-cache statistics of one table of one model, after an inference lookup
    (``EmbeddingCache.stats()`` returns the current ones; the cache publishes one per table per lookup).

    Hit rates follow HugeCTR: per lookup call, over the call's distinct keys of the table,
    1 − misses / distinct keys (1.0 for a call without keys of this table).
    """

    model: str
    table: int              # embedding table index (embedding-layer order)
    calls: int              # lookup calls that had keys of this table
    last_hit_rate: float    # hit rate of the last such call
    hit_rate: float         # cumulative: hits / lookups (1.0 before any lookup)
    lookups: int            # distinct keys queried, summed over calls
    hits: int
    insertions: int         # keys written into the cache (refreshes)
    evictions: int          # insertions that replaced a cached key
    occupied: int           # entries holding a key
    capacity: int           # entries (sets × 64); 0 when the cache is disabled
    refreshes: int          # calls after which this table's misses were inserted
    unknown_keys: int       # missed distinct keys the parameter server lacks too (default vector), summed
    enabled: bool           # False: every lookup goes to the parameter server

    @property
    def occupancy(self) -> float:
        """Fraction of the entries holding a key (0.0 for a disabled cache)."""
        return self.occupied / self.capacity if self.capacity else 0.0
