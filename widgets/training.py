"""``TrainingDashboard``: a live view of a ``Session``'s training, and Start/Pause/Stop controls.

The dashboard holds no training or evaluation logic: its buttons call a ``hugectr_lab.fit.Trainer``
(the engine's one loop, which ``fit`` runs too) -- Start/Resume ``start()``, Pause ``pause()``, Stop
``stop()``, "Evaluate now" ``request_eval()``, "Save model" ``request_save()`` -- and it draws the
session's events: ``IterationEnd``, ``EvalEnd``, ``ModelSaved``, ``VocabularyOverflow`` and the trainer's
``TrainerStatus``. The trainer loops in a background thread so the notebook stays responsive, and
serves the requests between two iterations (also while paused). Plots are redrawn at most
``1 / min_redraw_interval`` times a second, so a fast loop is not slowed down by drawing. The
per-iteration history is bounded (``BinnedHistory``: at most ``history_points`` evenly binned points
over the whole run), so a redraw costs the same at iteration 10 and at iteration 1,000,000.

``train_for(n)`` runs ``n`` iterations in the loop thread and pauses: a notebook (or a test) drives
the dashboard with it where nobody presses the buttons.
"""

from __future__ import annotations

import collections
import time

import ipywidgets as W

from hugectr_lab.events import EvalEnd, IterationEnd, ModelSaved, TrainerStatus, VocabularyOverflow
from hugectr_lab.fit import Trainer

from ._figure import LiveFigure
from ._history import BinnedHistory


class TrainingDashboard:
    """``TrainingDashboard(session, lr_scheduler=None, max_iter=None, eval_interval=None, max_eval_batches=None)``.

    * ``lr_scheduler``: called (``get_next()``) before every ``train()``; its value goes to
      ``session.set_learning_rate``.
    * ``max_iter``: stop when ``session.iteration`` reaches it (None: until Stop or the end of the data).
    * ``eval_interval``: evaluate every that many iterations (None/0: only on "evaluate now").
    * ``max_eval_batches``: eval batches per evaluation (default: the solver's ``max_eval_batches``).
    * ``save_prefix``: prefix of the files "save model" writes (``download_params_to_files``).
    * ``trainer``: drive this ``Trainer`` instead of making one from the arguments above (``Model.fit``
      shows its own trainer so).

    * ``history_points``: the most points the loss / learning-rate history keeps (even); past that,
      neighbouring points merge, so each point is the mean over a bin of iterations (``history_stride``).
    * ``baselines``: {name: AUC} or a ``hugectr_lab.analysis.BaselineReport``, drawn as horizontal lines
      beside the eval AUC (also ``show_baselines`` later).

    State for code and tests: ``history`` (dicts of iteration, loss, lr, samples_per_sec and count: one
    per iteration until ``history_points`` is reached, then bin means), ``eval_history`` (dicts of
    iteration and metrics), ``baselines`` ({name: AUC}), ``saved`` (``ModelSaved`` events), ``state``
    ("idle", "running", "paused", "stopped", "finished", "error"), ``error``, ``redraws``, the lines
    ``loss_line``, ``auc_line`` and ``lr_line``, and the widgets (``progress``, ``throughput``,
    ``overflow``, ``status``, buttons). ``widget`` is the whole dashboard (also shown by ``display``).
    ``trainer`` is the loop it drives and ``lock`` the session's lock (hold it to read the session
    between two iterations).

    In the browser the dashboard carries the CSS class ``hugectr-lab-training-dashboard``, the
    iteration readout ``hugectr-lab-iteration``, the status line ``hugectr-lab-status`` and the
    figure ``hugectr-lab-plot``.
    """

    def __init__(self, session, lr_scheduler=None, max_iter=None, eval_interval=None, max_eval_batches=None, *,
                 save_prefix="", min_redraw_interval=0.1, clock=time.monotonic, history_points=2000, baselines=None,
                 trainer=None):
        if max_iter is not None and max_iter < 0:
            raise ValueError(f"max_iter must be None or >= 0, got {max_iter!r}")
        self.session = session
        self.max_iter = max_iter
        # max_iter counts the session's iterations; the trainer counts its own from here
        self.trainer = trainer or Trainer(
            session, lr_scheduler, max_iter=None if max_iter is None else max(max_iter - session.iteration, 0),
            eval_interval=eval_interval or 0, max_eval_batches=max_eval_batches, snapshot_prefix=save_prefix)
        self.lock = session.lock
        self._history = BinnedHistory(("loss", "lr", "samples_per_sec"), history_points)
        self._recent_rates = collections.deque(maxlen=20)   # samples/s of the last 20 iterations
        self.eval_history, self.saved = [], []
        self.baselines, self._baseline_artists = {}, []
        self.state = "idle"

        self.plot = LiveFigure(1, 3, figsize=(11, 3), min_interval=min_redraw_interval, clock=clock)
        ax_loss, ax_auc, ax_lr = self.plot.axes
        (self.loss_line,) = ax_loss.plot([], [], lw=1)
        (self.auc_line,) = ax_auc.plot([], [], "o-", lw=1)
        (self.lr_line,) = ax_lr.plot([], [], lw=1)
        for ax, title in zip(self.plot.axes, ("training loss", "eval AUC", "learning rate")):
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("iteration", fontsize=8)

        self.start_button = W.Button(description="Start", icon="play", button_style="success")
        self.pause_button = W.Button(description="Pause", icon="pause", disabled=True)
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="danger", disabled=True)
        self.eval_button = W.Button(description="Evaluate now", icon="check")
        self.save_button = W.Button(description="Save model", icon="save")
        self.start_button.on_click(lambda _: self.start())
        self.pause_button.on_click(lambda _: self.pause())
        self.stop_button.on_click(lambda _: self.stop())
        self.eval_button.on_click(lambda _: self.request_eval())
        self.save_button.on_click(lambda _: self.request_save())
        self.progress = W.IntProgress(value=session.iteration, min=0, max=max(max_iter or 0, 1),
                                      description="iteration")
        def readout(text):
            return W.Label(text, layout=W.Layout(margin="0 1.5em 0 0.5em"))

        self.iteration_label = readout(self._iteration_text(session.iteration))
        self.iteration_label.add_class("hugectr-lab-iteration")
        self.throughput = readout("samples/s: -")
        self.overflow = readout("overflow: not checked")
        self.status = readout("idle")
        self.status.add_class("hugectr-lab-status")
        self.baseline_label = readout("")
        self.baseline_label.layout.display = "none"   # shown by show_baselines
        self.widget = W.VBox([
            W.HBox([self.start_button, self.pause_button, self.stop_button, self.eval_button, self.save_button]),
            W.HBox([self.progress, self.iteration_label, self.throughput]),
            W.HBox([self.overflow, self.status]),
            self.baseline_label,
            self.plot.widget,
        ])
        self.widget.add_class("hugectr-lab-training-dashboard")
        if baselines is not None:
            self.show_baselines(baselines)
        session.events.subscribe(self._on_event)

    # ---- notebook display ------------------------------------------------------------------------

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    @property
    def redraws(self):
        return self.plot.redraws

    @property
    def history(self):
        """The loss / learning-rate / samples-per-second history: at most ``history_points`` dicts."""
        return self._history.points()

    @property
    def history_stride(self):
        """Iterations per history point (1 until the history first fills up)."""
        return self._history.stride

    def show_baselines(self, baselines):
        """Draw ``baselines`` ({name: AUC} or a ``BaselineReport``) as dashed lines on the eval AUC plot,
        next to the model's curve, and list them under the status line."""
        engine = getattr(baselines, "engine", None)
        aucs = dict(baselines.aucs if hasattr(baselines, "aucs") else baselines)
        with self.plot.lock:
            for artist in self._baseline_artists:
                artist.remove()
            ax = self.plot.axes[1]
            colors = ("#c44e52", "#55a868", "#8172b2", "#937860")
            self._baseline_artists = [ax.axhline(value, ls="--", lw=1, color=colors[i % len(colors)], label=name)
                                      for i, (name, value) in enumerate(aucs.items())]
            self.auc_line.set_label("model")
            ax.legend(fontsize=7, loc="lower right")
            self.baselines = aucs
            self.baseline_label.layout.display = None
            self.baseline_label.value = ("baselines (eval AUC): " + ", ".join(f"{k} {v:.4f}" for k, v in aucs.items())
                                         + (f" [{engine}]" if engine else ""))
            self.plot.redraw(force=True)

    # ---- controls: each is a trainer method (callable from any thread) --------------------------------

    @property
    def lr_scheduler(self):
        return self.trainer.lr_scheduler

    @property
    def eval_interval(self):
        return self.trainer.eval_interval

    @property
    def max_eval_batches(self):
        return self.trainer.max_eval_batches

    @property
    def save_prefix(self):
        return self.trainer.snapshot_prefix

    @property
    def error(self):
        """The exception that ended the loop or failed a request (None if none)."""
        return self.trainer.error

    def start(self):
        """Start the trainer's loop thread, or resume it when paused."""
        self.trainer.start()

    def pause(self):
        """Pause after the current iteration (``wait_paused`` waits for that). While paused the session
        is not touched except to serve "Evaluate now" and "Save model"; the readouts show the iteration
        it paused at."""
        self.trainer.pause()

    def resume(self):
        self.trainer.resume()

    def stop(self):
        """End the loop after the current iteration."""
        self.trainer.stop()

    def train_for(self, iterations, timeout=None) -> bool:
        """Train ``iterations`` more iterations in the loop thread, then pause; block until then
        (``Trainer.train_for``). True once paused or once the loop ended (``max_iter``, end of the data,
        Stop, an error), False if ``timeout`` seconds passed first. The readouts and plots are up to
        date when it returns True."""
        return self.trainer.train_for(iterations, timeout)

    def request_eval(self):
        """Evaluate between two iterations (at once, in this thread, when no loop is running). Returns
        a ``threading.Event`` set once served (or failed: see ``error``), e.g. ``dash.request_eval().wait(60)``."""
        return self.trainer.request_eval()

    def request_save(self):
        """Save the model between two iterations (at once when no loop runs), like ``request_eval``."""
        return self.trainer.request_save()

    @property
    def running(self):
        """Whether the loop is on (running or paused)."""
        return self.trainer.running

    def join(self, timeout=None) -> bool:
        """Wait for the loop thread to end; True if it has."""
        return self.trainer.join(timeout)

    def wait_paused(self, timeout=None) -> bool:
        """Wait until the loop waits in pause; True if it does."""
        return self.trainer.wait_paused(timeout)

    def close(self):
        """Stop the loop, wait for it and stop listening to the session."""
        self.stop()
        self.join(10)
        self.session.events.unsubscribe(self._on_event)

    def detach(self, message):
        """Draw the final state, stop listening and turn the buttons off: the dashboard stays on screen
        as a record (``Model.fit(dashboard=True)`` ends so, showing ``message``)."""
        self.session.events.unsubscribe(self._on_event)
        self._refresh(force=True)
        for button in (self.start_button, self.pause_button, self.stop_button, self.eval_button, self.save_button):
            button.disabled = True
        self.status.value = message

    def _check_overflow(self):
        """The overflow readout: every table refusing keys so far (a read, no exception)."""
        reports = self.session.vocabulary_overflow()
        self.overflow.value = ("overflow: " + "; ".join(r.message for r in reports) if reports else
                               f"overflow: none (checked at iteration {self.session.iteration})")

    # ---- events (called in the trainer's thread; they only record and refresh views) ----------------

    def _on_event(self, event):
        if isinstance(event, IterationEnd):
            self._history.append(event.iteration, loss=event.loss, lr=event.learning_rate,
                                 samples_per_sec=event.samples_per_sec)
            self._recent_rates.append(event.samples_per_sec)
            self._refresh()
        elif isinstance(event, EvalEnd):
            self.eval_history.append({"iteration": event.iteration, "metrics": dict(event.metrics)})
            self.status.value = f"eval at {event.iteration}: " + ", ".join(f"{k} {v:.4f}" for k, v in event.metrics)
            self._check_overflow()
            self._refresh(force=True)
        elif isinstance(event, TrainerStatus):
            if event.state != "running":
                if event.state != "paused":
                    self._check_overflow()
                self._refresh(force=True)   # the final frame goes out before the state says "paused"
            self._set_state(event.state, event.message)
        elif isinstance(event, VocabularyOverflow):   # the session found a table refusing keys
            self.overflow.value = f"overflow (iteration {event.iteration}): {event.message}"
        elif isinstance(event, ModelSaved):
            self.saved.append(event)
            self.status.value = f"saved {len(event.files)} files at iteration {event.iteration}"

    def _refresh(self, force=False):
        """Update the widgets and lines from the history, at most once per redraw interval."""
        if not force and not self.plot.due():
            return
        with self.plot.lock:   # the loop thread and callers' threads (evaluate now) both refresh
            self._update_views(force)

    def _update_views(self, force):
        history = self.history
        iterations = [h["iteration"] for h in history]
        self.loss_line.set_data(iterations, [h["loss"] for h in history])
        self.lr_line.set_data(iterations, [h["lr"] for h in history])
        evals = [(e["iteration"], e["metrics"]["AUC"]) for e in self.eval_history if "AUC" in e["metrics"]]
        self.auc_line.set_data([e[0] for e in evals], [e[1] for e in evals])
        iteration = self.session.iteration
        if self.max_iter:
            self.progress.value = min(iteration, self.max_iter)
        else:
            self.progress.max = max(iteration, 1)
            self.progress.value = iteration
        self.iteration_label.value = self._iteration_text(iteration)
        recent = list(self._recent_rates)
        if recent:
            self.throughput.value = f"samples/s: {recent[-1]:,.0f} " \
                                    f"(mean of last {len(recent)}: {sum(recent) / len(recent):,.0f})"
        self.plot.redraw(force=force)

    def _iteration_text(self, iteration):
        return f"{iteration} / {self.max_iter}" if self.max_iter else f"{iteration}"

    def _set_state(self, state, text=None):
        self.state = state
        self.status.value = text or state
        running = state in ("running", "paused")
        self.start_button.disabled = state == "running"
        self.start_button.description = "Resume" if state == "paused" else "Start"
        self.pause_button.disabled = state != "running"
        self.stop_button.disabled = not running
