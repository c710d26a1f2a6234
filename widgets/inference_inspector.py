"""``InferenceInspector``: embedding-cache statistics of an ``InferenceSession`` (or an
``EmbeddingCache``), fed by the ``CacheStats`` events the cache publishes after every lookup."""

from __future__ import annotations

import time

import ipywidgets as W

from hugectr_lab.events import CacheStats

from ._figure import LiveFigure

FIELDS = ("calls", "hit_rate", "last_hit_rate", "lookups", "hits", "insertions", "evictions", "occupied",
          "capacity", "refreshes", "unknown_keys", "enabled")


class InferenceInspector:
    """``InferenceInspector(source, min_redraw_interval=0.1)``; ``source`` is an ``InferenceSession``
    or an ``EmbeddingCache``.

    ``history`` maps each table to its ``CacheStats`` events in order; ``latest`` holds the current
    statistics per table (``stats()`` until the first event); ``hit_lines`` / ``cumulative_lines``
    are the per-table lines of the last-call and cumulative hit rates, updated at each redraw
    (throttled like the training dashboard's: ``refresh()`` forces one); ``table`` is the HTML table.
    ``refresh()`` re-reads ``stats()`` (e.g. after ``reset_stats``); ``close()`` unsubscribes.
    """

    def __init__(self, source, *, min_redraw_interval=0.1, clock=time.monotonic):
        self.cache = getattr(source, "embedding_cache", source)
        self.events = self.cache.events
        stats = self.cache.stats()
        self.history = {s.table: [] for s in stats}
        self.latest = {s.table: s for s in stats}
        self.plot = LiveFigure(1, 2, figsize=(10, 3), min_interval=min_redraw_interval, clock=clock)
        ax_rate, ax_cum = self.plot.axes
        self.hit_lines = {t: ax_rate.plot([], [], ".-", lw=1, label=f"table {t}")[0] for t in self.history}
        self.cumulative_lines = {t: ax_cum.plot([], [], lw=1, label=f"table {t}")[0] for t in self.history}
        for ax, title in ((ax_rate, "hit rate of each lookup call"), (ax_cum, "cumulative hit rate")):
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("lookup call", fontsize=8)
            ax.set_ylim(-0.05, 1.05)
            ax.legend(fontsize=7, loc="lower right")
        self.table = W.HTML(layout=W.Layout(overflow="auto"))   # scrolls sideways in a narrow notebook
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.widget = W.VBox([W.HBox([W.Label(f"embedding cache of model {self.cache.model_name!r}"),
                                      self.refresh_button]), self.table, self.plot.widget])
        self.widget.add_class("hugectr-lab-inference-inspector")
        self.events.subscribe(self._on_event)
        self._draw(force=True)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def _on_event(self, event):
        if isinstance(event, CacheStats) and event.table in self.history:
            self.history[event.table].append(event)
            self.latest[event.table] = event
            self._draw()

    def refresh(self):
        """Re-read the cache's current statistics and redraw."""
        for s in self.cache.stats():
            self.latest[s.table] = s
        self._draw(force=True)

    def close(self):
        self.events.unsubscribe(self._on_event)

    def _draw(self, force=False):
        if not force and not self.plot.due():
            return
        head = "".join(f"<th style='padding:1px 6px'>{f}</th>" for f in ("table", *FIELDS, "occupancy"))
        rows = []
        for t, s in sorted(self.latest.items()):
            cells = [t] + [f"{getattr(s, f):.3f}" if isinstance(getattr(s, f), float) else getattr(s, f)
                           for f in FIELDS] + [f"{s.occupancy:.3f}"]
            rows.append("<tr>" + "".join(f"<td style='padding:1px 6px'>{c}</td>" for c in cells) + "</tr>")
        self.table.value = f"<table style='line-height:1.4;font-size:12px'><tr>{head}</tr>{''.join(rows)}</table>"
        with self.plot.lock:   # CacheStats arrive in the thread that called predict
            for t, events in self.history.items():
                calls = [e.calls for e in events]
                self.hit_lines[t].set_data(calls, [e.last_hit_rate for e in events])
                self.cumulative_lines[t].set_data(calls, [e.hit_rate for e in events])
            self.plot.redraw(force=force)
