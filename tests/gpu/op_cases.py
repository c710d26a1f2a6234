"""Inputs for every CUDA kernel op: odd sizes (no multiple of a block size), duplicate keys, padding
(sentinel) keys, table overflow, empty slots, -1 rows, float32 and float16. Each case builds host
arrays; the test runs the op on both backends from copies of them and compares every output and every
array the op changes in place (through ``canon`` where only a canonical form is specified: a hash
table's slot layout depends on the order in which concurrent inserts claim slots, its content does not)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import hugectr_lab.numerics  # noqa: F401  (registers all_finite's reference)
import hugectr_lab.optim  # noqa: F401  (registers dense_update's reference)


@dataclass
class OpCase:
    op: str
    build: object            # (rng, dtype) -> (args tuple, kwargs dict)
    mutates: tuple = ()      # indices of args the op changes in place
    exact_fp32: bool = False  # bit-identical to the reference in float32 (same summation order)
    dtypes: tuple = ("float32", "float16")
    id: str = ""
    extra: dict = field(default_factory=dict)
    canon: object = None     # (list of host results) -> list compared instead, if given


V, E, U = 41, 13, 17   # table rows, vector size, distinct touched rows


def csr(rng, rows, max_nnz=4):
    """row_offsets (rows+1,) with empty rows and up to max_nnz keys per row."""
    counts = rng.integers(0, max_nnz + 1, size=rows)
    offsets = np.zeros(rows + 1, np.int64)
    offsets[1:] = np.cumsum(counts)
    return offsets


def combine(rng, dtype, mean, vec=E, one_hot=False):
    """``vec`` picks the kernel's access width (E = 13: 1 float, 6: 2, 16 and 136: 4, 136 with two
    pieces per lane); ``one_hot``: one key per row, where the sum is a gather (bit-exact)."""
    offsets = np.arange(19 * 5 + 1, dtype=np.int64) if one_hot else csr(rng, 19 * 5)
    k = int(offsets[-1])
    rows = rng.integers(-1, V, size=k).astype(np.int64)     # duplicates and missing (-1) rows
    counts = np.diff(offsets)
    scale = (1.0 / np.maximum(counts, 1)).astype(np.float32) if mean else None
    values = rng.normal(size=(V, vec)).astype(np.float32)
    return (values, rows, offsets, scale, np.dtype(dtype)), {}


def copy_pairs(rng):
    """(dst0, src0, dst1, src1, ...) of ``write_table``: ten copies of odd sizes and several dtypes, one empty."""
    pairs = ()
    for n, dtype in ((37, np.float32), (1, np.int64), (1001, np.float16), (13, np.uint8), (0, np.float32),
                     (4099, np.int64), (5, np.float16), (65537, np.float32), (3, np.uint8), (129, np.int32)):
        src = (rng.normal(size=n) * 100).astype(dtype)
        pairs += (np.zeros(n, dtype), src)
    return pairs


def row_ids(padding):
    """A CSR with empty rows; ``padding``: 13 keys past the last row (a fixed key buffer's padding)."""
    def build(rng, dtype):
        offsets = csr(rng, 19 * 7, max_nnz=5)
        return (offsets, int(offsets[-1]) + (13 if padding else 0)), {}
    return build


def reduce_grad(fixed_size):
    """Occurrences of U distinct keys; ``fixed_size``: the hash table's view -- U' = K slots, the
    occurrences without a row at -1 and the slots past U unused -- else U' = U."""
    def build(rng, dtype):
        num_rows, k = 23, 97
        inverse = np.concatenate([np.arange(U), rng.integers(0, U, size=k - U)])
        if fixed_size:
            inverse[rng.choice(np.arange(U, k), size=11, replace=False)] = -1
        rng.shuffle(inverse)
        row_ids = np.sort(rng.integers(0, num_rows, size=k)).astype(np.int64)
        wgrad = rng.normal(size=(num_rows, E)).astype(dtype)
        return (wgrad, row_ids, inverse.astype(np.int64), k if fixed_size else U,
                1024.0 if dtype == "float16" else 1.0), {}
    return build


def touched(rng):
    """U distinct rows, then 6 padding rows (-1) as in the fixed-size distinct-key view; g (U+6, E)."""
    rows = np.concatenate([rng.choice(V, size=U, replace=False), np.full(6, -1)]).astype(np.int64)
    return rows, rng.normal(size=(U + 6, E)).astype(np.float32)


def update(num_states, hparams, positive=()):
    """Builder for an update op with ``num_states`` (V, E) states; states in ``positive`` are >= 0."""
    def build(rng, dtype):
        values = rng.normal(size=(V, E)).astype(np.float32)
        states = [np.abs(rng.normal(size=(V, E))) if i in positive else rng.normal(size=(V, E))
                  for i in range(num_states)]
        rows, g = touched(rng)
        return (values, *[s.astype(dtype) for s in states], rows, g), dict(hparams)
    return build


def reduce_update(update_op, num_states, hparams, positive=(), prev_time=False):
    """``sparse_reduce_update`` over ``update_op``: the fixed-size view of ``reduce_grad`` (U' = K slots,
    the first U touched rows distinct, then -1; occurrences without a row at -1) and (V, E) states."""
    def build(rng, dtype):
        (wgrad, row_ids, inverse, k, scaler), _ = reduce_grad(True)(rng, dtype)
        rows = np.concatenate([rng.choice(V, size=U, replace=False), np.full(k - U, -1)]).astype(np.int64)
        values = rng.normal(size=(V, E)).astype(np.float32)
        states = [(np.abs(rng.normal(size=(V, E))) if i in positive else rng.normal(size=(V, E))).astype(dtype)
                  for i in range(num_states)]
        if prev_time:
            states.append(rng.integers(1, 6, size=V).astype(np.int64))
        return (update_op, wgrad, row_ids, inverse, scaler, values, *states, rows), dict(hparams)
    return build


ADAM = dict(lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-7, step=3)
REDUCE_UPDATES = [   # (update op, states, hyper-parameters, states that are >= 0)
    ("sparse_sgd_update", 0, dict(lr=0.1), ()),
    ("sparse_momentum_sgd_update", 1, dict(lr=0.1, momentum_factor=0.9), ()),
    ("sparse_momentum_sgd_global_update", 1, dict(lr=0.1, momentum_factor=0.9), ()),
    ("sparse_nesterov_update", 1, dict(lr=0.1, momentum_factor=0.9), ()),
    ("sparse_nesterov_global_update", 1, dict(lr=0.1, momentum_factor=0.9), ()),
    ("sparse_adam_update", 2, ADAM, (1,)),
    ("sparse_adam_global_update", 2, ADAM, (1,)),
    ("sparse_adagrad_update", 1, dict(lr=0.1, epsilon=1e-7), (0,)),
]


def lazy_adam(rng, dtype):
    (values, m, v, rows, g), kw = update(2, {}, positive=(1,))(rng, dtype)
    prev_time = rng.integers(1, 6, size=V).astype(np.int64)
    return (values, m, v, prev_time, rows, g), dict(lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-7, step=6)


def atomic_sgd(rng, dtype, vec=E):
    """``vec`` picks the kernel's width: E = 13 one float per atomic, 16 a float4 (sm_90's 128-bit atomics);
    97 occurrences of 41 rows, so rows repeat and the atomics collide."""
    num_rows, k = 23, 97
    rows = rng.integers(-1, V, size=k).astype(np.int64)
    row_ids = rng.integers(0, num_rows, size=k).astype(np.int64)
    return (rng.normal(size=(V, vec)).astype(np.float32), rows, row_ids,
            rng.normal(size=(num_rows, vec)).astype(dtype), 0.1 / 3.0), {}


def table(key_dtype, capacity, held, batches=()):
    """An empty hash table of ``capacity`` with ``held`` keys inserted, then each of ``batches``
    (through the NumPy reference, so both backends start from the same slots)."""
    from hugectr_lab.embedding.hash_table import EXTRA_SLOTS, hash_table_lookup_insert, sentinel_key

    n = 2 * capacity + EXTRA_SLOTS
    state = (np.full(n, sentinel_key(key_dtype), dtype=key_dtype), np.full(n, -1, dtype=np.int64),
             np.zeros(3, dtype=np.int64))
    for keys in (held, *batches):
        hash_table_lookup_insert(np, *state, np.asarray(keys, dtype=key_dtype), capacity)
    return state


def batch(rng, key_dtype, old, new, k):
    """``k`` (odd) keys: repeats of ``old`` and ``new`` keys, and padding (sentinel) keys."""
    from hugectr_lab.embedding.hash_table import sentinel_key

    parts = [rng.choice(old, k // 3), rng.choice(new, k - k // 3 - 9), np.full(9, sentinel_key(key_dtype))]
    keys = np.concatenate(parts).astype(key_dtype)
    rng.shuffle(keys)
    return keys


def lookup(key_dtype):
    def build(rng, _):
        held = rng.permutation(np.arange(1, 5000, 3))[:1001]
        state = table(key_dtype, 1100, held, [np.arange(20000, 20400)])    # 99 accepted, 301 refused
        keys = np.concatenate([batch(rng, key_dtype, held, np.arange(5000, 6000), 777),
                               np.arange(19990, 20010), [0]]).astype(key_dtype)   # refused, absent
        return (state[0], state[1], keys), {}
    return build


def lookup_insert(key_dtype, capacity, pre_refused):
    """A table offered 700 keys (then ``pre_refused`` more, refused) gets a batch of 1001 keys with
    ~340 distinct new ones: ``capacity`` 1500 takes them all, 900 refuses ~140 (and remembers them),
    40 refuses every new key and runs out of room to remember refused keys."""
    def build(rng, _):
        held = rng.permutation(np.arange(1, 30000, 7))[:700]
        refused = np.arange(100000, 100000 + pre_refused)
        state = table(key_dtype, capacity, held, [refused] if pre_refused else [])
        old = np.concatenate([held, refused]) if pre_refused else held
        keys = batch(rng, key_dtype, old, rng.integers(40000, 40000 + 600 * 2, 600), 1001)
        return (*state, keys, capacity), {}
    return build


def canon_table(results):
    """rows, unique_rows, inverse, new_rows as they are; the slots as their sorted (key, row) pairs."""
    from hugectr_lab.embedding.hash_table import sentinel_key

    *outputs, slot_keys, slot_rows, counters = results
    held = slot_keys != sentinel_key(slot_keys.dtype)
    pairs = np.stack([slot_keys[held].astype(np.int64), slot_rows[held]], axis=1)
    return outputs + [pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))], counters]


def scatter(int_rows):
    def build(rng, dtype):
        rows = np.concatenate([rng.choice(V, size=U, replace=False), np.full(8, -1)]).astype(np.int64)
        rng.shuffle(rows)
        if int_rows:   # slot ids (V,) int64
            return (np.full(V, -1, np.int64), rows, rng.integers(0, 26, U + 8).astype(np.int64)), {}
        return (rng.normal(size=(V, E)).astype(dtype), rows, rng.normal(size=(U + 8, E)).astype(dtype)), {}
    return build


# FC epilogue cases: (columns, relu, id); 45 columns take the kernels' one-column threads, 132 their
# four-column pieces (V = 4).
EPILOGUES = [(n, relu, f"{act}-n{n}") for n in (45, 132) for relu, act in ((True, "relu"), (False, "linear"))]


def dense(*shapes, extra=None):
    def build(rng, dtype):
        arrays = tuple(rng.normal(size=s).astype(np.float16).astype(dtype) for s in shapes)
        return arrays + tuple(extra or ()), {}
    return build


def concat_fc(widths, n, relu=True, strided=False, m=67):
    """``gemm_bias_act_concat``'s arguments: w (Σwidths, n), b (1, n), relu, then one input (m, w) per width
    (``strided``: the first a row-strided view, columns of a wider array)."""
    def build(rng, dtype):
        def draw(*shape):
            return rng.normal(size=shape).astype(np.float16).astype(dtype)
        xs = [draw(m, w) for w in widths]
        if strided:
            xs[0] = draw(m, widths[0] + 7)[:, 3:3 + widths[0]]
        return (draw(sum(widths), n) * np.asarray(0.1, dtype), draw(1, n), relu, *xs), {}
    return build


def transposed_first(build, rng, dtype):
    """``build``'s arguments with the first one as the transpose of a C-contiguous array (F-ordered, as
    an FC's ``x.T`` in its weight gradient)."""
    args, kwargs = build(rng, dtype)
    return (np.ascontiguousarray(args[0].T).T, *args[1:]), kwargs


# Float32 bits where the TF32 split is delicate: signed zeros, ties of both kept-LSB parities, subnormals, inf,
# NaN, and the largest floats (rounded up they would overflow: truncated).
TF32_SPECIALS = (0x00000000, 0x80000000, 0x3F801000, 0x3F803000, 0xBF803000, 0x00000001, 0x00003000, 0x807FFFFF,
                 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F7FF000, 0xFF7FFFFF)


def tf32_operands(m, k, width, specials=False):
    """``tf32_split``'s x (m, k) float32 with full mantissas (a float16-exact value has no remainder) and its
    out (m, width), filled with a value the op must overwrite; ``specials``: ``TF32_SPECIALS`` among x."""
    def build(rng, dtype):
        x = rng.normal(size=(m, k)).astype(np.float32)
        if specials:
            x.reshape(-1)[:len(TF32_SPECIALS)] = np.array(TF32_SPECIALS, np.uint32).view(np.float32)
        return (x, np.full((m, width), 7.0, np.float32)), {}
    return build


def finiteness(bad=None, at=0):
    """Two float arrays of odd sizes (13, and 1001 x 37) and an int64 one; ``bad`` (NaN or an infinity)
    placed at flat index ``at`` of the large one."""
    def build(rng, dtype):
        small, large = rng.normal(size=13).astype(dtype), rng.normal(size=(1001, 37)).astype(dtype)
        if bad is not None:
            large.reshape(-1)[at] = bad
        return (small, large, np.arange(7)), {}
    return build


def bce(backward):
    def build(rng, dtype):
        logits = (3 * rng.normal(size=(1001, 1))).astype(dtype)
        labels = rng.integers(0, 2, size=(1001, 1)).astype(np.float32)
        return ((logits, labels, 1024.0 / 1001) if backward else (logits, labels)), {}
    return build


def multicross_bwd(m, d, layers):
    def build(rng, dtype):
        from hugectr_lab.layers.multi_cross import multicross_fwd
        x0, w, b = (rng.normal(size=s).astype(np.float16).astype(dtype) for s in ((m, d), (layers, d), (layers, d)))
        w *= np.asarray(0.5 / np.sqrt(d), dtype)   # keeps x_l bounded over the layers (fp16 range)
        _, hs = multicross_fwd(np, x0, w, b)
        return (rng.normal(size=(m, d)).astype(dtype), x0, hs, w, b), {}
    return build


def multicross_fwd(m, d, layers):
    def build(rng, dtype):
        x0, w, b = (rng.normal(size=s).astype(np.float16).astype(dtype) for s in ((m, d), (layers, d), (layers, d)))
        return (x0, w * np.asarray(0.5 / np.sqrt(d), dtype), b), {}
    return build


def interaction(backward, m, fields, w):
    def build(rng, dtype):
        n = fields + 1
        mlp, emb = (rng.normal(size=s).astype(dtype) for s in ((m, w), (m, fields, w)))
        if not backward:
            return (mlp, emb), {}
        return (rng.normal(size=(m, w + n * (n - 1) // 2 + 1)).astype(dtype), mlp, emb), {}
    return build


def dense_step(rule, num_states, constants, positive=()):
    """``dense_update`` of N = 1001 weights (no multiple of a block) and ``num_states`` states (those in
    ``positive`` >= 0) from a float32 gradient over S = 3 or a float16 one over S = 1024 (some zero), with
    the step's rate in a 0-d float32 array, as DenseOptimizer.prepare writes it."""
    def build(rng, dtype):
        n, scaler = 1001, 1024.0 if dtype == "float16" else 3.0
        weights = rng.normal(size=n).astype(np.float32)
        grads = (rng.normal(size=n) * scaler).astype(dtype)
        grads[::7] = 0
        states = [rng.normal(size=n).astype(np.float32) for _ in range(num_states)]
        for i in positive:
            states[i] = np.abs(states[i])
        constants32 = {k: np.float32(v) for k, v in constants.items()}
        return (rule, weights, grads, scaler, np.array(0.0123, np.float32), *states), constants32
    return build


DENSE_STEPS = (("SGD", 0, {}, ()), ("MomentumSGD", 1, dict(momentum_factor=0.9), ()),
               ("Nesterov", 1, dict(momentum_factor=0.9), ()),
               ("Adam", 2, dict(beta1=0.9, beta2=0.999, epsilon=1e-7), (1,)),
               ("AdaGrad", 1, dict(epsilon=1e-7), (0,)))


CASES = [
    # The kernels add in input order (add.at's, and the CuPy reference's); the NumPy reference's
    # reduceat adds a segment's first row to the sum of the rest: equal up to rounding.
    OpCase("embedding_combine_fwd", lambda r, d: combine(r, d, False), id="sum"),
    OpCase("embedding_combine_fwd", lambda r, d: combine(r, d, True), id="mean"),
    *(OpCase("embedding_combine_fwd", lambda r, d, vec=vec, mean=mean: combine(r, d, mean, vec),
             id=f"{'mean' if mean else 'sum'}-E{vec}") for vec in (6, 16, 136) for mean in (False, True)),
    *(OpCase("embedding_combine_fwd", lambda r, d, vec=vec: combine(r, d, vec == 13, vec, one_hot=True),
             exact_fp32=True, id=f"one-hot-E{vec}") for vec in (13, 6, 128)),
    OpCase("csr_row_ids", row_ids(False), exact_fp32=True, dtypes=("float32",), id="csr"),
    OpCase("csr_row_ids", row_ids(True), exact_fp32=True, dtypes=("float32",), id="padded"),
    OpCase("embedding_reduce_grad", reduce_grad(False), id="distinct"),
    OpCase("embedding_reduce_grad", reduce_grad(True), id="fixed-size"),
    OpCase("scatter_rows", scatter(False), (0,), True),
    OpCase("scatter_rows", scatter(True), (0,), True, dtypes=("float32",), id="int64"),
    OpCase("sparse_sgd_update", update(0, dict(lr=0.1)), (0,), True),
    OpCase("sparse_sgd_atomic_update", atomic_sgd, (0,)),
    OpCase("sparse_sgd_atomic_update", lambda r, d: atomic_sgd(r, d, 16), (0,), id="E16"),
    OpCase("sparse_momentum_sgd_update", update(1, dict(lr=0.1, momentum_factor=0.9)), (0, 1), True),
    OpCase("sparse_momentum_sgd_global_update", update(1, dict(lr=0.1, momentum_factor=0.9)), (0, 1), True),
    OpCase("sparse_nesterov_update", update(1, dict(lr=0.1, momentum_factor=0.9)), (0, 1), True),
    OpCase("sparse_nesterov_global_update", update(1, dict(lr=0.1, momentum_factor=0.9)), (0, 1), True),
    OpCase("sparse_adam_update", update(2, dict(lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-7, step=3),
                                        positive=(1,)), (0, 1, 2), True),
    OpCase("sparse_adam_global_update", update(2, dict(lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-7, step=3),
                                               positive=(1,)), (0, 1, 2), True),
    OpCase("sparse_adam_lazy_global_update", lazy_adam, (0, 1, 2, 3)),
    OpCase("sparse_adagrad_update", update(1, dict(lr=0.1, epsilon=1e-7), positive=(0,)), (0, 1), True),
    # The reduction adds a key's occurrences in input order (chunks of 32); the NumPy reference's
    # reduceat in another order: equal up to rounding (tests/embedding/test_fused_kernels.py checks the
    # fused kernels bit for bit against the two unfused ones).
    *(OpCase("sparse_reduce_update", reduce_update(op, n, hp, pos), tuple(range(5, 6 + n)),
             id=op.removeprefix("sparse_").removesuffix("_update")) for op, n, hp, pos in REDUCE_UPDATES),
    OpCase("sparse_reduce_update", reduce_update("sparse_adam_lazy_global_update", 2, dict(ADAM, step=6), (1,),
                                                 prev_time=True), (5, 6, 7, 8), id="adam_lazy_global"),
    # The dense optimizer step: the same float32 operations as the reference, bit-exact for float16
    # gradients too (rtol 0).
    *(OpCase("dense_update", dense_step(rule, n, hp, pos), (1, *range(5, 5 + n)), True, id=rule,
             extra={"rtol": 0.0}) for rule, n, hp, pos in DENSE_STEPS),
    OpCase("hash_table_lookup", lookup(np.uint32), exact_fp32=True, dtypes=("float32",), id="I32"),
    OpCase("hash_table_lookup", lookup(np.int64), exact_fp32=True, dtypes=("float32",), id="I64"),
    *(OpCase("hash_table_lookup_insert", lookup_insert(key, cap, pre), (0, 1, 2), True, ("float32",),
             id=f"{name}-{what}", canon=canon_table)
      for key, name in ((np.uint32, "I32"), (np.int64, "I64"))
      for cap, pre, what in ((1500, 0, "room"), (900, 0, "overflow"), (40, 900, "full"))),
    OpCase("gemm", dense((33, 17), (17, 29), extra=(False,)), id="plain"),
    OpCase("gemm", dense((33, 17), (17, 29), extra=(True,)), dtypes=("float32",), id="tf32", extra={"rtol": 5e-3}),
    # The skinny products (kernels/gemv.cu): an FC with one output (DCN's 1453 -> 1), its weight gradient
    # xᵀ·g (x given transposed: F-ordered) and its data gradient g·wᵀ (K = 1).
    OpCase("gemm", dense((1001, 1453), (1453, 1), extra=(False,)), id="one-output"),
    OpCase("gemm", lambda r, d: transposed_first(dense((1453, 1001), (1001, 1), extra=(False,)), r, d),
           id="weight-gradient"),
    OpCase("gemm", dense((1001, 1), (1, 1453), extra=(False,)), exact_fp32=True, id="outer"),
    # GEMM + bias (+ ReLU) in cuBLASLt's epilogue: one rounding where the reference rounds twice (fp16: 1 ulp).
    *(OpCase("gemm_bias_act", dense((67, 13), (13, 130), (1, 130), extra=(relu, False)), id=f"relu{int(relu)}")
      for relu in (True, False)),
    OpCase("gemm_bias_act", dense((67, 429), (429, 64), (1, 64), extra=(True, True)), dtypes=("float32",),
           id="tf32-padded", extra={"rtol": 5e-3}),
    *(OpCase("gemm_bias_act", dense((1001, 1453), (1453, 1), (1, 1), extra=(relu, False)), id=f"one-output-relu{int(relu)}")
      for relu in (True, False)),
    # An FC of one output over a Concat's inputs where they lie (DCN's head; a row-strided input: the Slice's
    # columns), and of more outputs (the Concat's copy, then the FC).
    OpCase("gemm_bias_act_concat", concat_fc((1024, 429), 1, relu=False, m=77), id="dcn-head", extra={"rtol": 5e-3}),
    OpCase("gemm_bias_act_concat", concat_fc((37, 61, 2, 130, 5), 1, strided=True), id="five-strided",
           extra={"rtol": 5e-3}),
    OpCase("gemm_bias_act_concat", concat_fc((33, 3), 4), id="four-outputs", extra={"rtol": 5e-3}),
    # The 3xTF32 split of an FC's input (bit-exact: integer rounding, exact remainder): DCN's k = 429 (one float
    # a thread, one padding column), k = 132 (float4 pieces), the special values (three padding columns).
    # Row-strided inputs: tests/gpu/test_gemm_epilogue.py.
    OpCase("tf32_split", tf32_operands(37, 429, 1288), (1,), True, ("float32",), id="k429"),
    OpCase("tf32_split", tf32_operands(33, 132, 396), (1,), True, ("float32",), id="k132"),
    OpCase("tf32_split", tf32_operands(5, 7, 24, specials=True), (1,), True, ("float32",), id="specials"),
    # Many copies in one launch (ten: two tables; the host writes: tests/backend/test_backends.py).
    OpCase("write_table", lambda r, d: (copy_pairs(r), {}), mutates=tuple(range(0, 20, 2)), exact_fp32=True,
           dtypes=("float32",)),
    # Concat's copy kernel (strided views: tests/gpu/test_concat_columns.py).
    OpCase("concat_columns", dense((37, 5), (37, 13), (37, 1)), exact_fp32=True, id="three", extra={"rtol": 0.0}),
    OpCase("concat_columns", dense((129, 429)), exact_fp32=True, id="one", extra={"rtol": 0.0}),
    # five inputs fill one launch; seven take two (the second writes after the first's columns)
    OpCase("concat_columns", dense((33, 3), (33, 1), (33, 17), (33, 2), (33, 5)), exact_fp32=True, id="five",
           extra={"rtol": 0.0}),
    OpCase("concat_columns", dense(*[(19, w) for w in (3, 1, 17, 2, 5, 7, 1)]), exact_fp32=True, id="seven",
           extra={"rtol": 0.0}),
    # inputs without columns write nothing (one ends the second group of six; five fill the first of seven)
    OpCase("concat_columns", dense(*[(19, w) for w in (3, 1, 17, 2, 5, 0)]), exact_fp32=True, id="zero-width",
           extra={"rtol": 0.0}),
    OpCase("concat_columns", dense(*[(19, w) for w in (0, 0, 0, 0, 0, 4, 2)]), exact_fp32=True, id="zero-widths-first",
           extra={"rtol": 0.0}),
    *(OpCase("bias_act_fwd", dense((37, n), (1, n), extra=(relu,)), exact_fp32=True, id=i) for n, relu, i in EPILOGUES),
    *(OpCase("bias_act_bwd", dense((1001, n), (1001, n), extra=(relu,)), id=i) for n, relu, i in EPILOGUES),
    OpCase("dropout_fwd", dense((37, 45), extra=(np.array([123456789], np.uint64), 0.3)), exact_fp32=True),
    # tanhf of CUDA and of the C library may differ in the last bit: not exact
    OpCase("sigmoid", dense((37, 45))), OpCase("sigmoid", dense((1001, 1)), id="one-column"),
    # The fused epilogue: bit-exact in float16 too (rtol 0); its d_pre is, the bias gradient's sum is not.
    *(OpCase("bias_act_dropout_fwd", dense((37, n), (1, n), extra=(relu, np.array([987654321], np.uint64), 0.3)),
             exact_fp32=True, id=i, extra={"rtol": 0.0}) for n, relu, i in EPILOGUES),
    *(OpCase("bias_act_dropout_bwd", dense((1001, n), (1001, n), extra=(relu, np.array([987654321], np.uint64), 0.3)),
             id=i) for n, relu, i in EPILOGUES),
    *(OpCase("bias_act_dropout_bwd", dense((1001, n), (1001, n), extra=(True, np.array([5], np.uint64), 0.5)),
             id=f"d_pre-n{n}", extra={"rtol": 0.0}, canon=lambda outs: outs[:1]) for n in (45, 132)),
    OpCase("all_finite", finiteness(), id="finite"),
    *(OpCase("all_finite", finiteness(bad, at), id=i) for bad, at, i in (
        (np.nan, 0, "nan-first"), (np.inf, 1001 * 37 - 1, "inf-last"), (-np.inf, 18517, "-inf-middle"))),
    OpCase("bce_loss_fwd", bce(False)),
    OpCase("bce_loss_bwd", bce(True)),
    OpCase("multicross_fwd", multicross_fwd(77, 29, 3), id="small"),
    OpCase("multicross_fwd", multicross_fwd(301, 429, 6), id="dcn"),
    # 12 layers of 429: w and b do not fit shared memory beside the rows; the kernel reads them from global
    OpCase("multicross_fwd", multicross_fwd(37, 429, 12), id="weights-global"),
    OpCase("multicross_bwd", multicross_bwd(77, 29, 3), id="small"),
    OpCase("multicross_bwd", multicross_bwd(301, 429, 6), id="dcn"),
    # 9 layers: a block group of 8 planes and one of 1 (the plane count below HCTR_MC_PLANES in one group)
    OpCase("multicross_bwd", multicross_bwd(131, 37, 9), id="two-groups"),
    OpCase("fm_order2_fwd", dense((37, 7 * 5), extra=(5,)), exact_fp32=True),
    OpCase("fm_order2_bwd", dense((37, 5), (37, 7 * 5), extra=(5,))),
    OpCase("interaction_fwd", interaction(False, 37, 5, 16), id="small"),
    OpCase("interaction_fwd", interaction(False, 9, 26, 128), id="dlrm"),
    OpCase("interaction_fwd", interaction(False, 129, 27, 13), id="odd"),
    OpCase("interaction_bwd", interaction(True, 37, 5, 16), id="small"),
    OpCase("interaction_bwd", interaction(True, 9, 26, 128), id="dlrm"),
    OpCase("interaction_bwd", interaction(True, 129, 27, 13), id="odd"),
    # float16 with n = F + 1 <= 32, w % 16 == 0, w <= 256 runs the fused tensor-core kernels (float32 the
    # GEMMs); n = 33 and w = 24 keep the GEMMs in float16 too (tests/gpu/test_interaction_mma.py checks which ran).
    *(OpCase(op, interaction(op == "interaction_bwd", m, fields, w), id=f"n{fields + 1}-w{w}")
      for op in ("interaction_fwd", "interaction_bwd")
      for m, fields, w in ((67, 26, 128), (33, 31, 16), (45, 4, 48), (13, 16, 256), (21, 32, 32), (19, 26, 24))),
]
