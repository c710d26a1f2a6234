"""HugeCTR v3.0's exported enums and small parameter classes (``hugectr.Check_t`` and friends).

Member names are HugeCTR's; values are their positions in the C++ enums. ``Check_t.Non`` is the Python
spelling of the C++ ``None`` check mode.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


def _enum(name, members):
    return enum.Enum(name, [(m, i) for i, m in enumerate(members.split())], module=__name__)


Error_t = _enum("Error_t", "Success FileCannotOpen BrokenFile OutOfMemory OutOfBound WrongInput IllegalCall "
                           "NotInitialized UnSupportedFormat InvalidEnv MpiError CublasError CudnnError "
                           "CudaError NcclError DataCheckError UnspecificError")
Check_t = _enum("Check_t", "Sum Non")
DataReaderSparse_t = _enum("DataReaderSparse_t", "Distributed Localized")
DataReaderType_t = _enum("DataReaderType_t", "Norm Raw Parquet")
SourceType_t = _enum("SourceType_t", "FileList Mmap Parquet")
Embedding_t = _enum("Embedding_t", "DistributedSlotSparseEmbeddingHash LocalizedSlotSparseEmbeddingHash "
                                   "LocalizedSlotSparseEmbeddingOneHot")
Initializer_t = _enum("Initializer_t", "Default Uniform XavierNorm XavierUniform Zero")
Layer_t = _enum("Layer_t", "BatchNorm BinaryCrossEntropyLoss Reshape Concat CrossEntropyLoss Dropout ELU "
                           "InnerProduct FusedInnerProduct Interaction MultiCrossEntropyLoss ReLU ReLUHalf "
                           "Sigmoid Slice WeightMultiply FmOrder2 Add ReduceSum MultiCross Cast DotProduct")
LrPolicy_t = _enum("LrPolicy_t", "fixed")
Optimizer_t = _enum("Optimizer_t", "Adam MomentumSGD Nesterov SGD")
Update_t = _enum("Update_t", "Local Global LazyGlobal")
Regularizer_t = _enum("Regularizer_t", "L1 L2")
MetricsRawType = _enum("MetricsRawType", "Loss Pred Label")
MetricsType = _enum("MetricsType", "AUC AverageLoss")


@dataclass(frozen=True)
class DataReaderSparseParam:
    """One sparse input of a data reader, as ``hugectr.DataReaderSparseParam(type, max_feature_num, max_nnz, slot_num)``."""

    type: DataReaderSparse_t
    max_feature_num: int
    max_nnz: int
    slot_num: int


@dataclass(frozen=True)
class NameId:
    """``hugectr.NameId(file_name, id)``: exported by HugeCTR 3.0 and unused by its API."""

    file_name: str
    id: int
