"""The ``solver`` clause ↔ ``SolverSpec``, and the validators it shares with ``solver_parser_helper``."""

from __future__ import annotations

from collections.abc import Mapping

from .errors import Loc
from .fields import (Invalid, expected, is_int, is_list, json_object, keys_of, list_of, plain, positive_int,
                     read_fields, read_value, validate, warn_unknown, write_fields)
from .specs import SolverSpec

METRICS = ("AUC", "AverageLoss")  # HugeCTR's enum order, which is also the order metrics are reported in
DEFAULT_METRICS = (("AUC", 1.0),)


def _node(value, at: str) -> tuple[int, ...]:
    if not is_list(value) or not value:
        raise expected("a non-empty list of GPU ids", value, at)
    for i, gpu in enumerate(value):
        if not is_int(gpu) or gpu < 0:
            raise expected("a non-negative GPU id", gpu, f"{at}[{i}]")
    duplicates = sorted({g for g in value if value.count(g) > 1})
    if duplicates:
        raise Invalid(f"lists GPU {duplicates[0]} more than once", at)
    return tuple(value)


def device_lists(*, allow_flat: bool):
    """``[[0, 1], [2, 3]]`` (one list per node); with ``allow_flat`` also ``[0, 1]`` (one node), as JSON ``gpu``."""
    def check(value):
        if allow_flat and is_list(value) and value and not any(is_list(v) for v in value):
            return (_node(value, ""),)
        if not is_list(value) or not value:
            raise expected("a non-empty list of per-node GPU lists", value)
        return tuple(_node(node, f"[{i}]") for i, node in enumerate(value))
    return check


def check_batch_split(batchsize: int, vvgpu: tuple[tuple[int, ...], ...], loc: Loc) -> None:
    """Every GPU gets batchsize / G samples, so the global batch must split evenly."""
    gpus = sum(len(node) for node in vvgpu)
    if batchsize % gpus:
        loc.fail(f"must be divisible by the number of GPUs ({gpus}), got {batchsize}")


def _metric(value) -> tuple[str, float]:
    if value == "AverageLoss":
        return ("AverageLoss", 0.0)
    if isinstance(value, str) and (value == "AUC" or value.startswith("AUC:")):
        try:
            threshold = float(value[4:]) if value != "AUC" else 1.0
        except ValueError:
            threshold = float("nan")
        if 0.0 <= threshold <= 1.0:
            return ("AUC", threshold)
    raise expected('"AverageLoss", "AUC" or "AUC:<threshold in [0, 1]>"', value)


def eval_metrics(value) -> tuple[tuple[str, float], ...]:
    pairs = list_of(_metric, what="a list of metric names")(value)
    seen = []
    for i, (metric, _) in enumerate(pairs):
        if metric in seen:
            raise Invalid(f"names {metric} a second time", f"[{i}]")
        seen.append(metric)
    return tuple(sorted(pairs, key=lambda pair: METRICS.index(pair[0])))


def _metric_to_json(metric: str, threshold: float) -> str:
    return f"AUC:{threshold!r}" if metric == "AUC" and threshold != 1.0 else metric


def _one_of_pair(obj: Mapping, loc: Loc, first: str, second: str, *, required: bool) -> None:
    if first in obj and second in obj:
        loc.child(second).fail(f"cannot be combined with {first}; give one of them")
    if required and first not in obj and second not in obj:
        loc.child(first).fail(f"is required (or give {second})")


def _eval_batches(obj: Mapping, loc: Loc, batchsize_eval: int) -> dict:
    _one_of_pair(obj, loc, "max_eval_batches", "max_eval_samples", required=True)
    if "max_eval_batches" in obj:
        return {"max_eval_batches": read_value(obj, loc, "max_eval_batches", positive_int)}
    samples_loc = loc.child("max_eval_samples")
    samples = read_value(obj, loc, "max_eval_samples", positive_int)
    batches, rest = divmod(samples, batchsize_eval)
    if batches == 0:
        samples_loc.fail(f"must be at least batchsize_eval ({batchsize_eval}), got {samples}")
    if rest:
        samples_loc.warn(f"is not a multiple of batchsize_eval ({batchsize_eval}); "
                         f"the last {rest} samples are not evaluated")
    return {"max_eval_batches": batches, "max_eval_samples": samples}


_SPECIAL_KEYS = {"max_iter", "num_epochs", "max_eval_batches", "max_eval_samples", "gpu", "eval_metrics"}


def parse_solver(value, loc: Loc) -> SolverSpec:
    obj: Mapping = validate(value, json_object, loc)
    if "eval_batches" in obj:
        loc.child("eval_batches").fail("was replaced in HugeCTR v3.0 by max_eval_batches or max_eval_samples")
    values = read_fields(SolverSpec, obj, loc)
    _one_of_pair(obj, loc, "max_iter", "num_epochs", required=False)  # neither: one epoch
    values["max_iter"] = read_value(obj, loc, "max_iter", positive_int, 0)
    values["num_epochs"] = read_value(obj, loc, "num_epochs", positive_int, 0)
    vvgpu = values["vvgpu"] = read_value(obj, loc, "gpu", device_lists(allow_flat=True))
    if values["batchsize_eval"] is None:
        values["batchsize_eval"] = values["batchsize"]
    for batch_key in ("batchsize", "batchsize_eval"):
        check_batch_split(values[batch_key], vvgpu, loc.child(batch_key))
    values.update(_eval_batches(obj, loc, values["batchsize_eval"]))
    values["eval_metrics"] = read_value(obj, loc, "eval_metrics", eval_metrics, DEFAULT_METRICS)
    if values["mixed_precision"] is not None and values["enable_tf32_compute"]:
        loc.child("enable_tf32_compute").fail("cannot be true together with mixed_precision")
    if values["loss_scaling"] == "dynamic" and values["mixed_precision"] is None:
        loc.child("loss_scaling").fail('"dynamic" needs mixed_precision (FP32 training has no loss scale)')
    warn_unknown(obj, loc, keys_of(SolverSpec) | _SPECIAL_KEYS)
    return SolverSpec(**values)


def solver_to_json(spec: SolverSpec) -> dict:
    run = {"max_iter": spec.max_iter} if spec.max_iter else {"num_epochs": spec.num_epochs}
    evaluation = ({"max_eval_samples": spec.max_eval_samples} if spec.max_eval_samples is not None
                  else {"max_eval_batches": spec.max_eval_batches})
    gpu = list(spec.vvgpu[0]) if len(spec.vvgpu) == 1 else plain(spec.vvgpu)
    metrics = ({} if spec.eval_metrics == DEFAULT_METRICS
               else {"eval_metrics": [_metric_to_json(*pair) for pair in spec.eval_metrics]})
    return {**write_fields(spec), **run, **evaluation, "gpu": gpu, **metrics}

