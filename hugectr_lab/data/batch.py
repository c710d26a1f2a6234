"""Host-side sample containers: one sparse input as CSR, a set of ``Samples``, a padded ``Batch``.

Row ``sample * S + slot`` of a sparse input's CSR holds the keys of that slot of that sample, so a
slot with nnz 0 is an empty row. Keys are uint32 for HugeCTR's ``I32`` key type and int64 for ``I64``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..rules.keys import key_dtype


def as_keys(keys, key_type) -> np.ndarray:
    """``keys`` as a contiguous array of the key type's dtype; ValueError if a key does not fit."""
    dtype, keys = key_dtype(key_type), np.asarray(keys)
    if keys.dtype != dtype and keys.size:
        info = np.iinfo(dtype)
        if keys.min() < info.min or keys.max() > info.max:
            raise ValueError(f"keys out of range for {dtype} ({info.min}..{info.max})")
    return np.ascontiguousarray(keys, dtype=dtype)


@dataclass(frozen=True, eq=False)
class CSR:
    """Keys of one sparse input for N samples of S slots each (row = sample * S + slot)."""

    row_offsets: np.ndarray  # (N*S+1,) int64, row_offsets[0] == 0, non-decreasing
    keys: np.ndarray  # (K,) uint32 | int64, K == row_offsets[-1]

    @property
    def num_rows(self) -> int:
        return len(self.row_offsets) - 1

    @property
    def nnz(self) -> int:
        return int(self.row_offsets[-1])

    def row_nnz(self) -> np.ndarray:
        """Keys per row.  # (N*S,) int64"""
        return np.diff(self.row_offsets)

    def rows(self, start: int, stop: int) -> CSR:
        """Rows ``[start, stop)`` as a CSR of their own (offsets rebased to 0; keys are a view)."""
        offsets = self.row_offsets[start:stop + 1]
        return CSR(offsets - offsets[0], self.keys[offsets[0]:offsets[-1]])

    @staticmethod
    def concat(parts) -> CSR:
        """Rows of ``parts`` one after the other."""
        parts = list(parts)
        shifts = np.cumsum([0] + [p.nnz for p in parts[:-1]])
        offsets = [np.zeros(1, np.int64)] + [p.row_offsets[1:] + s for p, s in zip(parts, shifts)]
        return CSR(np.concatenate(offsets), np.concatenate([p.keys for p in parts]))

    @staticmethod
    def empty(num_rows: int, dtype) -> CSR:
        """``num_rows`` rows without keys."""
        return CSR(np.zeros(num_rows + 1, np.int64), np.zeros(0, key_dtype(dtype)))


@dataclass(frozen=True, eq=False)
class Samples:
    """N samples: labels, dense features and one CSR per sparse input (slots of input 0 first)."""

    labels: np.ndarray  # (N, L) float32
    dense: np.ndarray  # (N, D) float32
    sparse: tuple  # of CSR, one per sparse input; input i has N*S_i rows

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def slot_nums(self) -> tuple:
        """Slots per sparse input (S_i), derived from the row counts; needs at least one sample."""
        if len(self) == 0:
            raise ValueError("slot counts of an empty Samples are unknown")
        return tuple(csr.num_rows // len(self) for csr in self.sparse)

    def take(self, start: int, stop: int) -> Samples:
        """Samples ``[start, stop)`` (views where possible)."""
        return Samples(self.labels[start:stop], self.dense[start:stop],
                       tuple(csr.rows(start * s, stop * s) for csr, s in zip(self.sparse, self.slot_nums)))

    @staticmethod
    def concat(parts) -> Samples:
        """Samples of ``parts`` one after the other (all parts non-empty and of one layout)."""
        parts = list(parts)
        if len(parts) == 1:
            return parts[0]
        return Samples(np.concatenate([p.labels for p in parts]), np.concatenate([p.dense for p in parts]),
                       tuple(CSR.concat(csrs) for csrs in zip(*(p.sparse for p in parts))))

    @staticmethod
    def empty(num_samples: int, label_dim: int, dense_dim: int, slot_nums, dtype) -> Samples:
        """``num_samples`` all-zero samples with no keys (HugeCTR's padding samples)."""
        return Samples(np.zeros((num_samples, label_dim), np.float32),
                       np.zeros((num_samples, dense_dim), np.float32),
                       tuple(CSR.empty(num_samples * s, dtype) for s in slot_nums))


@dataclass(frozen=True, eq=False)
class Batch(Samples):
    """A global batch of B rows; the first ``size`` are real samples, the rest zero padding."""

    size: int

    @staticmethod
    def pad(samples: Samples, batchsize: int, slot_nums, dtype) -> Batch:
        """``samples`` (at most ``batchsize``) padded to ``batchsize`` rows with empty samples."""
        n = len(samples)
        full = samples
        if n < batchsize:
            padding = Samples.empty(batchsize - n, samples.labels.shape[1], samples.dense.shape[1], slot_nums, dtype)
            full = Samples.concat([samples, padding]) if n else padding
        return Batch(full.labels, full.dense, full.sparse, n)


class SlotLayout:
    """Shared by the Raw and Parquet layouts (frozen dataclasses with ``slot_nums``, ``key_type`` and
    ``slot_size_array`` fields): normalisation of those fields, the slot count and the key offsets."""

    def _normalize_slots(self):
        object.__setattr__(self, "slot_nums", tuple(int(s) for s in self.slot_nums))
        object.__setattr__(self, "key_type", key_dtype(self.key_type))
        if self.slot_size_array is not None:
            object.__setattr__(self, "slot_size_array", tuple(int(s) for s in self.slot_size_array))
            if len(self.slot_size_array) != self.slot_num:
                raise ValueError(f"slot_size_array has {len(self.slot_size_array)} entries for {self.slot_num} slots")

    @property
    def slot_num(self) -> int:
        return sum(self.slot_nums)

    def split_keys(self, keys) -> tuple:
        """One-hot keys ``(n, S)`` (one column per slot over all inputs) → one CSR per sparse input."""
        n, sparse, first = keys.shape[0], [], 0
        for s in self.slot_nums:
            sparse.append(CSR(np.arange(n * s + 1, dtype=np.int64),
                              np.ascontiguousarray(keys[:, first:first + s]).reshape(-1).astype(self.key_type)))
            first += s
        return tuple(sparse)

    @property
    def slot_offsets(self) -> np.ndarray:
        """First key of each slot: exclusive prefix sums of slot_size_array (zeros without one).  # (S,) int64"""
        if self.slot_size_array is None:
            return np.zeros(self.slot_num, np.int64)
        sizes = np.asarray(self.slot_size_array, np.int64)
        return np.cumsum(sizes) - sizes
