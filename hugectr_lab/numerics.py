"""Non-finite values in training: the error, the dynamic loss scaler, and the search for the first
layer that produced them.

A training step is *non-finite* when its loss is NaN/inf or, under mixed precision, when a dense
weight gradient or an embedding-output gradient is (fp16 overflow). The Session checks every step on
the device (one pass over each array, no host synchronisation of its own) and never applies the
update of a non-finite step where it learns of it in time; see docs/reliability.md.
"""

from __future__ import annotations

import numpy as np

from .backend import reference_op


class NonFiniteError(FloatingPointError, ValueError):
    """NaN or infinity where a finite number is required: a training step's loss or gradients, or
    predictions given to a metric. ``iteration`` (1-based, None outside training) and ``where``
    (e.g. 'output "fc2" of layers[5] (InnerProduct "fc2")', None if unknown) say where."""

    def __init__(self, message, *, iteration=None, where=None):
        super().__init__(message)
        self.iteration = iteration
        self.where = where


def describe_nonfinite(values, what):
    """``None`` if every value of the host array ``values`` is finite, else a message naming ``what``,
    how many are non-finite and the first one's flat index (the sample, for a (N,) array)."""
    values = np.asarray(values)
    bad = ~np.isfinite(values)
    if not bad.any():
        return None
    first = int(np.flatnonzero(bad.reshape(-1))[0])
    where = np.unravel_index(first, values.shape) if values.ndim > 1 else (first,)
    return (f"{what}: {int(bad.sum())} of {values.size} values are not finite "
            f"(first: {values.reshape(-1)[first]} at index {', '.join(map(str, where))})")


@reference_op
def all_finite(xp, first, *rest):
    """0-d boolean device array: every element of every array is finite. Only device reductions: no
    host synchronisation and no host-to-device copy. The reference of ``backend.ops.all_finite``, whose
    CUDA version reads each float16/float32 array once and sets a flag (kernels/numerics.cu).

    A float16/float32 array is read once, through its float64 sum, which is finite exactly when every
    element is: an infinity or NaN carries through any order of addition, and finite float32 values
    cannot overflow a float64 sum (3.4e38 x 2**63 < 1.8e308). ``isfinite(a).all()`` would write and read
    a boolean array as large as ``a`` besides (DLRM fp16: 218 MB a step for the embedding gradient)."""
    flag = None
    for a in (first, *rest):
        if a.dtype.kind == "f" and a.dtype.itemsize <= 4:
            finite = xp.isfinite(_float64_sum(xp, a))
        else:
            finite = xp.isfinite(a).all()
        flag = finite if flag is None else flag & finite
    return flag


_SUM_ROWS = 1024   # partial sums of a large flat array: one output, hence one block, per row on CuPy


def _float64_sum(xp, a):
    """``a.sum(dtype=float64)`` in two levels: CuPy reduces a whole array to one value in one block
    (3.7 ms for DCN's 7 M gradient elements on an H100). An array of many rows is summed row by row first,
    a block a row (a row-strided view, such as an embedding's slice of a Concat gradient, is read in place
    where a flat reshape would copy it); a flat one as 1024 row sums; then the rows."""
    if a.ndim >= 2 and a.shape[0] >= 64 and a.size >= 64 * _SUM_ROWS:
        return _float64_sum(xp, a.reshape(a.shape[0], -1).sum(axis=1, dtype=xp.float64))
    flat = a.reshape(-1)
    main = flat.size - flat.size % _SUM_ROWS
    if main < 64 * _SUM_ROWS:
        return flat.sum(dtype=xp.float64)
    total = flat[:main].reshape(_SUM_ROWS, -1).sum(axis=1, dtype=xp.float64).sum()
    return total + flat[main:].sum(dtype=xp.float64) if main < flat.size else total


class DynamicLossScaler:
    """Mixed-precision loss scale that adapts: on a non-finite step the step is skipped and the scale
    halved (``backoff``); after ``growth_interval`` finite steps in a row it doubles (``growth``).

    The scale never drops below ``min_scale``: overflowing there is divergence, not fp16 range, and
    the Session raises ``NonFiniteError``. ``skipped`` counts skipped steps; ``last_skipped`` says
    whether the latest step was one (its loss may be non-finite without the run having diverged).
    """

    def __init__(self, init_scale, *, growth_interval=2000, factor=2.0, min_scale=1.0, max_scale=2.0 ** 24):
        if not init_scale > 0 or growth_interval < 1 or not factor > 1:
            raise ValueError(f"DynamicLossScaler: need init_scale > 0, growth_interval >= 1 and factor > 1, got "
                             f"{init_scale}, {growth_interval}, {factor}")
        self.scale = float(init_scale)
        self.growth_interval = int(growth_interval)
        self.factor = float(factor)
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)
        self.good_steps = 0
        self.skipped = 0
        self.last_skipped = False

    def update(self, finite):
        """Record one step; returns True when the scale changed. A non-finite step at ``min_scale``
        returns None: the caller raises instead of skipping."""
        self.last_skipped = not finite
        if finite:
            self.good_steps += 1
            if self.good_steps < self.growth_interval or self.scale >= self.max_scale:
                return False
            self.good_steps = 0
            self.scale = min(self.scale * self.factor, self.max_scale)
            return True
        if self.scale <= self.min_scale:
            return None
        self.good_steps = 0
        self.skipped += 1
        self.scale = max(self.scale / self.factor, self.min_scale)
        return True

    def state(self):
        """What a resumed run needs to continue exactly: ``{"scale", "good_steps", "skipped"}`` (JSON-ready)."""
        return {"scale": self.scale, "good_steps": self.good_steps, "skipped": self.skipped}

    def load_state(self, state, where="loss scale"):
        """Continue from ``state()`` of an earlier run; ValueError naming ``where`` for a malformed one."""
        try:
            scale, good, skipped = float(state["scale"]), state["good_steps"], state["skipped"]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{where}: expected {{\"scale\": > 0, \"good_steps\": int >= 0, \"skipped\": int >= 0}}, "
                             f"got {state!r}") from None
        if not (scale > 0 and np.isfinite(scale)) or any(type(n) is not int or n < 0 for n in (good, skipped)):
            raise ValueError(f"{where}: expected a finite scale > 0 and integer counts >= 0, got {state!r}")
        self.scale = min(max(scale, self.min_scale), self.max_scale)
        self.good_steps, self.skipped, self.last_skipped = good, skipped, False

    def __repr__(self):
        return (f"<DynamicLossScaler scale={self.scale:g} good_steps={self.good_steps} skipped={self.skipped} "
                f"growth_interval={self.growth_interval}>")


def locate_nonfinite(net, feed, loss=None):
    """Where the last training forward/backward of ``net`` (a ``Network``) first went non-finite:
    a network input of ``feed``, a layer's output, the loss value ``loss``, then -- walking backward --
    a layer's input or weight gradient. Re-runs only the backward (its results are deterministic given the
    forward's cached state). Returns a description, or None when everything is finite."""
    host = net.ctx.backend.to_host
    for name in net.input_shapes:
        if name in feed and not np.isfinite(host(feed[name])).all():
            return f'network input "{name}"'
    for node in net.nodes:
        if node.layer.is_loss:
            continue
        for top in node.tops:
            if not np.isfinite(host(net.tensor(top))).all():
                return f'output "{top}" of {node.layer.label}'
    if loss is not None and not np.isfinite(host(loss)).all():
        return f"the loss value of {net.loss.label}"
    d_logits = getattr(net.loss, "d_logits", None)
    if d_logits is not None and not np.isfinite(host(d_logits)).all():
        return f"the gradient of {net.loss.label}"
    found = []

    def inspect(layer, d_inputs):
        if found:
            return
        for i, d in enumerate(d_inputs):
            if d is not None and not np.isfinite(host(d)).all():
                found.append(f"the input gradient {i} of {layer.label}")
                return
        for name, g in zip(layer.weight_names(), getattr(layer, "grads", ())):
            if not np.isfinite(host(g)).all():
                found.append(f'the gradient of weight "{name}" of {layer.label}')
                return

    net.backward(inspect=inspect)
    return found[0] if found else None
