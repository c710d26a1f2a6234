"""Element-wise combinations of inputs of one shape: Add, Sub, DotProduct, ElementwiseMultiply."""

from __future__ import annotations

from .base import Layer
from .registry import register_layer


class _SameShape(Layer):
    def _build(self, shapes):
        if len(set(shapes)) != 1:
            raise self.error(f"inputs must have identical shapes, got {[list(s) for s in shapes]}")
        return [shapes[0]]


@register_layer("Add")
class Add(_SameShape):
    """y = Σ xᵢ; dxᵢ = dy."""

    def forward(self, inputs, training):
        y = inputs[0]
        for x in inputs[1:]:
            y = y + x
        return [y]

    def backward(self, d_outputs):
        return [d_outputs[0]] * len(self.input_shapes)


@register_layer("Sub")
class Sub(_SameShape):
    """y = x₀ − x₁; dx₀ = dy, dx₁ = −dy. (v3.1 layer; our definition.)"""

    def forward(self, inputs, training):
        return [inputs[0] - inputs[1]]

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        return [d_y, -d_y]


@register_layer("DotProduct")
class DotProduct(_SameShape):
    """y = Π xᵢ element-wise (despite the name). dxᵢ = dy·y/xᵢ, and 0 for every input wherever y == 0.

    The zero rule is HugeCTR's: a zero in any input zeroes all inputs' gradients at that position.
    """

    def forward(self, inputs, training):
        self.xs = inputs
        y = inputs[0]
        for x in inputs[1:]:
            y = y * x
        self.y = y
        return [y]

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        zero = self.y == 0
        d_y_y = self.xp.where(zero, 0, d_y * self.y)
        return [(d_y_y / self.xp.where(zero, 1, x)).astype(d_y.dtype, copy=False) for x in self.xs]


@register_layer("ElementwiseMultiply")
class ElementwiseMultiply(_SameShape):
    """y = Π xᵢ; dxᵢ = dy·Π_{j≠i} xⱼ (the product rule; HugeCTR 3.1 passes dy unchanged instead)."""

    def forward(self, inputs, training):
        self.xs = inputs
        y = inputs[0]
        for x in inputs[1:]:
            y = y * x
        return [y]

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        d_xs = []
        for i in range(len(self.xs)):
            d = d_y
            for j, x in enumerate(self.xs):
                if j != i:
                    d = d * x
            d_xs.append(d)
        return d_xs
