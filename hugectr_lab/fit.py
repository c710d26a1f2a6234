"""The training loop HugeCTR's ``huge_ctr --train`` and the v3.0 preview ``Model.fit()`` run, over a Session.

Non-epoch mode (``repeat_dataset=True``): ``max_iter`` iterations; epoch mode: ``num_epochs`` passes
over the training source. Every iteration takes the scheduler's next learning rate; every
``eval_interval`` iterations (not at 0) it copies weights to the eval network and runs
up to ``max_eval_batches`` eval batches (stopping early at the end of the eval source, then
rewinding it), and stops when AUC reaches its threshold ("Hit target accuracy"). Every ``snapshot``
iterations (not at 0) the Session writes its model files (``download_params_to_files``: HugeCTR's
names under ``snapshot_prefix``). A loss that is NaN or infinite at a ``display`` iteration ends the
run with ``NonFiniteError`` (the Session itself raises it for the step that produced it). Epoch mode
can visit several training sources per epoch (``sources``: file lists, each with the keyset the model
oversubscriber loads before it -- HugeCTR v3.1's ``Model.fit`` over source/keyset pairs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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


def evaluate(session, max_eval_batches):
    """Copy weights, run up to ``max_eval_batches`` eval batches (rewinding at the end of the source)
    and return ``get_eval_metrics()``. Vocabulary overflow is reported by the session's eval (a
    warning, or an error with the solver's on_vocabulary_overflow="error"), not raised as HugeCTR's
    huge_ctr does (docs/reliability.md)."""
    session.copy_weights_for_evaluation()
    for _ in range(max_eval_batches):
        if not session.eval():
            session.get_data_reader_eval().set_source()
            break
    return session.get_eval_metrics()


def fit(session, lr_scheduler, *, max_iter=0, num_epochs=0, display=200, eval_interval=1000,
        max_eval_batches=100, stop_at=None, print_fn=None, snapshot=0, snapshot_prefix="./",
        sparse_format="v3.0", sources=None):
    """Train ``session``; returns a ``FitResult``. ``stop_at``: metric name → threshold that ends
    training when reached (default: the solver's metrics_spec thresholds below 1.0). ``snapshot``: 0
    for none. ``sources`` (epoch mode): ``[(file_list, keyset or None), ...]`` per epoch; None rewinds
    the reader's current source."""
    say = print_fn or (lambda *_: None)
    if sources is not None and not epoch_mode_of(session):
        raise ValueError("fit(sources=...): several training sources need epoch mode (repeat_dataset=False)")
    stop_at = dict(stop_at if stop_at is not None else
                   {k: v for k, v in session.solver.metrics_spec.items() if k == "AUC" and v < 1.0})
    result = FitResult()
    epoch_mode = epoch_mode_of(session)
    if epoch_mode:
        if num_epochs < 1:
            raise ValueError("fit(): epoch mode (repeat_dataset=False) needs num_epochs >= 1")
    elif max_iter < 1:
        raise ValueError("fit(): non-epoch mode needs max_iter >= 1")
    else:
        session.start_data_reading()
    if epoch_mode and session.get_data_reader_eval() is not None:
        session.get_data_reader_eval().set_source()

    def step():
        session.set_learning_rate(lr_scheduler.get_next())
        if not session.train():
            return False
        i = result.iterations = result.iterations + 1
        if display and i % display == 0:
            loss = session.get_current_loss()
            if not math.isfinite(loss):
                raise NonFiniteError(
                    f"fit(): the training loss is {loss} at iteration {i}: the model diverged (try a smaller "
                    "learning rate, a loss scaler with mixed precision, or check the data)", iteration=i)
            result.losses.append((i, loss))
            say(f"iter {i}: loss {loss:.6f}")
        if snapshot and i % snapshot == 0:
            session.download_params_to_files(snapshot_prefix, i, sparse_format=sparse_format)
            result.snapshots.append(i)
        if eval_interval and i % eval_interval == 0 and session.get_data_reader_eval() is not None:
            metrics = evaluate(session, max_eval_batches)
            result.evaluations.append((i, metrics))
            say(f"iter {i}: " + ", ".join(f"{k} {v:.6f}" for k, v in metrics))
            if any(dict(metrics).get(k, float("-inf")) >= t for k, t in stop_at.items()):
                result.hit_target = True
                say(f"Hit target accuracy {stop_at} at iteration {i}")
                return False
        return True

    if epoch_mode:
        for _ in range(num_epochs):
            for file_list, keyset in sources or [(None, None)]:
                session.get_data_reader_train().set_source(file_list or "")
                if keyset:
                    session.get_model_oversubscriber().update(keyset)
                while step():
                    pass
                if result.hit_target:
                    break
            if result.hit_target:
                break
    else:
        while result.iterations < max_iter and step():
            pass
    return result
