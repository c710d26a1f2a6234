"""Inference inputs: the 4-line text file of HugeCTR's inference notebook, and conversion from Samples.

The file (``criteo2predict.py``'s output, spec 3.7) holds four lines of space-separated numbers:

1. labels (N*L values; an empty line, or a 3-line file, means no labels),
2. dense features (N*D, sample-major),
3. keys (the ``embeddingcolumns``),
4. row pointers (N*S + 1 entries, a CSR over (sample, slot) pairs).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..data.batch import Samples
from ..input_files import located, read_text


class PredictInputs(NamedTuple):
    """The arguments of ``InferenceSession.predict`` (plus labels, when known), as NumPy arrays."""

    dense_feature: np.ndarray       # (N*D,) float32
    embeddingcolumns: np.ndarray    # (K,) uint32 | int64
    row_ptrs: np.ndarray            # (N*S+1,) int64
    labels: np.ndarray | None       # (N*L,) float32, None when the file has none


def read_inference_data(path, key_type="I64"):
    """Read the 4-line inference data file. ``key_type`` ("I32"/"I64") is the dtype keys are read as."""
    lines = read_text(path, "inference data file",
                      lambda offset, what: ValueError(located(path, offset, what))).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) not in (3, 4):
        raise ValueError(f"{path}: an inference data file has 4 lines (labels, dense features, keys, row "
                         f"pointers) or 3 (without labels); found {len(lines)}")
    shift = 4 - len(lines)  # a 3-line file has no labels line: its line 1 holds the dense features
    lines = [""] * shift + lines

    def numbers(i, dtype, what):
        try:
            return np.array(lines[i].split(), dtype=dtype)
        except (ValueError, OverflowError) as e:
            raise ValueError(f"{path}: line {i + 1 - shift} ({what}): {e}") from None

    labels = numbers(0, np.float32, "labels")
    dense = numbers(1, np.float32, "dense features")
    for i, (values, what) in enumerate(((labels, "label"), (dense, "dense feature"))):
        if not np.isfinite(values).all():
            j = int(np.flatnonzero(~np.isfinite(values))[0])
            raise ValueError(f"{path}: line {i + 1 - shift}: {what} value {j} is {values[j]} (NaN and infinity "
                             "are refused)")
    keys = numbers(2, np.uint32 if key_type == "I32" else np.int64, "keys")
    row_ptrs = numbers(3, np.int64, "row pointers")
    return PredictInputs(dense, keys, row_ptrs, labels if labels.size else None)


def write_inference_data(path, inputs: PredictInputs):
    """Write ``inputs`` as the 4-line file (labels as integers when they are all whole numbers)."""
    labels = inputs.labels if inputs.labels is not None else np.zeros(0)
    whole = np.all(np.floor(labels) == labels)
    lines = [" ".join(str(int(v)) if whole else repr(float(v)) for v in labels),
             " ".join(repr(float(v)) for v in np.asarray(inputs.dense_feature, np.float32)),
             " ".join(str(int(v)) for v in inputs.embeddingcolumns),
             " ".join(str(int(v)) for v in inputs.row_ptrs)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def predict_inputs(samples: Samples) -> PredictInputs:
    """``predict`` arguments for ``samples`` (a reader's Samples or Batch: one CSR per sparse input):
    each sample's slots are the sparse inputs' slots in order, their keys in the same order."""
    n = len(samples)
    csrs = samples.sparse
    nnz = np.concatenate([np.diff(c.row_offsets).reshape(n, -1) for c in csrs], axis=1)   # (N, S)
    row_ptrs = np.zeros(nnz.size + 1, dtype=np.int64)
    np.cumsum(nnz.reshape(-1), out=row_ptrs[1:])
    if len(csrs) == 1:
        keys = csrs[0].keys
    else:
        per_sample = [np.repeat(np.arange(n), np.diff(c.row_offsets).reshape(n, -1).sum(axis=1)) for c in csrs]
        sample = np.concatenate(per_sample)
        source = np.concatenate([np.full(c.keys.size, i) for i, c in enumerate(csrs)])
        order = np.argsort(sample * len(csrs) + source, kind="stable")
        keys = np.concatenate([c.keys for c in csrs])[order]
    return PredictInputs(np.ascontiguousarray(samples.dense, np.float32).reshape(-1), keys, row_ptrs,
                         np.ascontiguousarray(samples.labels, np.float32).reshape(-1))
