"""Fused dense epilogues: a chain ``InnerProduct -> ReLU [-> Dropout]`` runs as one GEMM and one
element-wise pass each way, as HugeCTR fuses them.

Unfused, every member of such a chain is a pass over the (m, n) activation: the bias add, ReLU and
Dropout forward, and Dropout's, ReLU's and the bias gradient's backward. A ``DenseChain`` keeps the
members (their weights, names, seeds) and runs them as

* forward: ``gemm_bias_act`` (``InnerProduct.product_bias_act``: on CUDA one cuBLASLt matmul whose
  epilogue adds the bias and applies ReLU; a float32 inference FC built for 3xTF32 multiplies its split
  operands there, so a chain takes that path too) or, in training with Dropout, y = x·W
  (``InnerProduct.product``) then ``bias_act_dropout_fwd`` (bias + ReLU + the mask of the Dropout
  layer's seed, drawn in place);
* backward: ``bias_act_bwd`` / ``bias_act_dropout_bwd`` (the dropout mask drawn again from the same
  seed, the ReLU mask from the output's sign, the bias gradient summed in the same pass), then the
  two GEMMs (``InnerProduct.backward_product``).

Drawing the mask again is an integer hash per element: on a GPU far cheaper than writing and reading
a kept mask, on NumPy dearer (nine uint64 passes against one multiply). So ``redraw_mask``
is on where the epilogue runs as a kernel; elsewhere the Dropout layer applies and keeps its mask
after the fused bias + ReLU, as it does unfused (same values either way).

Each value is computed by the same operations in the same order as the members compute it, so a fused
network trains bit for bit as the unfused one on NumPy (``tests/layers/test_layers_fusion.py``); on CUDA
the GEMM's epilogue rounds the biased sum once, within one float16 ulp of the two kernels' result.

In an inference network (``BuildContext(training=False)``) a ``Concat`` feeding an FC of one output (DCN's
head) runs as one step too, ``ConcatProduct``: the FC reads the Concat's inputs where they lie
(``gemm_bias_act_concat``: on CUDA one GEMV kernel over the inputs side by side), so the concatenated
copy -- DCN at batch 1024: 6 MB written and read again -- and its launch go. Training keeps the two apart:
the FC's weight gradient reads the concatenated input.

Chains (``find_chains``): an ``InnerProduct`` followed by a ``ReLU`` and/or a ``Dropout``, or a
``FusedInnerProduct`` (ReLU built in) followed by a ``Dropout``; each intermediate tensor feeds only the
next member (a Network tensor feeds one layer anyway); float32 or float16 compute (float64 is the
finite-difference verification precision: every layer runs on its own there). The intermediate
tensors are not kept: ``unfused`` runs the members' own forwards on the chain's input when someone asks
for them (``Network.tensor``, the non-finite search), which also leaves each member ready for its own
backward.
"""

from __future__ import annotations

import numpy as np

FC_TYPES = ("InnerProduct", "FusedInnerProduct")


def find_chains(nodes, ctx):
    """Index lists into a built Network's ``nodes`` (``layer``, ``bottoms``, ``tops``), one per chain that
    runs fused, its FC layer first: ``[[4, 5, 6], [7, 8, 9]]`` for DCN's two hidden layers."""
    if not ctx.fuse_epilogues or ctx.compute_dtype not in (np.float32, np.float16):
        return []
    # The Network's build checked that a tensor feeds one layer and that the FC layers, ReLU and Dropout
    # have one bottom and one top: a member's top read by the next candidate is that candidate's only input.
    reader = {b: i for i, node in enumerate(nodes) for b in node.bottoms}
    chains = []
    for i, node in enumerate(nodes):
        if node.layer.type_name not in FC_TYPES:
            continue
        chain = [i]
        for follower in ("Dropout",) if node.layer.fused_relu else ("ReLU", "Dropout"):
            j = reader.get(nodes[chain[-1]].tops[0])
            if j is not None and nodes[j].layer.type_name == follower:
                chain.append(j)
        if len(chain) > 1:
            chains.append(chain)
    return chains


def find_concat_products(nodes, ctx, taken=()):
    """``[concat, fc]`` index pairs into a built inference Network's ``nodes``: a Concat whose output feeds an
    FC of one output (not one of ``taken``, the chains' members; never a 3xTF32 one, which needs 256 outputs),
    each run as a ``ConcatProduct``."""
    if ctx.training or not ctx.fuse_epilogues or ctx.compute_dtype not in (np.float32, np.float16):
        return []
    reader = {b: i for i, node in enumerate(nodes) for b in node.bottoms}   # a tensor feeds one layer
    pairs = []
    for i, node in enumerate(nodes):
        j = reader.get(node.tops[0]) if node.layer.type_name == "Concat" else None
        if j is not None and j not in taken and nodes[j].layer.type_name in FC_TYPES \
                and nodes[j].layer.num_output == 1:
            pairs.append([i, j])
    return pairs


class ConcatProduct:
    """A ``concat`` layer and the FC of one output it feeds (``fc``), run as one forward step of an inference
    network (module docstring); the same forward interface as a layer, no backward."""

    is_loss = False

    def __init__(self, concat, fc):
        self.concat, self.fc = concat, fc
        self.members = [concat, fc]
        self.type_name = f"Concat+{fc.type_name}"
        self.label = " + ".join(layer.label or layer.type_name for layer in self.members)

    def forward(self, inputs, training):
        fc = self.fc
        w, b = fc.weights
        return [fc.ctx.backend.ops.gemm_bias_act_concat(w, b, fc.fused_relu, *inputs)]   # (m, 1)

    def unfused(self, inputs, training):
        """The Concat's and the FC's own forwards on the step's inputs: [concatenated, FC output]."""
        outputs = self.concat.forward(inputs, training)
        return outputs + self.fc.forward(outputs, training)

    def __repr__(self):
        return f"<ConcatProduct {self.label}>"


class DenseChain:
    """The members ``fc`` (InnerProduct or FusedInnerProduct), ``relu`` and ``dropout`` (each may be None,
    not both) of one chain, run fused. Same forward/backward interface as a layer."""

    is_loss = False

    def __init__(self, fc, relu=None, dropout=None):
        self.fc, self.relu, self.dropout = fc, relu, dropout
        self.members = [layer for layer in (fc, relu, dropout) if layer is not None]
        self.activation = fc.fused_relu or relu is not None
        self.redraw_mask = fc.ctx.backend.ops.implementation("bias_act_dropout_bwd") == "kernel"
        self.type_name = "+".join(layer.type_name for layer in self.members)   # "InnerProduct+ReLU+Dropout"
        self.label = " + ".join(layer.label or layer.type_name for layer in self.members)

    @classmethod
    def of(cls, layers):
        """The chain of ``layers`` in member order (FC first, then ReLU and/or Dropout)."""
        by_type = {layer.type_name: layer for layer in layers[1:]}
        return cls(layers[0], by_type.get("ReLU"), by_type.get("Dropout"))

    def forward(self, inputs, training):
        (x,) = inputs   # (m, k)
        fc = self.fc
        ops, b = fc.ctx.backend.ops, fc.weights[1]
        self.seed = self.dropout.forward_seed() if training and self.dropout is not None else None
        if self.seed is None:   # bias and ReLU in the GEMM's epilogue
            self.z = fc.product_bias_act(x, self.activation)   # (m, n)
            return [self.z]
        y = fc.product(x)   # (m, n)
        if self.redraw_mask:
            self.z = ops.bias_act_dropout_fwd(y, b, self.activation, self.seed, self.dropout.rate)
            return [self.z]   # (m, n)
        self.z = ops.bias_act_fwd(y, b, relu=self.activation)
        return [self.dropout.apply(self.z)]   # Dropout keeps its mask

    def backward(self, d_outputs):
        (d_z,) = d_outputs
        ops = self.fc.ctx.backend.ops
        if self.seed is not None and self.redraw_mask:
            d_pre, d_b = ops.bias_act_dropout_bwd(d_z, self.z, self.activation, self.seed, self.dropout.rate)
        else:
            if self.seed is not None:
                d_z = self.dropout.backward([d_z])[0]
            d_pre, d_b = ops.bias_act_bwd(d_z, self.z, relu=self.activation)
        return [self.fc.backward_product(d_pre, d_b)]

    def unfused(self, inputs, training):
        """The members' own forwards on the chain's input ``inputs`` = [x] with the last forward's weights and
        dropout seed: one output per member (the last one equals the fused output). Afterwards each member
        can run its own backward (the non-finite search inspects them one by one)."""
        outputs = self.fc.forward(inputs, training)
        if self.relu is not None:
            outputs += self.relu.forward(outputs[-1:], training)
        if self.dropout is not None:
            outputs.append(self.dropout.apply(outputs[-1]) if training else outputs[-1])
        return outputs

    def __repr__(self):
        return f"<DenseChain {self.label}>"
