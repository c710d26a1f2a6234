"""Evaluation metrics: exact AUC and AverageLoss, accumulated over eval batches and devices."""

from .auc import AUC, auc, valid_sample_counts
from .average_loss import AverageLoss
from .base import Metric, MetricUndefinedWarning
from .collection import METRIC_TYPES, Metrics

__all__ = [
    "AUC", "auc", "valid_sample_counts", "AverageLoss", "Metric", "MetricUndefinedWarning",
    "METRIC_TYPES", "Metrics",
]
