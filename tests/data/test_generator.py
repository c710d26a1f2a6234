"""Synthetic data generator: layout, determinism, keysets, and a planted signal that can be learned."""

import json

import numpy as np
import pytest
import scipy.sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from hugectr_lab.data import (DataReader64, generate_dataset, generate_for_config, read_file_list,
                              read_keyset, read_norm_file, read_norm_header, resolve_file_list)
from hugectr_lab.data.batch import Samples

CONFIG = {
    "solver": {"lr_policy": "fixed", "display": 100, "max_iter": 100, "gpu": [0], "batchsize": 512,
               "snapshot": 1000000, "snapshot_prefix": "./", "eval_interval": 50, "max_eval_batches": 10,
               "input_key_type": "I64"},
    "optimizer": {"type": "Adam", "update_type": "Global",
                  "adam_hparam": {"learning_rate": 0.001, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7}},
    "layers": [
        {"name": "data", "type": "Data", "source": "./criteo_data/file_list.txt",
         "eval_source": "./criteo_data/file_list_test.txt", "check": "None",
         "label": {"top": "label", "label_dim": 1}, "dense": {"top": "dense", "dense_dim": 13},
         "sparse": [{"top": "data1", "type": "DistributedSlot", "max_feature_num_per_sample": 30, "slot_num": 26}]},
        {"name": "sparse_embedding1", "type": "DistributedSlotSparseEmbeddingHash", "bottom": "data1",
         "top": "sparse_embedding1",
         "sparse_embedding_hparam": {"max_vocabulary_size_per_gpu": 30000, "embedding_vec_size": 16, "combiner": 0}},
        {"name": "reshape1", "type": "Reshape", "bottom": "sparse_embedding1", "top": "reshape1", "leading_dim": 416},
        {"name": "concat1", "type": "Concat", "bottom": ["reshape1", "dense"], "top": "concat1"},
        {"name": "fc1", "type": "InnerProduct", "bottom": "concat1", "top": "fc1", "fc_param": {"num_output": 1}},
        {"name": "loss", "type": "BinaryCrossEntropyLoss", "bottom": ["fc1", "label"], "top": "loss"},
    ],
}

SMALL = dict(label_dim=1, dense_dim=4, slot_nums=(2, 1), num_files=2, samples_per_file=500, vocab_sizes=[10, 20, 30],
             min_nnz=[0, 1, 1], max_nnz=[2, 1, 3], progress=False)


def read_list(list_path, key_type, slot_nums):
    return Samples.concat([read_norm_file(p, key_type, slot_nums=slot_nums) for p in resolve_file_list(list_path)])


def test_same_seed_same_bytes(tmp_path):
    for name in ("a", "b", "c"):
        generate_dataset("list.txt", "eval.txt", base_dir=tmp_path / name, seed=1 if name == "c" else 7, **SMALL)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 2 + 2 + 4  # data files, file lists, keysets
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert (tmp_path / "a/train/gen_0.data").read_bytes() != (tmp_path / "c/train/gen_0.data").read_bytes()


@pytest.mark.parametrize("config_form", ["dict", "path", "text"])
def test_generate_for_config_writes_what_the_config_names(tmp_path, monkeypatch, config_form):
    config = {"dict": CONFIG, "text": json.dumps(CONFIG), "path": str(tmp_path / "dcn.json")}[config_form]
    (tmp_path / "dcn.json").write_text(json.dumps(CONFIG))
    summary = generate_for_config(config, out_dir=tmp_path / "run", num_files=2, samples_per_file=64, progress=False)
    run = tmp_path / "run"
    assert summary.file_lists == ("./criteo_data/file_list.txt", "./criteo_data/file_list_test.txt")
    assert read_file_list(run / "criteo_data/file_list.txt") == ["./criteo_data/train/gen_0.data",
                                                                  "./criteo_data/train/gen_1.data"]
    header = read_norm_header(run / "criteo_data/val/gen_1.data")
    assert (header.check, header.num_records, header.label_dim, header.dense_dim, header.slot_num) == \
        ("None", 64, 1, 13, 26)
    assert summary.key_type == "I64" and summary.slot_nums == (26,)
    monkeypatch.chdir(run)  # list entries are relative to the working directory, as in HugeCTR
    with DataReader64(32, 1, 13, [26], [30], source="./criteo_data/file_list.txt", check="None") as reader:
        assert sum(batch.size for batch in reader) == 128


def test_keys_nnz_and_keysets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary = generate_dataset("data/list.txt", "data/eval.txt", train_parts=2, key_type="I64", check="None",
                               **SMALL)
    assert summary.file_lists == ("data/list.txt", "data/list.0.txt", "data/list.1.txt", "data/eval.txt")
    assert summary.keysets == ("data/list.keyset", "data/list.0.keyset", "data/list.1.keyset", "data/eval.keyset")
    assert read_file_list("data/list.1.txt") == ["data/train/gen_1.data"]
    offsets, vocab = np.array([0, 10, 30]), np.array([10, 20, 30])
    for list_path, keyset in zip(summary.file_lists, summary.keysets):
        samples = read_list(list_path, "I64", (2, 1))
        all_keys = np.concatenate([csr.keys for csr in samples.sparse])
        assert np.array_equal(read_keyset(keyset, "I64"), np.unique(all_keys))
        for csr, slots in zip(samples.sparse, ([0, 1], [2])):
            nnz = csr.row_nnz().reshape(len(samples), len(slots))
            for column, slot in enumerate(slots):
                assert nnz[:, column].min() >= SMALL["min_nnz"][slot] and nnz[:, column].max() <= SMALL["max_nnz"][slot]
                rows = np.arange(len(samples)) * len(slots) + column
                keys = np.concatenate([csr.keys[csr.row_offsets[r]:csr.row_offsets[r + 1]] for r in rows])
                assert keys.min() >= offsets[slot] and keys.max() < offsets[slot] + vocab[slot]  # disjoint ranges
    assert summary.key_range == (0, 59)


def test_existing_dataset_is_not_overwritten(tmp_path):
    generate_dataset("list.txt", base_dir=tmp_path, **SMALL)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_dataset("list.txt", base_dir=tmp_path, **SMALL)
    generate_dataset("list.txt", base_dir=tmp_path, overwrite=True, **SMALL)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="sparse input 0: the sum of max_nnz over its slots exceeds its "
                                         "max_feature_num_per_sample 2"):
        generate_dataset("l.txt", base_dir=tmp_path, max_feature_nums=[2, 3], **SMALL)
    with pytest.raises(ValueError, match="zipf-<alpha>"):
        generate_dataset("l.txt", base_dir=tmp_path, distribution="zipf", **SMALL)
    with pytest.raises(ValueError, match="do not fit I32"):
        generate_dataset("l.txt", base_dir=tmp_path, **{**SMALL, "vocab_sizes": 2**31})


def test_power_law_skews_towards_low_ranks(tmp_path):
    shares = {}
    for distribution in ("uniform", "zipf-0.9", "zipf-1.3"):
        generate_dataset(f"{distribution}.txt", base_dir=tmp_path, slot_nums=(1,), vocab_sizes=1000, num_files=1,
                         samples_per_file=20000, distribution=distribution, progress=False)
        keys = read_norm_file(tmp_path / "train/gen_0.data", slot_nums=(1,)).sparse[0].keys
        counts = np.bincount(keys, minlength=1000)
        assert keys.max() < 1000
        shares[distribution] = counts[:10].sum() / counts.sum()  # share of the 10 most popular keys
    assert shares["uniform"] == pytest.approx(0.01, abs=0.005)
    assert shares["uniform"] < shares["zipf-0.9"] < shares["zipf-1.3"]
    assert shares["zipf-1.3"] > 0.5


def test_reported_bayes_auc_is_the_auc_of_the_true_probabilities(tmp_path):
    summary = generate_dataset("list.txt", "eval.txt", base_dir=tmp_path, **SMALL)
    for list_path, reported in (("list.txt", summary.bayes_auc), ("eval.txt", summary.eval_bayes_auc)):
        samples = read_list(tmp_path / list_path, "I32", (2, 1))
        assert roc_auc_score(samples.labels[:, 0], summary.model.probabilities(samples)) == pytest.approx(reported)
    assert 0.7 < summary.eval_bayes_auc < 0.9
    assert "Bayes AUC" in str(summary)


def features(samples, num_keys):
    """Dense features plus, per slot, 1/nnz on each of the slot's keys (the planted model's slot mean)."""
    columns = [scipy.sparse.csr_matrix(samples.dense.astype(np.float64))]
    n = len(samples)
    for csr in samples.sparse:
        row_nnz = csr.row_nnz()
        weight = np.repeat(1.0 / np.maximum(row_nnz, 1), row_nnz)
        sample_of_key = np.repeat(np.arange(csr.num_rows) // (csr.num_rows // n), row_nnz)
        columns.append(scipy.sparse.csr_matrix((weight, (sample_of_key, csr.keys)), shape=(n, num_keys)))
    return scipy.sparse.hstack(columns).tocsr()


def test_logistic_regression_reaches_the_bayes_auc(tmp_path):
    options = dict(SMALL, num_files=2, samples_per_file=10000)
    summary = generate_dataset("list.txt", "eval.txt", base_dir=tmp_path, **options)
    train = read_list(tmp_path / "list.txt", "I32", (2, 1))
    test = read_list(tmp_path / "eval.txt", "I32", (2, 1))
    model = LogisticRegression(C=100.0, max_iter=2000).fit(features(train, 60), train.labels[:, 0])
    auc = roc_auc_score(test.labels[:, 0], model.predict_proba(features(test, 60))[:, 1])
    assert summary.eval_bayes_auc - 0.03 < auc <= summary.eval_bayes_auc + 0.01


def test_reader_and_generator_from_a_parsed_config(tmp_path, monkeypatch):
    config = pytest.importorskip("hugectr_lab.config")
    model_config = config.parse_config(CONFIG)
    generate_for_config(model_config, out_dir=tmp_path, num_files=2, samples_per_file=64, progress=False)
    monkeypatch.chdir(tmp_path)
    with DataReader64.from_data_spec(model_config.data, 32, eval=True) as reader:
        assert reader.source == "./criteo_data/file_list_test.txt" and reader.num_workers == 12
        assert sum(batch.size for batch in reader) == 128
