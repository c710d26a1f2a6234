"""Concat (2..5 inputs side by side) and Slice (2..5 column ranges, overlap allowed)."""

from __future__ import annotations

from ..backend import reference_op
from .base import Layer
from .registry import register_layer


@reference_op
def concat_columns(xp, *xs):
    """xs (m, wᵢ) side by side → (m, Σwᵢ), a new contiguous array (of one input: its contiguous copy)."""
    return xp.concatenate(xs, axis=1)


@register_layer("Concat")
class Concat(Layer):
    """y = [x₀ | x₁ | …] along columns; backward splits dy back. Inputs (m, wᵢ), output (m, Σwᵢ)."""

    def _build(self, shapes):
        for i, s in enumerate(shapes):
            self._require_rank(s, (2,), f"input {i}")
        rows = {s[0] for s in shapes}
        if len(rows) != 1:
            raise self.error(f"inputs must have the same number of rows, got shapes {[list(s) for s in shapes]}")
        self.widths = [s[1] for s in shapes]
        return [(shapes[0][0], sum(self.widths))]

    def forward(self, inputs, training):
        return [self.ctx.backend.ops.concat_columns(*inputs)]

    def backward(self, d_outputs):
        (d_y,) = d_outputs
        d_xs, start = [], 0
        for w in self.widths:
            d_xs.append(d_y[:, start:start + w])
            start += w
        return d_xs


@register_layer("Slice")
class Slice(Layer):
    """Output i = x[:, aᵢ:bᵢ]; backward dx = Σᵢ dyᵢ scattered into its columns (overlaps add)."""

    def __init__(self, ranges):
        self.ranges = ranges

    def _build(self, shapes):
        (shape,) = shapes
        self._require_rank(shape, (2,))
        m, w = shape
        ranges = [tuple(r) for r in self.ranges]
        if not 2 <= len(ranges) <= 5:
            raise self.error(f"ranges must list 2 to 5 column ranges, got {len(ranges)}")
        prev = (0, 0)
        for i, r in enumerate(ranges):
            if len(r) != 2 or not 0 <= r[0] < r[1] <= w:
                raise self.error(f"ranges[{i}] = {list(r)} must be [start, end) with 0 <= start < end <= {w} "
                                 f"(the input width)")
            if r[0] < prev[0] or r[1] < prev[1]:
                raise self.error(f"ranges[{i}] = {list(r)}: starts and ends must be non-decreasing "
                                 f"(previous range {list(prev)})")
            prev = r
        self._ranges = ranges
        return [(m, b - a) for a, b in ranges]

    def forward(self, inputs, training):
        (x,) = inputs
        return [x[:, a:b] for a, b in self._ranges]

    def backward(self, d_outputs):
        # A first range that covers the input starts dx from its gradient, and from the sum of the first two
        # where both do (DCN's Slice feeding both branches): one pass over dx instead of three, the same
        # sums (a zero's sign aside: 0 + (-0) is +0).
        pairs, full = list(zip(self._ranges, d_outputs)), (0, self.input_shapes[0][1])
        if pairs[0][0] != full:
            d_x, rest = self.xp.zeros(self.input_shapes[0], d_outputs[0].dtype), pairs
        elif pairs[1][0] == full:
            d_x, rest = pairs[0][1] + pairs[1][1], pairs[2:]
        else:
            d_x, rest = pairs[0][1].copy(), pairs[1:]
        for (a, b), d_y in rest:
            d_x[:, a:b] += d_y
        return [d_x]
