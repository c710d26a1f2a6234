"""Fuzzing the data readers: mutated Norm (both checks), Raw (int and float), Parquet files and their
_metadata.json, keysets, file lists and the inference data file. A reader returns or raises its
documented error (DataError; ValueError for the inference file) naming the file; it never hangs."""

from __future__ import annotations

import numpy as np
import pytest
from fuzzing import check_clean, fuzz_file, fuzz_settings, mutated
from hypothesis import given
from hypothesis import strategies as st

from hugectr_lab.data import (CSR, DataError, DataReader, DataWarning, ParquetLayout, RawLayout, RawRecords, Samples,
                              encode_norm, read_keyset, read_parquet_file, read_raw_file, resolve_file_list,
                              write_keyset, write_parquet_dataset, write_raw_file)
from hugectr_lab.inference.data_file import predict_inputs, read_inference_data, write_inference_data

N, L, D, SLOTS = 6, 1, 3, (2, 1)  # two sparse inputs


def samples(one_hot=False, seed=0):
    rng = np.random.default_rng(seed)
    sparse = []
    for s in SLOTS:
        nnz = np.ones(N * s, np.int64) if one_hot else rng.integers(0, 3, N * s)
        offsets = np.concatenate([[0], np.cumsum(nnz)])
        sparse.append(CSR(offsets, rng.integers(0, 50, offsets[-1]).astype(np.uint32)))
    return Samples(rng.integers(0, 2, (N, L)).astype(np.float32), rng.random((N, D), dtype=np.float32),
                   tuple(sparse))


def read_all(reader):
    """Every batch of a DataReader (the reader's whole path: file list, workers, thread)."""
    with reader:
        return [batch.size for batch in reader]


@pytest.mark.parametrize("check", ["Sum", "None"])
def test_norm(tmp_path, check):
    base = encode_norm(samples(), check=check, slot_nums=SLOTS)
    path, lst = tmp_path / "part.data", tmp_path / "list.txt"
    lst.write_text(f"1\n{path}\n")

    def read():
        return read_all(DataReader(4, L, D, SLOTS, [4, 2], source=str(lst), check=check, num_workers=2, chunk_bytes=64))

    fuzz_file(f"norm-{check}", path, mutated(base), read, DataError, examples=300, ignore_warnings=[DataWarning])


@pytest.mark.parametrize("float_label_dense", [False, True])
def test_raw(tmp_path, float_label_dense):
    layout = RawLayout(L, D, SLOTS, float_label_dense=float_label_dense, slot_size_array=(50, 50, 50))
    path = tmp_path / "data.bin"
    rng = np.random.default_rng(1)
    dense = rng.integers(0, 9, (N, D)) if not float_label_dense else rng.random((N, D))
    write_raw_file(path, RawRecords(rng.integers(0, 2, (N, L)), dense, rng.integers(0, 50, (N, sum(SLOTS)))), layout)
    base = path.read_bytes()

    @fuzz_settings(250)
    @given(data=mutated(base), num_samples=st.sampled_from([None, N, N + 1]))
    def run(data, num_samples):
        path.write_bytes(data)
        check_clean(f"raw-{'float' if float_label_dense else 'int'}", lambda: read_raw_file(path, layout, num_samples),
                    path, DataError)

    run()


def test_parquet_file(tmp_path):
    layout = ParquetLayout(L, D, SLOTS, "I64", (50, 50, 50))
    write_parquet_dataset(tmp_path, [samples(one_hot=True)], ParquetLayout(L, D, SLOTS, "I64"))  # values < 50
    path = tmp_path / "part_0.parquet"
    base = path.read_bytes()

    fuzz_file("parquet", path, mutated(base), lambda: read_parquet_file(path, layout), DataError, examples=250)


def test_parquet_metadata(tmp_path):
    layout = ParquetLayout(L, D, SLOTS, "I64", (50, 50, 50))
    write_parquet_dataset(tmp_path, [samples(one_hot=True)], ParquetLayout(L, D, SLOTS, "I64"))  # values < 50
    meta = tmp_path / "_metadata.json"
    base = meta.read_bytes()

    fuzz_file("parquet-metadata", meta, mutated(base), lambda: read_parquet_file(tmp_path / "part_0.parquet", layout),
              DataError, examples=150, names=[meta, "part_0.parquet"])


@pytest.mark.parametrize("key_type", ["I32", "I64"])
def test_keyset(tmp_path, key_type):
    path = tmp_path / "k.keyset"
    write_keyset(path, np.arange(20), key_type)
    base = path.read_bytes()

    fuzz_file(f"keyset-{key_type}", path, mutated(base), lambda: read_keyset(path, key_type), DataError, examples=50)


def test_file_list(tmp_path):
    (tmp_path / "a.data").write_bytes(b"")
    (tmp_path / "b.data").write_bytes(b"")
    path = tmp_path / "list.txt"
    base = f"2\n{tmp_path / 'a.data'}\nb.data\n".encode()

    fuzz_file("file-list", path, st.one_of(mutated(base), st.text(max_size=40).map(str.encode)),
              lambda: resolve_file_list(path), DataError, examples=200)


@pytest.mark.parametrize("key_type", ["I32", "I64"])
def test_inference_data_file(tmp_path, key_type):
    path = tmp_path / "infer.txt"
    write_inference_data(path, predict_inputs(samples()))
    base = path.read_bytes()

    fuzz_file(f"inference-data-{key_type}", path, mutated(base), lambda: read_inference_data(path, key_type),
              ValueError, examples=150)
