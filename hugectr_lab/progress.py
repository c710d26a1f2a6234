"""A tqdm progress bar driven by a Session's events (the default progress reporter)."""

from __future__ import annotations

from tqdm.auto import tqdm

from .events import EvalEnd, IterationEnd


class ProgressReporter:
    """Subscribe to ``session.events``; show iterations, loss, learning rate and samples/s, and print
    evaluation metrics as they arrive. ``with ProgressReporter(sess, total=1000): ...`` closes the bar.
    """

    def __init__(self, session, total=None, desc="train", print_fn=None, **tqdm_kwargs):
        self.session = session
        self.bar = tqdm(total=total, desc=desc, unit="it", **tqdm_kwargs)
        self.print_fn = print_fn or self.bar.write
        session.events.subscribe(self)

    def __call__(self, event):
        if isinstance(event, IterationEnd):
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{event.loss:.4f}", lr=f"{event.learning_rate:.3g}",
                                 samples_s=f"{event.samples_per_sec:,.0f}", refresh=False)
        elif isinstance(event, EvalEnd):
            metrics = ", ".join(f"{name} {value:.4f}" for name, value in event.metrics)
            self.print_fn(f"iter {event.iteration}: {metrics} ({event.batches} eval batches)")

    def close(self):
        self.session.events.unsubscribe(self)
        self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
