"""The ``optimizer`` clause (top level, or an embedding's own ``optimizer`` object) ↔ ``OptimizerSpec``.

The only reader and writer of the clause: the learning-rate scheduler (``optim.scheduler``) and the LR
explorer widget read it with ``parse_optimizer(..., schedule_only=True)`` and write it back with
``schedule_to_json``."""

from __future__ import annotations

from collections.abc import Mapping

from .errors import Loc
from .fields import boolean, json_object, keys_of, one_of, read_fields, read_value, validate, warn_unknown, write_fields
from .specs import UPDATE_TYPES, OptimizerSpec

# The one table of optimizer types (the dense and sparse optimizer classes register under the same names):
# type → (hparam object, keys it requires besides learning_rate, optional keys besides the scheduler's)
HPARAMS = {
    "Adam": ("adam_hparam", ("beta1", "beta2", "epsilon"), ()),
    "MomentumSGD": ("momentum_sgd_hparam", ("momentum_factor",), ()),
    "Nesterov": ("nesterov_hparam", ("momentum_factor",), ()),
    "SGD": ("sgd_hparam", (), ("atomic_update",)),
    "AdaGrad": ("adagrad_hparam", ("initial_accu_value", "epsilon"), ()),
}
OPTIMIZER_TYPES = tuple(HPARAMS)   # AdaGrad: v3.1
SCHEDULER_KEYS = ("warmup_steps", "decay_start", "decay_steps", "decay_power", "end_lr")


def _hparam_fields(type_: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    group, required, optional = HPARAMS[type_]
    return group, required, ("learning_rate", *required, *optional, *SCHEDULER_KEYS)


def parse_optimizer(value, loc: Loc, *, schedule_only: bool = False) -> OptimizerSpec:
    """The clause as an ``OptimizerSpec``. ``schedule_only``: read it as ``get_learning_rate_scheduler``
    does -- only ``learning_rate`` is required; the type's other hyper-parameters may be absent
    (they keep their defaults)."""
    obj: Mapping = validate(value, json_object, loc)
    type_ = read_value(obj, loc, "type", one_of(*OPTIMIZER_TYPES))
    update_type = read_value(obj, loc, "update_type", one_of(*UPDATE_TYPES), None)
    if update_type is None:  # the legacy boolean; neither key means Local
        update_type = "Global" if read_value(obj, loc, "global_update", boolean, False) else "Local"
    group, required, names = _hparam_fields(type_)
    hparam = read_value(obj, loc, group, json_object)
    values = read_fields(OptimizerSpec, hparam, loc.child(group), names=names,
                         required=() if schedule_only else required)
    warn_unknown(hparam, loc.child(group), keys_of(OptimizerSpec, names))
    warn_unknown(obj, loc, {"type", "update_type", "global_update", group})
    return OptimizerSpec(type=type_, update_type=update_type, **values)


def optimizer_to_json(spec: OptimizerSpec) -> dict:
    group, required, names = _hparam_fields(spec.type)
    return {"type": spec.type, "update_type": spec.update_type,
            group: write_fields(spec, names=names, always=required)}


def schedule_to_json(clause: Mapping, spec: OptimizerSpec) -> dict:
    """The JSON clause ``clause`` with ``learning_rate`` and the scheduler keys of its hparam object set
    from ``spec`` (a key at its default is left out); every other key is kept as it is."""
    group = HPARAMS[spec.type][0]
    names = ("learning_rate", *SCHEDULER_KEYS)
    replaced, new = keys_of(OptimizerSpec, names), write_fields(spec, names=names, always=("learning_rate",))
    hparam = {k: new.get(k) if k in replaced else v for k, v in clause.get(group, {}).items()
              if k not in replaced or k in new}   # the keys keep their order
    return {**clause, group: {**hparam, **new}}
