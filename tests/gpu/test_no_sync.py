"""GPU lane: the embedding part of a Session training step (G=1) never makes the host wait for the GPU.

Method: CUDA stream capture. While a stream captures, the work queued on it is recorded into a graph
instead of running, and CUDA refuses -- and the capture fails on -- everything that would make the host
wait for that work: a stream or device synchronisation, a device-to-host copy (CuPy's ``int()``,
``bool()``, ``.get()``, ``nonzero``, ``unique``, ``bincount`` ...), a query of a captured event, and,
the capture stream being a blocking one, any work on the legacy default stream
(``test_capture_detects_a_host_read`` checks that the method catches a read on this CuPy and driver).
The embedding's device work -- ``forward_staged`` (routing, hash-table lookup and insertion, combine,
exchange), ``backward`` and ``update`` -- runs under capture inside ``Session.train()``; each graph is
launched as soon as its capture ends, so the step really happens, and the trained tables must equal
those of an uncaptured twin session: the captured work is the whole step, not a part of it.
``test_whole_training_step_does_not_synchronise`` then captures all of ``Session._step`` -- embedding,
dense forward and backward (cuBLAS GEMMs included), loss, dense and sparse optimizers -- in one graph
per step, with the solver's ``use_cuda_graph`` off so that the test's capture sees the eager step;
``test_replayed_whole_step_and_its_host_half_do_not_synchronise`` replays the step from the solver's
own graph and captures what the host does around each replay.

The batch's upload (``stage``: host arrays, checked on the host, copied to the device) stays outside:
CuPy stages a host copy through pinned memory and queries an event, which capture forbids; a graph of
the step would read its inputs from device buffers that the data pipeline fills.
"""

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest

from hugectr_lab.backend import get_backend
from hugectr_lab.config import solver_parser_helper
from hugectr_lab.data import generate_dataset
from hugectr_lab.embedding import SparseAdam
from hugectr_lab.session import Session

pytestmark = pytest.mark.gpu

CONFIGS = Path(__file__).resolve().parents[1] / "config" / "configs"
BATCH, WARMUP = 512, 3
SLOTS = 26
VOCAB = [50 + (1237 * s) % 4000 for s in range(SLOTS)]
OPTIMIZERS = {   # (optimizer block, combiner): DCN's Adam (Global) and SGD (Local) with the mean combiner
    "adam": ({"type": "Adam", "update_type": "Global",
              "adam_hparam": {"learning_rate": 0.001, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7}}, 0),
    "sgd": ({"type": "SGD", "update_type": "Local", "sgd_hparam": {"learning_rate": 0.05, "atomic_update": False}}, 1),
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("no_sync")
    # 12 files (one per reader worker: each batch of the first 12 is a different one)
    generate_dataset(folder / "train.txt", folder / "val.txt", num_files=12, samples_per_file=BATCH,
                     eval_samples_per_file=BATCH, distribution="zipf-1.1", seed=5, slot_nums=[SLOTS],
                     vocab_sizes=VOCAB, min_nnz=0, max_nnz=2, check="Sum")
    return folder


def dcn_config(folder, optimizer, combiner):
    """The DCN sample (DistributedSlotSparseEmbeddingHash, MultiCross, 2x1024 MLP) on the generated data."""
    config = json.loads((CONFIGS / "dcn.json").read_text())
    data = next(layer for layer in config["layers"] if layer["type"] == "Data")
    data.update(source=str(folder / "train.txt"), eval_source=str(folder / "val.txt"))
    data["sparse"][0]["max_feature_num_per_sample"] = 2 * SLOTS
    config["optimizer"] = optimizer
    emb = next(layer for layer in config["layers"] if layer["type"] == "DistributedSlotSparseEmbeddingHash")
    emb["sparse_embedding_hparam"].update(max_vocabulary_size_per_gpu=sum(VOCAB), combiner=combiner)
    return config


def start(config, use_cuda_graph=True):
    solver = solver_parser_helper(seed=11, batchsize=BATCH, batchsize_eval=BATCH, max_eval_batches=1,
                                  vvgpu=[[0]], repeat_dataset=True, use_cuda_graph=use_cuda_graph)
    session = Session(solver, config, backend="cupy")
    session.start_data_reading()
    return session


class Capture:
    """Wraps callables so that they run under stream capture on ``stream`` (blocking, so legacy-stream
    work fails too); every finished capture is launched at once on the same stream."""

    def __init__(self, stream):
        self.stream = stream
        self.graphs = []

    def _launch(self):
        graph = self.stream.end_capture()
        graph.launch(self.stream)
        self.graphs.append(graph)   # kept until the stream has run it

    def captured(self, fn):
        def run(*args, **kwargs):
            self.stream.begin_capture()
            try:
                out = fn(*args, **kwargs)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.stream.end_capture()
                raise
            self._launch()
            return out
        return run


def instrument(emb, capture):
    """Run the embedding's device work of a training step under capture: 3 graphs a step.
    (``stage()``, the upload, runs before the step's first kernel and stays outside.)"""
    emb.forward_staged = capture.captured(emb.forward_staged)
    emb.backward = capture.captured(emb.backward)
    emb.update = capture.captured(emb.update)


def state_of(session):
    emb = session.embeddings[0]
    keys, vectors, _ = emb.dump()
    order = np.argsort(keys)
    states = {n: a[order] for n, a in emb.dump_optimizer_state().items()}
    return keys[order], vectors[order], states, emb.num_keys()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_embedding_step_does_not_synchronise(dataset, name):
    import cupy

    config = dcn_config(dataset, *OPTIMIZERS[name])
    stream = cupy.cuda.Stream()   # blocking: work on the legacy default stream would break the capture
    with stream:
        # eager steps (use_cuda_graph off): the test's capture must see the embedding's calls
        captured, plain = start(config, use_cuda_graph=False), start(config, use_cuda_graph=False)
        try:
            for _ in range(WARMUP):   # compiles every kernel and fills this stream's memory pool
                assert captured.train() and plain.train()
            before = state_of(captured)[3]
            capture = Capture(stream)
            instrument(captured.embeddings[0], capture)
            for _ in range(2):
                assert captured.train() and plain.train()
            assert len(capture.graphs) == 2 * 3
            stream.synchronize()
            np.testing.assert_allclose(captured.get_current_loss(), plain.get_current_loss(), rtol=1e-6)
            (k1, v1, s1, n1), (k2, v2, s2, n2) = state_of(captured), state_of(plain)
        finally:
            captured.close()
            plain.close()
    assert n1 == n2 > before   # the captured steps inserted new keys
    np.testing.assert_array_equal(k1, k2)
    np.testing.assert_allclose(v1, v2, rtol=1e-6, atol=1e-7)
    for state in s1:
        np.testing.assert_allclose(s1[state], s2[state], rtol=1e-6, atol=1e-7)


def twins(config, instrument, steps, use_cuda_graph):
    """A session (solver's ``use_cuda_graph`` as given) and an eager twin trained in lockstep on a blocking
    stream: WARMUP steps, ``instrument(session, capture)``, ``steps`` more. Returns the capture, the
    session's whole-step graphs and, per session, (loss, dense weights, ``state_of``)."""
    import cupy

    stream = cupy.cuda.Stream()
    with stream:
        tested, plain = start(config, use_cuda_graph=use_cuda_graph), start(config, use_cuda_graph=False)
        try:
            for _ in range(WARMUP):   # compiles every kernel; with graphs: eager call, capture, replay
                assert tested.train() and plain.train()
            capture = Capture(stream)
            instrument(tested, capture)
            for _ in range(steps):
                assert tested.train() and plain.train()
            stream.synchronize()
            graphs = dict(tested._whole_step.graphs) if tested._whole_step else {}
            return capture, graphs, [(s.get_current_loss(), s.backend.to_host(s.train_networks[0].weights),
                                      state_of(s)) for s in (tested, plain)]
        finally:
            tested.close()
            plain.close()


def assert_trained_alike(results, rtol):
    (loss1, w1, (k1, v1, s1, n1)), (loss2, w2, (k2, v2, s2, n2)) = results
    np.testing.assert_allclose(loss1, loss2, rtol=rtol)
    np.testing.assert_allclose(w1, w2, rtol=rtol, atol=rtol / 10)
    assert n1 == n2
    np.testing.assert_array_equal(k1, k2)
    np.testing.assert_allclose(v1, v2, rtol=rtol, atol=rtol / 10)
    for state in s1:
        np.testing.assert_allclose(s1[state], s2[state], rtol=rtol, atol=rtol / 10)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_whole_training_step_does_not_synchronise(dataset, name):
    def instrument(session, capture):
        session._step = capture.captured(session._step)   # everything after the upload

    capture, _, results = twins(dcn_config(dataset, *OPTIMIZERS[name]), instrument, 2, use_cuda_graph=False)
    assert len(capture.graphs) == 2
    assert_trained_alike(results, 1e-6)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_replayed_whole_step_and_its_host_half_do_not_synchronise(dataset, name):
    """With ``use_cuda_graph`` the whole step replays from a graph (hugectr_lab/whole_step.py); what the
    host does around each replay -- the per-step scalars (``_prepare_step``) and the copy into the fixed
    buffers (``WholeStep._fill``), held by ``Backend.writes_together`` and sent in one launch (``_send``)
    -- runs under capture here too, and the session trains as an eager twin (to rounding: cuBLAS may pick
    other kernels on the graph's stream)."""
    def instrument(session, capture):
        session._prepare_step = capture.captured(session._prepare_step)
        session._whole_step._fill = capture.captured(session._whole_step._fill)
        session.backend._send = capture.captured(session.backend._send)

    capture, graphs, results = twins(dcn_config(dataset, *OPTIMIZERS[name]), instrument, 3, use_cuda_graph=True)
    assert len(capture.graphs) == 3 * 3
    ((captured, _, _, _),) = graphs.values()
    assert captured.graph is not None and captured.failure is None, captured.failure
    assert_trained_alike(results, 1e-5)


def test_capture_detects_a_host_read():
    """The method works on this CuPy and driver: reading a device value inside a capture fails."""
    import cupy

    stream = cupy.cuda.Stream()
    with stream:
        x = cupy.arange(5)
        read = Capture(stream).captured(lambda: int(x.sum()))
        with pytest.raises(Exception):
            read()
        assert int(x.sum()) == 10   # the stream is usable again


def test_stash_restore_and_slot_ids_do_not_synchronise():
    """Keys coming back after ``reset()`` get their stashed optimizer state inside the lookup (a
    fixed-size scatter), a localized table records each new row's slot, LazyGlobal Adam and the mean
    combiner: all without a host read, and equal to the uncaptured twin."""
    import cupy

    from hugectr_lab.embedding import LocalizedSlotSparseEmbeddingHash

    rng = np.random.default_rng(0)
    slots, batch = 5, 64

    def csr():
        counts = rng.integers(0, 4, batch * slots)
        row_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return row_offsets, rng.integers(0, 300, int(row_offsets[-1])).astype(np.int64)

    batches = [csr() for _ in range(4)]
    grads = [rng.standard_normal((batch, slots, 8)).astype(np.float32) for _ in batches]
    stream = cupy.cuda.Stream()
    with stream:
        twins = [LocalizedSlotSparseEmbeddingHash(slot_num=slots, embedding_vec_size=8, max_vocabulary_size_per_gpu=2000,
                                                  combiner="mean", optimizer=SparseAdam(0.01, "LazyGlobal"),
                                                  key_type="I64", backend=get_backend("cupy"), seed=4) for _ in range(2)]
        grads = [cupy.asarray(g) for g in grads]
        capture = Capture(stream)
        for i, emb in enumerate(twins):
            # steps on batches 0 and 1, reset (the stash takes every key's m, v, prev_time), a step on
            # batch 2 (compiles the restore path), reset again, and the step on batch 3: captured in twin 0
            for step, ((row_offsets, keys), grad) in enumerate(zip(batches, grads)):
                if step >= 2:
                    emb.reset()
                if step == 3 and i == 0:
                    instrument(emb, capture)
                emb.forward(row_offsets, keys)
                emb.backward([grad])
                emb.update()
        stream.synchronize()
        assert len(capture.graphs) == 3
        (k1, v1, s1), (k2, v2, s2) = (emb.dump() for emb in twins)
        o1, o2 = (emb.dump_optimizer_state() for emb in twins)
    np.testing.assert_array_equal(k1, k2)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_allclose(v1, v2, rtol=1e-6, atol=1e-7)
    for name in o1:
        np.testing.assert_allclose(o1[name], o2[name], rtol=1e-6, atol=1e-7)
    assert len(set(batches[2][1].tolist()) & set(batches[3][1].tolist())) > 100   # keys came back to a stash
