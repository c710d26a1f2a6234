"""Export a trained model (embedding lookup + combine over the trained tables, and the dense graph in
eval mode) as one ONNX model that any ONNX runtime serves without this library.

Inputs and output are those of ``InferenceSession.predict``, as arrays:

* ``dense``    (N, D) float32 -- the dense features;
* ``keys``     (K,)   int64   -- every sample's keys, sample-major, the sparse inputs' slots in order;
* ``row_ptrs`` (N*S+1,) int64 -- the CSR over (sample, slot) pairs (``row_ptrs[0] == 0``);
* ``output``   (N, L) float32 -- the head: σ(logit) for the BCE losses, softmax for CrossEntropyLoss.

Key → row: each table is stored as its keys sorted ascending (V,) and its vectors (V+1, E), the last
row being the vector of unknown keys (``default_emb_vec_value``, 0 unless set). A key is found by a
branchless binary search unrolled ⌈log2 V⌉ times (Gather, LessOrEqual, Where), which ONNX expresses
with no custom op and whose size grows with log V, not with the key range (Criteo keys span 2^32, so
a dense remap over the key range could not be stored). Combine: each key's (sample, slot) row is the
cumulative sum of the row starts, and ``ScatterND(reduction="add")`` sums the vectors per row (mean
divides by max(count, 1)). The dense layers are translated one by one from the built network, with
the weights (and BatchNorm running statistics) as initializers.
"""

from __future__ import annotations

import importlib

import numpy as np

OPSET = 17


class OnnxExportError(ValueError):
    """The model holds something the exporter cannot write (a layer type, a precision)."""


class _Graph:
    """A small builder over ``onnx.helper``: unique names, constants as initializers."""

    def __init__(self, helper, numpy_helper):
        self.h, self.nh = helper, numpy_helper
        self.nodes, self.inits = [], []
        self._n = 0

    def name(self, hint):
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, value, hint="c", dtype=None):
        array = np.asarray(value, dtype=dtype)
        name = self.name(hint)
        self.inits.append(self.nh.from_array(array, name))
        return name

    def op(self, op_type, inputs, hint=None, outputs=1, **attrs):
        names = [self.name(hint or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(self.h.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names


def _i64(values):
    return np.asarray(values, dtype=np.int64)


def _lookup_rows(g, keys, table_keys):
    """keys (K,) int64 → (K,) int64 row in [0, V]: the key's index in ``table_keys``, else V."""
    v = int(table_keys.size)
    if v == 0:
        return g.op("Mul", [keys, g.const(0, "zero", np.int64)])
    sorted_keys = g.const(table_keys.astype(np.int64), "table_keys")
    pos = g.op("Mul", [keys, g.const(0, "zero", np.int64)])     # (K,) zeros, int64
    step = 1 << int(v - 1).bit_length() if v > 1 else 1
    last = g.const(v - 1, "last", np.int64)
    while step >= 1:   # largest pos with sorted_keys[pos] <= key (pos 0 when none)
        cand = g.op("Add", [pos, g.const(step, "step", np.int64)])
        clipped = g.op("Min", [cand, last])
        at = g.op("Gather", [sorted_keys, clipped], axis=0)
        ok = g.op("And", [g.op("LessOrEqual", [cand, last]), g.op("LessOrEqual", [at, keys])])
        pos = g.op("Where", [ok, cand, pos])
        step //= 2
    found = g.op("Equal", [g.op("Gather", [sorted_keys, pos], axis=0), keys])
    return g.op("Where", [found, pos, g.const(v, "unknown_row", np.int64)])


def _segments(g, row_ptrs, num_keys):
    """(K,) int64 (sample, slot) row of every key, from the CSR ``row_ptrs`` (R+1,)."""
    starts = g.op("Slice", [row_ptrs, g.const([1], dtype=np.int64), g.const([-1], dtype=np.int64),
                            g.const([0], dtype=np.int64)])                      # (R-1,) row starts after row 0
    k1 = g.op("Add", [num_keys, g.const([1], dtype=np.int64)])                   # (1,) K+1
    marks = g.op("ConstantOfShape", [k1], value=_tensor(g, np.zeros(1, np.int64)))
    ones = g.op("Add", [g.op("Mul", [starts, g.const(0, dtype=np.int64)]), g.const(1, dtype=np.int64)])
    marks = g.op("ScatterElements", [marks, g.op("Min", [starts, num_keys]), ones], axis=0, reduction="add")
    seg = g.op("CumSum", [marks, g.const(0, dtype=np.int64)])
    return g.op("Slice", [seg, g.const([0], dtype=np.int64), num_keys, g.const([0], dtype=np.int64)])


def _tensor(g, array):
    return g.nh.from_array(np.asarray(array))


class _Exporter:
    def __init__(self, config, network, tables, *, head_name="output"):
        import onnx
        from onnx import helper, numpy_helper

        self.onnx, self.config, self.net, self.tables = onnx, config, network, tables
        self.g = _Graph(helper, numpy_helper)
        self.head_name = head_name
        self.weights = {}   # layer index -> list of host float32 arrays
        flat = _host(network.weights).astype(np.float32)
        for slot in network.layout:
            self.weights.setdefault(slot.layer, []).append(
                flat[slot.offset:slot.offset + int(np.prod(slot.shape))].reshape(slot.shape))

    def build(self):
        onnx, g, cfg = self.onnx, self.g, self.config
        h = g.h
        data = cfg.data
        dim = data.dense.dense_dim
        inputs = [h.make_tensor_value_info("dense", onnx.TensorProto.FLOAT, ["N", dim]),
                  h.make_tensor_value_info("keys", onnx.TensorProto.INT64, ["K"]),
                  h.make_tensor_value_info("row_ptrs", onnx.TensorProto.INT64, ["R"])]
        acts = {data.dense.top: "dense"}
        total_slots = data.total_slot_num
        num_keys = g.op("Shape", ["keys"])                                   # (1,) K
        rows = g.op("Sub", [g.op("Shape", ["row_ptrs"]), g.const([1], dtype=np.int64)])   # (1,) N*S
        seg = g.op("Unsqueeze", [_segments(g, "row_ptrs", num_keys), g.const([1], dtype=np.int64)])  # (K, 1)
        after = g.op("Slice", ["row_ptrs", g.const([1], dtype=np.int64), g.const([2 ** 62], dtype=np.int64),
                               g.const([0], dtype=np.int64)])
        before = g.op("Slice", ["row_ptrs", g.const([0], dtype=np.int64), g.const([-1], dtype=np.int64),
                                g.const([0], dtype=np.int64)])
        counts = g.op("Sub", [after, before])                                # (N*S,) keys per row
        starts = dict(zip((s.top for s in data.sparse), np.cumsum([0] + [s.slot_num for s in data.sparse])))
        for spec, (table_keys, vectors, default) in zip(cfg.embeddings, self.tables):
            e = spec.embedding_vec_size
            order = np.argsort(table_keys, kind="stable")
            table_keys = np.asarray(table_keys)[order].astype(np.int64)
            values = np.concatenate([np.asarray(vectors, np.float32)[order],
                                     np.full((1, e), default, np.float32)])          # (V+1, E)
            row = _lookup_rows(g, "keys", table_keys)
            picked = g.op("Gather", [g.const(values, f"{spec.top}_table"), row], axis=0)    # (K, E)
            zeros = g.op("ConstantOfShape", [g.op("Concat", [rows, g.const([e], dtype=np.int64)], axis=0)],
                         value=_tensor(g, np.zeros(1, np.float32)))
            combined = g.op("ScatterND", [zeros, seg, picked], reduction="add")      # (N*S, E)
            if spec.combiner == "mean":
                scale = g.op("Div", [g.const(1.0, dtype=np.float32),
                                     g.op("Cast", [g.op("Max", [counts, g.const(1, dtype=np.int64)])],
                                          to=onnx.TensorProto.FLOAT)])
                combined = g.op("Mul", [combined, g.op("Unsqueeze", [scale, g.const([1], dtype=np.int64)])])
            per_sample = g.op("Reshape", [combined, g.const([-1, total_slots, e], dtype=np.int64)])
            first = int(starts[spec.bottom])
            slots = cfg.sparse_input(spec.bottom).slot_num
            acts[spec.top] = g.op("Slice", [per_sample, g.const([first], dtype=np.int64),
                                            g.const([first + slots], dtype=np.int64), g.const([1], dtype=np.int64)],
                                  hint=spec.top)                                     # (N, S_t, E)
        output = None
        for i, node in enumerate(self.net.nodes):
            if node.layer.is_loss:   # its label input is not an ONNX input
                output = self._head(i, acts[node.bottoms[0]])
                break
            ins = [acts[b] for b in node.bottoms]
            outs = self._layer(i, node, ins)
            acts.update(zip(node.tops, outs))
        if output is None:   # an inference graph whose head is a layer of its own
            output = acts[self.net.nodes[-1].tops[-1]]
        g.nodes.append(h.make_node("Identity", [output], [self.head_name]))
        label_dim = data.label.label_dim
        out = h.make_tensor_value_info(self.head_name, onnx.TensorProto.FLOAT, ["N", label_dim])
        graph = h.make_graph(g.nodes, "hugectr_lab_model", inputs, [out], initializer=g.inits)
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)], producer_name="hugectr-lab")
        model.ir_version = min(model.ir_version, 8)
        onnx.checker.check_model(model)
        return model

    def _head(self, i, logits):
        """The loss layer's prediction: softmax for CrossEntropyLoss, σ for the BCE losses."""
        if _type_of(self.config, i, self.net.nodes[i].layer) == "CrossEntropyLoss":
            return self.g.op("Softmax", [logits], axis=-1)
        return self.g.op("Sigmoid", [logits])

    def _layer(self, i, node, ins):
        g, layer = self.g, node.layer
        kind = _type_of(self.config, i, layer)
        w = self.weights.get(i, [])
        c = g.const
        if kind in ("InnerProduct", "FusedInnerProduct"):
            y = g.op("Add", [g.op("MatMul", [ins[0], c(w[0], "weight")]), c(w[1].reshape(-1), "bias")])
            return [g.op("Relu", [y]) if kind == "FusedInnerProduct" else y]
        if kind == "ReLU":
            return [g.op("Relu", ins)]
        if kind == "Sigmoid":
            return [g.op("Sigmoid", ins)]
        if kind == "ELU":
            return [g.op("Elu", ins, alpha=float(layer.alpha))]
        if kind == "Softmax":
            return [g.op("Softmax", ins, axis=-1)]
        if kind in ("Dropout", "Cast"):   # eval-mode dropout is the identity; the export computes in fp32
            return [g.op("Identity", ins)]
        if kind == "BatchNorm":
            gamma, beta = (a.reshape(-1).astype(np.float64) for a in w)
            mean = _host(layer.running_mean).reshape(-1).astype(np.float64)
            var = _host(layer.running_var).reshape(-1).astype(np.float64)
            inv = 1.0 / np.sqrt(var + layer.eps)
            y = g.op("Mul", [g.op("Sub", [ins[0], c(mean.astype(np.float32), "bn_mean")]),
                             c(inv.astype(np.float32), "bn_inv_std")])
            return [g.op("Add", [g.op("Mul", [y, c(gamma.astype(np.float32), "bn_gamma")]),
                                 c(beta.astype(np.float32), "bn_beta")])]
        if kind == "Reshape":
            x = ins[0]
            if layer.selected is not None:
                x = g.op("Gather", [x, c(_i64(list(layer._slots)), "slots")], axis=1)
            return [g.op("Reshape", [x, c(_i64([-1, *layer.output_shapes[0][1:]]), "shape")])]
        if kind == "Concat":
            return [g.op("Concat", ins, axis=1)]
        if kind == "Slice":
            return [g.op("Slice", [ins[0], c(_i64([a])), c(_i64([b])), c(_i64([1]))]) for a, b in layer._ranges]
        if kind == "MultiCross":
            x0 = x = ins[0]
            for l in range(layer.num_layers):
                h = g.op("MatMul", [x, c(w[2 * l].reshape(-1, 1), "cross_w")])       # (m, 1)
                x = g.op("Add", [g.op("Add", [g.op("Mul", [x0, h]), x]), c(w[2 * l + 1].reshape(-1), "cross_b")])
            return [x]
        if kind == "FmOrder2":
            k = layer.out_dim
            v = g.op("Reshape", [ins[0], c(_i64([-1, layer.input_shapes[0][1] // k, k]))])   # (m, F, k)
            s = g.op("ReduceSum", [v, c(_i64([1]))], keepdims=0)
            sq = g.op("ReduceSum", [g.op("Mul", [v, v]), c(_i64([1]))], keepdims=0)
            return [g.op("Mul", [g.op("Sub", [g.op("Mul", [s, s]), sq]), c(np.float32(0.5))])]
        if kind == "WeightMultiply":
            y = g.op("Mul", [g.op("Unsqueeze", [ins[0], c(_i64([2]))]), c(w[0], "wm_weight")])
            return [g.op("Reshape", [y, c(_i64([-1, *layer.output_shapes[0][1:]]))])]
        if kind in ("ReduceSum", "ReduceMean"):
            y = g.op("ReduceSum", [ins[0], c(_i64([layer.axis]))], keepdims=1)
            if kind == "ReduceMean":
                y = g.op("Div", [y, c(np.float32(layer.input_shapes[0][layer.axis]))])
            return [y]
        if kind == "Add":
            y = ins[0]
            for x in ins[1:]:
                y = g.op("Add", [y, x])
            return [y]
        if kind == "Sub":
            return [g.op("Sub", ins)]
        if kind in ("DotProduct", "ElementwiseMultiply"):
            y = ins[0]
            for x in ins[1:]:
                y = g.op("Mul", [y, x])
            return [y]
        if kind == "Interaction":
            mlp, emb = ins
            n = layer.input_shapes[1][1] + 1
            z = g.op("Concat", [g.op("Unsqueeze", [mlp, c(_i64([1]))]), emb], axis=1)              # (m, n, w)
            dots = g.op("MatMul", [z, g.op("Transpose", [z], perm=[0, 2, 1])])                    # (m, n, n)
            rows, cols = np.tril_indices(n, -1)
            pairs = g.op("Gather", [g.op("Reshape", [dots, c(_i64([-1, n * n]))]), c(_i64(rows * n + cols))],
                         axis=1)
            batch = g.op("Slice", [g.op("Shape", [mlp]), c(_i64([0])), c(_i64([1])), c(_i64([0]))])
            pad = g.op("ConstantOfShape", [g.op("Concat", [batch, c(_i64([1]))], axis=0)],
                       value=_tensor(g, np.zeros(1, np.float32)))
            return [g.op("Concat", [mlp, pairs, pad], axis=1)]
        raise OnnxExportError(f"{layer.label}: the ONNX exporter has no translation for {kind} layers")


def _type_of(config, i, layer):
    return config.layers[i].type if i < len(config.layers) else type(layer).__name__


def _host(a):
    return np.asarray(a.get() if hasattr(a, "get") else a)


def _from_session(session):
    """(config, eval network with the current training weights, tables) of a training Session."""
    session.copy_weights_for_evaluation()   # the export computes in fp32 from the fp32 master weights
    tables = []
    for spec, emb in zip(session.config.embeddings, session.embeddings):
        keys, vectors, _ = emb.dump()
        tables.append((np.asarray(keys), np.asarray(vectors, np.float32), float(spec.default_emb_vec_value)))
    return session.config, session.eval_networks[0], tables


def _from_inference_session(session):
    """(config, network, tables) of a v3.0 ``InferenceSession`` (its parameter server's tables)."""
    ps = session.embedding_cache.parameter_server
    model = ps.model(session.embedding_cache.model_name)
    tables = [(t.keys, t.vectors, float(t.default_value)) for t in model.tables]
    return session.config, session._network(1), tables


def export_onnx(source, path=None, *, output_name="output"):
    """Write ``source`` -- a trained ``Session``, a compiled Model (either API version), or an
    ``InferenceSession`` (v3.0 or v3.1's) -- as an ONNX model to ``path`` (atomically); returns the
    ``onnx.ModelProto``. Needs the ``onnx`` package (the ``dev`` extra)."""
    try:
        importlib.import_module("onnx")   # availability check: fail before any work, with the install hint
    except ImportError as e:
        raise ImportError("export_onnx needs the onnx package: pip install onnx") from e
    session = getattr(source, "session", source)   # a Model, or v3.1's inference session wrapper
    if session is None:
        raise ValueError("export_onnx(): the Model is not compiled yet (call compile() and train it first)")
    if hasattr(session, "embedding_cache"):
        config, net, tables = _from_inference_session(session)
    elif hasattr(session, "eval_networks"):
        config, net, tables = _from_session(session)
    else:
        raise TypeError(f"export_onnx() takes a Session, a Model or an InferenceSession, got {type(source).__name__}")
    model = _Exporter(config, net, tables, head_name=output_name).build()
    if path is not None:
        from ..fileio import write_bytes_atomic

        write_bytes_atomic(str(path), model.SerializeToString())
    return model
