"""The Criteo pipeline: operator semantics worked out by hand, the three output formats with keysets and
file-list groups, bounded-memory chunking, errors, the CLI, and training on the result."""

import json
import math
import statistics

import numpy as np
import pytest
from criteo_tsv import tiny_tsv, write_criteo_tsv

from hugectr_lab.cli import main
from hugectr_lab.data import (DataError, ParquetLayout, RawLayout, read_file_list, read_keyset, read_norm_file,
                              read_parquet_file, read_raw_file, read_raw_records)
from hugectr_lab.data.batch import Samples
from hugectr_lab.preprocess import CriteoPipeline, preprocess_criteo
from hugectr_lab.preprocess import engines as engines_module

LOG = [float(np.log(np.float32(x) + np.float32(1))) for x in range(8)]


def test_operators_and_codes_by_hand(tmp_path):
    train = tiny_tsv(tmp_path / "day_0")
    (tmp_path / "day_1").write_text("0\t\t\t\t" + "\t" * 10 + "zz\ty" + "\t" * 24 + "\n")  # unseen C1 value
    summary = preprocess_criteo(tmp_path / "out", [train], [str(tmp_path / "day_1")], format="norm",
                                pipeline=CriteoPipeline(freq_threshold=1), samples_per_file=4, progress=False)
    sizes = summary.slot_size_array
    assert sizes[:3] == [7, 5, 3] and sizes[3:] == [3] * 23  # 3 reserved codes + the vocabulary
    samples = Samples.concat([read_norm_file(p) for p in summary.splits["train"].files])
    assert [len(read_norm_file(p)) for p in summary.splits["train"].files] == [4, 2]
    keys = samples.sparse[0].keys.reshape(6, 26).astype(np.int64) - np.cumsum([0] + sizes[:-1])
    # C1: aa and bb twice, cc and dd once -> aa 3, bb 4 (ties by value), cc 5, dd 6; C2: y 3, x 4, missing 1
    assert keys[:, 0].tolist() == [4, 3, 4, 3, 5, 6]
    assert keys[:, 1].tolist() == [4, 4, 1, 3, 3, 3]
    assert (keys[:, 2:] == 1).all()
    assert samples.labels[:, 0].tolist() == [1, 0, 1, 0, 0, 1]
    np.testing.assert_array_equal(samples.dense[:, 0], [LOG[0], LOG[0], LOG[7], LOG[1], LOG[2], LOG[3]])
    np.testing.assert_array_equal(samples.dense[:, 1], [LOG[0], LOG[3], LOG[0], LOG[1], LOG[2], LOG[3]])  # -2 -> 0
    assert samples.dense.dtype == np.float32 and (samples.dense[:, 3:] == 0).all()
    evaluation = read_norm_file(summary.splits["val"].files[0])
    eval_keys = evaluation.sparse[0].keys.astype(np.int64) - np.cumsum([0] + sizes[:-1])
    assert eval_keys[:2].tolist() == [2, 3]  # zz was never seen: OOV; y keeps its code
    np.testing.assert_array_equal(read_keyset(summary.splits["train"].keyset, "I32"), np.unique(samples.sparse[0].keys))
    layer = json.loads((tmp_path / "out" / "preprocess.json").read_text())["data_layer"]
    assert layer["source"] == summary.splits["train"].source and layer["check"] == "Sum"

    rare = preprocess_criteo(tmp_path / "out2", [train], format="norm", pipeline=CriteoPipeline(freq_threshold=2),
                             progress=False)
    codes = read_norm_file(rare.splits["train"].files[0]).sparse[0].keys.reshape(6, 26)[:, 0]
    assert codes.tolist() == [4, 3, 4, 3, 2, 2]  # cc and dd are seen once: out of vocabulary
    assert rare.slot_size_array[0] == 5


def test_raw_and_parquet_outputs_hold_codes_and_the_data_layer_adds_offsets(tmp_path):
    train = write_criteo_tsv(tmp_path / "day_0", 300, seed=1)
    norm = preprocess_criteo(tmp_path / "norm", [train], format="norm", samples_per_file=100, progress=False,
                             pipeline=CriteoPipeline(freq_threshold=2))
    want = Samples.concat([read_norm_file(p) for p in norm.splits["train"].files])
    sizes = tuple(norm.slot_size_array)

    raw = preprocess_criteo(tmp_path / "raw", [train], format="raw", samples_per_file=100, file_list_length=2,
                            progress=False, pipeline=CriteoPipeline(freq_threshold=2))
    parts = raw.splits["train"].parts
    assert [p for p, _ in parts] == [str(tmp_path / "raw/train/data.0.bin"), str(tmp_path / "raw/train/data.1.bin")]
    layout = RawLayout(1, 13, (26,), "I32", False, sizes)
    got = Samples.concat([read_raw_file(p, layout) for p, _ in parts])
    np.testing.assert_array_equal(got.sparse[0].keys, want.sparse[0].keys)
    np.testing.assert_array_equal(got.dense, want.dense)  # the reader's ln(x + 1) equals LogOp
    records = read_raw_records(parts[0][0], layout)
    assert records.dense.dtype == np.int32 and records.dense.min() >= 0 and records.keys.max() < max(sizes)
    np.testing.assert_array_equal(read_keyset(parts[1][1], "I32"), np.unique(want.take(200, 300).sparse[0].keys))
    assert raw.data_layer["num_samples"] == 300 and raw.data_layer["slot_size_array"] == list(sizes)

    pq = preprocess_criteo(tmp_path / "pq", [train], format="parquet", samples_per_file=120, file_list_length=2,
                           progress=False, pipeline=CriteoPipeline(freq_threshold=2))
    split = pq.splits["train"]
    assert split.source.endswith("_file_list.txt") and len(split.files) == 3 and len(split.parts) == 2
    assert read_file_list(split.parts[1][0]) == [split.files[2]]
    got = Samples.concat([read_parquet_file(p, ParquetLayout(1, 13, (26,), "I64", sizes)) for p in split.files])
    np.testing.assert_array_equal(got.sparse[0].keys, want.sparse[0].keys)
    np.testing.assert_array_equal(got.dense, want.dense)
    meta = json.loads((tmp_path / "pq/train/_metadata.json").read_text())
    assert [c["col_name"] for c in meta["cats"]][:2] == ["C1", "C2"] and meta["labels"][0]["col_name"] == "label"


def test_small_chunks_and_merged_counts_give_the_same_files(tmp_path, monkeypatch):
    train = write_criteo_tsv(tmp_path / "day_0", 600, seed=2)
    one = preprocess_criteo(tmp_path / "one", [train], format="norm", samples_per_file=250, progress=False)
    monkeypatch.setattr(engines_module, "_MERGE_ENTRIES", 8)  # merge the partial counts after every block
    many = preprocess_criteo(tmp_path / "many", [train], format="norm", samples_per_file=250, chunk_bytes=4096,
                             progress=False)
    assert one.slot_size_array == many.slot_size_array
    for a, b in zip(one.splits["train"].files + [one.splits["train"].keyset],
                    many.splits["train"].files + [many.splits["train"].keyset]):
        assert open(a, "rb").read() == open(b, "rb").read()


def test_normalize_uses_training_moments(tmp_path):
    train = tiny_tsv(tmp_path / "day_0")
    summary = preprocess_criteo(tmp_path / "out", [train], format="parquet", progress=False,
                                pipeline=CriteoPipeline(freq_threshold=1, normalize=True))
    dense = read_parquet_file(summary.splits["train"].files[0],
                              ParquetLayout(1, 13, (26,), "I64", tuple(summary.slot_size_array))).dense
    column = np.array([LOG[0], LOG[0], LOG[7], LOG[1], LOG[2], LOG[3]], np.float64)
    # exact mean and sample std, each rounded once; (x - mean) / std in float64, rounded once to float32
    mean, std = statistics.mean(column.tolist()), statistics.stdev(column.tolist())
    np.testing.assert_array_equal(dense[:, 0], ((column - mean) / std).astype(np.float32))
    assert (dense[:, 2] == 0).all()  # a constant column: std 0, x - mean
    with pytest.raises(ValueError, match="float_label_dense"):
        preprocess_criteo(tmp_path / "raw", [train], format="raw", pipeline=CriteoPipeline(normalize=True))


@pytest.mark.parametrize("content, message", [
    ("1\t2\t3\n", r"day_0: line 1: 3 tab-separated fields, expected 40"),
    ("1" + "\tx" * 13 + "\ta" * 26 + "\n", r"day_0: line 1: I1 is 'x', not a number"),
    ("\t1" + "\t" * 38 + "\n", r"day_0: line 1: no label"),
])
def test_bad_input_names_the_file(tmp_path, content, message):
    (tmp_path / "day_0").write_text(content)
    with pytest.raises(DataError, match=message):
        preprocess_criteo(tmp_path / "out", [str(tmp_path / "day_0")], progress=False)


def test_cli_preprocess_and_training_on_the_result(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_criteo_tsv(tmp_path / "day_0", 1200, seed=3)
    write_criteo_tsv(tmp_path / "day_1", 300, seed=4)
    status = main(["preprocess", "out", "--train", "day_0", "--eval", "day_1", "--format", "norm",
                   "--freq-threshold", "2", "--samples-per-file", "256", "--file-list-length", "2", "--quiet"])
    assert status == 0
    out = capsys.readouterr().out
    assert "train: 1200 samples in 5 files" in out and "3 keyset/file-list pairs" in out
    assert read_file_list("out/train/file_list.1.txt") == ["out/train/part_2.data", "out/train/part_3.data"]
    assert main(["preprocess", "out", "--train", "day_0", "--quiet"]) == 2  # exists; --overwrite replaces
    assert "pass overwrite=True" in capsys.readouterr().err
    assert main(["preprocess", "bad", "--train", "missing_day", "--quiet"]) == 2

    from hugectr_lab.config import solver_parser_helper
    from hugectr_lab.session import Session

    layer = json.loads((tmp_path / "out/preprocess.json").read_text())["data_layer"]
    config = {"optimizer": {"type": "Adam", "update_type": "Local",
                            "adam_hparam": {"learning_rate": 0.01, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7}},
              "layers": [layer,
                         {"name": "emb", "type": "DistributedSlotSparseEmbeddingHash", "bottom": "data1", "top": "emb",
                          "sparse_embedding_hparam": {"max_vocabulary_size_per_gpu": 3000, "embedding_vec_size": 4,
                                                      "combiner": 0}},
                         {"name": "reshape", "type": "Reshape", "bottom": "emb", "top": "r", "leading_dim": 104},
                         {"name": "concat", "type": "Concat", "bottom": ["r", "dense"], "top": "c"},
                         {"name": "fc", "type": "InnerProduct", "bottom": "c", "top": "fc",
                          "fc_param": {"num_output": 1}},
                         {"name": "loss", "type": "BinaryCrossEntropyLoss", "bottom": ["fc", "label"], "top": "loss"}]}
    (tmp_path / "c.json").write_text(json.dumps(config))
    sess = Session(solver_parser_helper(seed=1, batchsize=128, batchsize_eval=128, repeat_dataset=False,
                                        max_eval_batches=10), "c.json")
    sess.get_data_reader_train().set_source()
    losses = []
    while sess.train():
        losses.append(sess.get_current_loss())
    assert len(losses) == 1200 // 128 and all(math.isfinite(v) for v in losses)
    sess.copy_weights_for_evaluation()
    assert 0 < sess.evaluation()[0][1] < 1
    sess.close()


def test_every_subpackage_ships_in_the_wheel():
    """`hugectr-lab preprocess` must work from a wheel: pyproject lists every package explicitly."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "hugectr_lab").rglob("__init__.py")}
    assert "hugectr_lab.preprocess" in found and found <= listed, sorted(found - listed)
