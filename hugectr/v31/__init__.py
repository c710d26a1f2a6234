"""HugeCTR v3.1's Python API: a v3.1 script runs after one changed line, ``import hugectr.v31 as hugectr``
(and ``from hugectr.v31.inference import ...`` for ``from hugectr.inference import ...``).

Names shared with v3.0 whose meaning changed (``Input``, ``SparseEmbedding``, ``DataReaderSparseParam``,
``CreateOptimizer``, ``Model``, and the grown enums ``Layer_t``, ``Optimizer_t``, ``MetricsType``,
``Embedding_t``) are v3.1's here; ``import hugectr`` keeps v3.0's. See docs/compat.md.
"""

from hugectr_lab.api.layers import DenseLayer
from hugectr_lab.api.v31 import (CreateMOS, CreateOptimizer, CreateSolver, DataReaderParams, DataReaderSparseParam,
                                 Embedding_t, Input, Layer_t, MetricsType, Model, MOSParams, Optimizer_t, OptParamsPy,
                                 Solver, SparseEmbedding)
from hugectr_lab.enums import (Check_t, DataReaderSparse_t, DataReaderType_t, Error_t, Initializer_t, LrPolicy_t,
                               MetricsRawType, Regularizer_t, SourceType_t, Update_t)
from hugectr_lab.optim import LearningRateScheduler

from . import inference  # noqa: F401,E402  (hugectr.inference, as in HugeCTR)

__version__ = "3.1.0"

__all__ = [
    "CreateSolver", "DataReaderParams", "DataReaderSparseParam", "CreateOptimizer", "CreateMOS", "Model", "Input",
    "SparseEmbedding", "DenseLayer", "Solver", "OptParamsPy", "MOSParams", "LearningRateScheduler",
    "Check_t", "DataReaderSparse_t", "DataReaderType_t", "Embedding_t", "Error_t", "Initializer_t", "Layer_t",
    "LrPolicy_t", "MetricsRawType", "MetricsType", "Optimizer_t", "Regularizer_t", "SourceType_t", "Update_t",
]
