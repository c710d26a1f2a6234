"""``solver_parser_helper(...)`` and ``SolverParser``: the run settings the Python ``Session`` is built from.

HugeCTR v3.0 exposes seed … use_cuda_graph as read-only attributes. We also expose (our extension)
repeat_dataset, max_iter, num_epochs, display, snapshot, eval_interval, metrics_spec,
use_model_oversubscriber and temp_embedding_dir, which HugeCTR keeps hidden inside the object; the
low-level Session loop ignores them as HugeCTR does, but notebooks and the CLI can read them back.
List-valued attributes come back as fresh lists and ``metrics_spec`` as a fresh dict, as pybind's do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .errors import Loc
from .fields import boolean, json_fields, list_of, non_negative_int, positive_int, positive_number, string, validate
from .model import load_json
from .parse_solver import check_batch_split, device_lists, parse_solver
from .specs import SolverSpec

_VALIDATORS = {
    "seed": non_negative_int,
    "max_eval_batches": positive_int,
    "batchsize_eval": positive_int,
    "batchsize": positive_int,
    "model_file": string,
    "dense_opt_states_file": string,
    "embedding_files": list_of(string, what="a list of file names"),
    "sparse_opt_states_file": list_of(string, what="a list of file names"),
    "vvgpu": device_lists(allow_flat=False),
    "use_mixed_precision": boolean,
    "enable_tf32_compute": boolean,
    "scaler": positive_number,
    "i64_input_key": boolean,
    "use_algorithm_search": boolean,
    "use_cuda_graph": boolean,
    "repeat_dataset": boolean,
    "max_iter": non_negative_int,
    "num_epochs": non_negative_int,
    "display": positive_int,
    "snapshot": positive_int,
    "eval_interval": non_negative_int,
    "use_model_oversubscriber": boolean,
    "temp_embedding_dir": string,
    # the extensions take the checks of the SolverSpec keys they set
    **{f.name: f.metadata["check"] for f in json_fields(SolverSpec, ("loss_scaling", "loss_scale_growth_interval",
                                                                    "on_vocabulary_overflow"))},
}

_ATTRIBUTES = {  # attribute → documentation
    "seed": "global seed; 0 draws a random one",
    "max_eval_batches": "evaluation batches per evaluation (also sizes the AUC buffers)",
    "batchsize_eval": "global evaluation batch",
    "batchsize": "global training batch (divisible by the GPU count)",
    "model_file": "dense model file to load, '' for none",
    "dense_opt_states_file": "dense optimizer state file to load, '' for none",
    "embedding_files": "one sparse model file per embedding layer, in layer order",
    "sparse_opt_states_files": "one sparse optimizer state file per embedding layer",
    "vvgpu": "GPU ids, one list per node",
    "use_mixed_precision": "fp16 compute with fp32 master weights",
    "enable_tf32_compute": "TF32 GEMMs in FP32 mode",
    "scaler": "loss scale (1.0 without mixed precision)",
    "i64_input_key": "int64 keys instead of uint32",
    "use_algorithm_search": "search GEMM algorithms",
    "use_cuda_graph": "replay each device's dense forward and backward from a CUDA graph (CuPy backend)",
    "repeat_dataset": "extension: True = non-epoch mode (max_iter), False = epoch mode (num_epochs)",
    "max_iter": "extension: iterations in non-epoch mode, 0 in epoch mode",
    "num_epochs": "extension: epochs in epoch mode, 0 in non-epoch mode",
    "display": "extension: iterations between loss displays",
    "snapshot": "extension: iterations between snapshots",
    "eval_interval": "extension: iterations between evaluations (0: none)",
    "metrics_spec": "extension: metric name → threshold (AUC stops training when reached)",
    "use_model_oversubscriber": "extension: train through the ModelOversubscriber",
    "temp_embedding_dir": "extension: the oversubscriber's working directory",
    "loss_scaling": "extension: 'static' (HugeCTR: the fixed scaler) or 'dynamic' (mixed precision: skip "
                    "overflowing steps and halve the scale, double it after loss_scale_growth_interval good steps)",
    "loss_scale_growth_interval": "extension: finite steps in a row before dynamic loss scaling doubles the scale",
    "on_vocabulary_overflow": "extension: 'warn' (once per table) or 'error' when a table refuses keys in training",
}


class _Pairs(tuple):
    """A frozen, hashable dict (metrics_spec) that thaws back into a dict."""


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _Pairs(value.items())
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def _thawed(value: Any) -> Any:
    if isinstance(value, _Pairs):
        return dict(value)
    return [_thawed(v) for v in value] if isinstance(value, tuple) else value


class SolverParser:
    """Read-only run settings. ``SolverParser()`` gives the defaults of ``solver_parser_helper()``;
    ``SolverParser(json_file)`` reads a config's ``solver`` clause (nothing else of the file)."""

    __slots__ = ("_values",)

    def __init__(self, json_file: str | os.PathLike | Mapping | None = None):
        if json_file is None:
            values = _DEFAULT_VALUES
        else:
            obj, file = load_json(json_file)
            root = Loc(file=file)
            if "solver" not in obj:
                root.child("solver").fail("the clause is required here but missing")
            values = SolverParser.from_spec(parse_solver(obj["solver"], root.child("solver")))._values
        object.__setattr__(self, "_values", values)

    @classmethod
    def _create(cls, **values: Any) -> SolverParser:
        parser = object.__new__(cls)
        object.__setattr__(parser, "_values", MappingProxyType({k: _frozen(values[k]) for k in _ATTRIBUTES}))
        return parser

    @classmethod
    def from_spec(cls, spec: SolverSpec) -> SolverParser:
        """The settings of a parsed ``solver`` clause (sparse_model_file → embedding_files, gpu → vvgpu, ...)."""
        return cls._create(
            seed=spec.seed, max_eval_batches=spec.max_eval_batches, batchsize_eval=spec.batchsize_eval,
            batchsize=spec.batchsize, model_file=spec.dense_model_file,
            dense_opt_states_file=spec.dense_opt_states_file, embedding_files=spec.sparse_model_files,
            sparse_opt_states_files=spec.sparse_opt_states_files, vvgpu=spec.vvgpu,
            use_mixed_precision=spec.use_mixed_precision, enable_tf32_compute=spec.enable_tf32_compute,
            scaler=spec.scaler, i64_input_key=spec.i64_input_key, use_algorithm_search=spec.algorithm_search,
            use_cuda_graph=spec.cuda_graph, repeat_dataset=spec.repeat_dataset, max_iter=spec.max_iter,
            num_epochs=spec.num_epochs, display=spec.display, snapshot=spec.snapshot,
            eval_interval=spec.eval_interval, metrics_spec=spec.metrics_spec, loss_scaling=spec.loss_scaling,
            loss_scale_growth_interval=spec.loss_scale_growth_interval,
            on_vocabulary_overflow=spec.on_vocabulary_overflow,
            # The JSON has no oversubscriber keys: the helper's defaults.
            use_model_oversubscriber=_DEFAULT_VALUES["use_model_oversubscriber"],
            temp_embedding_dir=_DEFAULT_VALUES["temp_embedding_dir"])

    def _replace(self, **changes: Any) -> SolverParser:
        """A copy with ``changes`` to its attributes, not checked again (the Model API's derived settings)."""
        return SolverParser._create(**{**{k: getattr(self, k) for k in _ATTRIBUTES}, **changes})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"SolverParser.{name} is read-only; build a new one with solver_parser_helper(...)")

    def __delattr__(self, name: str) -> None:
        self.__setattr__(name, None)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SolverParser) and self._values == other._values

    def __hash__(self) -> int:
        return hash(tuple(self._values.values()))

    def __repr__(self) -> str:
        changed = (f"{k}={_thawed(v)!r}" for k, v in self._values.items() if _DEFAULT_VALUES[k] != v)
        return f"SolverParser({', '.join(changed)})"

    def __reduce__(self):
        return (_restore, ({k: getattr(self, k) for k in _ATTRIBUTES},))


def _restore(values: dict) -> SolverParser:
    return SolverParser._create(**values)


for _name, _doc in _ATTRIBUTES.items():
    setattr(SolverParser, _name, property(lambda self, _n=_name: _thawed(self._values[_n]), doc=_doc))


def solver_parser_helper(seed=0, max_eval_batches=100, batchsize_eval=2048, batchsize=2048, model_file="",
                         dense_opt_states_file="", embedding_files=[], sparse_opt_states_file=[],  # noqa: B006
                         vvgpu=[[0]], use_mixed_precision=False, enable_tf32_compute=False,  # noqa: B006
                         scaler=1.0, i64_input_key=False, use_algorithm_search=True, use_cuda_graph=True,
                         repeat_dataset=True, max_iter=0, num_epochs=0, display=200, snapshot=10000,
                         eval_interval=1000, use_model_oversubscriber=False, temp_embedding_dir="./", *,
                         loss_scaling="static", loss_scale_growth_interval=2000, on_vocabulary_overflow="warn"):
    """HugeCTR v3.0's ``solver_parser_helper``: every argument and default of the binding.

    The list defaults are never mutated (values are copied into tuples). Derived as HugeCTR does:
    in non-epoch mode (repeat_dataset=True) max_iter = max_iter or 10000 and num_epochs = 0; in epoch
    mode num_epochs = num_epochs or 1 and max_iter = 0; metrics_spec = {"AUC": 1.0}. Note the singular
    keyword ``sparse_opt_states_file`` that takes a list (attribute ``sparse_opt_states_files``).
    Raises ConfigError naming the argument for a wrong type or value. Keyword-only extensions
    (docs/reliability.md): ``loss_scaling`` ("static" or "dynamic", mixed precision only),
    ``loss_scale_growth_interval`` and ``on_vocabulary_overflow`` ("warn" or "error").
    """
    args = dict(locals())
    for arg, check in _VALIDATORS.items():
        args[arg] = validate(args[arg], check, Loc(arg))
    for batch_arg in ("batchsize", "batchsize_eval"):
        check_batch_split(args[batch_arg], args["vvgpu"], Loc(batch_arg))
    if args["use_mixed_precision"] and args["enable_tf32_compute"]:
        Loc("enable_tf32_compute").fail("cannot be True together with use_mixed_precision")
    if args["loss_scaling"] == "dynamic" and not args["use_mixed_precision"]:
        Loc("loss_scaling").fail("'dynamic' needs use_mixed_precision=True (FP32 training has no loss scale)")
    repeat = args["repeat_dataset"]
    args.update(max_iter=(args["max_iter"] or 10000) if repeat else 0,
                num_epochs=0 if repeat else (args["num_epochs"] or 1),
                sparse_opt_states_files=args.pop("sparse_opt_states_file"), metrics_spec={"AUC": 1.0})
    return SolverParser._create(**args)


_DEFAULT_VALUES = solver_parser_helper()._values
