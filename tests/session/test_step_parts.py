"""The Session's public parts that the benchmarks and widgets use: ``train()`` = read a batch ->
``stage_batch`` -> ``train_step`` (the benchmarks drive the two directly, with ``on_phase`` marks, on
batches staged once), and ``make_reader`` (the embedding inspector scans the training data with one)."""

from types import SimpleNamespace

import numpy as np
import pytest

from hugectr_lab.config import solver_parser_helper
from hugectr_lab.session import STEP_PHASES, Session

from session_helpers import dnn_config, optimizer, write_config


def _session(config):
    session = Session(solver_parser_helper(batchsize=64, batchsize_eval=32, max_eval_batches=2, seed=3,
                                           vvgpu=[[0, 1]]), config)
    session.start_data_reading()
    return session


def test_stage_batch_and_train_step_are_train(workdir):
    config = write_config(workdir / "c.json", dnn_config(opt=optimizer("Adam", lr=0.01)))
    loop, parts = _session(config), _session(config)
    phases, want, got = [], [], []
    for _ in range(5):
        assert loop.train()
        want.append(loop.get_current_loss())
        staged = parts.stage_batch(parts.get_data_reader_train().read_a_batch())
        losses = parts.train_step(staged, on_phase=phases.append)
        assert len(losses) == 2    # one per local device, as device arrays
        got.append(parts.get_current_loss())
    assert got == want and parts.iteration == loop.iteration == 5
    assert phases == list(STEP_PHASES) * 5
    host = loop.backend.to_host
    np.testing.assert_array_equal(host(parts.train_networks[0].weights), host(loop.train_networks[0].weights))
    # a staged batch can be trained on again (the benchmarks reuse a few)
    parts.train_step(staged)
    assert parts.iteration == 6 and np.isfinite(parts.get_current_loss())
    loop.close()
    parts.close()


def test_stage_batch_names_the_batch_size_it_needs(workdir):
    session = _session(write_config(workdir / "c.json", dnn_config()))
    batch = session.get_data_reader_train().read_a_batch()
    short = SimpleNamespace(dense=batch.dense[:10], labels=batch.labels[:10], sparse=batch.sparse)
    with pytest.raises(ValueError, match="must hold batchsize = 64 samples, got dense 10 and labels 10 rows"):
        session.stage_batch(short)
    session.close()


def test_make_reader_reads_what_the_session_reads_on_its_own(workdir):
    session = _session(write_config(workdir / "c.json", dnn_config()))
    own = session.get_data_reader_train()
    mine = session.make_reader(repeat=False)
    assert not mine.started and mine is not own
    for _ in range(3):
        want, got = own.read_a_batch(), mine.read_a_batch()
        assert got.size == want.size == 64
        np.testing.assert_array_equal(got.dense, want.dense)
        np.testing.assert_array_equal(got.sparse[0].keys, want.sparse[0].keys)
    assert session.make_reader(eval=True).read_a_batch().labels.shape[0] == 32   # batchsize_eval
    mine.close()
    session.close()
