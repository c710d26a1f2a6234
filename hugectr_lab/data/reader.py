"""DataReader32 / DataReader64: global batches from a Norm file list, read ahead in a background thread.

The sample order is HugeCTR's (v3.0): W workers each fill whole global batches from their own file
stream (worker w reads files w, w+W, w+2W, ... of the list, continuing across file boundaries), and
batches are taken round-robin over the workers, skipping those that have finished. In repeat mode a
worker's stream wraps around the list forever (file indices modulo N); in epoch mode a worker at the
end of its files hands out one last partial batch, padded with empty samples, and is done. The W
workers are logical streams consumed by one thread, so the order never depends on timing.
"""

from __future__ import annotations

import queue
import threading
import warnings
import weakref
from dataclasses import dataclass, field

import numpy as np

from .batch import Batch, Samples, key_dtype
from .errors import DataError, DataWarning, NotInitializedError
from .file_list import resolve_file_list
from .norm import DEFAULT_CHUNK_BYTES, NormLayout, iter_norm_file


class _WorkerStream:
    """One HugeCTR reader worker: the samples of its files, handed out a batch at a time."""

    def __init__(self, paths, worker, num_workers, layout, repeat, chunk_bytes):
        self._paths, self._worker, self._num_workers = paths, worker, num_workers
        self._layout, self._repeat, self._chunk_bytes = layout, repeat, chunk_bytes
        self._chunks = self._read_chunks()
        self._current, self._used = None, 0  # the chunk being handed out and how much of it is

    def _files(self):
        k, n = self._worker, len(self._paths)
        while self._repeat or k < n:
            yield self._paths[k % n]
            k += self._num_workers

    def _read_chunks(self):
        files_without_samples = 0
        for path in self._files():
            found = False
            for samples, dropped in iter_norm_file(path, self._layout, chunk_bytes=self._chunk_bytes):
                found = found or (samples is not None and len(samples) > 0)
                yield samples, dropped
            files_without_samples = 0 if found else files_without_samples + 1
            if files_without_samples > len(self._paths):  # repeat mode over files that hold no sample
                raise DataError(path, None, f"worker {self._worker} found no sample in any of its files")

    def next_batch(self, batchsize):
        """Up to ``batchsize`` next samples (None when the stream has ended) and the records dropped
        on the way."""
        parts, have, dropped = [], 0, []
        while have < batchsize:
            if self._current is None or self._used == len(self._current):
                try:
                    samples, newly_dropped = next(self._chunks)
                except StopIteration:
                    break
                dropped += newly_dropped
                self._current, self._used = samples, 0
                if samples is None:
                    continue
            take = min(batchsize - have, len(self._current) - self._used)
            parts.append(self._current.take(self._used, self._used + take))
            self._used += take
            have += take
        return (Samples.concat(parts) if parts else None), dropped


@dataclass
class _Item:
    """What the background thread hands over: a batch, or the end (batch None), or an error."""

    batch: Batch | None
    dropped: list = field(default_factory=list)
    error: BaseException | None = None


def _produce(streams, batchsize, layout, out, stop):
    """Background thread body: batches round-robin over the worker streams into ``out``."""

    def put(item):
        while not stop.is_set():
            try:
                out.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    try:
        active, dropped = list(streams), []
        while active:
            for stream in list(active):
                samples, newly_dropped = stream.next_batch(batchsize)
                dropped += newly_dropped
                if samples is None or len(samples) < batchsize:
                    active.remove(stream)
                if samples is None:
                    continue
                if not put(_Item(Batch.pad(samples, batchsize, layout.slot_nums, layout.key_type), dropped)):
                    return
                dropped = []
        put(_Item(None, dropped))
    except BaseException as error:  # handed to the consumer, which re-raises it
        put(_Item(None, error=error))


class DataReader:
    """Reads global batches of ``batchsize`` samples from a Norm file list.

    Args mirror the JSON Data layer: ``slot_nums`` and ``max_feature_nums`` hold ``slot_num`` and
    ``max_feature_num_per_sample`` of each sparse input; ``check`` is "Sum" or "None"; ``key_type`` is
    "I32" (uint32 keys) or "I64" (int64); ``repeat`` wraps around the data forever (non-epoch
    training) instead of ending after one pass. ``prefetch`` batches are read ahead.

    Use ``set_source(file_list)`` (or ``start()`` with the source given here), then ``read_a_batch()``
    until it returns None. Samples whose checksum does not match are dropped with a ``DataWarning``
    and counted in ``dropped_samples``; any other data problem raises ``DataError`` from
    ``read_a_batch`` naming the file and byte offset.
    """

    def __init__(self, batchsize, label_dim, dense_dim, slot_nums, max_feature_nums=None, *, source="",
                 check="Sum", repeat=False, num_workers=12, key_type="I32", prefetch=4,
                 chunk_bytes=DEFAULT_CHUNK_BYTES):
        if batchsize < 1 or num_workers < 1 or prefetch < 1:
            raise ValueError("batchsize, num_workers and prefetch must be >= 1")
        self.batchsize = int(batchsize)
        self.layout = NormLayout(label_dim, dense_dim, slot_nums, key_type, check, max_feature_nums)
        self.repeat = bool(repeat)
        self.num_workers = int(num_workers)
        self.prefetch = int(prefetch)
        self.chunk_bytes = int(chunk_bytes)
        self.source = str(source) if source else None
        self.dropped_samples = 0
        self._queue = self._stop = self._thread = self._finalizer = None
        self._ended = False
        self._error = None

    @classmethod
    def from_data_spec(cls, data, batchsize, *, key_type=None, repeat=False, eval=False, **options):
        """A reader for a parsed JSON Data layer (anything with HugeCTR's Data-layer attribute names:
        ``format, source, eval_source, check, num_workers, label.label_dim, dense.dense_dim,
        sparse[i].slot_num, sparse[i].max_feature_num_per_sample``), reading ``eval_source`` if ``eval``."""
        if getattr(data, "format", "Norm") != "Norm":
            raise ValueError(f"DataReader reads the Norm format, not {data.format!r}")
        if key_type is not None:
            options["key_type"] = key_type
        return cls(batchsize, data.label.label_dim, data.dense.dense_dim, [s.slot_num for s in data.sparse],
                   [s.max_feature_num_per_sample for s in data.sparse],
                   source=data.eval_source if eval else data.source, check=data.check, repeat=repeat,
                   num_workers=getattr(data, "num_workers", None) or 12, **options)

    @property
    def key_type(self) -> np.dtype:
        return self.layout.key_type

    @property
    def started(self) -> bool:
        """Whether reading began (``start``, ``set_source`` or a read) and was not closed since;
        stays True after the end of the data in epoch mode."""
        return self._thread is not None or self._ended

    def set_source(self, file_name: str = "") -> None:
        """Read from the file list ``file_name`` from its beginning; "" rewinds the current source.

        Queued batches are dropped and reading starts (HugeCTR's ``set_source``).
        """
        if not file_name and self.source is None:
            raise NotInitializedError("set_source(): there is no current source to rewind; pass a file list path")
        self.source = str(file_name) if file_name else self.source
        self._shutdown()
        self._launch()

    def start(self) -> None:
        """Start reading the current source, if not reading already."""
        if self._thread is None:
            if self.source is None:
                raise NotInitializedError("start(): no source; pass source= or call set_source(file_list)")
            self._launch()

    def read_a_batch(self) -> Batch | None:
        """The next global batch, or None at the end of the data (epoch mode).

        A batch always has ``batchsize`` rows; ``batch.size`` tells how many are real samples (fewer
        only in a worker's last batch of an epoch).
        """
        if self._error is not None:
            raise self._error
        if self._ended:
            return None
        self.start()
        item = self._next_item()
        for record in item.dropped:
            self.dropped_samples += 1
            warnings.warn(record.message(), DataWarning, stacklevel=2)
        if item.error is not None:
            self._error = item.error
            self._shutdown()
            raise item.error
        if item.batch is None:
            self._ended = True
            self._shutdown()
        return item.batch

    def __iter__(self):
        """Batches until the end of the data."""
        while (batch := self.read_a_batch()) is not None:
            yield batch

    def close(self) -> None:
        """Stop reading and drop queued batches (``start``/``set_source`` read again from the start)."""
        self._shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _launch(self):
        paths = resolve_file_list(self.source)
        streams = [_WorkerStream(paths, w, self.num_workers, self.layout, self.repeat, self.chunk_bytes)
                   for w in range(self.num_workers)]
        self._queue, self._stop = queue.Queue(self.prefetch), threading.Event()
        self._ended, self._error = False, None
        self._thread = threading.Thread(target=_produce, name="hugectr-lab-data-reader", daemon=True,
                                        args=(streams, self.batchsize, self.layout, self._queue, self._stop))
        self._thread.start()
        # the thread holds no reference to the reader; stop it when the reader is garbage-collected
        self._finalizer = weakref.finalize(self, self._stop.set)

    def _next_item(self) -> _Item:
        while True:
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the data-reader thread ended without a result") from None

    def _shutdown(self):
        if self._thread is None:
            return
        self._stop.set()
        self._finalizer.detach()
        self._thread.join(timeout=10)
        self._queue = self._stop = self._thread = self._finalizer = None


class DataReader32(DataReader):
    """DataReader for I32 keys (uint32)."""

    def __init__(self, *args, key_type="I32", **kwargs):
        if key_dtype(key_type) != np.uint32:
            raise ValueError("DataReader32 reads I32 (uint32) keys; use DataReader64 for I64")
        super().__init__(*args, key_type="I32", **kwargs)


class DataReader64(DataReader):
    """DataReader for I64 keys (int64)."""

    def __init__(self, *args, key_type="I64", **kwargs):
        if key_dtype(key_type) != np.int64:
            raise ValueError("DataReader64 reads I64 (int64) keys; use DataReader32 for I32")
        super().__init__(*args, key_type="I64", **kwargs)
