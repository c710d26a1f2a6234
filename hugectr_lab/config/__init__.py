"""HugeCTR JSON configs → frozen, typed specs; pure Python (no NumPy), so it imports anywhere, fast.

``parse_config(src, *, mixed_precision=None, require=("layers",))`` reads a path, JSON text or dict and
returns a ``ModelConfig``; ``ModelConfig.to_json()`` writes HugeCTR-style JSON back, and
``parse_config(cfg.to_json()) == cfg``. ``solver_parser_helper`` / ``SolverParser`` are the run settings
of HugeCTR v3.0's Python interface.

Errors: every rule HugeCTR v3.0 checks when it parses a config, plus the static ones it leaves to
undefined behaviour, raise ``ConfigError`` (a ``ValueError``) whose message starts with the JSON path:
``layers[5].fc_param.num_output (InnerProduct "fc1"): must be a positive integer, got "1024"``, and ends
with ``(in <file>)`` when the config came from a file. Types are strict: a string is not a number, true
is not 1, 1024.0 is not an integer. Shape-dependent rules (Reshape divisibility, Slice ends within the
input width, Interaction widths) belong to the network builder.

Unknown keys: HugeCTR ignores keys it does not read, and so do we — the config still parses — but each
one raises a ``ConfigWarning`` naming its path, because a misspelt optional key (``"weight_int"``)
otherwise silently falls back to a default. Informational keys are accepted silently: ``name`` on every
layer (kept in the specs), ``label`` in the ``inference`` clause, and ``global_update`` next to
``update_type``. Keys of another format or type (``num_samples`` with Norm, ``plan_file`` on a
distributed embedding, ``sgd_hparam`` in an Adam optimizer) count as unknown. Unknown keys are not
kept, so ``to_json`` drops them.
"""

from .errors import ConfigError, ConfigWarning
from .layer_params import (INITIALIZERS, LAYER_KINDS, LAYER_TYPES_FP32, LAYER_TYPES_MIXED, LOSS_TYPES,
                           BatchNormParams, DropoutParams, ELUParams, FmOrder2Params, InnerProductParams, LayerKind,
                           LossParams, MultiCrossEntropyLossParams, MultiCrossParams, NoParams, ReduceParams,
                           ReshapeParams, SliceParams, WeightMultiplyParams)
from .model import ModelConfig, load_json, parse_config, parse_optimizer_clause
from .parse_embedding import EMBEDDING_TYPES
from .parse_optimizer import OPTIMIZER_TYPES, schedule_to_json
from .solver import SolverParser, solver_parser_helper
from .specs import (COMBINERS, UPDATE_TYPES, DataSpec, DenseSpec, EmbeddingSpec,
                    InferenceSpec, LabelSpec, LayerSpec, OptimizerSpec, SolverSpec, SparseInputSpec)

__all__ = [
    "parse_config", "parse_optimizer_clause", "schedule_to_json", "load_json", "ModelConfig", "ConfigError", "ConfigWarning",
    "SolverSpec", "OptimizerSpec", "DataSpec", "LabelSpec", "DenseSpec", "SparseInputSpec", "EmbeddingSpec",
    "LayerSpec", "InferenceSpec", "solver_parser_helper", "SolverParser",
    "NoParams", "InnerProductParams", "BatchNormParams", "ELUParams", "DropoutParams", "ReshapeParams",
    "SliceParams", "MultiCrossParams", "FmOrder2Params", "WeightMultiplyParams", "ReduceParams", "LossParams",
    "MultiCrossEntropyLossParams", "LayerKind", "LAYER_KINDS", "LAYER_TYPES_FP32", "LAYER_TYPES_MIXED",
    "LOSS_TYPES", "EMBEDDING_TYPES", "INITIALIZERS", "OPTIMIZER_TYPES", "UPDATE_TYPES", "COMBINERS",
]
