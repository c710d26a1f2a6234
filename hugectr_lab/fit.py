"""The one training loop: ``Trainer`` over a Session, which ``fit`` (HugeCTR's ``huge_ctr --train``, the
v3.0 preview and v3.1 ``Model.fit``) runs to the end and the TrainingDashboard drives from its buttons.

A step takes the scheduler's next learning rate and trains one batch. Non-epoch mode
(``repeat_dataset=True``): until ``max_iter`` iterations; epoch mode: ``num_epochs`` passes over the
training sources (``sources``: file lists, each with the keyset the model oversubscriber loads before
it -- HugeCTR v3.1's ``Model.fit`` over source/keyset pairs). Every ``display`` iterations the loss is
read (a NaN or infinite one ends the run with ``NonFiniteError``); every ``snapshot`` iterations the
Session writes its model files (one atomic snapshot under ``snapshot_prefix``); every
``eval_interval`` iterations it evaluates (``evaluate``: the weights copied, then
``Session.evaluation`` -- from the start of the eval source, at most ``max_eval_batches`` batches,
rewound after) and stops when a metric reaches its ``stop_at`` threshold ("Hit target accuracy").

The loop runs in the caller's thread (``run``) or a background one (``start``); ``pause``, ``resume``,
``stop``, ``train_for(n)`` and the requests ``request_eval`` / ``request_save`` may come from any
thread and take effect between two steps. Every step and evaluation holds ``session.lock``, so other
threads (views reading the model) see the session between steps. The Session publishes
``IterationEnd``, ``EvalEnd`` and ``ModelSaved``; the trainer adds ``TrainerStatus`` on the same
``session.events``.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

from .events import TrainerStatus
from .numerics import NonFiniteError


@dataclass
class FitResult:
    iterations: int = 0
    losses: list = field(default_factory=list)       # (iteration, loss) every `display` iterations
    evaluations: list = field(default_factory=list)  # (iteration, [(name, value), ...])
    snapshots: list = field(default_factory=list)    # iterations whose model files were written
    hit_target: bool = False

    @property
    def last_metrics(self):
        return dict(self.evaluations[-1][1]) if self.evaluations else {}


def epoch_mode_of(session):
    """Whether ``session`` trains in epochs (``repeat_dataset=False``) rather than for ``max_iter`` steps."""
    return not session.solver.repeat_dataset


def evaluate(session, max_eval_batches=None):
    """Copy the training weights to the eval networks and run ``Session.evaluation``: at most
    ``max_eval_batches`` batches (None: the session's default pass) from the start of the eval source,
    which is rewound after; returns ``get_eval_metrics()`` (also published as ``EvalEnd``). Vocabulary
    overflow is reported by the session (a warning, or an error with on_vocabulary_overflow="error")."""
    with session.lock:   # no training step between the copy and the pass
        session.copy_weights_for_evaluation()
        return session.evaluation(max_batches=max_eval_batches)


class Request(threading.Event):
    """A request to the trainer (``request_eval``, ``request_save``): set once served, with ``result``
    (what the action returned) or ``error`` (the exception it raised)."""

    def __init__(self, action):
        super().__init__()
        self.action, self.result, self.error = action, None, None


class Trainer:
    """``Trainer(session, lr_scheduler=None, *, max_iter=None, num_epochs=0, sources=None, display=0,
    eval_interval=0, max_eval_batches=None, stop_at=None, snapshot=0, snapshot_prefix="./",
    sparse_format="v3.0", print_fn=None)``.

    * ``lr_scheduler``: its ``get_next()`` goes to ``session.set_learning_rate`` before every batch
      (None: the session's learning rate stays).
    * ``max_iter``: iterations this trainer trains (None: no limit).
    * ``num_epochs`` (epoch mode): passes over ``sources`` (``[(file_list, keyset or None), ...]``;
      None: the training reader's source, rewound at each pass). 0: train until the data ends, from
      where the training reader is (started if it was not).
    * ``display``, ``eval_interval``, ``snapshot``: every that many iterations (0: never) read the loss,
      evaluate, write the model files. ``stop_at``: {metric: threshold} that ends the run when an
      interval evaluation reaches it.

    ``step()``, ``evaluate()`` and ``snapshot()`` act at once in the calling thread; ``run()`` loops in
    the calling thread, ``start()`` in a background one. State: ``state`` ("idle", "running", "paused",
    "stopped", "finished", "error"), ``end_reason`` (why the run is over, None while it is not),
    ``error`` (the exception that ended the loop or a request), ``iterations``, ``result`` (a FitResult).
    """

    def __init__(self, session, lr_scheduler=None, *, max_iter=None, num_epochs=0, sources=None, display=0,
                 eval_interval=0, max_eval_batches=None, stop_at=None, snapshot=0, snapshot_prefix="./",
                 sparse_format="v3.0", print_fn=None):
        epoch_mode = epoch_mode_of(session)
        if sources is not None and not epoch_mode:
            raise ValueError("Trainer(sources=...): several training sources need epoch mode (repeat_dataset=False)")
        if num_epochs and not epoch_mode:
            raise ValueError("Trainer(num_epochs=...): epochs need epoch mode (repeat_dataset=False); "
                             "use max_iter with repeat_dataset=True")
        for name, value in (("max_iter", max_iter), ("num_epochs", num_epochs), ("display", display),
                            ("eval_interval", eval_interval), ("snapshot", snapshot)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"Trainer({name}=...) must be an integer >= 0, got {value!r}")
        self.session = session
        self.lr_scheduler = lr_scheduler
        self.max_iter = max_iter
        self.num_epochs = int(num_epochs or 0)
        self.sources = list(sources) if sources is not None else None
        self.display, self.eval_interval, self.snapshot_interval = display or 0, eval_interval or 0, snapshot or 0
        self.max_eval_batches = max_eval_batches or session.solver.max_eval_batches
        self.stop_at = dict(stop_at or {})
        self.snapshot_prefix, self.sparse_format = snapshot_prefix, sparse_format
        self._say = print_fn or (lambda *_: None)
        self.result = FitResult()
        self.state, self.end_reason, self.error = "idle", None, None
        self._begun = False
        self._passes = None          # epoch mode with num_epochs: iterator over (file_list, keyset)
        self._in_pass = False        # a pass's source is set and not yet exhausted
        self._thread = None
        self._stop = threading.Event()
        self._resume = threading.Event()   # cleared while paused
        self._idle = threading.Event()     # set while the loop waits in pause
        self._pause_at = None              # train_for: pause once `iterations` reaches this
        self._requests = threading.Lock()
        self._pending = []                 # Requests the loop serves between steps
        self._accepting = False            # a loop is running and will serve requests
        self._looping = False              # run() or the background thread is in the loop

    @property
    def lock(self):
        """The session's lock, held by every step and evaluation."""
        return self.session.lock

    @property
    def iterations(self):
        return self.result.iterations

    # ---- one step at a time (any thread) --------------------------------------------------------------

    def step(self) -> bool:
        """Train one iteration (with its display, snapshot and evaluation); False, training nothing, once
        the run is over (``end_reason`` says why: max_iter, the epochs, the end of the data, the target)."""
        session = self.session
        with session.lock:
            if self._over():
                return False
            self._begin()
            while True:
                if self._passes is not None and not self._in_pass:
                    source = next(self._passes, None)
                    if source is None:
                        self.end_reason = f"{self.num_epochs} epoch{'s' * (self.num_epochs > 1)} done"
                        return False
                    file_list, keyset = source
                    session.get_data_reader_train().set_source(file_list or "")
                    if keyset:
                        session.get_model_oversubscriber().update(keyset)
                    self._in_pass = True
                if self.lr_scheduler is not None:
                    session.set_learning_rate(self.lr_scheduler.get_next())
                if session.train():
                    break
                if self._passes is None:
                    self.end_reason = "end of the training data"
                    return False
                self._in_pass = False
            i = self.result.iterations = self.iterations + 1
            if self.display and i % self.display == 0:
                self._record_loss(i)
            if self.snapshot_interval and i % self.snapshot_interval == 0:
                self.snapshot(iteration=i)
            if self.eval_interval and i % self.eval_interval == 0 and session.get_data_reader_eval() is not None:
                metrics = dict(self.evaluate())
                if any(metrics.get(k, float("-inf")) >= t for k, t in self.stop_at.items()):
                    self.result.hit_target = True
                    self.end_reason = f"hit target accuracy {self.stop_at}"
                    self._say(f"Hit target accuracy {self.stop_at} at iteration {i}")
            return True

    def _over(self):
        """Whether the run is over (``end_reason`` set; reaching ``max_iter`` sets it)."""
        if self.end_reason is None and self.max_iter is not None and self.iterations >= self.max_iter:
            self.end_reason = "max_iter reached"
        return self.end_reason is not None

    def _begin(self):
        if self._begun:
            return
        session = self.session
        if self.num_epochs:
            self._passes = (source for _ in range(self.num_epochs) for source in self.sources or [(None, None)])
        elif not session.get_data_reader_train().started:
            session.start_data_reading()
        if epoch_mode_of(session) and session.get_data_reader_eval() is not None:
            session.get_data_reader_eval().set_source()
        self._begun = True

    def _record_loss(self, i):
        loss = self.session.get_current_loss()
        scaler = self.session.loss_scaler
        if not math.isfinite(loss) and scaler is not None and scaler.last_skipped:
            self._say(f"iter {i}: step skipped by dynamic loss scaling (loss scale now {scaler.scale:g})")
            return
        if not math.isfinite(loss):
            raise NonFiniteError(
                f"fit(): the training loss is {loss} at iteration {i}: the model diverged (try a smaller "
                "learning rate, a loss scaler with mixed precision, or check the data)", iteration=i)
        self.result.losses.append((i, loss))
        self._say(f"iter {i}: loss {loss:.6f}")

    def evaluate(self):
        """Evaluate now (``evaluate``: copy the weights, one rewound pass of at most ``max_eval_batches``
        batches); the metrics also go to ``result.evaluations`` and the ``EvalEnd`` event."""
        with self.session.lock:
            metrics = evaluate(self.session, self.max_eval_batches)
            self.result.evaluations.append((self.iterations, metrics))
        self._say(f"iter {self.iterations}: " + ", ".join(f"{k} {v:.6f}" for k, v in metrics))
        return metrics

    def snapshot(self, prefix=None, iteration=None):
        """Write the model files through ``download_params_to_files`` -- one atomic snapshot, announced by
        ``ModelSaved`` -- under ``prefix`` (default ``snapshot_prefix``) for ``iteration`` (default: the
        session's). Returns the iteration written, or None before the first iteration (nothing to save)."""
        session = self.session
        with session.lock:
            iteration = session.iteration if iteration is None else iteration
            if iteration <= 0:
                self._publish(self.state, "nothing to save before the first iteration")
                return None
            session.download_params_to_files(self.snapshot_prefix if prefix is None else prefix, iteration,
                                             sparse_format=self.sparse_format)
            self.result.snapshots.append(iteration)
        return iteration

    # ---- the loop ------------------------------------------------------------------------------------

    def run(self) -> FitResult:
        """Loop in the calling thread until the run is over or ``stop()``; returns ``result``. An exception
        ends the loop (state "error") and is raised."""
        self._open_loop()
        self._loop(raise_errors=True)
        return self.result

    def start(self):
        """Loop in a background daemon thread (or resume a paused one); returns at once."""
        if self.running:
            self.resume()
            return
        self._open_loop()
        self._thread = threading.Thread(target=self._loop, name="hugectr_lab.Trainer", daemon=True)
        self._thread.start()

    def _open_loop(self):
        if self.running:
            raise RuntimeError("Trainer: the loop is already running (pause, resume or stop it)")
        self._looping = True
        self._stop.clear()
        self._resume.set()
        self._idle.clear()
        self.error = None
        with self._requests:
            self._accepting = True
        self._publish("running", "running")

    def pause(self):
        """Pause after the current step (``wait_paused`` waits for that); requests are still served."""
        if self.running:
            self._resume.clear()

    def resume(self):
        self._idle.clear()
        self._resume.set()

    def stop(self):
        """End the loop after the current step (also when paused)."""
        self._stop.set()
        self._resume.set()

    def train_for(self, iterations, timeout=None) -> bool:
        """Train ``iterations`` more iterations in the background loop (starting or resuming it), then
        pause; block until then. True once paused or once the loop ended first (the views subscribed to
        the events are up to date then), False if ``timeout`` seconds passed first."""
        iterations = int(iterations)
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations!r}")
        self._pause_at = self.iterations + iterations
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._idle.wait(0.02):
            if not self.running:
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
        return True

    @property
    def running(self):
        """Whether the loop is on (running or paused; ``run`` or ``start``) and has not ended."""
        return self._looping

    def join(self, timeout=None) -> bool:
        """Wait for the background loop to end; True if it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return not self.running

    def wait_paused(self, timeout=None) -> bool:
        """Wait until the loop waits in pause; True if it does."""
        return self._idle.wait(timeout)

    def _loop(self, raise_errors=False):
        try:
            while True:
                self._serve_requests()
                if self._stop.is_set():
                    return self._end("stopped", "stopped")
                if self._over():
                    return self._end("finished", f"finished ({self.end_reason})")
                if self._pause_at is not None and self.iterations >= self._pause_at:
                    self._pause_at = None
                    self._resume.clear()
                if not self._resume.is_set():
                    self._wait_paused()
                    continue
                self.step()
        except Exception as exc:  # noqa: BLE001 -- reported as state "error"; raised by run()
            self.error = exc
            self._end("error", f"error: {type(exc).__name__}: {exc}")
            if raise_errors:
                raise

    def _wait_paused(self):
        self._publish("paused", "paused")   # views draw their final frame before wait_paused returns
        self._idle.set()
        while not self._resume.wait(0.02):
            self._serve_requests()
        self._idle.clear()
        if not self._stop.is_set():
            self._publish("running", "running")

    def _end(self, state, message):
        self._pause_at = None
        with self._requests:
            self._accepting = False
        self._serve_requests()   # what was asked before the end is still served
        self._publish(state, message)
        self._looping = False    # after the last event: a view reads the final state when this is seen

    # ---- requests (the dashboard's "Evaluate now" and "Save model") -------------------------------------

    def request_eval(self) -> Request:
        """Evaluate between two steps of the running loop (also while paused), or at once in this thread
        when no loop runs. Never raises: the Request carries the metrics or the error."""
        return self._request(self.evaluate)

    def request_save(self) -> Request:
        """``snapshot()`` between two steps, or at once when no loop runs, like ``request_eval``."""
        return self._request(self.snapshot)

    def _request(self, action):
        request = Request(action)
        with self._requests:
            if self._accepting:
                self._pending.append(request)
                return request
        self._serve(request)
        return request

    def _serve_requests(self):
        with self._requests:
            pending, self._pending = self._pending, []
        for request in pending:
            self._serve(request)

    def _serve(self, request):
        try:
            request.result = request.action()
        except Exception as exc:  # noqa: BLE001 -- a failed request is reported, the loop goes on
            request.error = self.error = exc
            self._publish(self.state, f"error: {type(exc).__name__}: {exc}")
        finally:
            request.set()

    def _publish(self, state, message):
        self.state = state
        self.session.events.publish(TrainerStatus(state, self.session.iteration, message))


def fit_trainer(session, lr_scheduler, *, max_iter=0, num_epochs=0, display=200, eval_interval=1000,
                max_eval_batches=100, stop_at=None, print_fn=None, snapshot=0, snapshot_prefix="./",
                sparse_format="v3.0", sources=None) -> Trainer:
    """The ``Trainer`` that ``fit`` runs (same arguments), for callers that also attach a view to it."""
    epoch_mode = epoch_mode_of(session)
    if sources is not None and not epoch_mode:
        raise ValueError("fit(sources=...): several training sources need epoch mode (repeat_dataset=False)")
    if epoch_mode and num_epochs < 1:
        raise ValueError("fit(): epoch mode (repeat_dataset=False) needs num_epochs >= 1")
    if not epoch_mode and max_iter < 1:
        raise ValueError("fit(): non-epoch mode needs max_iter >= 1")
    stop_at = dict(stop_at if stop_at is not None else
                   {k: v for k, v in session.solver.metrics_spec.items() if k == "AUC" and v < 1.0})
    return Trainer(session, lr_scheduler, max_iter=None if epoch_mode else max_iter,
                   num_epochs=num_epochs if epoch_mode else 0, sources=sources, display=display,
                   eval_interval=eval_interval, max_eval_batches=max_eval_batches, stop_at=stop_at,
                   snapshot=snapshot, snapshot_prefix=snapshot_prefix, sparse_format=sparse_format,
                   print_fn=print_fn)


def fit(session, lr_scheduler, **options) -> FitResult:
    """Train ``session`` to the end in this thread; returns a ``FitResult``. Options (``fit_trainer``):
    ``max_iter`` (non-epoch mode) or ``num_epochs`` (epoch mode; ``sources``: ``[(file_list, keyset or
    None), ...]`` per epoch, None rewinds the reader's current source), ``display``, ``eval_interval``,
    ``max_eval_batches``, ``stop_at`` (metric name → threshold; default: the solver's metrics_spec AUC
    threshold below 1.0), ``snapshot`` (0 for none), ``snapshot_prefix``, ``sparse_format``, ``print_fn``."""
    return fit_trainer(session, lr_scheduler, **options).run()
