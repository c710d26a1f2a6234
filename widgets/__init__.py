"""ipywidgets dashboards over the engine's events, importable as ``hugectr_lab.widgets``.

The engine never imports this package; views subscribe to the events a Session publishes and
only read. Plots use ipympl canvases under ``%matplotlib widget``, otherwise static PNG figures
(``ipywidgets.Image``). See docs/widgets.md.

* ``TrainingDashboard(session, lr_scheduler=None, max_iter=None, eval_interval=None, max_eval_batches=None)``
* ``LRSchedulerExplorer(config_path=None, steps=10000)``
* ``ModelView(config_path)``
* ``EmbeddingInspector(session, table=0)``
* ``InferenceInspector(inference_session)``
"""

import importlib

# Each dashboard loads on first use, so ``import hugectr_lab.widgets`` works where ipywidgets and
# matplotlib are not installed (they are in the ``notebooks`` and ``dev`` extras).
_MODULES = {"TrainingDashboard": "training", "LRSchedulerExplorer": "lr_explorer", "ModelView": "model_view",
            "EmbeddingInspector": "embedding_inspector", "InferenceInspector": "inference_inspector"}

__all__ = list(_MODULES)


def __getattr__(name):
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f".{_MODULES[name]}", __name__)
    except ImportError as exc:
        raise ImportError(f"hugectr_lab.widgets.{name} needs ipywidgets and matplotlib "
                          f"(pip install 'hugectr-lab[notebooks]'): {exc}") from exc
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
