"""The generator writes Raw and Parquet too: the same planted data as one-hot Norm, keysets, parts."""

from types import SimpleNamespace

import numpy as np
import pytest

from hugectr_lab.data import (DataReader32, ParquetLayout, RawLayout, generate_dataset, generate_for_config,
                              read_file_list, read_keyset, read_norm_file, read_parquet_file, read_raw_file,
                              read_raw_records, resolve_file_list)
from hugectr_lab.data.batch import Samples

ONE_HOT = dict(label_dim=1, dense_dim=3, slot_nums=(2, 1), num_files=2, samples_per_file=100, vocab_sizes=[5, 7, 9],
               seed=4, progress=False)


def assert_same(a, b):
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.dense, b.dense)
    for x, y in zip(a.sparse, b.sparse):
        np.testing.assert_array_equal(x.row_offsets, y.row_offsets)
        np.testing.assert_array_equal(x.keys, y.keys)


def test_raw_and_parquet_hold_the_samples_norm_holds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # list entries are relative to the working directory
    norm = generate_dataset("n/list.txt", "n/eval.txt", base_dir=tmp_path, **ONE_HOT)
    raw = generate_dataset("r/train.bin", "r/eval.bin", base_dir=tmp_path, format="Raw", float_label_dense=True,
                           train_parts=2, **ONE_HOT)
    pq = generate_dataset("p/_file_list.txt", "p/_eval_list.txt", base_dir=tmp_path, format="Parquet", **ONE_HOT)
    assert norm.bayes_auc == raw.bayes_auc == pq.bayes_auc and raw.train_samples == 200
    want = Samples.concat([read_norm_file(p, "I32", slot_nums=(2, 1))
                           for p in resolve_file_list(tmp_path / "n/list.txt")])
    raw_layout = RawLayout(1, 3, (2, 1), "I32", True, (5, 7, 9))
    assert_same(read_raw_file(tmp_path / "r/train.bin", raw_layout), want)
    assert_same(read_raw_file(tmp_path / "r/train.1.bin", raw_layout), want.take(100, 200))
    entries = read_file_list(tmp_path / "p/_file_list.txt")
    assert entries == ["p/train/part_0.parquet", "p/train/part_1.parquet"]
    layout = ParquetLayout(1, 3, (2, 1), "I32", (5, 7, 9))
    assert_same(Samples.concat([read_parquet_file(tmp_path / e, layout) for e in entries]), want)
    assert (tmp_path / "p/val/_metadata.json").exists()
    assert raw.keysets == ("r/train.keyset", "r/train.0.keyset", "r/train.1.keyset", "r/eval.keyset")
    np.testing.assert_array_equal(read_keyset(tmp_path / "r/train.keyset", "I32"),
                                  read_keyset(tmp_path / "n/list.keyset", "I32"))
    with pytest.raises(ValueError, match="one key per slot"):
        generate_dataset("x.bin", format="Raw", base_dir=tmp_path, max_nnz=2, progress=False)


def test_raw_integer_dense_and_generate_for_a_raw_config(tmp_path):
    data = {"name": "data", "type": "Data", "format": "Raw", "source": "./d/train.bin", "eval_source": "./d/test.bin",
            "check": "None", "num_samples": 250, "eval_num_samples": 40, "slot_size_array": [3, 4],
            "label": {"top": "label", "label_dim": 1}, "dense": {"top": "dense", "dense_dim": 2},
            "sparse": [{"top": "d1", "type": "LocalizedSlot", "max_feature_num_per_sample": 2, "slot_num": 2}]}
    config = SimpleNamespace(data=data, solver=None)  # the Data layer is all the generator reads
    summary = generate_for_config(config, tmp_path, samples_per_file=100, vocab_sizes=99, progress=False)
    assert (summary.format, summary.train_samples, summary.eval_samples) == ("Raw", 250, 40)
    assert summary.vocab_sizes == (3, 4)  # the config's slot_size_array wins over vocab_sizes
    layout = RawLayout(1, 2, (2,), "I32", False, (3, 4))
    records = read_raw_records(tmp_path / "d/train.bin", layout, 250)
    assert records.dense.dtype == np.int32 and 0 <= records.dense.min() and records.dense.max() < 32
    assert set(np.unique(records.labels)) <= {0, 1}
    with DataReader32(64, 1, 2, [2], [2], format="Raw", slot_size_array=(3, 4), num_samples=250,
                      source=str(tmp_path / "d/train.bin")) as reader:
        batch = reader.read_a_batch()
    np.testing.assert_array_equal(batch.dense, np.log(records.dense[:64].astype(np.float32) + 1))
    assert batch.sparse[0].keys.max() < 7
