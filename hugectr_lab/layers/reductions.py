"""ReduceSum and ReduceMean over one axis of a 1-D, 2-D or 3-D input; the reduced axis is kept as 1."""

from __future__ import annotations

from .base import Layer, sum_rows
from .registry import register_layer


@register_layer("ReduceSum")
class ReduceSum(Layer):
    """y = Σ_axis x (shape with axis set to 1); dx = dy broadcast along the axis."""

    def __init__(self, axis=1):
        self.axis = axis

    def _build(self, shapes):
        (shape,) = shapes
        self._require_rank(shape, (1, 2, 3))
        if not (isinstance(self.axis, int) and 0 <= self.axis < len(shape)):
            raise self.error(f"axis must be in [0, {len(shape) - 1}] for input shape {list(shape)}, got {self.axis!r}")
        out = list(shape)
        out[self.axis] = 1
        return [tuple(out)]

    def forward(self, inputs, training):
        (x,) = inputs
        return [sum_rows(x, axis=self.axis) * self._scale()]

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        return [self.xp.broadcast_to(d_y * self._scale(), self.input_shapes[0])]

    def _scale(self):
        return 1


@register_layer("ReduceMean")
class ReduceMean(ReduceSum):
    """y = mean over the axis (ReduceSum / axis length); dx = dy / axis length. (v3.1 layer.)"""

    def _scale(self):
        return 1.0 / self.input_shapes[0][self.axis]
