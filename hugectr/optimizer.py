"""``hugectr.optimizer``: HugeCTR v3.0's ``CreateOptimizer`` for the preview ``Model`` API."""

from hugectr_lab.api.preview import CreateOptimizer, OptParamsBase

__all__ = ["CreateOptimizer", "OptParamsBase"]
