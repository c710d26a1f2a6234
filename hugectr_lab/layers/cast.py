"""Cast: converts its input to the compute dtype (fp32 → fp16 in mixed precision, fp16 → fp32 in FP32
mode). No gradient flows through it: backward returns zeros (HugeCTR leaves the input buffer as is).
"""

from __future__ import annotations

from .base import Layer
from .registry import register_layer


@register_layer("Cast")
class Cast(Layer):
    def _build(self, shapes):
        return [shapes[0]]

    def forward(self, inputs, training):
        (x,) = inputs
        return [x.astype(self.dtype)]

    def backward(self, d_outputs):
        return [self.xp.zeros(self.input_shapes[0], self.dtype)]
