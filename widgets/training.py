"""``TrainingDashboard``: a live view of a ``Session``'s training, and Start/Pause/Stop controls.

The training loop runs in a background thread so the notebook stays responsive. Buttons only set
flags (``threading.Event``); the loop thread makes every call into the session, holding
``dashboard.lock``, so "evaluate now" and "save model" run between iterations. The plots are fed by
the session's events (``IterationEnd``, ``EvalEnd``, ``ModelSaved``) and redrawn at most
``1 / min_redraw_interval`` times a second, so a fast loop is not slowed down by drawing. The
per-iteration history is bounded (``BinnedHistory``: at most ``history_points`` evenly binned points
over the whole run), so a redraw costs the same at iteration 10 and at iteration 1,000,000.

``train_for(n)`` runs ``n`` iterations in the loop thread and pauses: a notebook (or a test) drives
the dashboard with it where nobody presses the buttons.
"""

from __future__ import annotations

import collections
import threading
import time

import ipywidgets as W

from hugectr_lab.events import EvalEnd, IterationEnd, ModelSaved, VocabularyOverflow

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

    In the browser the dashboard carries the CSS class ``hugectr-lab-training-dashboard``, the
    iteration readout ``hugectr-lab-iteration``, the status line ``hugectr-lab-status`` and the
    figure ``hugectr-lab-plot``.
    """

    def __init__(self, session, lr_scheduler=None, max_iter=None, eval_interval=None, max_eval_batches=None, *,
                 save_prefix="", min_redraw_interval=0.1, clock=time.monotonic, history_points=2000, baselines=None):
        if max_iter is not None and max_iter < 0:
            raise ValueError(f"max_iter must be None or >= 0, got {max_iter!r}")
        self.session = session
        self.lr_scheduler = lr_scheduler
        self.max_iter = max_iter
        self.eval_interval = eval_interval or 0
        self.max_eval_batches = max_eval_batches or session.solver.max_eval_batches
        self.save_prefix = save_prefix
        self.lock = threading.RLock()
        self._history = BinnedHistory(("loss", "lr", "samples_per_sec"), history_points)
        self._recent_rates = collections.deque(maxlen=20)   # samples/s of the last 20 iterations
        self.eval_history, self.saved = [], []
        self.baselines, self._baseline_artists = {}, []
        self.state, self.error = "idle", None
        self._thread = None
        self._pause_at = None                # train_for: pause when session.iteration reaches this
        self._stop = threading.Event()
        self._running = threading.Event()    # cleared while paused
        self._idle = threading.Event()       # set while the loop thread waits in pause
        self._eval_requested = threading.Event()
        self._save_requested = threading.Event()
        self._requests = threading.Lock()
        self._waiters = {"eval": [], "save": []}   # Events of pending requests, set once served

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

    # ---- controls (callable from any thread: they only set flags) ----------------------------------

    def start(self):
        """Start the loop thread, or resume it when paused."""
        if self._thread is not None and self._thread.is_alive():
            self.resume()
            return
        self._stop.clear()
        self._running.set()
        self._idle.clear()
        self.error = None
        self._set_state("running")
        self._thread = threading.Thread(target=self._loop, name="TrainingDashboard", daemon=True)
        self._thread.start()

    def pause(self):
        """Ask the loop to wait after the current iteration (``wait_paused`` waits for that).

        While paused the session is not touched except to serve "Evaluate now" and "Save model";
        the readouts show the iteration it paused at."""
        if self.running:
            self._running.clear()

    def train_for(self, iterations, timeout=None) -> bool:
        """Train ``iterations`` more iterations in the loop thread, then pause; block until then.

        Starts the loop (or resumes it). Counts from the iteration the session is at when called
        (approximate if the loop is already running). Returns True once the loop is paused or has
        ended (``max_iter``, end of the data, Stop, an error), False if ``timeout`` seconds passed
        first. The readouts and plots are up to date when it returns True."""
        iterations = int(iterations)
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations!r}")
        self._pause_at = self.session.iteration + iterations
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._idle.wait(0.02):
            if not self.running:
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
        return True

    def resume(self):
        self._idle.clear()
        self._running.set()
        if self.running:
            self._set_state("running")

    def stop(self):
        """Ask the loop to end after the current iteration."""
        self._stop.set()
        self._running.set()

    def request_eval(self) -> threading.Event:
        """Evaluate between two iterations (at once, in this thread, when no loop is running).

        Returns an Event that is set once the request has been served (or failed: see ``error``),
        e.g. ``dash.request_eval().wait(60)``."""
        return self._request("eval", self._eval_requested)

    def request_save(self) -> threading.Event:
        """Save the model between two iterations (at once, in this thread, when no loop is running).

        Returns an Event that is set once the request has been served, like ``request_eval``."""
        return self._request("save", self._save_requested)

    def _request(self, kind, flag):
        done = threading.Event()
        with self._requests:
            self._waiters[kind].append(done)
            flag.set()
        if not self.running:
            self._serve_now()
        return done

    @property
    def running(self):
        """Whether the loop thread is alive (running or paused)."""
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout=None) -> bool:
        """Wait for the loop thread to end; True if it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def wait_paused(self, timeout=None) -> bool:
        """Wait until the loop thread is waiting in pause; True if it is."""
        return self._idle.wait(timeout)

    def close(self):
        """Stop the loop, wait for it and stop listening to the session."""
        self.stop()
        self.join(10)
        self.session.events.unsubscribe(self._on_event)

    # ---- the loop thread ----------------------------------------------------------------------------

    def _loop(self):
        session = self.session
        try:
            with self.lock:
                reader = session.get_data_reader_train()
                if not reader.started:
                    session.start_data_reading()
            while not self._stop.is_set():
                if not self._running.is_set():
                    self._refresh(force=True)   # the final frame goes out before the state says "paused"
                    self._set_state("paused")
                    self._idle.set()
                    while not self._running.wait(0.02):
                        self._serve_requests()
                    self._idle.clear()
                    continue
                self._serve_requests()
                if self.max_iter is not None and session.iteration >= self.max_iter:
                    self._finish("finished")
                    return
                if self._pause_at is not None and session.iteration >= self._pause_at:
                    self._pause_at = None
                    self._running.clear()
                    continue
                with self.lock:
                    if self.lr_scheduler is not None:
                        session.set_learning_rate(self.lr_scheduler.get_next())
                    trained = session.train()
                if not trained:
                    self._finish("finished (end of the training data)")
                    return
                if self.eval_interval and session.iteration % self.eval_interval == 0:
                    self._evaluate()
            self._serve_requests()
            self._finish("stopped")
        except Exception as exc:  # shown in the dashboard; the notebook keeps running
            self.error = exc
            self._finish("error", f"error: {type(exc).__name__}: {exc}")

    def _finish(self, state, text=None):
        self._pause_at = None
        self._check_overflow()
        self._set_state(state.split(" ")[0], text or state)
        self._refresh(force=True)
        self.start_button.disabled = False
        self.pause_button.disabled = self.stop_button.disabled = True

    def _serve_now(self):
        try:
            self._serve_requests()
        except Exception as exc:
            self.error = exc
            self.status.value = f"error: {type(exc).__name__}: {exc}"

    def _serve_requests(self):
        for kind, flag, action in (("eval", self._eval_requested, self._evaluate),
                                   ("save", self._save_requested, self._save)):
            if not flag.is_set():
                continue
            with self._requests:
                flag.clear()
                waiters, self._waiters[kind] = self._waiters[kind], []
            try:
                action()
            finally:
                for done in waiters:
                    done.set()

    def _evaluate(self):
        session = self.session
        with self.lock:
            self._check_overflow()
            session.copy_weights_for_evaluation()
            for _ in range(self.max_eval_batches):
                if not session.eval():
                    break
            session.get_eval_metrics()  # publishes EvalEnd, which _on_event records

    def _save(self):
        with self.lock:
            if self.session.iteration <= 0:
                self.status.value = "nothing to save before the first iteration"
                return
            self.session.download_params_to_files(self.save_prefix, self.session.iteration)

    def _check_overflow(self):
        with self.lock:
            reports = self.session.vocabulary_overflow()   # distinct keys refused per table, no exception
            self.overflow.value = ("overflow: " + "; ".join(r.message for r in reports) if reports else
                                   f"overflow: none (checked at iteration {self.session.iteration})")

    # ---- events (called in the loop thread; they only record and refresh views) -------------------

    def _on_event(self, event):
        if isinstance(event, IterationEnd):
            self._history.append(event.iteration, loss=event.loss, lr=event.learning_rate,
                                 samples_per_sec=event.samples_per_sec)
            self._recent_rates.append(event.samples_per_sec)
            self._refresh()
        elif isinstance(event, EvalEnd):
            self.eval_history.append({"iteration": event.iteration, "metrics": dict(event.metrics)})
            self.status.value = f"eval at {event.iteration}: " + ", ".join(f"{k} {v:.4f}" for k, v in event.metrics)
            self._refresh(force=True)
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
