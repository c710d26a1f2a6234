"""The dashboard's history stays bounded on long runs: a million iterations are drawn from at most
``history_points`` evenly binned points; baselines sit beside the eval AUC."""

import numpy as np
import pytest

from hugectr_lab.events import EvalEnd, IterationEnd
from hugectr_lab.widgets import TrainingDashboard
from hugectr_lab.widgets._history import BinnedHistory

from test_training_dashboard import make_session


def test_binned_history_covers_the_run_in_equal_bins():
    history = BinnedHistory(("loss",), capacity=8)
    for i in range(1, 4):
        history.append(i, loss=float(i))
    assert [p["iteration"] for p in history.points()] == [1, 2, 3] and history.stride == 1
    for i in range(4, 101):
        history.append(i, loss=float(i))
    points = history.points()
    assert len(points) <= 8 and history.stride == 16 and history.records == 100
    assert [p["count"] for p in points] == [16] * 6 + [4]            # the last bin is still filling
    assert [p["iteration"] for p in points] == [16, 32, 48, 64, 80, 96, 100]
    assert [p["loss"] for p in points] == [np.mean(np.arange(a, b + 1)) for a, b in
                                           [(1, 16), (17, 32), (33, 48), (49, 64), (65, 80), (81, 96), (97, 100)]]
    with pytest.raises(ValueError, match="even number >= 2 of points"):
        BinnedHistory(("loss",), capacity=7)


def test_a_million_appends_keep_the_points_bounded_and_the_means_exact():
    history = BinnedHistory(("loss", "lr"), capacity=1000)
    n = 1_000_000
    for i in range(1, n + 1):
        history.append(i, loss=1.0 / i, lr=0.5)
    points = history.points()
    assert 500 <= len(points) <= 1000 and history.stride == 1024
    assert points[-1]["iteration"] == n and sum(p["count"] for p in points) == n
    total = sum(p["loss"] * p["count"] for p in points)
    assert total == pytest.approx(sum(1.0 / i for i in range(1, n + 1)), rel=1e-9)
    assert all(p["lr"] == 0.5 for p in points)


def test_dashboard_draws_a_long_run_from_a_bounded_history(workdir):
    sess = make_session(workdir)
    now = [0.0]
    dash = TrainingDashboard(sess, min_redraw_interval=0.1, clock=lambda: now[0], history_points=500,
                             baselines={"logistic regression": 0.71, "random forest": 0.69})
    drawn = []
    redraw = dash.plot.redraw

    def counting_redraw(force=False):
        if redraw(force):
            drawn.append(len(dash.loss_line.get_xdata()))
    dash.plot.redraw = counting_redraw
    n = 1_000_000
    for i in range(1, n + 1):
        if i % 100_000 == 0:
            now[0] += 10.0   # ten redraws fall due over the run (beyond any slow-draw stretch)
        dash._on_event(IterationEnd(i, 1.0 / i, 0.001, 5000.0, 64))
    dash._on_event(EvalEnd(n, (("AUC", 0.73),), 1))
    # ten throttled redraws (the baselines' draw at construction made the first iteration's not due)
    # and the forced one after the evaluation
    assert len(drawn) == 11 and max(drawn) <= 500
    assert dash.history_stride == 2048 and dash.history[-1]["iteration"] == n
    assert list(dash.loss_line.get_xdata())[-1] == n
    assert dash.throughput.value.startswith("samples/s: 5,000 (mean of last 20")
    labels = [line.get_label() for line in dash.plot.axes[1].get_lines()]
    assert labels == ["model", "logistic regression", "random forest"]
    assert dash.baselines == {"logistic regression": 0.71, "random forest": 0.69}
    assert "logistic regression 0.7100" in dash.baseline_label.value
    dash.close()


def test_baselines_from_a_report_name_the_engine(workdir):
    from hugectr_lab.analysis import BaselineReport, BaselineResult

    report = BaselineReport("scikit-learn + numpy", 100, 50, 12, [BaselineResult("logistic regression", 0.7, 0.1)])
    sess = make_session(workdir)
    dash = TrainingDashboard(sess)
    assert dash.baseline_label.layout.display == "none"   # no empty row without baselines
    dash.show_baselines(report)
    assert dash.baseline_label.layout.display is None
    dash.show_baselines(report)   # replaces, does not add
    assert [line.get_label() for line in dash.plot.axes[1].get_lines()] == ["model", "logistic regression"]
    assert dash.baseline_label.value.endswith("[scikit-learn + numpy]")
    dash.close()
