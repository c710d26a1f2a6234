"""Reshape: leading-dim mode (a pure re-view) or selected-slots mode (gather slots of (b, S, E))."""

from __future__ import annotations

import math

from .base import Layer
from .registry import register_layer


@register_layer("Reshape")
class Reshape(Layer):
    """Leading-dim mode: (…) → (N/leading_dim, leading_dim), N the element count; leading_dim defaults
    to N/dim0 (flatten to (dim0, rest)) and must be a multiple of the input's last dimension.

    Selected mode: (b, S, E) → (b, len(selected)·E) with the listed slots in order; an empty list is a
    plain flatten. Backward scatters dy into the selected slots and returns zeros for the others
    (HugeCTR leaves those gradient buffers stale); a slot selected twice gets both gradients added.
    """

    def __init__(self, leading_dim=None, selected=None):
        self.leading_dim = leading_dim
        self.selected = selected

    def _build(self, shapes):
        (shape,) = shapes
        if self.selected is not None:
            if self.leading_dim is not None:
                raise self.error("give either leading_dim or selected, not both")
            return [self._build_selected(shape)]
        n = math.prod(shape)
        ld = self.leading_dim if self.leading_dim is not None else n // shape[0]
        if not (isinstance(ld, int) and ld > 0):
            raise self.error(f"leading_dim must be a positive integer, got {ld!r}")
        if ld % shape[-1]:
            raise self.error(f"leading_dim {ld} must be a multiple of the input's last dimension {shape[-1]}")
        if n % ld:
            raise self.error(f"leading_dim {ld} must divide the input's element count {n} "
                             f"(input shape {list(shape)})")
        return [(n // ld, ld)]

    def _build_selected(self, shape):
        self._require_rank(shape, (3,), "input of a Reshape with selected")
        b, s, e = shape
        slots = tuple(self.selected) or tuple(range(s))
        bad = [i for i in slots if not (isinstance(i, int) and 0 <= i < s)]
        if bad:
            raise self.error(f"selected slot ids {bad} are out of range for {s} slots")
        self._slots = slots
        return (b, len(slots) * e)

    def forward(self, inputs, training):
        (x,) = inputs
        if self.selected is None:
            return [x.reshape(self.output_shapes[0])]
        return [x[:, list(self._slots), :].reshape(self.output_shapes[0])]  # (b, len(selected)·E)

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        if self.selected is None:
            return [d_y.reshape(self.input_shapes[0])]
        b, s, e = self.input_shapes[0]
        d_x = self.xp.zeros((b, s, e), d_y.dtype)
        for j, slot in enumerate(self._slots):
            d_x[:, slot, :] += d_y[:, j * e:(j + 1) * e]
        return [d_x]
