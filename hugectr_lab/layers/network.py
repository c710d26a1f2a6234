"""Network: an ordered graph of dense layers over named tensors, with flat weight/gradient buffers.

Built from dense LayerSpecs (anything with ``.type``, ``.name``, ``.bottoms``, ``.tops``, ``.params``)
and the shapes of the tensors fed to it (dense input, label, embedding outputs; per-device batch).
It knows nothing about devices or embeddings: the Session builds one train and one eval Network per
logical device, feeds embedding outputs as inputs and reads their gradients with ``input_grad``.

Buffers (N = ``num_params``):

* ``weights``: (N,) float32 master weights in dense-model-file order (layers in config order, each
  layer's tensors in ``weight_shapes()`` order), so saving/loading the dense model is a flat copy.
* In mixed precision, an fp16 copy of it refreshed from the master before every forward; layers bind
  to views of that copy, except BatchNorm, which uses the fp32 master.
* ``grads``: (N,) in the compute dtype. Each ``backward`` first fills it with the regularizer's
  gradient (or zeros), then the layers accumulate into it (or overwrite, where HugeCTR does).

One training step: ``loss = net.forward(feed)``; ``net.backward()`` (or ``TrainStep(net)(feed)``, which
can replay both from a CUDA graph); optimizer on ``net.weights`` / ``net.grads``;
``net.input_grad("sparse_embedding1")`` for the embedding's backward.

``nodes`` are the config's layers; ``steps`` is what runs: the same, except that each
``InnerProduct -> ReLU [-> Dropout]`` chain runs as one ``fusion.DenseChain`` (one GEMM and one
element-wise pass each way, same bits), and in inference a ``Concat`` feeding an FC of one output as one
``fusion.ConcatProduct``, unless ``BuildContext.fuse_epilogues`` is off. A fused step's intermediate
tensors are recomputed by its members when asked for (``tensor``, ``backward(inspect=)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import BuildContext, LayerError
from .fusion import ConcatProduct, DenseChain, find_chains, find_concat_products
from .registry import create_layer


@dataclass(frozen=True)
class WeightSlot:
    """Where one weight tensor lives in the flat buffers."""

    layer: int  # index into Network.layers
    name: str  # e.g. "W", "b", "gamma", "w0"
    offset: int
    shape: tuple


@dataclass(frozen=True)
class _Node:
    layer: object
    bottoms: tuple
    tops: tuple


def _names(value):
    return (value,) if isinstance(value, str) else tuple(value)


def network_inputs(config, batch, *, label=True):
    """The dense network's input tensors for a parsed config (``hugectr_lab.config.ModelConfig``) and a
    per-device ``batch``: {dense top: (b, D), label top: (b, L) if ``label``, every embedding's top:
    (b, S, E)}. Session, inference and ModelView build their Networks from it."""
    data = config.data
    shapes = {data.dense.top: (batch, data.dense.dense_dim)}
    if label and data.label.top:
        shapes[data.label.top] = (batch, data.label.label_dim)
    for spec in config.embeddings:
        shapes[spec.top] = (batch, config.sparse_input(spec.bottom).slot_num, spec.embedding_vec_size)
    return shapes


class Network:
    """Dense graph + flat buffers. ``first_index`` numbers layers in messages (``layers[i]``) when the
    specs do not carry an ``index`` themselves (e.g. 1 + number of embeddings for a JSON config)."""

    def __init__(self, specs, input_shapes, ctx: BuildContext | None = None, *, first_index=0):
        self.ctx = ctx or BuildContext()
        self.xp = self.ctx.xp
        self.input_shapes = {k: tuple(v) for k, v in input_shapes.items()}
        self.nodes = []
        self.loss = None
        self.shapes = dict(self.input_shapes)  # tensor name -> shape
        consumers = {}
        for i, spec in enumerate(specs):
            index = getattr(spec, "index", first_index + i)
            named = f' "{spec.name}"' if spec.name else ""
            label = f"layers[{index}] ({spec.type}{named})"
            try:
                layer = create_layer(spec.type, spec.params)
            except (KeyError, TypeError) as e:
                raise LayerError(f"{label}: {e.args[0]}") from None
            layer.name, layer.label, layer.index = spec.name, label, index
            bottoms, tops = _names(spec.bottoms), _names(spec.tops)
            for b in bottoms:
                if b not in self.shapes:
                    raise LayerError(f'{label}: bottom "{b}" is neither a network input nor the top of an '
                                     f'earlier layer')
                if b in consumers:
                    raise LayerError(f'{label}: tensor "{b}" is already consumed by {consumers[b]}; a tensor '
                                     f'feeds one layer only (use a Slice with overlapping ranges to fan out)')
                consumers[b] = label
            out_shapes = layer.build([self.shapes[b] for b in bottoms], self.ctx)
            if layer.is_loss:
                if self.loss is not None:
                    raise LayerError(f"{label}: a network has one loss layer, already have {self.loss.label}")
                self.loss = layer
            else:
                if len(tops) != len(out_shapes):
                    raise LayerError(f"{label}: has {len(out_shapes)} outputs but {len(tops)} tops {list(tops)}")
                for t, shape in zip(tops, out_shapes):
                    if t in self.shapes:
                        raise LayerError(f'{label}: top "{t}" is already defined')
                    self.shapes[t] = shape
            self.nodes.append(_Node(layer, bottoms, tops))
        self.label_names = {node.bottoms[1] for node in self.nodes if node.layer.is_loss}
        self._allocate()
        self.steps, self._chain_of = self._fuse()
        self._acts = {}
        self._tensor_grads = {}
        self._trained = False  # whether the last forward was a training one
        self.predictions = None

    # -- buffers -----------------------------------------------------------------------------

    @property
    def layers(self):
        return [node.layer for node in self.nodes]

    def _allocate(self):
        xp, ctx = self.xp, self.ctx
        self.layout = []
        offset = 0
        for i, layer in enumerate(self.layers):
            for name, shape in zip(layer.weight_names(), layer.weight_shapes()):
                self.layout.append(WeightSlot(i, name, offset, shape))
                offset += int(np.prod(shape))
        self.num_params = offset
        self._master = xp.zeros(offset, ctx.master_dtype)
        self._grads = xp.zeros(offset, ctx.compute_dtype)
        self._compute = xp.zeros(offset, ctx.compute_dtype) if ctx.mixed_precision else self._master
        for i, layer in enumerate(self.layers):
            slots = [s for s in self.layout if s.layer == i]
            source = self._master if layer.uses_master_weights else self._compute
            layer.bind([self._view(source, s) for s in slots], [self._view(self._grads, s) for s in slots])
            if layer.is_loss:
                layer.bind_regularized(self._master)

    def _fuse(self):
        """``steps`` (``nodes`` with each chain of ``find_chains`` as one node at its FC layer's place, and in
        inference each pair of ``find_concat_products`` as one node at its FC's place) and {intermediate
        tensor of a fused step: (its step, the tops of its members but the last)}."""
        chains = {chain[0]: chain for chain in find_chains(self.nodes, self.ctx)}
        inner = {i for chain in chains.values() for i in chain[1:]}
        products = {fc: (concat, fc) for concat, fc in find_concat_products(self.nodes, self.ctx, set(chains) | inner)}
        inner |= {concat for concat, _ in products.values()}
        steps, chain_of = [], {}
        for i, node in enumerate(self.nodes):
            if i in chains or i in products:
                members = [self.nodes[j] for j in (chains[i] if i in chains else products[i])]
                layers = [m.layer for m in members]
                fused = DenseChain.of(layers) if i in chains else ConcatProduct(*layers)
                step = _Node(fused, members[0].bottoms, members[-1].tops)
                inner_tops = [m.tops[0] for m in members[:-1]]
                chain_of.update((t, (step, inner_tops)) for t in inner_tops)
                steps.append(step)
            elif i not in inner:
                steps.append(node)
        return steps, chain_of

    @staticmethod
    def _view(flat, slot):
        return flat[slot.offset:slot.offset + int(np.prod(slot.shape))].reshape(slot.shape)

    @property
    def weights(self):
        """The (N,) master weights (live: optimizers update it in place)."""
        return self._master

    @property
    def grads(self):
        """The (N,) weight gradients of the last backward, in the compute dtype (scaled by S)."""
        return self._grads

    def init_weights(self, rng):
        """Draw every layer's weights from ``rng`` in graph order (the generator advances per layer)."""
        for i, layer in enumerate(self.layers):
            arrays = layer.init_weights(rng)
            for slot, a in zip([s for s in self.layout if s.layer == i], arrays):
                if a.shape != slot.shape:
                    raise AssertionError(f"{layer.label}: initializer gave {a.shape} for {slot.name} {slot.shape}")
                self._view(self._master, slot)[...] = self.ctx.backend.asarray(a)
        self._weights_written()

    def load_weights(self, flat):
        """Copy N master weights from a flat array (host or device); extra trailing values are ignored,
        as HugeCTR reads exactly N floats from a dense model file."""
        flat = self.ctx.backend.asarray(flat).ravel()
        if flat.size < self.num_params:
            raise ValueError(f"dense weights: got {flat.size} values, the network has {self.num_params}")
        self._master[...] = flat[:self.num_params]
        self._weights_written()

    def copy_weights_from(self, other):
        """Copy master weights and BatchNorm running statistics from another Network of the same
        layout (the train → eval copy)."""
        if [(s.name, s.shape) for s in other.layout] != [(s.name, s.shape) for s in self.layout]:
            raise ValueError("copy_weights_from: the two networks have different weight layouts")
        self._master[...] = self.ctx.backend.asarray(other.weights)
        self._weights_written()
        self.load_state(other.state)

    def _weights_written(self):
        """After the master weights were written: the compute copy, then what the layers derive from the
        weights (``Layer.weights_changed``). Only here: ``_run`` refreshes the compute copy at every forward
        too, because optimizers update the master in place, but only networks that are not trained derive."""
        self._refresh_compute_weights()
        for layer in self.layers:
            layer.weights_changed()

    def _refresh_compute_weights(self):
        if self._compute is not self._master:
            self._compute[...] = self._master

    # -- non-trained state (BatchNorm running statistics) ---------------------------------------

    @property
    def has_state(self):
        return any(hasattr(layer, "state_dict") for layer in self.layers)

    @property
    def state(self):
        """``{"layers": [{"type": "BatchNorm", "mean": [...], "var": [...]}, ...]}`` (the .ntp.json)."""
        return {"layers": [layer.state_dict() for layer in self.layers if hasattr(layer, "state_dict")]}

    def load_state(self, state):
        layers = [layer for layer in self.layers if hasattr(layer, "load_state_dict")]
        entries = state.get("layers", [])
        if len(entries) != len(layers):
            raise ValueError(f"non-trained parameters: got {len(entries)} entries, the network has "
                             f"{len(layers)} layers with running statistics")
        for layer, entry in zip(layers, entries):
            layer.load_state_dict(entry)

    # -- compute -----------------------------------------------------------------------------

    def _feed(self, feed, require_labels, into=None):
        """Checked inputs on this backend in their compute dtypes; with ``into`` (name -> fixed buffer)
        each input is cast while it is copied into its buffer, and the buffers are returned."""
        acts = {}
        for name, shape in self.input_shapes.items():
            if name not in feed:
                if name in self.label_names and not require_labels:
                    continue
                raise KeyError(f'network input "{name}" is missing from the feed (have: {sorted(feed)})')
            a = self.ctx.backend.asarray(feed[name], dtype=None if into else self.feed_dtype(name))
            if a.shape != shape:
                raise ValueError(f'network input "{name}" has shape {a.shape}, expected {shape}')
            if into is not None:
                into[name][...] = a
                a = into[name]
            acts[name] = a
        return acts

    def _run(self, feed, training, with_loss, mark=None):
        self._refresh_compute_weights()
        acts = self._feed(feed, require_labels=with_loss)
        value = None
        for node in self.steps:
            if not node.layer.is_loss:
                inputs = [acts[b] for b in node.bottoms]
                for t, y in zip(node.tops, node.layer.forward(inputs, training)):
                    acts[t] = y
            elif with_loss:
                value = node.layer.forward([acts[b] for b in node.bottoms], training)
            else:
                node.layer.predictions = node.layer.predict(acts[node.bottoms[0]])
            if mark is not None:
                mark(f"the forward of {node.layer.label}")
        self._acts = acts
        self._trained = training
        if not training:
            self.predictions = self.loss.predictions if self.loss else acts[self.nodes[-1].tops[-1]]
        return value

    def forward(self, feed, training=True):
        """Run every layer on ``feed`` (tensor name -> array, labels included) and return the loss
        value (mean + regularizer term) as a 0-d array. In eval (``training=False``) also sets
        ``predictions``."""
        if self.loss is None:
            raise ValueError("this network has no loss layer; use predict()")
        self.prepare(training)
        return self._run(feed, training, with_loss=True)

    def prepare(self, training):
        """Every layer's host-drawn values for the next forward (``Layer.prepare``)."""
        for layer in self.layers:
            layer.prepare(training)

    def predict(self, feed):
        """Eval forward without labels: σ(logits) for BCE losses, else the last layer's output."""
        self._run(feed, training=False, with_loss=False)
        return self.predictions

    def backward(self, inspect=None, mark=None):
        """Backprop the last training forward: fill ``grads`` (regularizer first), keep input grads.
        ``inspect(layer, d_inputs)``, if given, is called after each layer's backward (the search for
        the first non-finite gradient, ``numerics.locate_nonfinite``); fused chains then run layer by
        layer (same values), so that every layer of the config is inspected. ``mark(what)``, if given,
        is called after each step's backward with no change to what runs (``CapturedCall.mark``)."""
        if not self.ctx.training:
            raise RuntimeError("backward() on an evaluation copy (built with BuildContext(training=False))")
        if self.loss is None or not self._trained:
            raise RuntimeError("backward() needs a training forward() of a network with a loss layer")
        steps = self.steps
        if inspect is not None and len(steps) != len(self.nodes):
            for step in steps:
                if isinstance(step.layer, DenseChain):
                    self._unfuse(step)
            steps = self.nodes
        self.loss.init_weight_grads(self._grads)
        d = {}
        for node in reversed(steps):
            if node.layer.is_loss:
                d_inputs = node.layer.backward()
            else:
                d_outputs = [d.pop(t, None) for t in node.tops]
                d_outputs = [self.xp.zeros(self.shapes[t], self.ctx.compute_dtype) if g is None else g
                             for t, g in zip(node.tops, d_outputs)]
                d_inputs = node.layer.backward(d_outputs)
                if inspect is not None:
                    inspect(node.layer, d_inputs)
            if mark is not None:
                mark(f"the backward of {node.layer.label}")
            for b, g in zip(node.bottoms, d_inputs):
                if g is not None:
                    d[b] = g
        self._tensor_grads = d

    def input_grad(self, name):
        """dL/d(input tensor ``name``) from the last backward (zeros if no gradient reached it)."""
        if name not in self.input_shapes:
            raise KeyError(f'"{name}" is not a network input (inputs: {sorted(self.input_shapes)})')
        g = self._tensor_grads.get(name)
        return self.xp.zeros(self.input_shapes[name], self.ctx.compute_dtype) if g is None else g

    def tensor(self, name):
        """The activation ``name`` from the last forward (inputs included). A fused chain's intermediate
        tensors are not kept: each call recomputes them with the chain's members from the chain's input
        and the current weights (the forward's values until the optimizer changes the weights; under a
        CUDA graph, those of the last replay)."""
        if name in self._acts or name not in self._chain_of or not self._acts:
            return self._acts[name]
        step, inner_tops = self._chain_of[name]
        return self._unfuse(step)[inner_tops.index(name)]

    def _unfuse(self, step):
        """A fused chain's members run on the chain's input: their outputs in member order; each member is
        then ready for its own backward."""
        return step.layer.unfused([self._acts[b] for b in step.bottoms], self._trained)

    def feed_dtype(self, name):
        """The dtype input ``name`` is computed in: labels in the master dtype, the rest in the compute dtype."""
        return self.ctx.master_dtype if name in self.label_names else self.ctx.compute_dtype

    # -- report ------------------------------------------------------------------------------

    def summary_rows(self):
        """One dict per layer in config order: ``index`` (in the config's ``layers``), ``kind`` ("dense"
        or "loss"), ``type``, ``name``, ``bottoms``, ``tops`` (tensor name -> shape; {} for a loss),
        ``params`` (weight count). ``summary`` prints them; the ModelView widget draws them."""
        return [{"index": node.layer.index, "kind": "loss" if node.layer.is_loss else "dense",
                 "type": node.layer.type_name, "name": node.layer.name or "", "bottoms": list(node.bottoms),
                 "tops": {} if node.layer.is_loss else {t: self.shapes[t] for t in node.tops},
                 "params": sum(int(np.prod(s)) for s in node.layer.weight_shapes())}
                for node in self.nodes]

    def summary(self, print_fn=None):
        """A table of layers (# = the index in the config's ``layers``): type, name, bottoms, tops with
        shapes, parameter count. Returned, and passed to ``print_fn`` (e.g. ``print``) if given."""
        rows = [("#", "type", "name", "bottoms", "tops (shape)", "params")]
        rows.append(("", "(inputs)", "", "", ", ".join(f"{k} {list(v)}" for k, v in self.input_shapes.items()), ""))
        for row in self.summary_rows():
            tops = "(loss)" if row["kind"] == "loss" else ", ".join(f"{t} {list(s)}" for t, s in row["tops"].items())
            rows.append((str(row["index"]), row["type"], row["name"], ", ".join(row["bottoms"]), tops,
                         f"{row['params']:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "-" * len(max(lines, key=len)))
        lines.append(f"dense parameters: {self.num_params:,} ({self.ctx.compute_dtype} compute)")
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text


class TrainStep:
    """One device's training pass through ``net``: forward, then backward (weight gradients in
    ``net.grads``, input gradients from ``net.input_grad``). ``step(feed)`` returns the loss, a 0-d array
    of its own. With ``graph=True`` (the solver's ``use_cuda_graph``) and a backend that has CUDA graphs,
    the pass -- the part of a step HugeCTR's option covers -- is replayed from a graph: the feed is
    checked and copied into fixed input buffers, Dropout seeds are drawn (``prepare``), one launch runs
    every layer. ``captured`` is the ``CapturedCall`` (None without a graph)."""

    def __init__(self, net, graph=False):
        self.net = net
        self.captured = net.ctx.backend.graph(self._pass, "the dense forward and backward") if graph else None
        if self.captured is not None:
            self._inputs = {name: net.xp.empty(shape, net.feed_dtype(name)) for name, shape in net.input_shapes.items()}

    def _pass(self):
        return self.run_prepared(self._inputs)

    def run_prepared(self, feed, mark=None):
        """Forward and backward on ``feed`` after ``net.prepare(True)``: the device work only, as a CUDA
        graph of the whole training step holds it; ``mark(what)`` after each layer's forward and backward,
        if given. Returns the loss (0-d, the network's own array)."""
        loss = self.net._run(feed, True, with_loss=True, mark=mark)
        self.net.backward(mark=mark)
        return loss

    def __call__(self, feed):
        net = self.net
        if self.captured is None:
            loss = net.forward(feed, training=True)
            net.backward()
            return loss
        net._feed(feed, require_labels=True, into=self._inputs)
        net.prepare(True)
        return self.captured().copy()
