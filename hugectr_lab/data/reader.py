"""DataReader32 / DataReader64: global batches from a Norm or Parquet file list or a Raw file, read ahead
in a background thread.

The sample order is HugeCTR's (v3.0). Norm and Parquet: W workers each fill whole global batches from
their own file stream (worker w reads files w, w+W, w+2W, ... of the list, continuing across file
boundaries), and batches are taken round-robin over the workers, skipping those that have finished. In
repeat mode a worker's stream wraps around the list forever (file indices modulo N); in epoch mode a
worker at the end of its files hands out one last partial batch, padded with empty samples, and is
done. Raw: the file is cut into consecutive batches whose order the training reader shuffles (seeded
here; HugeCTR's shuffle is not reproducible), see ``raw.RawBatches``. The W workers are logical
streams consumed by one thread, so the order never depends on timing.
"""

from __future__ import annotations

import queue
import threading
import warnings
import weakref
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from .batch import Batch, Samples, key_dtype
from .errors import DataError, DataWarning, NotInitializedError
from .file_list import resolve_file_list
from .norm import DEFAULT_CHUNK_BYTES, NormLayout, iter_norm_file
from .parquet import ParquetLayout, iter_parquet_file
from .raw import RawBatches, RawFile, RawLayout

FORMATS = ("Norm", "Raw", "Parquet")


class _WorkerStream:
    """One HugeCTR reader worker: the samples of its files, handed out a batch at a time."""

    def __init__(self, paths, worker, num_workers, iter_file, repeat):
        self._paths, self._worker, self._num_workers = paths, worker, num_workers
        self._iter_file, self._repeat = iter_file, repeat
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
            for samples, dropped in self._iter_file(path):
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
                if samples is None:  # a worker's partial batch is its last: the next call gives None
                    active.remove(stream)
                    continue
                if not put(_Item(Batch.pad(samples, batchsize, layout.slot_nums, layout.key_type), dropped)):
                    return
                dropped = []
        put(_Item(None, dropped))
    except BaseException as error:  # handed to the consumer, which re-raises it
        put(_Item(None, error=error))


class DataReader:
    """Reads global batches of ``batchsize`` samples from a Norm or Parquet file list, or a Raw file.

    Args mirror the JSON Data layer: ``slot_nums`` and ``max_feature_nums`` hold ``slot_num`` and
    ``max_feature_num_per_sample`` of each sparse input; ``check`` is "Sum" or "None" (Norm only);
    ``key_type`` is "I32" (uint32 keys) or "I64" (int64); ``repeat`` wraps around the data forever
    (non-epoch training) instead of ending after one pass. ``prefetch`` batches are read ahead.

    ``format`` is "Norm" (default), "Raw" or "Parquet". Raw and Parquet take ``slot_size_array`` (its
    exclusive prefix sums are added to each slot's keys); Raw also ``num_samples`` (records to read from
    ``source``, or from every file when no source is given here; None: as many as the file holds; other
    files that ``set_source`` names are read whole) and ``float_label_dense``, and ``shuffle=True``
    shuffles the order of its batches on every ``set_source`` with a generator seeded by ``seed``
    (HugeCTR's training reader shuffles with a random seed).

    Use ``set_source(source)`` (or ``start()`` with the source given here), then ``read_a_batch()``
    until it returns None. The source is a file list (Norm, Parquet) or a data file (Raw). Samples
    whose checksum does not match are dropped with a ``DataWarning`` and counted in
    ``dropped_samples``; any other data problem raises ``DataError`` from ``read_a_batch`` naming the
    file and the byte offset (Norm, Raw) or row and column (Parquet).
    """

    def __init__(self, batchsize, label_dim, dense_dim, slot_nums, max_feature_nums=None, *, source="",
                 check="Sum", repeat=False, num_workers=12, key_type="I32", prefetch=4,
                 chunk_bytes=DEFAULT_CHUNK_BYTES, format="Norm", slot_size_array=None, num_samples=None,
                 float_label_dense=False, shuffle=False, seed=None):
        if batchsize < 1 or num_workers < 1 or prefetch < 1:
            raise ValueError("batchsize, num_workers and prefetch must be >= 1")
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        self.batchsize = int(batchsize)
        self.format = format
        if format == "Norm":
            self.layout = NormLayout(label_dim, dense_dim, slot_nums, key_type, check, max_feature_nums)
        elif format == "Raw":
            self.layout = RawLayout(label_dim, dense_dim, slot_nums, key_type, float_label_dense, slot_size_array)
        else:
            self.layout = ParquetLayout(label_dim, dense_dim, slot_nums, key_type, slot_size_array)
        if format != "Norm" and max_feature_nums is not None:
            for i, (limit, s) in enumerate(zip(max_feature_nums, self.layout.slot_nums)):
                if limit < s:
                    raise ValueError(f"sparse input {i}: {format} data has one key per slot, so its "
                                     f"{s} slots need max_feature_num_per_sample >= {s}, got {limit}")
        self.num_samples = None if num_samples is None else int(num_samples)
        self._num_samples_source = str(source) if source else None  # the file num_samples describes (None: all)
        self.shuffle = bool(shuffle)  # may be switched off (or on) before the next set_source
        self._rng = np.random.default_rng(seed)
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
    def from_data_spec(cls, data, batchsize, *, key_type=None, repeat=False, eval=False, num_devices=1,
                       seed=None, **options):
        """A reader for a parsed JSON Data layer (anything with HugeCTR's Data-layer attribute names:
        ``format, source, eval_source, check, num_workers, label.label_dim, dense.dense_dim,
        sparse[i].slot_num, sparse[i].max_feature_num_per_sample`` and, for Raw/Parquet,
        ``slot_size_array, num_samples, eval_num_samples, float_label_dense``), reading ``eval_source``
        if ``eval``.

        As in HugeCTR, a Raw training reader shuffles its batches (with ``seed``) and the eval reader
        does not; Parquet defaults to ``num_devices`` workers, the other formats to 12.
        """
        fmt = getattr(data, "format", "Norm") or "Norm"
        if key_type is not None:
            options["key_type"] = key_type
        if fmt != "Norm":
            options.setdefault("slot_size_array", getattr(data, "slot_size_array", None))
        if fmt == "Raw":
            options.setdefault("num_samples", data.eval_num_samples if eval else data.num_samples)
            options.setdefault("float_label_dense", bool(getattr(data, "float_label_dense", False)))
            options.setdefault("shuffle", not eval)
            options["seed"] = seed
        workers = getattr(data, "num_workers", None) or (num_devices if fmt == "Parquet" else 12)
        return cls(batchsize, data.label.label_dim, data.dense.dense_dim, [s.slot_num for s in data.sparse],
                   [s.max_feature_num_per_sample for s in data.sparse],
                   source=data.eval_source if eval else data.source, check=data.check if fmt == "Norm" else "None",
                   repeat=repeat,
                   num_workers=workers, format=fmt, **options)

    @property
    def key_type(self) -> np.dtype:
        return self.layout.key_type

    @property
    def started(self) -> bool:
        """Whether reading began (``start``, ``set_source`` or a read) and was not closed since;
        stays True after the end of the data in epoch mode."""
        return self._thread is not None or self._ended

    def set_source(self, file_name: str = "") -> None:
        """Read from ``file_name`` (a file list; for Raw a data file) from its beginning; "" rewinds the
        current source.

        Queued batches are dropped and reading starts (HugeCTR's ``set_source``). A shuffling Raw reader
        draws a new batch order. Parquet sources are accepted too, which HugeCTR v3.0 refuses.
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

    def _streams(self):
        """The logical workers for the current source."""
        if self.format == "Raw":
            counted = self._num_samples_source in (None, self.source)
            raw = RawFile(self.source, self.layout, self.num_samples if counted else None)
            return [RawBatches(raw, self.batchsize, repeat=self.repeat, rng=self._rng if self.shuffle else None)]
        if self.format == "Norm":
            iter_file = partial(iter_norm_file, layout=self.layout, chunk_bytes=self.chunk_bytes)
        else:
            iter_file = partial(iter_parquet_file, layout=self.layout)
        paths = resolve_file_list(self.source)
        return [_WorkerStream(paths, w, self.num_workers, iter_file, self.repeat) for w in range(self.num_workers)]

    def _launch(self):
        streams = self._streams()
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
