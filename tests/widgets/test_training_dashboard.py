"""TrainingDashboard over a real small Session (NumPy backend; Agg figures, no browser)."""

import os
import time

import pytest

from hugectr_lab.config import solver_parser_helper
from hugectr_lab.optim import LearningRateScheduler
from hugectr_lab.session import Session
from hugectr_lab.widgets import TrainingDashboard

from session_helpers import dnn_config, write_config

TIMEOUT = 30


def make_session(workdir, **kw):
    args = dict(batchsize=64, batchsize_eval=64, max_eval_batches=2, seed=3)
    args.update(kw)
    return Session(solver_parser_helper(**args), write_config(workdir / "c.json", dnn_config()))


def wait_for(predicate, timeout=TIMEOUT):
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.005)


def test_runs_max_iter_iterations_and_plots_every_loss(workdir):
    sess = make_session(workdir)
    sch = LearningRateScheduler(0.01, warmup_steps=4)
    expected_lrs = sch.schedule(12)
    dash = TrainingDashboard(sess, lr_scheduler=sch, max_iter=12, eval_interval=5)
    dash.start()
    assert dash.join(TIMEOUT), "loop did not finish"
    assert dash.state == "finished" and dash.error is None
    assert sess.iteration == 12 and [h["iteration"] for h in dash.history] == list(range(1, 13))
    assert [h["lr"] for h in dash.history] == pytest.approx(expected_lrs)
    assert list(dash.loss_line.get_ydata()) == [h["loss"] for h in dash.history]
    assert list(dash.lr_line.get_ydata()) == pytest.approx(expected_lrs)
    assert [e["iteration"] for e in dash.eval_history] == [5, 10]
    assert list(dash.auc_line.get_xdata()) == [5, 10]
    assert 0.0 <= dash.auc_line.get_ydata()[-1] <= 1.0
    assert dash.progress.value == 12 and dash.progress.max == 12
    assert dash.throughput.value.startswith("samples/s: ")
    assert dash.overflow.value.startswith("overflow: none")
    assert not dash.start_button.disabled and dash.pause_button.disabled and dash.stop_button.disabled
    assert dash.plot.widget.value[:4] == b"\x89PNG"   # a static figure under Agg
    assert dash.redraws >= 1


def test_pause_stops_the_iteration_counter_and_resume_continues(workdir):
    sess = make_session(workdir)
    dash = TrainingDashboard(sess)
    dash.start()
    try:
        wait_for(lambda: sess.iteration >= 3)
        dash.pause_button.click()
        assert dash.wait_paused(TIMEOUT)
        assert dash.state == "paused" and dash.start_button.description == "Resume"
        paused_at = sess.iteration
        time.sleep(0.2)
        assert sess.iteration == paused_at and len(dash.history) == paused_at
        dash.start_button.click()   # resumes
        wait_for(lambda: sess.iteration >= paused_at + 2)
        assert dash.state == "running"
    finally:
        dash.stop_button.click()
        assert dash.join(TIMEOUT)
    assert dash.state == "stopped"
    assert len(dash.history) == sess.iteration


def test_evaluate_now_and_save_run_between_iterations_of_the_loop(workdir):
    sess = make_session(workdir)
    dash = TrainingDashboard(sess, save_prefix=str(workdir / "m"))
    dash.start()
    try:
        wait_for(lambda: sess.iteration >= 2)
        dash.eval_button.click()
        dash.save_button.click()
        wait_for(lambda: dash.eval_history and dash.saved)
    finally:
        dash.stop()
        assert dash.join(TIMEOUT)
    assert dash.eval_history[0]["iteration"] >= 2 and "AUC" in dash.eval_history[0]["metrics"]
    it = dash.saved[0].iteration
    assert os.path.exists(workdir / f"m_dense_{it}.model")
    assert "saved" in dash.status.value or dash.state == "stopped"


def test_buttons_work_without_a_running_loop(workdir):
    sess = make_session(workdir)
    dash = TrainingDashboard(sess, max_iter=3, save_prefix=str(workdir / "m"))
    dash.save_button.click()            # nothing trained yet
    assert dash.saved == [] and "nothing to save" in dash.status.value
    dash.start()
    assert dash.join(TIMEOUT)
    dash.eval_button.click()
    dash.save_button.click()
    assert [e["iteration"] for e in dash.eval_history] == [3]
    assert dash.saved[0].iteration == 3 and os.path.exists(workdir / "m_dense_3.model")
    dash.start()                        # max_iter reached: finishes at once
    assert dash.join(TIMEOUT) and sess.iteration == 3


def test_redraws_are_throttled(workdir):
    sess = make_session(workdir)
    now = [0.0]
    dash = TrainingDashboard(sess, max_iter=20, min_redraw_interval=0.1, clock=lambda: now[0])
    dash.start()
    assert dash.join(TIMEOUT)
    # the clock never advanced: one draw for the first iteration, one forced at the end
    assert dash.redraws == 2
    assert len(dash.loss_line.get_ydata()) == 20


def test_an_error_in_the_loop_is_shown_not_raised(workdir):
    sess = make_session(workdir)

    class Broken:
        def get_next(self):
            raise ValueError("bad schedule")

    dash = TrainingDashboard(sess, lr_scheduler=Broken(), max_iter=5)
    dash.start()
    assert dash.join(TIMEOUT)
    assert dash.state == "error" and isinstance(dash.error, ValueError)
    assert "bad schedule" in dash.status.value and sess.iteration == 0


def test_close_unsubscribes(workdir):
    sess = make_session(workdir)
    dash = TrainingDashboard(sess, max_iter=1)
    dash.close()
    sess.start_data_reading()
    sess.train()
    assert dash.history == []


def test_slow_draws_stretch_the_redraw_interval(workdir):
    from hugectr_lab.widgets._figure import LiveFigure

    now = [0.0]
    fig = LiveFigure(min_interval=0.1, busy_factor=4.0, clock=lambda: now[0])
    assert fig.redraw()
    fig.draw_seconds = 0.5           # as if the PNG took 0.5 s: wait 2 s
    now[0] = 1.0
    assert not fig.redraw() and fig.redraws == 1
    now[0] = 2.0
    assert fig.redraw() and fig.redraws == 2
    assert fig.redraw(force=True) and fig.redraws == 3


def test_train_for_trains_n_iterations_then_pauses_with_exact_readouts(workdir):
    sess = make_session(workdir)
    now = [0.0]   # a frozen clock: only forced redraws happen after the first iteration
    dash = TrainingDashboard(sess, max_iter=100, clock=lambda: now[0])
    try:
        assert dash.train_for(7, timeout=TIMEOUT)
        assert dash.state == "paused" and sess.iteration == 7 and dash.running
        # pausing forces a refresh: the readouts and the plot show exactly where it paused
        assert dash.iteration_label.value == "7 / 100" and dash.progress.value == 7
        assert len(dash.loss_line.get_ydata()) == 7 and dash.status.value == "paused"
        assert dash.start_button.description == "Resume" and dash.pause_button.disabled
        time.sleep(0.1)
        assert sess.iteration == 7
        assert dash.train_for(5, timeout=TIMEOUT)   # resumes the same loop thread
        assert dash.state == "paused" and sess.iteration == 12 and len(dash.history) == 12
        assert dash.iteration_label.value == "12 / 100"
        assert dash.train_for(0, timeout=TIMEOUT) and sess.iteration == 12
    finally:
        dash.stop()
        assert dash.join(TIMEOUT)
    assert dash.state == "stopped"
    with pytest.raises(ValueError):
        dash.train_for(-1)


def test_train_for_returns_when_the_loop_ends_first(workdir):
    sess = make_session(workdir)
    dash = TrainingDashboard(sess, max_iter=4)
    assert dash.train_for(50, timeout=TIMEOUT)
    assert dash.state == "finished" and sess.iteration == 4 and not dash.running
    dash.start()                       # a fresh loop does not inherit the old pause point
    assert dash.join(TIMEOUT) and dash.state == "finished"


def test_evaluate_and_save_are_served_while_paused(workdir):
    sess = make_session(workdir)
    dash = TrainingDashboard(sess, save_prefix=str(workdir / "m"))
    try:
        assert dash.train_for(3, timeout=TIMEOUT) and dash.state == "paused"
        dash.eval_button.click()
        dash.save_button.click()
        wait_for(lambda: dash.eval_history and dash.saved)
        assert dash.eval_history[0]["iteration"] == 3 and dash.saved[0].iteration == 3
        assert sess.iteration == 3 and dash.state == "paused"
    finally:
        dash.close()
    assert dash.state == "stopped"


def test_the_browser_finds_the_dashboard_by_its_css_classes(workdir):
    dash = TrainingDashboard(make_session(workdir), max_iter=1)
    assert "hugectr-lab-training-dashboard" in dash.widget._dom_classes
    assert "hugectr-lab-iteration" in dash.iteration_label._dom_classes
    assert "hugectr-lab-status" in dash.status._dom_classes
    assert "hugectr-lab-plot" in dash.plot.widget._dom_classes
    dash.close()


def test_requests_return_an_event_set_once_served(workdir):
    sess = make_session(workdir)
    dash = TrainingDashboard(sess, max_iter=50, save_prefix=str(workdir / "m"))
    assert dash.request_eval().is_set()          # no loop: served at once in this thread
    try:
        assert dash.train_for(4, timeout=TIMEOUT)
        evaluated, saved = dash.request_eval(), dash.request_save()
        assert evaluated.wait(TIMEOUT) and saved.wait(TIMEOUT)
        assert [e["iteration"] for e in dash.eval_history] == [0, 4] and dash.saved[-1].iteration == 4
    finally:
        dash.close()


def test_overflow_readout_shows_the_tables_refusing_keys(workdir):
    sess = Session(solver_parser_helper(batchsize=64, batchsize_eval=64, max_eval_batches=2, seed=3),
                   write_config(workdir / "c.json", dnn_config(vocab=100)))
    dash = TrainingDashboard(sess, max_iter=3)
    with pytest.warns(RuntimeWarning, match="max_vocabulary_size_per_gpu=100"):
        dash.start()
        assert dash.join(TIMEOUT), "loop did not finish"
    assert dash.error is None
    # the VocabularyOverflow event of iteration 1, then the check when the loop finished
    assert dash.overflow.value.startswith("overflow: embedding 'emb' on device 0: ")
    assert "distinct keys got no row" in dash.overflow.value
    dash.close()
