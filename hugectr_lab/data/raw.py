"""HugeCTR's Raw data files: fixed-size records, no header, one key per slot (see docs/formats.md).

A record is ``label_dim`` labels, ``dense_dim`` dense values (int32 each, or float32 each with
``float_label_dense``), then one int32 key per slot (``slot_num`` over all sparse inputs). The file does
not say how many records it holds: the Data layer's ``num_samples`` / ``eval_num_samples`` do.

What the reader hands out (``RawLayout.decode``):

* labels: the int cast to float (or the float as it is);
* dense: ``ln(x + 1)`` computed in float32 for ints (a negative int is an error), the float as it is;
* keys: ``file key + slot offset``, the offsets being the exclusive prefix sums of ``slot_size_array``
  (0 without one), stored as the key type. With ``slot_size_array`` a file key outside
  ``[0, slot_size)`` is an error; without one a negative file key is.

``RawRecords`` are the values as stored (no conversion); ``write_raw_file`` writes either those or
``Samples`` (one key per slot; the slot offsets are subtracted again).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .batch import Samples, SlotLayout
from ..fileio import naming_os_errors
from .errors import DataError, check_data_file, first_non_finite


class RawRecords(NamedTuple):
    """Records as a Raw file stores them (N samples, S slots over all sparse inputs)."""

    labels: np.ndarray  # (N, L) int32 | float32
    dense: np.ndarray  # (N, D) int32 | float32
    keys: np.ndarray  # (N, S) int32, file keys (without slot offsets)


@dataclass(frozen=True)
class RawLayout(SlotLayout):
    """What a Raw record holds: the Data layer's side of the format."""

    label_dim: int
    dense_dim: int
    slot_nums: tuple  # slots per sparse input
    key_type: object = "I32"  # "I32" / "I64" or a key dtype; stored as the numpy dtype
    float_label_dense: bool = False
    slot_size_array: tuple | None = None  # per slot over all inputs, or None (no offsets, no range check)

    def __post_init__(self):
        self._normalize_slots()
        if self.slot_size_array is not None:
            if min(self.slot_size_array, default=1) < 1:
                raise ValueError("slot_size_array entries must be >= 1")
        if self.label_dim < 0 or self.dense_dim < 0 or min(self.slot_nums, default=0) < 0:
            raise ValueError("label_dim, dense_dim and slot counts must be >= 0")
        if self.record_words == 0:
            raise ValueError("a record needs at least one label, dense value or slot")

    @property
    def record_words(self) -> int:
        """4-byte values per record."""
        return self.label_dim + self.dense_dim + self.slot_num

    @property
    def record_bytes(self) -> int:
        return 4 * self.record_words

    @property
    def value_dtype(self) -> np.dtype:
        """How labels and dense values are stored."""
        return np.dtype("<f4" if self.float_label_dense else "<i4")

    # --- records <-> samples -------------------------------------------------------------------

    def split(self, words: np.ndarray) -> RawRecords:
        """``words`` (N, record_words) little-endian int32 → the stored fields (views)."""
        L, D = self.label_dim, self.dense_dim
        values = words[:, :L + D].view(self.value_dtype)
        return RawRecords(values[:, :L], values[:, L:], words[:, L + D:])

    def decode(self, words: np.ndarray, *, path="<raw>", first_index=0) -> Samples:
        """The samples of ``words`` (N, record_words) int32 records; ``first_index`` is the index of the
        first record in its file (for error messages, which name the file, byte offset and field)."""
        labels, dense, file_keys = self.split(words)
        if self.float_label_dense:
            labels, dense = np.array(labels, np.float32), np.array(dense, np.float32)
            found = first_non_finite(labels, dense)
            if found is not None:
                i, column, what = found
                raise DataError(path, self._offset(first_index + i, column), f"sample {first_index + i}: {what}")
        else:
            if dense.size and dense.min() < 0:
                i, j = np.argwhere(dense < 0)[0]
                raise DataError(path, self._offset(first_index + i, self.label_dim + j),
                                f"sample {first_index + i}: dense feature {j} is {int(dense[i, j])}; integer dense "
                                f"values must be >= 0 (the reader takes ln(x + 1))")
            labels = labels.astype(np.float32)
            dense = np.log(dense.astype(np.float32) + np.float32(1))
        keys = file_keys.astype(np.int64)
        bad = keys < 0 if self.slot_size_array is None else (keys < 0) | (keys >= np.asarray(self.slot_size_array))
        if bad.any():
            i, s = np.argwhere(bad)[0]
            limit = "be >= 0" if self.slot_size_array is None else f"lie in [0, {self.slot_size_array[s]}) " \
                                                                   f"(slot_size_array[{s}])"
            raise DataError(path, self._offset(first_index + i, self.label_dim + self.dense_dim + s),
                            f"sample {first_index + i}: slot {s} key {int(keys[i, s])} must {limit}")
        keys += self.slot_offsets
        if keys.size and keys.max() > np.iinfo(self.key_type).max:
            raise DataError(path, None, f"key {int(keys.max())} (file key + slot offset) does not fit "
                                        f"{self.key_type} keys")
        return Samples(labels, dense, self.split_keys(keys))

    def encode(self, data) -> np.ndarray:
        """``RawRecords`` or ``Samples`` → the records as (N, record_words) little-endian int32 words.

        Samples need exactly one key per slot; the slot offsets are subtracted from their keys. Without
        ``float_label_dense`` their labels and dense values must be integers (they are stored as int32;
        the reader will hand out ln(x + 1) of the dense ones).
        """
        if isinstance(data, Samples):
            data = self.records_of(data)
        labels, dense, keys = (np.asarray(a) for a in data)
        n = len(labels)
        for name, array, width in (("labels", labels, self.label_dim), ("dense", dense, self.dense_dim),
                                   ("keys", keys, self.slot_num)):
            if array.shape != (n, width):
                raise ValueError(f"{name} must be ({n}, {width}), got {array.shape}")
        words = np.empty((n, self.record_words), "<i4")
        L, D = self.label_dim, self.dense_dim
        values = words[:, :L + D].view(self.value_dtype)
        values[:, :L] = _stored(labels, self.value_dtype, "labels")
        values[:, L:] = _stored(dense, self.value_dtype, "dense")
        words[:, L + D:] = _stored(keys, np.dtype("<i4"), "keys")
        return words

    def records_of(self, samples: Samples) -> RawRecords:
        """The stored fields for one-hot ``samples`` (keys minus slot offsets; values not converted)."""
        n = len(samples)
        columns = []
        for i, (csr, s) in enumerate(zip(samples.sparse, self.slot_nums)):
            if csr.num_rows != n * s or (csr.row_nnz() != 1).any():
                raise ValueError(f"sparse input {i}: the Raw format holds exactly one key per slot")
            columns.append(np.asarray(csr.keys, np.int64).reshape(n, s))
        keys = np.hstack(columns + [np.zeros((n, 0), np.int64)]) - self.slot_offsets
        if (keys < 0).any() or (self.slot_size_array is not None and (keys >= np.asarray(self.slot_size_array)).any()):
            raise ValueError("a key lies outside its slot's range [offset, offset + slot_size)")
        return RawRecords(samples.labels, samples.dense, keys)

    def _offset(self, index, word):
        return int(index) * self.record_bytes + 4 * int(word)


def _stored(array, dtype, name):
    """``array`` as the stored dtype; ints must be integral and fit int32."""
    array = np.asarray(array)
    if dtype.kind == "f":
        return array.astype(dtype)
    if array.size:
        if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
            raise ValueError(f"{name}: Raw files without float_label_dense store int32 values; got non-integers "
                             "(pass float_label_dense=True to store floats)")
        if array.min() < np.iinfo(np.int32).min or array.max() > np.iinfo(np.int32).max:
            raise ValueError(f"{name}: values do not fit int32")
    return array.astype(dtype)


def encode_raw(data, layout: RawLayout) -> bytes:
    """The bytes of a Raw file holding ``data`` (``RawRecords`` or one-hot ``Samples``)."""
    return layout.encode(data).tobytes()


def write_raw_file(path, data, layout: RawLayout) -> int:
    """Write ``data`` (``RawRecords`` or one-hot ``Samples``) as a Raw file; returns the sample count."""
    words = layout.encode(data)
    with naming_os_errors(path), open(path, "wb") as f:
        f.write(words.tobytes())
    return len(words)


def raw_num_records(path, layout: RawLayout) -> int:
    """Whole records in the file at ``path``; DataError if its size is not a multiple of the record size."""
    size = os.path.getsize(path)
    if size % layout.record_bytes:
        raise DataError(path, size - size % layout.record_bytes,
                        f"file size {size} is not a multiple of the record size {layout.record_bytes} bytes "
                        f"(4 x (label_dim {layout.label_dim} + dense_dim {layout.dense_dim} + "
                        f"slots {layout.slot_num})); pass num_samples to read a prefix")
    return size // layout.record_bytes


class RawFile:
    """The first ``num_samples`` records of a Raw file, memory-mapped (None: all, the size must fit)."""

    def __init__(self, path, layout: RawLayout, num_samples=None):
        self.path, self.layout = str(path), layout
        check_data_file(self.path, "Raw data file")
        size = os.path.getsize(self.path)
        if num_samples is None:
            num_samples = raw_num_records(self.path, layout)
        held = size // layout.record_bytes
        if held < num_samples:
            raise DataError(self.path, held * layout.record_bytes,
                            f"file ends inside sample {held}: it holds {size} bytes = {held} whole records of "
                            f"{layout.record_bytes} bytes, but num_samples is {num_samples}")
        self.num_samples = int(num_samples)
        self._words = (np.memmap(self.path, "<i4", "r", shape=(self.num_samples, layout.record_words))
                       if self.num_samples else np.zeros((0, layout.record_words), "<i4"))

    def __len__(self):
        return self.num_samples

    def records(self, start=0, stop=None) -> RawRecords:
        """Stored fields of records ``[start, stop)`` (copies)."""
        return RawRecords(*(np.array(a) for a in self.layout.split(self._words[start:stop])))

    def samples(self, start=0, stop=None) -> Samples:
        """Decoded samples ``[start, stop)``."""
        start = int(start)
        return self.layout.decode(np.asarray(self._words[start:stop]), path=self.path, first_index=start)


def read_raw_file(path, layout: RawLayout, num_samples=None) -> Samples:
    """All samples (or the first ``num_samples``) of the Raw file at ``path``, decoded."""
    return RawFile(path, layout, num_samples).samples()


def read_raw_records(path, layout: RawLayout, num_samples=None) -> RawRecords:
    """The stored fields of the Raw file at ``path`` (no conversion)."""
    return RawFile(path, layout, num_samples).records()


class RawBatches:
    """The batch stream of HugeCTR's Raw reader over one file.

    The file is cut into consecutive batches of ``batchsize`` samples (the last may be shorter). With
    ``rng`` the list of batch starts is shuffled (HugeCTR's training reader; samples inside a batch keep
    file order). Batch j is read by worker j mod W in round j div W and workers are consumed
    round-robin, so batches come in list order whatever W is. ``repeat`` wraps around the same list.
    """

    def __init__(self, raw: RawFile, batchsize, *, repeat=False, rng=None):
        self.raw, self.batchsize, self.repeat = raw, int(batchsize), bool(repeat)
        starts = np.arange(0, len(raw), self.batchsize, dtype=np.int64)
        self.starts = rng.permutation(starts) if rng is not None else starts
        self._next = 0

    def next_batch(self, batchsize):
        """The next batch's samples (fewer than ``batchsize`` only for the file's short last batch), or None
        at the end (epoch mode); also the dropped records (never any: Raw has no checksums)."""
        if not len(self.starts):
            if self.repeat:
                raise DataError(self.raw.path, None, "Raw source holds no sample (num_samples is 0)")
            return None, []
        if self._next == len(self.starts):
            if not self.repeat:
                return None, []
            self._next = 0
        start = int(self.starts[self._next])
        self._next += 1
        return self.raw.samples(start, min(start + self.batchsize, len(self.raw))), []
