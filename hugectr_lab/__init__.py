"""hugectr-lab: HugeCTR v3.0's Python interface, re-implemented in Python.

Shape letters used in comments throughout the package (``# (B, S, E)``):

    B  global batch size (``batchsize`` / ``batchsize_eval``)
    G  number of logical devices (GPUs) over all processes
    b  per-device batch, B // G
    S  slots of one sparse input (``slot_num``)
    E  embedding vector size (``embedding_vec_size``)
    K  keys in a CSR batch (nnz)
    D  a dense feature width
    L  label width (``label_dim``)
    V  table rows (``max_vocabulary_size_per_gpu``)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# The public API, by the module that defines each name. Loaded on first use (PEP 562), so
# ``import hugectr_lab`` (and ``import hugectr_lab.config``) imports neither NumPy nor the engine, and
# only the widget names import ipywidgets.
_EXPORTS = {
    "session": ("Session", "StagedBatch", "IllegalCallError", "STEP_PHASES"),
    "backend": ("get_backend", "Backend", "NumpyBackend", "CupyBackend", "visible_gpu_count"),
    "config": ("parse_config", "ModelConfig", "ConfigError", "solver_parser_helper", "SolverParser"),
    "data": ("DataReader32", "DataReader64", "DataError", "Batch", "CSR", "Samples", "generate_dataset",
             "generate_for_config", "read_file_list", "write_file_list", "read_keyset", "write_keyset",
             "read_norm_file", "write_norm_file", "read_raw_file", "write_raw_file", "read_parquet_file",
             "write_parquet_dataset"),
    "preprocess": ("preprocess_criteo",),
    "optim": ("LearningRateScheduler", "get_learning_rate_scheduler"),
    "events": ("EventBus", "IterationEnd", "EvalEnd", "ModelSaved", "SourceChange", "VocabularyOverflow",
               "TrainerStatus"),
    "fit": ("Trainer", "FitResult"),
    "numerics": ("NonFiniteError",),
    "inference": ("InferenceSession", "CreateParameterServer", "CreateEmbeddingCache", "ParameterServer",
                  "EmbeddingCache", "read_inference_data", "write_inference_data"),
    "widgets": ("TrainingDashboard", "LRSchedulerExplorer", "ModelView", "EmbeddingInspector",
                "InferenceInspector"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
# Submodules reachable as attributes without an import: the trainer's module (``hugectr_lab.fit.fit``; the
# module shadows a function of the same name, so the function is not exported here) and the widgets.
_SUBMODULES = ("fit", "widgets")
__all__ = [*_MODULE_OF, *_SUBMODULES]

if TYPE_CHECKING:   # for type checkers and IDEs; never run
    from . import fit, widgets
    from .backend import Backend, CupyBackend, NumpyBackend, get_backend, visible_gpu_count
    from .config import ConfigError, ModelConfig, SolverParser, parse_config, solver_parser_helper
    from .data import (CSR, Batch, DataError, DataReader32, DataReader64, Samples, generate_dataset,
                       generate_for_config, read_file_list, read_keyset, read_norm_file, read_parquet_file,
                       read_raw_file, write_file_list, write_keyset, write_norm_file, write_parquet_dataset,
                       write_raw_file)
    from .events import EvalEnd, EventBus, IterationEnd, ModelSaved, SourceChange, TrainerStatus, VocabularyOverflow
    from .fit import FitResult, Trainer
    from .inference import (CreateEmbeddingCache, CreateParameterServer, EmbeddingCache, InferenceSession,
                            ParameterServer, read_inference_data, write_inference_data)
    from .numerics import NonFiniteError
    from .optim import LearningRateScheduler, get_learning_rate_scheduler
    from .preprocess import preprocess_criteo
    from .session import STEP_PHASES, IllegalCallError, Session, StagedBatch
    from .widgets import EmbeddingInspector, InferenceInspector, LRSchedulerExplorer, ModelView, TrainingDashboard


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value   # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
