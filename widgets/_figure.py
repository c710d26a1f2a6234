"""One matplotlib figure as a widget: an ipympl canvas when matplotlib's backend is ipympl
(``%matplotlib widget``), otherwise an ``ipywidgets.Image`` holding a PNG of the figure (a static
figure that any front end shows, and that a background thread may replace safely).

Redraws are throttled: ``redraw()`` draws at most once per ``min_interval`` seconds, and never
sooner than ``busy_factor`` times the duration of the previous draw after it (so drawing takes at
most about 1 / (1 + busy_factor) of the caller's time, even when a static PNG takes long to
render); ``redraw(force=True)`` always draws (used after the last update of a run).

Thread safety: a dashboard's loop thread changes the artists and redraws while the kernel's main
thread may draw too (ipympl draws when the front end asks, e.g. on resize). ``lock`` (re-entrant)
serialises both: hold it while changing artists, ``redraw`` holds it, and under ipympl the canvas's
own ``draw`` is wrapped to hold it. Under ipympl ``redraw`` renders and pushes the frame in the
calling thread (``canvas.draw()``), so plots update while the kernel is busy running a cell.
"""

from __future__ import annotations

import io
import threading
import time

import ipywidgets as W
import matplotlib
from matplotlib.figure import Figure


def interactive_backend() -> bool:
    """True when matplotlib draws into ipympl canvases (``%matplotlib widget`` / ``ipympl``)."""
    backend = matplotlib.get_backend().lower()
    return "ipympl" in backend or backend == "widget"


class LiveFigure:
    """A figure of ``nrows`` x ``ncols`` axes, its widget and a throttled ``redraw``."""

    def __init__(self, nrows=1, ncols=1, *, figsize=(9, 3), min_interval=0.1, busy_factor=4.0,
                 clock=time.monotonic):
        self.min_interval = float(min_interval)
        self.clock = clock
        self.busy_factor = float(busy_factor)
        self.redraws = 0
        self.draw_seconds = 0.0   # duration of the last draw
        self._last = None
        self.lock = threading.RLock()
        self.interactive = interactive_backend()
        if self.interactive:
            import matplotlib.pyplot as plt

            with plt.ioff():
                self.figure = plt.figure(figsize=figsize)
            self.widget = canvas = self.figure.canvas
            draw = canvas.draw

            def locked_draw(*args, **kwargs):
                with self.lock:
                    return draw(*args, **kwargs)

            canvas.draw = locked_draw   # the front end's draw requests run in the kernel's main thread
        else:
            self.figure = Figure(figsize=figsize)
            self.widget = W.Image(format="png")
        self.widget.add_class("hugectr-lab-plot")
        axes = self.figure.subplots(nrows, ncols, squeeze=False)
        self.axes = [ax for row in axes for ax in row]

    def redraw(self, force=False) -> bool:
        """Draw the figure unless the last draw was less than ``min_interval`` ago; True if it drew."""
        with self.lock:
            now = self.clock()
            if not force and not self.due(now):
                return False
            self._last = now
            self.redraws += 1
            started = time.perf_counter()
            for ax in self.axes:
                ax.relim()
                ax.autoscale_view()
            if self.interactive:
                self.figure.canvas.draw()   # renders and sends the frame from this thread
            else:
                self.figure.tight_layout()
                buffer = io.BytesIO()
                self.figure.savefig(buffer, format="png", dpi=72)
                self.widget.value = buffer.getvalue()
            self.draw_seconds = time.perf_counter() - started
            return True

    def due(self, now=None) -> bool:
        """Whether a non-forced ``redraw`` would draw now."""
        if self._last is None:
            return True
        now = self.clock() if now is None else now
        return now - self._last >= max(self.min_interval, self.busy_factor * self.draw_seconds)
