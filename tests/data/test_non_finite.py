"""NaN and infinity in labels or dense features are a DataError naming the file, sample and byte/column,
in every format and through the DataReader (docs/compat.md, "Data")."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hugectr_lab.data import (CSR, DataError, DataReader, ParquetLayout, RawLayout, Samples, read_norm_file,
                              read_parquet_file, read_raw_file, write_norm_file, write_parquet_dataset,
                              write_raw_file)
from hugectr_lab.inference.data_file import read_inference_data

N, L, D, S = 7, 1, 3, 2


def samples_with(row, column, value):
    """N samples, one key per slot, with ``value`` at (row, column) of labels-then-dense."""
    floats = np.arange(N * (L + D), dtype=np.float32).reshape(N, L + D) % 2
    floats[row, column] = value
    keys = np.arange(N * S, dtype=np.uint32)
    return Samples(floats[:, :L].copy(), floats[:, L:].copy(), (CSR(np.arange(N * S + 1), keys),))


CASES = [(4, 2, np.nan, "sample 4: dense feature 1 is nan"), (0, 0, np.inf, "sample 0: label 0 is inf"),
         (6, 3, -np.inf, "sample 6: dense feature 2 is -inf")]


@pytest.mark.parametrize("check", ["Sum", "None"])
@pytest.mark.parametrize("row,column,value,what", CASES)
def test_norm_names_file_sample_and_byte(tmp_path, check, row, column, value, what):
    path = tmp_path / "bad.data"
    write_norm_file(path, samples_with(row, column, value), check=check)
    record = 4 * (L + D + S + S)  # floats, one nnz and one key per slot
    header, frame = (69, 5) if check == "Sum" else (64, 0)
    byte = header + row * (record + frame) + (4 if frame else 0) + 4 * column
    with pytest.raises(DataError, match=f"{path}: byte {byte}: {what}"):
        read_norm_file(path)


@pytest.mark.parametrize("row,column,value,what", CASES)
def test_raw_float_names_file_sample_and_byte(tmp_path, row, column, value, what):
    layout = RawLayout(L, D, (S,), float_label_dense=True)
    path = tmp_path / "bad.raw"
    write_raw_file(path, samples_with(row, column, value), layout)
    byte = row * layout.record_bytes + 4 * column
    with pytest.raises(DataError, match=f"{path}: byte {byte}: {what}"):
        read_raw_file(path, layout)


@pytest.mark.parametrize("row,column,value,what", CASES)
def test_parquet_names_file_row_and_column(tmp_path, row, column, value, what):
    layout = ParquetLayout(L, D, (S,), "I32")
    write_parquet_dataset(tmp_path, [samples_with(row, column, value)], layout)
    name = "label" if column < L else f"I{column - L + 1}"
    field = what.split(": ", 1)[1]
    with pytest.raises(DataError, match=f"part_0.parquet: row {row}, column '{name}': {field}"):
        read_parquet_file(tmp_path / "part_0.parquet", layout)


def test_reader_raises_from_read_a_batch(tmp_path):
    path = tmp_path / "bad.data"
    write_norm_file(path, samples_with(5, 1, np.nan))
    (tmp_path / "list.txt").write_text(f"1\n{path}\n")
    with DataReader(4, L, D, [S], source=str(tmp_path / "list.txt"), num_workers=1) as reader:
        with pytest.raises(DataError, match=f"{path}: byte .*: sample 5: dense feature 0 is nan"):
            list(reader)


@pytest.mark.parametrize("lines,message", [("1 0\n0.5 nan\n1 2\n0 1 2\n", "line 2: dense feature value 1 is nan"),
                                           ("inf 0\n0.5 1\n1 2\n0 1 2\n", "line 1: label value 0 is inf"),
                                           ("0.5 -inf\n1 2\n0 1 2\n", "line 1: dense feature value 1 is -inf")])
def test_inference_data_file_refuses_non_finite_inputs(tmp_path, lines, message):
    path = tmp_path / "infer.txt"
    path.write_text(lines)
    with pytest.raises(ValueError, match=f"{path}: {message}"):
        read_inference_data(path)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), check=st.sampled_from(["Sum", "None"]), key_type=st.sampled_from(["I32", "I64"]),
       value=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_norm_property_the_first_non_finite_value_is_named(tmp_path_factory, data, check, key_type, value):
    """Any shape, any nnz, any planted positions: the error names the first (sample-major) non-finite value
    and its exact byte offset."""
    n, label_dim, dense_dim = data.draw(st.integers(1, 12)), data.draw(st.integers(0, 2)), data.draw(st.integers(0, 4))
    if label_dim + dense_dim == 0:
        dense_dim = 1
    slots = data.draw(st.integers(0, 3))
    nnz = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n * slots, max_size=n * slots)), np.int64)
    floats = np.zeros((n, label_dim + dense_dim), np.float32)
    planted = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, label_dim + dense_dim - 1)),
                                 min_size=1, max_size=3))
    for row, column in planted:
        floats[row, column] = value
    row, column = min(planted)
    offsets = np.concatenate([[0], np.cumsum(nnz)])
    samples = Samples(floats[:, :label_dim], floats[:, label_dim:],
                      (CSR(offsets, np.arange(offsets[-1], dtype=np.uint32)),))
    path = tmp_path_factory.mktemp("nf") / "p.data"
    write_norm_file(path, samples, check=check, key_type=key_type, slot_nums=(slots,))
    key_bytes = 4 if key_type == "I32" else 8
    record = 4 * (label_dim + dense_dim + slots) + key_bytes * nnz.reshape(n, slots).sum(axis=1)  # (n,)
    header, frame = (69, 5) if check == "Sum" else (64, 0)
    byte = header + int(record[:row].sum()) + frame * row + (4 if frame else 0) + 4 * column
    field = f"label {column}" if column < label_dim else f"dense feature {column - label_dim}"
    with pytest.raises(DataError, match=re.escape(f"{path}: byte {byte}: sample {row}: {field} is {float(value)}")):
        read_norm_file(path, key_type, slot_nums=(slots,))
