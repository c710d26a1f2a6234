"""``hugectr_lab`` exports its public API at the top level, loaded on first use: importing the package
imports neither NumPy nor the engine, and only the widget names import ipywidgets."""

import importlib
import subprocess
import sys

import pytest

import hugectr_lab


def _run(code):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_every_export_is_the_object_its_module_defines():
    assert set(hugectr_lab.__all__) >= {"Session", "get_backend", "DataReader32", "generate_dataset",
                                         "InferenceSession", "LearningRateScheduler", "TrainingDashboard", "fit",
                                         "widgets", "write_norm_file", "preprocess_criteo"}
    for name in hugectr_lab.__all__:
        if name in hugectr_lab._SUBMODULES:
            assert getattr(hugectr_lab, name) is importlib.import_module(f"hugectr_lab.{name}")
            continue
        module = importlib.import_module(f"hugectr_lab.{hugectr_lab._MODULE_OF[name]}")
        assert getattr(hugectr_lab, name) is getattr(module, name), name
    assert callable(hugectr_lab.fit.fit)   # the trainer
    assert set(hugectr_lab.__all__) <= set(dir(hugectr_lab))


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'hugectr_lab' has no attribute 'Sesion'"):
        hugectr_lab.Sesion  # noqa: B018
    with pytest.raises(ImportError):
        exec("from hugectr_lab import Sesion", {})


def test_importing_the_package_and_the_engine_never_imports_ipywidgets():
    out = _run("import sys, hugectr_lab\n"
               "print('numpy' in sys.modules, 'hugectr_lab.session' in sys.modules)\n"
               "engine = [n for n in hugectr_lab.__all__ if hugectr_lab._MODULE_OF.get(n, n) != 'widgets']\n"
               "from hugectr_lab import Session, get_backend\n"
               "[getattr(hugectr_lab, n) for n in engine]\n"
               "print('ipywidgets' in sys.modules, 'matplotlib' in sys.modules)")
    assert out.splitlines() == ["False False", "False False"]


def test_widget_names_load_the_widgets_on_first_use():
    pytest.importorskip("ipywidgets")
    out = _run("import sys, hugectr_lab\n"
               "view = hugectr_lab.ModelView\n"
               "print(view.__module__, 'ipywidgets' in sys.modules)")
    assert out == "hugectr_lab.widgets.model_view True"
