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

import numbers

import numpy as np

from ..config import parse_optimizer_clause

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

# constructor argument -> the OptimizerSpec field (the optimizer clause's hparam key) it comes from
SPEC_FIELDS = {"base_lr": "learning_rate", "warmup_steps": "warmup_steps", "decay_start": "decay_start",
               "decay_steps": "decay_steps", "decay_power": "decay_power", "end_lr": "end_lr"}


def _validate(argument, value):
    """Check ``value`` against ``argument``'s rule (``_RULES``); the error names ``argument``."""
    kind, minimum = _RULES[argument]
    if kind is int:
        ok_type = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        expected = "an integer"
    else:
        ok_type = isinstance(value, numbers.Real) and not isinstance(value, bool)
        expected = "a number"
    if not ok_type:
        raise ValueError(f"{argument} must be {expected}, got {value!r}")
    if not value >= minimum:  # also rejects NaN
        raise ValueError(f"{argument} must be >= {minimum}, got {value!r}")
    return kind(value)


class LearningRateScheduler:
    """``hugectr.LearningRateScheduler``: call ``get_next()`` once before every training step.

    Raises ValueError naming the argument if base_lr < 0, warmup_steps < 1, decay_steps < 1,
    decay_power < 1.0 or end_lr < 0. ``decay_start == 0`` disables decay.
    """

    def __init__(self, base_lr, warmup_steps=1, decay_start=0, decay_steps=1, decay_power=2.0,
                 end_lr=0.0):
        self.base_lr = _validate("base_lr", base_lr)
        self.warmup_steps = _validate("warmup_steps", warmup_steps)
        self.decay_start = _validate("decay_start", decay_start)
        self.decay_steps = _validate("decay_steps", decay_steps)
        self.decay_power = _validate("decay_power", decay_power)
        self.end_lr = _validate("end_lr", end_lr)
        self._step = 0
        self._lr = 0.0

    @classmethod
    def from_spec(cls, spec) -> LearningRateScheduler:
        """The schedule of an ``OptimizerSpec`` (its learning rate and scheduler keys)."""
        return cls(**{argument: getattr(spec, field) for argument, field in SPEC_FIELDS.items()})

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

    Reads the top-level ``optimizer`` clause through the config parser
    (``config.parse_optimizer_clause``): the hparam object of its ``type`` (``adam_hparam``,
    ``adagrad_hparam``, ``momentum_sgd_hparam``, ``nesterov_hparam``, ``sgd_hparam``) gives
    ``learning_rate`` (required) and the optional ``warmup_steps``, ``decay_start``, ``decay_steps``,
    ``decay_power`` and ``end_lr``. Works for every optimizer type. Errors are ``ConfigError``s (a
    ValueError) that name the JSON path and the file.
    """
    return LearningRateScheduler.from_spec(parse_optimizer_clause(json_file))
