import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hugectr_lab.metrics import AUC, MetricUndefinedWarning, auc, valid_sample_counts


def host(a):
    return a if isinstance(a, np.ndarray) else a.get()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_sklearn_on_heavily_tied_data(xp, dtype):
    rng = np.random.default_rng(0)
    preds = np.round(rng.random(100_000), 2).astype(dtype)  # ~100 distinct values
    labels = (rng.random(100_000) < preds).astype(np.float32)
    expected = roc_auc_score(labels, preds)
    assert abs(auc(xp.asarray(preds), xp.asarray(labels), xp=xp) - expected) < 1e-9


def test_matches_sklearn_without_ties():
    rng = np.random.default_rng(1)
    preds = rng.random(10_000)
    labels = rng.integers(0, 2, 10_000)
    assert auc(preds, labels) == pytest.approx(roc_auc_score(labels, preds), abs=1e-12)


@pytest.mark.parametrize("preds, labels, expected", [
    ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75),
    ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0),
    ([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.0),
    ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),  # one threshold: the diagonal
    ([0.5, 0.5, 0.2, 0.8], [1, 0, 0, 1], 0.875),  # 3 ordered pairs + a tie counted 1/2, of 4
])
def test_small_cases_by_hand(preds, labels, expected):
    assert auc(np.array(preds), np.array(labels)) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0, 0], []])
def test_single_class_is_nan_with_a_warning(labels):
    with pytest.warns(MetricUndefinedWarning, match="AUC is undefined"):
        assert np.isnan(auc(np.linspace(0, 1, len(labels)), np.array(labels)))


def test_length_mismatch_is_reported():
    with pytest.raises(ValueError, match="same length, got 3 and 2"):
        auc(np.zeros(3), np.zeros(2))


@pytest.mark.parametrize("real_size, b, g, expected", [
    (8, 4, 2, [4, 4]), (5, 4, 2, [4, 1]), (3, 4, 3, [3, 0, 0]), (0, 4, 2, [0, 0]),
])
def test_valid_sample_counts(real_size, b, g, expected):
    assert valid_sample_counts(real_size, b, g) == expected


def make_batches(rng, num_batches, num_devices, b, last_real_size):
    """Per-device (b, 1) preds/labels; padding rows hold preds that would change the AUC."""
    batches, valid_preds, valid_labels = [], [], []
    for i in range(num_batches):
        real = num_devices * b if i < num_batches - 1 else last_real_size
        preds = np.round(rng.random(num_devices * b), 1).astype(np.float32)
        labels = rng.integers(0, 2, num_devices * b).astype(np.float32)
        preds[real:], labels[real:] = 0.99, 0.0  # padding
        valid_preds.append(preds[:real])
        valid_labels.append(labels[:real])
        batches.append(([p.reshape(b, 1) for p in np.split(preds, num_devices)],
                        [y.reshape(b, 1) for y in np.split(labels, num_devices)], real))
    return batches, np.concatenate(valid_preds), np.concatenate(valid_labels)


def test_accumulates_batches_and_devices_ignoring_padding(xp):
    rng = np.random.default_rng(2)
    batches, preds, labels = make_batches(rng, num_batches=5, num_devices=3, b=8, last_real_size=13)
    metric = AUC(capacity=5 * 24, xp=xp)
    for dev_preds, dev_labels, real in batches:
        metric.update([xp.asarray(p) for p in dev_preds], [xp.asarray(y) for y in dev_labels], real)
    assert metric.num_samples == 4 * 24 + 13
    assert metric.get() == pytest.approx(roc_auc_score(labels, preds), abs=1e-12)
    assert metric.num_samples == 0  # reset on read


def test_grows_past_its_capacity():
    rng = np.random.default_rng(3)
    metric = AUC(capacity=4)
    preds, labels = rng.random(1000).astype(np.float32), rng.integers(0, 2, 1000)
    for start in range(0, 1000, 8):
        metric.update(preds[start:start + 8], labels[start:start + 8])
    assert metric.get() == pytest.approx(roc_auc_score(labels, preds), abs=1e-12)


def test_single_device_bare_arrays_and_default_real_size():
    metric = AUC()
    metric.update(np.array([0.1, 0.9]), np.array([0.0, 1.0]))
    metric.update(np.array([0.2, 0.7]), np.array([1.0, 0.0]), real_size=1)
    assert metric.get() == pytest.approx(roc_auc_score([0, 1, 1], [0.1, 0.9, 0.2]))


def test_read_without_samples_is_nan():
    metric = AUC()
    metric.update(np.array([0.1, 0.9]), np.array([0.0, 1.0]))
    metric.get()
    with pytest.warns(MetricUndefinedWarning):
        assert np.isnan(metric.get())
    with pytest.warns(MetricUndefinedWarning):
        assert np.isnan(AUC().get())


def test_update_errors():
    metric = AUC()
    two = np.zeros(2, np.float32)
    with pytest.raises(ValueError, match=r"real_size must be in \[0, 4\]"):
        metric.update([two, two], [two, two], real_size=5)
    with pytest.raises(ValueError, match="preds for 2 devices but labels for 1"):
        metric.update([two, two], [two])
    with pytest.raises(ValueError, match="same rows"):
        metric.update([two, np.zeros(3)], [two, two])
    with pytest.raises(ValueError, match="preds is required"):
        metric.update(None, [two])
