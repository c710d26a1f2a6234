"""Baselines on the deep model's features: the encoder's columns, and logistic regression / random
forest AUCs on generated data with a planted signal."""

import numpy as np
import pytest
from session_helpers import dnn_config, make_dataset

from hugectr_lab.analysis import FeatureEncoder, fit_baselines, get_analysis_engine, read_samples
from hugectr_lab.data import CSR, Samples
from hugectr_lab.metrics import auc


def samples(labels, dense, rows, key_type=np.uint32):
    """Samples with one sparse input; ``rows``: per sample, a list of per-slot key lists."""
    flat = [slot for sample in rows for slot in sample]
    offsets = np.cumsum([0] + [len(s) for s in flat]).astype(np.int64)
    keys = np.array([k for s in flat for k in s], dtype=key_type)
    return Samples(np.array(labels, np.float32)[:, None], np.array(dense, np.float32), (CSR(offsets, keys),))


def test_encoder_standardises_dense_and_one_hots_training_keys():
    train = samples([0, 1, 1], [[1, 5], [3, 5], [5, 5]], [[[10], [20, 20]], [[11], []], [[10], [21]]])
    enc = FeatureEncoder().fit(train)
    assert enc.width == 2 + 4   # 2 dense + keys 10, 11, 20, 21
    x = enc.transform(train).toarray()
    np.testing.assert_allclose(x[:, 0], (np.array([1, 3, 5]) - 3) / np.std([1, 3, 5]), rtol=1e-6)
    np.testing.assert_array_equal(x[:, 1], 0)   # a constant column stays 0, not NaN
    np.testing.assert_array_equal(x[:, 2:], [[1, 0, 2, 0], [0, 1, 0, 0], [1, 0, 0, 1]])   # key 20 twice counts 2
    val = enc.transform(samples([1], [[3, 5]], [[[99], [21]]]))   # key 99 was never seen in training
    np.testing.assert_array_equal(val.toarray()[0, 2:], [0, 0, 0, 1])
    with pytest.raises(ValueError, match="samples have 3 dense features, the encoder was fitted on 2"):
        enc.transform(samples([1], [[1, 2, 3]], [[[10], [20]]]))


def test_hashed_encoder_keeps_keys_in_buckets():
    train = samples([0, 1], [[0], [1]], [[[k] for k in range(0, 300, 3)], [[k] for k in range(1, 301, 3)]])
    enc = FeatureEncoder(n_buckets=16).fit(train)
    assert 8 <= len(enc.columns) <= 16 and enc.columns.max() < 16   # 200 keys spread over the 16 buckets
    np.testing.assert_array_equal(enc.transform(train).toarray()[:, 1:].sum(axis=1), [100, 100])


@pytest.fixture
def generated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path, files=2, samples=2048, vocab=40)
    config = dnn_config()
    return read_samples(config, "train"), read_samples(config, "eval")


def test_baselines_learn_the_planted_signal(generated):
    train, val = generated
    assert len(train) == 4096 and len(val) == 4096
    engine = get_analysis_engine("scikit-learn")
    report = fit_baselines(train, val, engine=engine, params={"random forest": {"n_estimators": 40}})
    assert report.engine == engine.name == "scikit-learn + numpy"
    aucs = report.aucs
    assert set(aucs) == {"logistic regression", "random forest"}
    assert all(0.6 < value <= 1.0 for value in aucs.values()), aucs
    # the report's AUC is the engine's own AUC of the fitted model's validation scores
    from sklearn.linear_model import LogisticRegression
    enc = FeatureEncoder().fit(train)
    lr = LogisticRegression(C=1.0, max_iter=500).fit(enc.transform(train), train.labels[:, 0])
    assert aucs["logistic regression"] == pytest.approx(auc(lr.predict_proba(enc.transform(val))[:, 1],
                                                            val.labels[:, 0]), abs=1e-9)
    for result in report.results:
        assert result.scores.shape == (len(val),)
        assert result.auc == auc(result.scores, val.labels[:, 0])
    text = report.table({"DCN": 0.75})
    assert text.splitlines()[1].startswith("DCN") and "logistic regression" in text and "scikit-learn" in text
    assert report.to_json()["auc"] == aucs


def test_baselines_refuse_single_class_and_unknown_models(generated):
    train, val = generated
    ones = Samples(np.ones_like(val.labels), val.dense, val.sparse)
    with pytest.raises(ValueError, match="the val split needs samples of both classes"):
        fit_baselines(train, ones, engine="scikit-learn")
    with pytest.raises(ValueError, match="models must be among"):
        fit_baselines(train, val, engine="scikit-learn", models=("svm",))


def test_read_samples_reads_a_prefix_and_names_bad_splits(generated, tmp_path):
    train, _ = generated
    first = read_samples(dnn_config(), "train", max_samples=100, batchsize=64)
    assert len(first) == 100
    np.testing.assert_array_equal(first.dense, train.dense[:100])
    with pytest.raises(ValueError, match="split must be 'train' or 'eval'"):
        read_samples(dnn_config(), "test")
