"""Session from several threads: public methods are serialised by the session's lock, so concurrent
training loses no iteration and a save running beside training writes one consistent snapshot."""

import json
import threading

import numpy as np

from session_helpers import dnn_config, write_config

from hugectr_lab.config import solver_parser_helper
from hugectr_lab.embedding import read_sparse_optimizer_state
from hugectr_lab.session import Session

B = 64


def make_session(workdir):
    return Session(solver_parser_helper(batchsize=B, batchsize_eval=B, max_eval_batches=2, seed=5),
                   write_config(workdir / "c.json", dnn_config()))


def run_threads(*targets):
    errors = []

    def guarded(target):
        try:
            target()
        except BaseException as exc:   # a thread's failure fails the test, not just the thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)


def test_two_threads_training_lose_no_iteration_and_match_a_sequential_run(workdir):
    sequential = make_session(workdir)
    sequential.start_data_reading()
    for _ in range(40):
        sequential.train()
    expected = sequential.backend.to_host(sequential.train_networks[0].weights).copy()
    sequential.close()

    session = make_session(workdir)
    session.start_data_reading()
    run_threads(*[lambda: [session.train() for _ in range(20)]] * 2)
    assert session.iteration == 40
    assert session.embeddings[0].step == 40 and session.dense_optimizers[0].t == 40
    # batches are taken in reader order whichever thread trains them: the same model as one thread
    np.testing.assert_array_equal(session.backend.to_host(session.train_networks[0].weights), expected)
    session.close()


def test_saving_beside_training_writes_consistent_snapshots(workdir):
    """Each snapshot's dense optimizer step, sparse optimizer step and manifest iteration agree: no
    save saw half a training step."""
    session = make_session(workdir)
    session.start_data_reading()
    saved = []

    def train():
        for _ in range(60):
            session.train()

    def save():
        for k in range(1, 9):
            session.download_params_to_files("snap", k)
            saved.append(k)

    run_threads(train, save)
    assert saved == list(range(1, 9)) and session.iteration == 60
    for k in saved:
        with open(f"snap_{k}.manifest.json") as f:
            iteration = json.load(f)["iteration"]
        with open(f"snap_opt_dense_{k}.model.json") as f:
            dense_step = json.load(f)["step"]
        sparse_step = read_sparse_optimizer_state(f"snap0_opt_sparse_{k}.model").step
        assert dense_step == sparse_step == iteration, (k, dense_step, sparse_step, iteration)
    session.close()


def test_the_lock_is_reentrant_for_subscribers_calling_back(workdir):
    """An event subscriber (run inside train()) may call session methods on the same thread."""
    session = make_session(workdir)
    seen = []
    session.events.subscribe(lambda event: seen.append(session.get_current_loss()))
    session.start_data_reading()
    session.train()
    assert len(seen) == 1 and np.isfinite(seen[0])
    session.close()
