"""Weight initializers of HugeCTR 3.0, drawn on the host from a seeded ``numpy.random.Generator``.

Building blocks (fan_in/fan_out as HugeCTR passes them; s = 1 / max(1, (fan_in + fan_out) / 2)):

* ``variance_scaling(..., "uniform")``: U(-sqrt(3s), +sqrt(3s)).
* ``variance_scaling(..., "norm")``: Normal(0, sqrt(s) / 0.87962566103423978). HugeCTR asks for a
  truncated normal and scales sigma for it, but its Gaussian simulator never truncates; we mimic that.
* ``Uniform`` (the JSON name): U(-1/(fan_in + fan_out), +1/(fan_in + fan_out)).

A layer's weight tensor i uses initializer ``types[i mod len(types)]``; ``None`` is HugeCTR's
Default (the JSON key absent), whose meaning is per layer (``default`` below). All arrays are float32.
"""

from __future__ import annotations

import math

import numpy as np

INITIALIZER_NAMES = ("Uniform", "XavierNorm", "XavierUniform", "Zero")
TRUNCATED_NORMAL_STDDEV = 0.87962566103423978  # stddev of a unit normal truncated to [-2, 2]


def uniform(rng, shape, limit):
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def normal(rng, shape, sigma):
    return rng.normal(0.0, sigma, size=shape).astype(np.float32)


def constant(shape, value):
    return np.full(shape, value, dtype=np.float32)


def variance_scaling(rng, shape, fan_in, fan_out, distribution):
    """HugeCTR's VarianceScaling(scale=1, mode=fan_avg); ``distribution`` is "uniform" or "norm"."""
    s = 1.0 / max(1.0, (fan_in + fan_out) / 2.0)
    if distribution == "uniform":
        return uniform(rng, shape, math.sqrt(3.0 * s))
    return normal(rng, shape, math.sqrt(s) / TRUNCATED_NORMAL_STDDEV)


def draw(kind, rng, shape, fan_in, fan_out, default):
    """One weight tensor for initializer ``kind``; ``default(rng, shape)`` handles ``None``."""
    if kind is None:
        return default(rng, shape)
    if kind == "Zero":
        return constant(shape, 0.0)
    if kind == "Uniform":
        return uniform(rng, shape, 1.0 / (fan_in + fan_out))
    if kind == "XavierUniform":
        return variance_scaling(rng, shape, fan_in, fan_out, "uniform")
    if kind == "XavierNorm":
        return variance_scaling(rng, shape, fan_in, fan_out, "norm")
    raise ValueError(f"unknown initializer {kind!r}; expected None (Default) or one of {INITIALIZER_NAMES}")


def check_kind(layer, field, kind):
    """Raise a layer-labelled error for an unknown initializer name (at build time)."""
    if kind is not None and kind not in INITIALIZER_NAMES:
        raise layer.error(f"{field} must be one of {', '.join(INITIALIZER_NAMES)} (or absent), got {kind!r}")
