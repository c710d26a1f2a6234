"""HugeCTR v3.0 compatibility package: existing ``import hugectr`` scripts run on hugectr-lab.

    from hugectr import Session, solver_parser_helper, get_learning_rate_scheduler

and v3.0's preview Model API (``Model``, ``Input``, ``SparseEmbedding``, ``DenseLayer``,
``hugectr.optimizer.CreateOptimizer``). HugeCTR v3.1 scripts: ``import hugectr.v31 as hugectr``.

Everything here is a re-export of ``hugectr_lab``; ``__version__`` is HugeCTR's ("3.0.0"), and
``hugectr_lab.__version__`` is ours.
"""

from hugectr_lab.api.layers import DenseLayer
from hugectr_lab.api.preview import Input, Model, SparseEmbedding
from hugectr_lab.config import SolverParser, solver_parser_helper
from hugectr_lab.data import DataReader32, DataReader64
from hugectr_lab.enums import (Check_t, DataReaderSparse_t, DataReaderSparseParam, DataReaderType_t, Embedding_t,
                               Error_t, Initializer_t, Layer_t, LrPolicy_t, MetricsRawType, MetricsType, NameId,
                               Optimizer_t, Regularizer_t, SourceType_t, Update_t)
from hugectr_lab.optim import LearningRateScheduler, get_learning_rate_scheduler
from hugectr_lab.session import Session

from . import inference, optimizer  # noqa: F401,E402  (hugectr.inference, hugectr.optimizer, as in HugeCTR)

__version__ = "3.0.0"

__all__ = [
    "Session", "Model", "Input", "SparseEmbedding", "DenseLayer",
    "SolverParser", "solver_parser_helper", "LearningRateScheduler", "get_learning_rate_scheduler",
    "DataReader32", "DataReader64", "DataReaderSparseParam", "NameId",
    "Error_t", "Check_t", "DataReaderSparse_t", "DataReaderType_t", "SourceType_t", "Embedding_t", "Initializer_t",
    "Layer_t", "LrPolicy_t", "Optimizer_t", "Update_t", "Regularizer_t", "MetricsRawType", "MetricsType",
]
