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
