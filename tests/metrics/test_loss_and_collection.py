import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hugectr_lab.metrics import AverageLoss, MetricUndefinedWarning, Metrics


def test_average_loss_is_mean_over_batches_of_device_means():
    metric = AverageLoss()
    for losses in ([1.0, 3.0], [np.float32(2.0), np.array(2.0)], [0.5, np.array([1.5])]):
        metric.update(losses)
    assert metric.get() == pytest.approx(5 / 3)
    metric.update(0.25)  # one device, bare scalar; the previous read reset the metric
    assert metric.get() == 0.25


def test_average_loss_without_batches_is_nan():
    with pytest.warns(MetricUndefinedWarning, match="AverageLoss"):
        assert np.isnan(AverageLoss().get())


def test_collection_reports_auc_first_and_resets():
    metrics = Metrics({"AverageLoss": 1.0, "AUC": 0.8})
    preds = [np.array([0.1, 0.8], np.float32), np.array([0.35, 0.4], np.float32)]
    labels = [np.array([0, 1], np.float32), np.array([1, 0], np.float32)]
    metrics.update(preds=preds, labels=labels, losses=[0.2, 0.4], real_size=4)
    metrics.update(preds=preds, labels=labels, losses=[0.6, 0.8], real_size=3)
    expected_auc = roc_auc_score([0, 1, 1, 0, 0, 1, 1], [0.1, 0.8, 0.35, 0.4, 0.1, 0.8, 0.35])
    (auc_name, auc_value), (loss_name, loss_value) = metrics.get()
    assert (auc_name, loss_name) == ("AUC", "AverageLoss")
    assert auc_value == pytest.approx(expected_auc)
    assert loss_value == pytest.approx(0.5)
    assert metrics["AUC"].threshold == 0.8
    assert metrics["AUC"].num_samples == 0


def test_collection_default_and_errors():
    metrics = Metrics()
    assert [m.name for m in metrics.metrics] == ["AUC"]
    metrics.update(preds=np.array([0.2, 0.6]), labels=np.array([0.0, 1.0]))
    assert metrics.get() == [("AUC", 1.0)]
    with pytest.raises(ValueError, match="unknown metric"):
        Metrics({"HitRate": 1.0})
    with pytest.raises(KeyError, match="no 'AverageLoss' metric"):
        metrics["AverageLoss"]
    with pytest.raises(ValueError, match="losses is required"):
        Metrics({"AverageLoss": 1.0}).update(preds=np.zeros(2), labels=np.zeros(2))
