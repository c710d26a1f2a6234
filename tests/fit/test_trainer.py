"""The one training loop (``hugectr_lab.fit.Trainer``): its steps and evaluations are the Session's own
(evaluation rewound exactly as ``Session.evaluation``), pause/resume/stop from another thread lose no
iteration, snapshots go through the Session's atomic save, and its state changes are events."""

import threading

import numpy as np
import pytest

from hugectr_lab.config import solver_parser_helper
from hugectr_lab.events import EvalEnd, IterationEnd, ModelSaved, TrainerStatus
from hugectr_lab.fit import Trainer, evaluate, fit
from hugectr_lab.fileio import check_snapshot_file
from hugectr_lab.optim import LearningRateScheduler
from hugectr_lab.session import Session

from session_helpers import dnn_config, write_config

TIMEOUT = 60


def make_session(workdir, **kw):
    args = dict(batchsize=64, batchsize_eval=64, max_eval_batches=3, seed=7)
    args.update(kw)
    return Session(solver_parser_helper(**args), write_config(workdir / "c.json", dnn_config()))


def record(session, kinds=(IterationEnd, EvalEnd, ModelSaved, TrainerStatus)):
    events = []
    session.events.subscribe(lambda e: isinstance(e, kinds) and events.append(e))
    return events


def schedule():
    return LearningRateScheduler(0.01, warmup_steps=5, decay_start=8, decay_steps=4, decay_power=2.0, end_lr=1e-4)


def hand_loop(session, scheduler, n):
    """HugeCTR's documented Python loop, the reference for the trainer's steps."""
    session.start_data_reading()
    losses = []
    for _ in range(n):
        session.set_learning_rate(scheduler.get_next())
        assert session.train()
        losses.append(session.get_current_loss())
    return losses


def weights(session):
    return session.backend.to_host(session.train_networks[0].weights).copy()


def test_steps_and_evaluations_equal_the_sessions_own(workdir):
    ref = make_session(workdir)
    ref_losses = hand_loop(ref, schedule(), 6)
    ref.copy_weights_for_evaluation()
    ref_metrics = ref.evaluation()          # max_eval_batches from the start of the source, rewound after

    sess = make_session(workdir)
    events = record(sess, IterationEnd)
    trainer = Trainer(sess, schedule())
    assert all(trainer.step() for _ in range(6))
    assert [e.loss for e in events] == ref_losses and trainer.iterations == sess.iteration == 6
    np.testing.assert_array_equal(weights(sess), weights(ref))
    assert trainer.evaluate() == ref_metrics
    # rewound: the same first batches again, even after a stray eval() moved the eval reader on
    sess.eval()
    sess.get_eval_metrics()
    assert trainer.evaluate() == ref_metrics
    assert evaluate(sess, 3) == ref_metrics
    assert trainer.result.evaluations == [(6, ref_metrics), (6, ref_metrics)]
    # a bound other than the solver's is a pass over that many batches of the same rewound source
    assert evaluate(sess, 1) == ref.evaluation(max_batches=1) != ref_metrics
    with pytest.raises(ValueError, match=r"max_batches=\.\.\.\) must be a positive integer"):
        sess.evaluation(max_batches=0)


def test_epoch_mode_evaluation_is_the_whole_rewound_pass(workdir):
    ref = make_session(workdir, repeat_dataset=False)
    ref.get_data_reader_train().set_source("data/file_list.txt")
    for _ in range(4):
        assert ref.train()
    ref.copy_weights_for_evaluation()
    whole = ref.evaluation()                # epoch mode: to the end of the eval source, then rewound

    sess = make_session(workdir, repeat_dataset=False)
    trainer = Trainer(sess, max_iter=4, max_eval_batches=1000)
    result = trainer.run()
    assert result.iterations == 4 and trainer.end_reason == "max_iter reached"
    assert trainer.evaluate() == whole == trainer.evaluate()
    assert Trainer(sess, max_eval_batches=2).evaluate() == ref.evaluation(max_batches=2)


def test_fit_runs_the_trainer_to_its_end(workdir):
    sess = make_session(workdir)
    events = record(sess, (EvalEnd, TrainerStatus))
    result = fit(sess, schedule(), max_iter=9, display=3, eval_interval=4, max_eval_batches=3)
    assert result.iterations == 9 and [i for i, _ in result.losses] == [3, 6, 9]
    assert [i for i, _ in result.evaluations] == [4, 8]
    assert [(e.state, e.message) for e in events if isinstance(e, TrainerStatus)] == [
        ("running", "running"), ("finished", "finished (max_iter reached)")]
    ref = make_session(workdir)
    hand_loop(ref, schedule(), 4)
    ref.copy_weights_for_evaluation()
    assert result.evaluations[0][1] == ref.evaluation()

    # a reached target ends the run after the evaluation that reached it
    sess = make_session(workdir)
    result = fit(sess, schedule(), max_iter=50, eval_interval=2, max_eval_batches=3, stop_at={"AUC": 0.0})
    assert result.hit_target and result.iterations == 2 and sess.iteration == 2


def test_pause_resume_and_stop_from_another_thread_lose_no_iteration(workdir):
    sess = make_session(workdir)
    events = record(sess)
    trainer = Trainer(sess, schedule(), eval_interval=5)
    trainer.start()
    pauses = []
    try:
        for _ in range(3):   # pause at whatever iteration the loop is at, check it stays, resume
            target = trainer.iterations + 3
            while trainer.iterations < target:
                threading.Event().wait(0.005)
            trainer.pause()
            assert trainer.wait_paused(TIMEOUT) and trainer.state == "paused"
            paused_at = sess.iteration
            threading.Event().wait(0.1)
            assert sess.iteration == paused_at == trainer.iterations
            pauses.append(paused_at)
            trainer.resume()
        target = trainer.iterations + 2
        while trainer.iterations < target:
            threading.Event().wait(0.005)
    finally:
        trainer.stop()
        assert trainer.join(TIMEOUT)
    n = sess.iteration
    assert trainer.state == "stopped" and trainer.error is None and trainer.iterations == n
    iters = [e for e in events if isinstance(e, IterationEnd)]
    assert [e.iteration for e in iters] == list(range(1, n + 1))
    assert [e.learning_rate for e in iters] == pytest.approx(schedule().schedule(n))   # no rate lost or repeated
    states = [e for e in events if isinstance(e, TrainerStatus)]
    assert [e.state for e in states] == ["running"] + ["paused", "running"] * 3 + ["stopped"]
    assert [e.iteration for e in states if e.state == "paused"] == pauses
    assert [e.iteration for e in events if isinstance(e, EvalEnd)] == list(range(5, n + 1, 5))
    # bit for bit what one uninterrupted run of as many iterations trains
    ref = make_session(workdir)
    ref_losses = hand_loop(ref, schedule(), n)
    assert [e.loss for e in iters] == ref_losses
    np.testing.assert_array_equal(weights(sess), weights(ref))


def test_train_for_and_requests_are_served_between_steps(workdir):
    sess = make_session(workdir)
    events = record(sess, (EvalEnd, ModelSaved))
    trainer = Trainer(sess, max_iter=20, snapshot_prefix=str(workdir / "m"))
    try:
        assert trainer.train_for(4, timeout=TIMEOUT) and trainer.state == "paused" and sess.iteration == 4
        evaluated, saved = trainer.request_eval(), trainer.request_save()
        assert evaluated.wait(TIMEOUT) and saved.wait(TIMEOUT)
        assert evaluated.error is None and tuple(evaluated.result) == events[0].metrics and saved.result == 4
        assert sess.iteration == 4 and trainer.state == "paused"
        assert trainer.train_for(100, timeout=TIMEOUT)          # the loop ends first, at max_iter
    finally:
        trainer.stop()
        assert trainer.join(TIMEOUT)
    assert trainer.state == "finished" and sess.iteration == 20 and not trainer.running
    late = trainer.request_eval()                                # no loop: served at once, here
    assert late.is_set() and [e.iteration for e in events if isinstance(e, EvalEnd)] == [4, 20]
    with pytest.raises(ValueError):
        trainer.train_for(-1)


def test_snapshots_go_through_the_sessions_atomic_save(workdir):
    sess = make_session(workdir)
    events = record(sess, (ModelSaved, TrainerStatus))
    trainer = Trainer(sess, schedule(), max_iter=4, snapshot=2, snapshot_prefix=str(workdir / "p"))
    assert trainer.snapshot() is None                           # nothing to save before the first iteration
    assert events[-1].message == "nothing to save before the first iteration" and events[-1].state == "idle"
    result = trainer.run()
    assert result.snapshots == [2, 4]
    assert trainer.snapshot(str(workdir / "q")) == 4 and result.snapshots == [2, 4, 4]
    saved = [e for e in events if isinstance(e, ModelSaved)]
    assert [e.iteration for e in saved] == [2, 4, 4]
    for event, prefix in zip(saved, ("p", "p", "q")):
        assert str(workdir / f"{prefix}_{event.iteration}.manifest.json") in event.files
        check_snapshot_file(str(workdir / f"{prefix}_dense_{event.iteration}.model"))   # committed by its manifest
    # the snapshot holds the trained model: a session built from it has the trainer's weights
    restored = Session(solver_parser_helper(batchsize=64, batchsize_eval=64, seed=7,
                                            model_file=str(workdir / "q_dense_4.model"),
                                            embedding_files=[str(workdir / "q0_sparse_4.model")]),
                       write_config(workdir / "c.json", dnn_config()))
    np.testing.assert_array_equal(weights(restored), weights(sess))


def test_an_error_ends_the_loop_as_an_event_and_run_raises_it(workdir):
    class Broken:
        def get_next(self):
            raise ValueError("bad schedule")

    sess = make_session(workdir)
    events = record(sess, TrainerStatus)
    trainer = Trainer(sess, Broken(), max_iter=5)
    trainer.start()
    assert trainer.join(TIMEOUT)
    assert trainer.state == "error" and isinstance(trainer.error, ValueError) and sess.iteration == 0
    assert events[-1].message == "error: ValueError: bad schedule"
    with pytest.raises(ValueError, match="bad schedule"):
        Trainer(sess, Broken(), max_iter=5).run()
    no_eval = Session(solver_parser_helper(batchsize=64, seed=7),
                      write_config(workdir / "n.json", dnn_config(eval_source="")))
    failed = Trainer(no_eval).request_eval()                 # a request's error is carried, not raised
    assert failed.is_set() and failed.result is None and "has no eval_source" in str(failed.error)


def test_arguments_are_checked(workdir):
    sess = make_session(workdir)
    with pytest.raises(ValueError, match="several training sources need epoch mode"):
        Trainer(sess, sources=[("data/file_list.txt", None)])
    with pytest.raises(ValueError, match="epochs need epoch mode"):
        Trainer(sess, num_epochs=2)
    with pytest.raises(ValueError, match=r"Trainer\(eval_interval=\.\.\.\) must be an integer >= 0"):
        Trainer(sess, eval_interval=-1)
    with pytest.raises(ValueError, match="non-epoch mode needs max_iter >= 1"):
        fit(sess, schedule(), max_iter=0)
    trainer = Trainer(sess)
    trainer.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            trainer.run()
    finally:
        trainer.stop()
        assert trainer.join(TIMEOUT)
