"""``ModelBase``: what the v3.0 preview ``Model`` and the v3.1 ``Model`` share.

A model is a list of HugeCTR JSON layer objects (``Input``, ``SparseEmbedding`` and ``DenseLayer`` each
contribute one) plus an optimizer spec; ``compile()`` parses them with ``parse_config`` and builds a
``Session`` over the result, so a Python model and the JSON it writes (``graph_to_json``) are the same
``ModelConfig`` and train identically. ``fit`` runs the engine's one loop (``hugectr_lab.fit.Trainer``,
as ``hugectr_lab.fit.fit`` does) with a progress bar or the TrainingDashboard as its view.
"""

from __future__ import annotations

import copy
import json
import re

from ..config import ConfigError, parse_config
from ..config.parse_optimizer import optimizer_to_json
from ..fileio import atomic_write
from ..fit import fit_trainer
from ..optim import LearningRateScheduler
from .layers import DenseLayer


class ModelNotCompiledError(RuntimeError):
    """A method that needs the built model was called before ``compile()``."""


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where the dashboard can be shown)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class ModelBase:
    """The layer list, compile, summary, fit and the Session-backed methods of both Model versions.

    Subclasses set ``self.solver`` (a ``SolverParser``), ``self.optimizer_spec`` (an ``OptimizerSpec``),
    ``self._schedule`` (``LearningRateScheduler`` arguments) and ``self._oversubscribe`` (None or the
    oversubscriber's working directory). Each added object's ``to_json(model)`` gives its JSON layer.
    """

    sparse_format = "v3.0"
    api_version = None   # "3.0" or "3.1": which version's Input and SparseEmbedding add() takes

    def __init__(self, *, backend=None):
        self.backend = backend
        self._added = []          # the objects given to add(), in order
        self._json = []           # their JSON layer objects (construct_from_json adds JSON directly)
        self.session = None
        self.config = None
        self._lr_scheduler = None
        self._last_dashboard = None   # the TrainingDashboard of the last fit(dashboard=True)

    # ---- building -------------------------------------------------------------------------------------

    def add(self, layer):
        """Append an ``Input``, ``SparseEmbedding`` or ``DenseLayer`` (bottom to top, Input first)."""
        if self.session is not None:
            raise RuntimeError("Model.add() after compile(): build a new Model to change the graph")
        if not hasattr(layer, "to_json"):
            raise TypeError(f"Model.add() takes an Input, SparseEmbedding or DenseLayer, got {type(layer).__name__}")
        version = getattr(layer, "api_version", self.api_version)   # DenseLayer serves both versions
        if version != self.api_version:
            raise TypeError(f"Model.add({layer!r}): a HugeCTR v{version} object given to a v{self.api_version} Model; "
                            "v3.1 scripts use `import hugectr.v31 as hugectr`, v3.0 scripts `import hugectr` "
                            "(docs/compat.md)")
        self._added.append(layer)
        self._json.append(None)

    def _layer_objects(self) -> list[dict]:
        return [copy.deepcopy(obj) if obj is not None else layer.to_json(self)
                for layer, obj in zip(self._added, self._json)]

    def config_json(self) -> dict:
        """The model as a HugeCTR JSON config (``optimizer`` and ``layers`` clauses)."""
        return {"optimizer": optimizer_to_json(self.optimizer_spec), "layers": self._layer_objects()}

    def _parse(self, obj):
        try:
            return parse_config(obj, mixed_precision=self.solver.use_mixed_precision, require=("layers", "optimizer"))
        except ConfigError as e:
            raise ConfigError(f"Model.compile(): {self._describe(str(e))}") from None

    def _describe(self, message):
        """Name the Python object behind ``layers[i]`` in a config error."""
        match = re.match(r"layers\[(\d+)\]", message)
        if match and int(match.group(1)) < len(self._added):
            return f"{message} -- layers[{match.group(1)}] is {self._added[int(match.group(1))]!r}"
        return message

    def compile(self):
        """Check the graph, build the Session (weights initialised or loaded) and the learning-rate scheduler."""
        from ..session import Session  # the engine loads when a model is built

        if self.session is not None:
            raise RuntimeError("Model.compile() was already called")
        if not self._added:
            raise ValueError("Model.compile(): add an Input, the embeddings and the dense layers first")
        obj = self.config_json()
        self.config = self._parse(obj)
        use_mos = self._oversubscribe is not None
        self.session = Session(self.solver, obj, use_mos, self._oversubscribe or "", backend=self.backend)
        self._lr_scheduler = LearningRateScheduler(**self._schedule)
        self._evaluated_at = -1

    def _require_session(self, what):
        if self.session is None:
            raise ModelNotCompiledError(f"Model.{what}() needs compile() first")
        return self.session

    def graph_to_json(self, graph_config_file):
        """Write the model as a HugeCTR JSON config (atomically); ``parse_config`` of it gives ``self.config``."""
        with atomic_write(graph_config_file, "w") as f:
            json.dump(self.config_json(), f, indent=2)

    def construct_from_json(self, graph_config_file, include_dense_network=True):
        """Add the layers of a JSON config: the Data layer and the embeddings, and the dense layers too
        when ``include_dense_network`` (the file's ``optimizer``/``solver`` clauses are not read)."""
        cfg = parse_config(graph_config_file, mixed_precision=self.solver.use_mixed_precision,
                           ignore=("solver", "optimizer"))
        with open(graph_config_file) as f:
            layers = json.load(f)["layers"]
        keep = 1 + len(cfg.embeddings) + (len(cfg.layers) if include_dense_network else 0)
        for obj in layers[:keep]:
            self._added.append(_FromJson(graph_config_file, obj))
            self._json.append(obj)

    def summary(self, print_fn=print, *, memory=True):
        """Print the dense graph (layers, tensors, shapes, parameters) and the per-device memory estimate."""
        session = self._require_session("summary")
        session.summary(print_fn)
        if memory:
            from ..estimate import estimate_memory

            print_fn(estimate_memory(self.config, self.solver, backend=session.backend.name).table())

    # ---- training -------------------------------------------------------------------------------------

    def _fit(self, *, max_iter, num_epochs, display, eval_interval, snapshot, snapshot_prefix, sources=None,
             progress=None, dashboard=False, print_fn=None):
        session = self._require_session("fit")
        if progress is None:
            progress = not dashboard
        # the bar shows the loss and prints each evaluation: the loop itself prints nothing then
        say = print_fn or (None if progress else print)
        trainer = fit_trainer(session, self._lr_scheduler, max_iter=max_iter, num_epochs=num_epochs, display=display,
                              eval_interval=eval_interval, max_eval_batches=self.solver.max_eval_batches,
                              print_fn=say, snapshot=snapshot, snapshot_prefix=snapshot_prefix,
                              sparse_format=self.sparse_format, sources=sources)
        views = []
        if dashboard:
            views.append(self._dashboard(trainer))
        if progress:
            from ..progress import ProgressReporter

            views.append(ProgressReporter(session, total=max_iter or None, print_fn=print_fn))
        try:
            return trainer.run()
        finally:
            for view in views:
                view.close()

    def _dashboard(self, trainer):
        """A TrainingDashboard over this fit's trainer, shown while it runs and kept as a record after."""
        from hugectr_lab.widgets import TrainingDashboard

        end = None if trainer.max_iter is None else self.session.iteration + trainer.max_iter
        board = _DashboardView(TrainingDashboard(self.session, max_iter=end, trainer=trainer))
        self._last_dashboard = board.dashboard
        if in_notebook():
            from IPython.display import display

            display(board.dashboard)
        return board

    # ---- low-level methods shared by both versions -------------------------------------------------------

    def get_learning_rate_scheduler(self):
        self._require_session("get_learning_rate_scheduler")
        return self._lr_scheduler

    def start_data_reading(self):
        self._require_session("start_data_reading").start_data_reading()

    def set_learning_rate(self, lr):
        return self._require_session("set_learning_rate").set_learning_rate(lr)

    def train(self):
        return self._require_session("train").train()

    def get_current_loss(self):
        return self._require_session("get_current_loss").get_current_loss()

    def get_eval_metrics(self):
        return self._require_session("get_eval_metrics").get_eval_metrics()

    def check_overflow(self):
        self._require_session("check_overflow").check_overflow()

    def copy_weights_for_evaluation(self):
        self._require_session("copy_weights_for_evaluation").copy_weights_for_evaluation()

    def get_data_reader_train(self):
        return self._require_session("get_data_reader_train").get_data_reader_train()

    def get_data_reader_eval(self):
        return self._require_session("get_data_reader_eval").get_data_reader_eval()

    def get_model_oversubscriber(self):
        return self._require_session("get_model_oversubscriber").get_model_oversubscriber()

    def get_params_num(self):
        return self._require_session("get_params_num").get_params_num()

    def to_onnx(self, path, **options):
        """Write the trained network as an ONNX model (``hugectr_lab.export.export_onnx``)."""
        from ..export import export_onnx

        return export_onnx(self._require_session("to_onnx"), path, **options)

    def close(self):
        if self.session is not None:
            self.session.close()


class _FromJson:
    """A layer added by ``construct_from_json`` (its JSON object is kept as read)."""

    def __init__(self, path, obj):
        self.path, self.obj = path, obj

    def to_json(self, model=None):
        return copy.deepcopy(self.obj)

    def __repr__(self):
        return f"{self.obj.get('type')} {self.obj.get('name', '')!r} from {self.path}"


class _DashboardView:
    """The TrainingDashboard of ``fit(dashboard=True)``: it draws fit's trainer while fit runs (in the
    notebook's thread, so its buttons wait for the cell); when fit ends it stays on screen as a record."""

    def __init__(self, dashboard):
        self.dashboard = dashboard

    def close(self):
        board = self.dashboard
        board.detach(f"Model.fit() {board.state} at iteration {board.session.iteration}")


__all__ = ["ModelBase", "ModelNotCompiledError", "DenseLayer", "in_notebook"]
