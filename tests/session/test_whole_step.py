"""The whole training step's split into a host half and a device half (``hugectr_lab/whole_step.py``),
checked on the NumPy backend with a stand-in for CUDA graphs: ``HostGraph`` calls the device half on
every "replay", as a graph launch runs it, and fails if that half changes anything a real replay
would not redo -- a step counter, a learning rate, a random generator -- since a captured graph runs
only device work. Staged batches go through ``WholeStep``'s fixed, padded buffers, so the sessions
below train exactly like eager twins only if the padding keys and the prepared per-step scalars are
right. (On the GPU, tests/gpu/test_no_sync.py and test_training_parity.py replay real graphs.)"""

import numpy as np
import pytest

from hugectr_lab.config import solver_parser_helper
from hugectr_lab.session import Session
from hugectr_lab.whole_step import WholeStep

from recording_ops import RecordingOps
from session_helpers import dnn_config, optimizer, write_config


def host_state(session):
    """What only the host half of a step may change."""
    state = [session.iteration, session.frozen_dense]
    for emb in session.embeddings:
        state += [emb.step, emb.optimizer.learning_rate]
    for opt, net in zip(session.dense_optimizers, session.train_networks):
        state += [getattr(opt, "t", None), float(opt.learning_rate), str(net.ctx.rng.bit_generator.state)]
    return state


class HostPool:
    """A graph's memory pool as WholeStep uses it: a dropped graph's free blocks are released."""

    def __init__(self):
        self.released = 0

    def free_all_blocks(self):
        self.released += 1


class HostGraph:
    """``CapturedCall``'s contract on the host: the first call runs ``fn`` eagerly, the later ones stand for
    replays of the captured graph and must leave the host's state alone."""

    made = []

    def __init__(self, session, fn, name):
        self.session, self.fn, self.name = session, fn, name
        self.pool = HostPool()
        self.calls = 0
        self.graph = None   # what CapturedCall sets once it has captured
        self.marks = []     # what the "capturing" (second) call reported through mark
        HostGraph.made.append(self)

    def mark(self, done):
        if self.calls == 2:
            self.marks.append(done)

    def __call__(self):
        self.calls += 1
        if self.calls == 2:
            self.graph = "captured"
        before = host_state(self.session)
        out = self.fn()
        if self.calls > 1:
            assert host_state(self.session) == before, f"{self.name}: a replay changed host state"
        return out


def start(config, graphs, monkeypatch=None, devices=(0,)):
    session = Session(solver_parser_helper(batchsize=64, batchsize_eval=64, max_eval_batches=1, seed=3,
                                           vvgpu=[list(devices)]), config, backend="numpy")
    if graphs:
        monkeypatch.setattr(session.backend, "graph",
                            lambda fn, name: HostGraph(session, fn, name))
        session._whole_step = WholeStep(session)
    session.start_data_reading()
    return session


def weights(session):
    emb = session.embeddings[0]
    keys, vectors, _ = emb.dump()
    order = np.argsort(keys)
    return [session.train_networks[0].weights.copy(), keys[order], vectors[order],
            *(a[order] for a in emb.dump_optimizer_state().values())]


@pytest.mark.parametrize("opt, embedding", [
    (optimizer("Adam", lr=0.01, update_type="Global"), "DistributedSlotSparseEmbeddingHash"),
    (optimizer("SGD", lr=0.05), "DistributedSlotSparseEmbeddingHash"),
    (optimizer("MomentumSGD", lr=0.01), "DistributedSlotSparseEmbeddingHash"),
    (optimizer("Adam", lr=0.01, update_type="LazyGlobal"), "LocalizedSlotSparseEmbeddingHash")],
    ids=["adam-global", "sgd-atomic", "momentum", "localized-lazy-adam"])
def test_replayed_device_half_trains_like_the_eager_step(workdir, monkeypatch, opt, embedding):
    # the workdir's data has 0-2 keys per slot: key counts vary, so the fixed buffers are padded
    config = write_config(workdir / "c.json", dnn_config(opt=opt, embedding=embedding, dropout=True, combiner=1))
    HostGraph.made = []
    replayed, eager = start(config, True, monkeypatch), start(config, False)
    counts = []
    for i in range(12):
        if i == 6:   # a schedule: the rate the device half reads changes
            for s in (replayed, eager):
                s.set_learning_rate(0.5 * s._learning_rate)
        batch = replayed.get_data_reader_train().read_a_batch()
        counts.append(batch.sparse[0].keys.size)
        replayed.train_step(replayed.stage_batch(batch))
        assert eager.train()
        assert replayed.get_current_loss() == eager.get_current_loss()
    for a, b in zip(weights(replayed), weights(eager)):
        np.testing.assert_array_equal(a, b)
    capacity, = replayed._whole_step.capacity
    assert len(set(counts)) > 1 and capacity > min(counts) and capacity % 64 == 0   # padded batches
    assert max(counts) <= capacity <= 64 * 16
    assert sum(g.calls for g in HostGraph.made) == 12
    assert replayed.replayed == "whole step" and eager.replayed is None
    replayed.close()
    eager.close()


@pytest.mark.parametrize("opt, embedding", [
    (optimizer("Adam", lr=0.01, update_type="Global"), "DistributedSlotSparseEmbeddingHash"),
    (optimizer("SGD", lr=0.05), "LocalizedSlotSparseEmbeddingHash")], ids=["distributed-adam", "localized-sgd"])
def test_one_process_driving_two_devices_replays_like_the_eager_step(workdir, monkeypatch, opt, embedding):
    # Issue 14's open point: Session builds WholeStep for one local device only, because CapturedCall
    # captures one device's stream. The host model of the step is already multi-device -- fixed buffers and
    # copies per device, the exchange and all-reduce inside the device half -- and replays exactly; what a
    # GPU needs beyond it is a capture spanning every device's stream (a machine with several GPUs to build on).
    config = write_config(workdir / "c.json", dnn_config(opt=opt, embedding=embedding, dropout=True, combiner=1))
    HostGraph.made = []
    replayed, eager = start(config, True, monkeypatch, devices=(0, 1)), start(config, False, devices=(0, 1))
    assert list(replayed.local_devices) == [0, 1]
    for _ in range(8):
        replayed.train_step(replayed.stage_batch(replayed.get_data_reader_train().read_a_batch()))
        assert eager.train()
        assert replayed.get_current_loss() == eager.get_current_loss()
    for a, b in zip(weights(replayed), weights(eager)):
        np.testing.assert_array_equal(a, b)
    fixed_feeds, fixed_keys = list(replayed._whole_step.graphs.values())[0][3]
    assert len(fixed_feeds) == 2 and all(len(per_device) == 2 for per_device in fixed_keys)
    assert sum(g.calls for g in HostGraph.made) == 8 and replayed.replayed == "whole step"
    replayed.close()
    eager.close()


def test_replaced_tables_and_freezing_capture_anew(workdir, monkeypatch):
    config = write_config(workdir / "c.json", dnn_config(opt=optimizer("Adam", lr=0.01)))
    HostGraph.made = []
    session = start(config, True, monkeypatch)
    for _ in range(3):
        assert session.train()
    assert len(HostGraph.made) <= 2 and len(session._whole_step.graphs) == 1   # (a capacity may grow once)
    made = len(HostGraph.made)
    session.embeddings[0].reset()        # new tables and hash-table slots: the old graph would write the old ones
    assert session.train()
    assert len(HostGraph.made) == made + 1
    session.frozen_dense = True          # a step without the dense update is another graph
    before = session.train_networks[0].weights.copy()
    assert session.train()
    assert len(HostGraph.made) == made + 2
    np.testing.assert_array_equal(session.train_networks[0].weights, before)
    assert len(session._whole_step.graphs) == 2
    session.embeddings[0].reset()        # the unfrozen step's graph holds the old tables: dropped with them
    assert session.train()
    assert list(session._whole_step.graphs) == [(True, frozenset())]
    dropped = [g for g in HostGraph.made if g not in {e[0] for e in session._whole_step.graphs.values()}]
    assert all(g.pool.released == 1 for g in dropped)              # their free blocks released once
    assert [g.pool for g in dropped] == session._whole_step._retired  # and their pools kept
    session.close()


def test_key_capacity_starts_exact_and_grows_with_headroom_up_to_the_bound(workdir, monkeypatch):
    session = start(write_config(workdir / "c.json", dnn_config()), True, monkeypatch)
    step = session._whole_step
    bound, = step._bounds
    assert bound == 64 * 16                       # batch x max_feature_num_per_sample
    assert step._fit([64 * 8]) and step.capacity == (64 * 8,)            # one-hot: no padding
    assert step._fit([64 * 8 - 3]) and step.capacity == (64 * 8,)
    assert step._fit([64 * 8 + 1]) and step.capacity == (64 * 9,)        # ceil(513 * 1.05 / 64) = 9
    assert step._fit([64 * 15]) and step.capacity == (bound,)            # capped at the bound
    assert not step._fit([bound + 1]) and step.capacity == (bound,)      # past it: the eager step
    session.close()


def test_the_captured_step_reports_each_phase_and_layer_it_queued(workdir, monkeypatch):
    # what a failed capture's message names (CapturedCall.mark): the parts of the step already queued
    session = start(write_config(workdir / "c.json", dnn_config(dropout=True)), True, monkeypatch)
    HostGraph.made = []
    for _ in range(2):
        assert session.train()
    (graph,) = HostGraph.made
    net = session.train_networks[0]
    layers = [step.layer.label for step in net.steps]
    assert graph.marks == (["embedding fwd"] + [f"the forward of {label}" for label in layers]
                           + [f"the backward of {label}" for label in reversed(layers)]
                           + ["dense fwd+bwd", "all-reduce", "dense update", "embedding bwd", "embedding update"])
    assert any(" + " in label for label in layers)   # a fused chain is one step, named by its members
    session.close()


def test_a_replayed_step_sends_its_writes_and_copies_in_one_table(workdir, monkeypatch):
    # Backend.writes_together in Session.train_step: every per-step number (Dropout seed, dense rate, the
    # embedding's lr/step/lr÷S) and every fixed-buffer copy of a replayed step reach the device in one
    # write_table call (one launch on a GPU), sent before the graph runs
    session = start(write_config(workdir / "c.json", dnn_config(dropout=True, opt=optimizer("Adam", lr=0.01))),
                    True, monkeypatch)
    for _ in range(3):   # eager, capture, replay
        assert session.train()
    ops = RecordingOps(session.backend.ops)
    monkeypatch.setattr(session.backend, "ops", ops)
    net, emb = session.train_networks[0], session.embeddings[0]
    (_, _, _, (feeds, fixed)), = session._whole_step.graphs.values()
    want = {f"seed of {layer.label}": layer._seed for layer in net.layers if hasattr(layer, "_seed")}
    want.update({"dense rate": session.dense_optimizers[0].persistent_arrays()[0],
                 "embedding hyper": list(emb._local())[0][1].hyper, "row offsets": fixed[0][0][0]})
    want.update({f"input {name}": feeds[0][name] for name in session._whole_step._feed_names})   # dense, label
    for _ in range(2):
        before = len(ops.arguments("write_table"))
        assert session.train()
        tables = ops.arguments("write_table")
        assert len(tables) == before + 1   # one table a step
        missing = [what for what, a in want.items() if all(a is not dst for dst in tables[-1][::2])]
        assert not missing and len(want) == 6, (missing, list(want))
    session.close()
