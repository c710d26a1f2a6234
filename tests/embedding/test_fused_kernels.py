"""GPU lane: the vectorised gather + combine kernel and the reduction fused with the sparse update.

* ``embedding_combine_fwd`` adds a row's keys in CSR order from 0 and then takes the mean scale, for every
  access width (E % 4, E % 2, odd E, more pieces than lanes) -- bit for bit the float32 sum that
  ``np.add.at`` makes in occurrence order, rounded to float16 where the output is.
* ``sparse_reduce_update`` gives the bits of its two unfused kernels (``embedding_reduce_grad``, then the
  update op) for every update op, keys with several chunks of occurrences included, and under a CUDA
  graph it reads the learning rate and step from their device scalars at each replay.
"""

import numpy as np
import pytest

from hugectr_lab.backend import get_backend

pytestmark = pytest.mark.gpu

V = 57


def csr_batch(rng, rows, max_nnz):
    """row_offsets (rows+1,) with empty rows, up to ``max_nnz`` keys a row and one row of 70 keys; table
    rows with duplicates and -1; 5 padding keys past the last row (a fixed key buffer's tail)."""
    counts = rng.integers(0, max_nnz + 1, size=rows)
    counts[rows // 2] = 70
    offsets = np.zeros(rows + 1, np.int64)
    offsets[1:] = np.cumsum(counts)
    return offsets, rng.integers(-1, V, size=int(offsets[-1]) + 5).astype(np.int64)


def csr_order_sum(values, rows, offsets, scale, dtype):
    """The kernel's arithmetic on the host: float32 adds in occurrence order (np.add.at is sequential)."""
    num_rows = offsets.size - 1
    k = int(offsets[-1])
    row_ids = np.repeat(np.arange(num_rows), np.diff(offsets))
    hit = rows[:k] >= 0
    out = np.zeros((num_rows, values.shape[1]), np.float32)
    np.add.at(out, row_ids[hit], values[rows[:k][hit]])
    if scale is not None:
        out *= scale[:, None]
    return out.astype(dtype)


@pytest.mark.parametrize("vec", [1, 2, 3, 4, 6, 13, 16, 128, 136, 256])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_combine_adds_in_csr_order_at_every_width(vec, dtype):
    backend = get_backend("cupy")
    rng = np.random.default_rng(vec)
    for num_rows, max_nnz in ((1, 3), (4, 1), (203, 5)):
        offsets, rows = csr_batch(rng, num_rows, max_nnz)
        values = rng.normal(size=(V, vec)).astype(np.float32)
        for scale in (None, (1.0 / np.maximum(np.diff(offsets), 1)).astype(np.float32)):
            got = backend.ops.embedding_combine_fwd(backend.asarray(values), backend.asarray(rows),
                                                    backend.asarray(offsets),
                                                    None if scale is None else backend.asarray(scale), dtype)
            np.testing.assert_array_equal(backend.to_host(got), csr_order_sum(values, rows, offsets, scale, dtype))


def test_combine_takes_a_table_view_that_is_not_16_byte_aligned():
    import cupy

    backend = get_backend("cupy")
    rng = np.random.default_rng(1)
    offsets, rows = csr_batch(rng, 37, 4)
    values = rng.normal(size=(V, 16)).astype(np.float32)
    flat = cupy.empty(V * 16 + 1, dtype=cupy.float32)
    table = flat[1:].reshape(V, 16)   # 4 bytes past an aligned address
    table[...] = cupy.asarray(values)
    assert table.data.ptr % 16 == 4
    got = backend.ops.embedding_combine_fwd(table, backend.asarray(rows), backend.asarray(offsets), None, "float16")
    np.testing.assert_array_equal(backend.to_host(got), csr_order_sum(values, rows, offsets, None, "float16"))


E = 24
UPDATES = {   # update op: (states, hyper-parameters besides lr and step, states that are >= 0)
    "sparse_sgd_update": (0, {}, ()),
    "sparse_momentum_sgd_update": (1, dict(momentum_factor=0.9), ()),
    "sparse_momentum_sgd_global_update": (1, dict(momentum_factor=0.9), ()),
    "sparse_nesterov_update": (1, dict(momentum_factor=0.9), ()),
    "sparse_nesterov_global_update": (1, dict(momentum_factor=0.9), ()),
    "sparse_adam_update": (2, dict(beta1=0.9, beta2=0.999, epsilon=1e-7), (1,)),
    "sparse_adam_global_update": (2, dict(beta1=0.9, beta2=0.999, epsilon=1e-7), (1,)),
    "sparse_adam_lazy_global_update": (2, dict(beta1=0.9, beta2=0.999, epsilon=1e-7), (1,)),
    "sparse_adagrad_update": (1, dict(epsilon=1e-7), (0,)),
}
TAKES_STEP = ("sparse_adam_update", "sparse_adam_global_update", "sparse_adam_lazy_global_update")


def reduction_inputs(rng, dtype):
    """K = 301 occurrences of 40 distinct keys (one of them 150 times: five chunks of 32), 9 without a row;
    the fixed-size view: rows (K,) -- 40 distinct table rows, then -1."""
    k, num_unique, num_rows = 301, 40, 77
    inverse = np.concatenate([np.arange(num_unique), np.zeros(150, np.int64),
                              rng.integers(0, num_unique, size=k - num_unique - 150 - 9), np.full(9, -1)])
    rng.shuffle(inverse)
    row_ids = rng.integers(0, num_rows, size=k).astype(np.int64)
    wgrad = rng.normal(size=(num_rows, E)).astype(dtype)
    rows = np.concatenate([rng.choice(V, size=num_unique, replace=False), np.full(k - num_unique, -1)])
    return wgrad, row_ids, inverse.astype(np.int64), rows.astype(np.int64)


def table_and_states(rng, op, dtype):
    num_states, _, positive = UPDATES[op]
    states = [(np.abs(rng.normal(size=(V, E))) if i in positive else rng.normal(size=(V, E))).astype(dtype)
              for i in range(num_states)]
    if op == "sparse_adam_lazy_global_update":
        states.append(rng.integers(1, 4, size=V).astype(np.int64))
    return rng.normal(size=(V, E)).astype(np.float32), states


@pytest.mark.parametrize("op", list(UPDATES))
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_fused_update_gives_the_bits_of_reduce_then_update(op, dtype):
    backend = get_backend("cupy")
    ops, rng = backend.ops, np.random.default_rng(11)
    wgrad, row_ids, inverse, rows = (backend.asarray(a) for a in reduction_inputs(rng, dtype))
    values, states = table_and_states(rng, op, dtype)
    hparams = dict(UPDATES[op][1], lr=0.05, **({"step": 7} if op in TAKES_STEP else {}))
    scaler = 1024.0 if dtype == "float16" else 1.0
    fused = [backend.asarray(a) for a in (values, *states)]
    ops.sparse_reduce_update(op, wgrad, row_ids, inverse, scaler, *fused, rows, **hparams)
    unfused = [backend.asarray(a) for a in (values, *states)]
    g = ops.embedding_reduce_grad(wgrad, row_ids, inverse, rows.size, scaler)
    getattr(ops, op)(*unfused, rows, g, **hparams)
    assert not np.array_equal(backend.to_host(fused[0]), values)   # the table moved
    for a, b in zip(fused, unfused):
        np.testing.assert_array_equal(backend.to_host(a), backend.to_host(b))


@pytest.mark.parametrize("op", ["sparse_adam_update", "sparse_momentum_sgd_global_update"])
def test_fused_update_replayed_from_a_graph_reads_the_current_lr_and_step(op):
    """Like a training step's graph: lr and step are float64 device scalars written before each launch."""
    from hugectr_lab.backend.cuda.graphs import CapturedCall

    backend = get_backend("cupy")
    rng = np.random.default_rng(5)
    wgrad, row_ids, inverse, rows = (backend.asarray(a) for a in reduction_inputs(rng, "float32"))
    values, states = table_and_states(rng, op, "float32")
    constants = UPDATES[op][1]
    hyper = backend.asarray(np.zeros(3))
    graphed = [backend.asarray(a) for a in (values, *states)]
    eager = [backend.asarray(a) for a in (values, *states)]

    device_step = {"step": hyper[1]} if op in TAKES_STEP else {}

    def step():
        backend.ops.sparse_reduce_update(op, wgrad, row_ids, inverse, 1.0, *graphed, rows, lr=hyper[0],
                                         **device_step, **constants)

    call = CapturedCall(step, "fused update")
    for t, lr in enumerate((0.1, 0.02, 0.3, 0.007), start=1):
        backend.write(hyper, (lr, t, 0.0))
        call()
        hparams = dict(constants, lr=lr, **({"step": t} if op in TAKES_STEP else {}))
        backend.ops.sparse_reduce_update(op, wgrad, row_ids, inverse, 1.0, *eager, rows, **hparams)
        for a, b in zip(graphed, eager):
            np.testing.assert_array_equal(backend.to_host(a), backend.to_host(b))
    assert call.graph is not None and call.failure is None   # calls 2..4 were graph launches
