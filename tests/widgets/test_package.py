"""The engine never imports the widgets; the widgets package imports without ipywidgets."""

import importlib.util
import subprocess
import sys

import pytest


def test_engine_imports_no_widget_library():
    code = ("import sys, hugectr_lab, hugectr_lab.session, hugectr_lab.inference, hugectr_lab.widgets; "
            "print(sorted(m for m in ('ipywidgets', 'matplotlib', 'ipympl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_every_dashboard_is_exported():
    import hugectr_lab.widgets as w

    for name in w.__all__:
        assert getattr(w, name).__name__ == name
    with pytest.raises(AttributeError):
        w.NoSuchDashboard


def test_ipympl_backend_gives_interactive_canvases():
    if importlib.util.find_spec("ipympl") is None:   # importing it here would switch this process's backend
        pytest.skip("ipympl is not installed")
    code = ("import matplotlib; matplotlib.use('module://ipympl.backend_nbagg'); "
            "from hugectr_lab.widgets import LRSchedulerExplorer; e = LRSchedulerExplorer(steps=20); "
            "print(type(e.plot.widget).__name__, e.plot.interactive, len(e.lr_values))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["Canvas", "True", "20"]


def test_other_dashboards_carry_css_classes(tmp_path):
    from hugectr_lab.widgets import LRSchedulerExplorer, ModelView

    from session_helpers import dnn_config, write_config   # tests/session, on the path via conftest

    assert "hugectr-lab-lr-explorer" in LRSchedulerExplorer(steps=5).widget._dom_classes
    view = ModelView(write_config(tmp_path / "c.json", dnn_config()))
    assert "hugectr-lab-model-view" in view.widget._dom_classes


def test_ipympl_canvas_draws_hold_the_figure_lock():
    """Under ipympl, redraw() pushes a frame from the calling thread, and a draw the front end asks for
    (run in the kernel's main thread) waits while another thread holds the figure's lock."""
    if importlib.util.find_spec("ipympl") is None:
        pytest.skip("ipympl is not installed")
    code = """
import threading, time, matplotlib
matplotlib.use('module://ipympl.backend_nbagg')
from hugectr_lab.widgets._figure import LiveFigure
fig = LiveFigure(min_interval=0.0)
sent = []
fig.widget.send_binary = lambda data: sent.append(len(data))
fig.axes[0].plot([0, 1], [0, 1])
assert fig.redraw() and sent, 'redraw did not push a frame'
done = threading.Event()
with fig.lock:
    worker = threading.Thread(target=lambda: (fig.widget.draw(), done.set()))
    worker.start()
    time.sleep(0.3)
    blocked = not done.is_set()
worker.join(10)
print(blocked, done.is_set(), 'hugectr-lab-plot' in fig.widget._dom_classes)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True"]
