"""HugeCTR's learning-rate scheduler: linear warm-up, constant, polynomial decay to ``end_lr``.

Step ``s`` (1-based, counted by ``get_next``) gets

* ``s * base_lr / warmup_steps``                                   while ``s <= warmup_steps``;
* ``base_lr``                               after warm-up when ``decay_start == 0`` (decay disabled)
  or while ``s <= decay_start``;
* ``max(base_lr * ((decay_start + decay_steps - s) / decay_steps) ** decay_power, end_lr)``
  while ``s <= decay_start + decay_steps``;
* ``end_lr`` afterwards.

Precision: HugeCTR evaluates this in C++ ``float``; so does this module (NumPy float32 scalars,
integer numerators converted to float32 before the division), and every returned value is a
float32 value widened to a Python float, e.g. ``LearningRateScheduler(0.001).get_next()`` is
``0.0010000000474974513``, as ``hugectr.LearningRateScheduler`` returns.
"""

from __future__ import annotations

import json
import numbers
import os

import numpy as np

from ..input_files import read_text

_F32 = np.float32

# argument -> (kind, lower bound); one rule table for the constructor and the JSON reader.
_RULES = {
    "base_lr": (float, 0.0),
    "warmup_steps": (int, 1),
    "decay_start": (int, 0),
    "decay_steps": (int, 1),
    "decay_power": (float, 1.0),
    "end_lr": (float, 0.0),
}

# JSON key in the optimizer's hparam object -> constructor argument.
_JSON_KEYS = {
    "learning_rate": "base_lr",
    "warmup_steps": "warmup_steps",
    "decay_start": "decay_start",
    "decay_steps": "decay_steps",
    "decay_power": "decay_power",
    "end_lr": "end_lr",
}

# optimizer.type -> the hparam object that holds learning_rate and the schedule keys.
HPARAM_KEYS = {
    "Adam": "adam_hparam",
    "AdaGrad": "adagrad_hparam",
    "MomentumSGD": "momentum_sgd_hparam",
    "Nesterov": "nesterov_hparam",
    "SGD": "sgd_hparam",
}


def _validate(label, value, argument):
    """Check ``value`` against ``argument``'s rule; ``label`` names it in the error."""
    kind, minimum = _RULES[argument]
    if kind is int:
        ok_type = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        expected = "an integer"
    else:
        ok_type = isinstance(value, numbers.Real) and not isinstance(value, bool)
        expected = "a number"
    if not ok_type:
        raise ValueError(f"{label} must be {expected}, got {value!r}")
    if not value >= minimum:  # also rejects NaN
        raise ValueError(f"{label} must be >= {minimum}, got {value!r}")
    return kind(value)


class LearningRateScheduler:
    """``hugectr.LearningRateScheduler``: call ``get_next()`` once before every training step.

    Raises ValueError naming the argument if base_lr < 0, warmup_steps < 1, decay_steps < 1,
    decay_power < 1.0 or end_lr < 0. ``decay_start == 0`` disables decay.
    """

    def __init__(self, base_lr, warmup_steps=1, decay_start=0, decay_steps=1, decay_power=2.0,
                 end_lr=0.0):
        self.base_lr = _validate("base_lr", base_lr, "base_lr")
        self.warmup_steps = _validate("warmup_steps", warmup_steps, "warmup_steps")
        self.decay_start = _validate("decay_start", decay_start, "decay_start")
        self.decay_steps = _validate("decay_steps", decay_steps, "decay_steps")
        self.decay_power = _validate("decay_power", decay_power, "decay_power")
        self.end_lr = _validate("end_lr", end_lr, "end_lr")
        self._step = 0
        self._lr = 0.0

    def get_next(self) -> float:
        """Advance one step and return its learning rate."""
        self._step += 1
        self._lr = float(self._lr_at(self._step))
        return self._lr

    def get_lr(self) -> float:
        """The value last returned by ``get_next`` (0.0 before the first call)."""
        return self._lr

    def get_step(self) -> int:
        """How many times ``get_next`` has been called."""
        return self._step

    def schedule(self, n) -> list[float]:
        """The next ``n`` values ``get_next`` would return, without advancing (for plots)."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        return [float(self._lr_at(self._step + i)) for i in range(1, n + 1)]

    def _lr_at(self, step):
        base, end = _F32(self.base_lr), _F32(self.end_lr)
        if step <= self.warmup_steps:
            return _F32(step) * base / _F32(self.warmup_steps)
        if self.decay_start == 0 or step <= self.decay_start:
            return base
        decay_end = self.decay_start + self.decay_steps
        if step <= decay_end:
            factor = np.power(_F32(decay_end - step) / _F32(self.decay_steps), _F32(self.decay_power))
            lr = base * factor
            return lr if lr > end else end
        return end

    def __repr__(self):
        return (f"LearningRateScheduler(base_lr={self.base_lr}, warmup_steps={self.warmup_steps}, "
                f"decay_start={self.decay_start}, decay_steps={self.decay_steps}, "
                f"decay_power={self.decay_power}, end_lr={self.end_lr}; step={self._step})")


def get_learning_rate_scheduler(json_file) -> LearningRateScheduler:
    """``hugectr.get_learning_rate_scheduler``: build the scheduler a model's JSON config describes.

    Reads the top-level ``optimizer`` clause, picks the hparam object of its ``type``
    (``adam_hparam``, ``adagrad_hparam``, ``momentum_sgd_hparam``, ``nesterov_hparam``,
    ``sgd_hparam``) and takes ``learning_rate`` (required) plus the optional ``warmup_steps``,
    ``decay_start``, ``decay_steps``, ``decay_power`` and ``end_lr`` from it. Works for every
    optimizer type. Errors are ValueErrors that name the file and the JSON path.
    """
    name = os.fspath(json_file)
    text = read_text(name, "JSON config", lambda offset, what: ValueError(
        f"{name}: " + (f"byte {offset}: " if offset is not None else "") + what))
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{name}: invalid JSON: {e}") from None

    def fail(path, message):
        raise ValueError(f"{name}: {path} {message}")

    optimizer = config.get("optimizer") if isinstance(config, dict) else None
    if not isinstance(optimizer, dict):
        fail("optimizer", "is required (an object)")
    opt_type = optimizer.get("type")
    if opt_type not in HPARAM_KEYS:
        fail("optimizer.type", f"must be one of {', '.join(HPARAM_KEYS)}, got {opt_type!r}")
    hparam_key = HPARAM_KEYS[opt_type]
    hparam = optimizer.get(hparam_key)
    if not isinstance(hparam, dict):
        fail(f"optimizer.{hparam_key}", f"is required (an object) for type {opt_type}")
    if "learning_rate" not in hparam:
        fail(f"optimizer.{hparam_key}.learning_rate", "is required")
    kwargs = {
        argument: _validate(f"{name}: optimizer.{hparam_key}.{key}", hparam[key], argument)
        for key, argument in _JSON_KEYS.items() if key in hparam
    }
    return LearningRateScheduler(**kwargs)
