"""``EmbeddingInspector``: rows of a Session's embedding table by raw key, per-slot norm statistics,
the most frequent keys of the training data, the keys closest to a key and a 2-D projection of the
table (``hugectr_lab.analysis``: PCA by SVD and kNN by GEMM + top-k, on CuPy where the backend is).

The table is read with ``SparseEmbedding.dump()`` (host copies; press "Refresh" after training).
Key frequencies and each key's slot come from a separate, read-only pass over the training source
(the first ``scan_batches`` batches): the session publishes no event that carries its batches, and
distributed embeddings do not store slot ids.
"""

from __future__ import annotations

import contextlib
import html

import ipywidgets as W
import numpy as np

from hugectr_lab.analysis import get_analysis_engine, nearest_keys

from ._figure import LiveFigure

# ipywidgets' HTML inherits the height of one widget row as its line height; tables read better compact
TABLE_STYLE = "line-height:1.4;font-size:12px"


class EmbeddingInspector:
    """``EmbeddingInspector(session, table=0, scan_batches=20, top_k=20, lock=None, engine=None)``.

    ``lookup(keys)`` -> {key: vector (E,) or None}; ``slot_stats`` (one dict per slot: slot, keys,
    mean/std/min/max of the L2 norms of the slot's vectors); ``top_keys`` ((key, count) pairs,
    most frequent first); ``neighbors(key, k, metric)`` -> [(key, score)] closest first;
    ``projection`` ((N, 2) PCA coordinates of the table's rows, in ``keys`` order); ``refresh()``
    re-reads the table. ``lock``: a lock held while the table is read (pass ``TrainingDashboard.lock``
    to read between iterations of a running dashboard). ``engine``: an ``AnalysisEngine`` (default:
    ``get_analysis_engine(backend=session.backend)``), shown in the neighbours box.
    """

    def __init__(self, session, table=0, scan_batches=20, top_k=20, lock=None, engine=None):
        if not 0 <= table < len(session.embeddings):
            raise ValueError(f"table must be in [0, {len(session.embeddings)}), got {table!r}")
        self.session, self.table, self.top_k = session, table, int(top_k)
        self.scan_batches = int(scan_batches)
        self.lock = lock or contextlib.nullcontext()
        self.engine = get_analysis_engine("auto" if engine is None else engine,
                                          session.backend if engine is None else None)
        self.embedding = session.embeddings[table]
        spec = session.config.embeddings[table]
        self.slot_num = session.config.sparse_input(spec.bottom).slot_num
        self._input_index = [s.top for s in session.config.data.sparse].index(spec.bottom)
        self.key_counts, self.key_slots = self._scan()
        order = np.lexsort((self.key_counts[0], -self.key_counts[1]))
        self.top_keys = [(int(self.key_counts[0][i]), int(self.key_counts[1][i])) for i in order[:self.top_k]]

        self.key_text = W.Text(placeholder="raw keys, e.g. 3, 17, 42", description="keys", continuous_update=False)
        self.lookup_button = W.Button(description="Look up", icon="search")
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        # the tables scroll inside a bounded box, so the inspector stays compact with many slots/keys
        box = dict(max_height="280px", overflow="auto", margin="0 2em 0 0")
        self.lookup_html = W.HTML(layout=W.Layout(overflow="auto"))
        self.slot_html, self.top_html = W.HTML(layout=W.Layout(**box)), W.HTML(layout=W.Layout(**box))
        self.near_text = W.Text(placeholder="a key", description="closest to", continuous_update=False)
        self.near_k = W.BoundedIntText(value=10, min=1, max=1000, description="k", layout=W.Layout(width="8em"),
                                       style={"description_width": "1.5em"})
        self.near_metric = W.Dropdown(options=["cosine", "euclidean", "dot"], value="cosine", description="metric",
                                      layout=W.Layout(width="14em"))
        self.near_button = W.Button(description="Closest keys", icon="crosshairs")
        self.near_html = W.HTML(layout=W.Layout(max_height="280px", overflow="auto"))
        self.near_button.on_click(lambda _: self.show_neighbors(self.near_text.value))
        self.near_text.observe(lambda change: self.show_neighbors(change["new"]), names="value")
        self.plot = LiveFigure(1, 3, figsize=(13, 3), min_interval=0.0)
        self.lookup_button.on_click(lambda _: self.show_lookup(self.key_text.value))
        self.key_text.observe(lambda change: self.show_lookup(change["new"]), names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.widget = W.VBox([W.HBox([self.key_text, self.lookup_button, self.refresh_button]), self.lookup_html,
                              W.HBox([self.near_text, self.near_k, self.near_metric, self.near_button]),
                              self.near_html, W.HBox([self.slot_html, self.top_html]), self.plot.widget])
        self.widget.add_class("hugectr-lab-embedding-inspector")
        self.refresh()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # ---- data ----------------------------------------------------------------------------------

    def _scan(self):
        """(unique keys, counts) and (keys, slot) from the first ``scan_batches`` training batches."""
        reader = self.session.make_reader(repeat=False, seed=0)
        keys, slots = [], []
        try:
            reader.start()
            for _ in range(self.scan_batches):
                batch = reader.read_a_batch()
                if batch is None or batch.size == 0:
                    break
                csr = batch.sparse[self._input_index]
                real = batch.size * self.slot_num  # rows of real samples (padding rows follow)
                end = int(csr.row_offsets[real])
                keys.append(np.asarray(csr.keys[:end]))
                slots.append(np.repeat(np.arange(real) % self.slot_num, np.diff(csr.row_offsets[:real + 1])))
        finally:
            reader.close()
        keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        slots = np.concatenate(slots) if slots else np.zeros(0, np.int64)
        unique, first, counts = np.unique(keys, return_index=True, return_counts=True)
        return (unique, counts), (unique, slots[first])

    def refresh(self):
        """Re-read the table (``dump``) and redraw the statistics."""
        with self.lock:
            keys, vectors, slot_ids = self.embedding.dump()
        self.keys, self.vectors = keys, vectors
        self._row = {int(k): i for i, k in enumerate(keys.tolist())}
        norms = np.linalg.norm(vectors.astype(np.float64), axis=1) if len(keys) else np.zeros(0)
        if slot_ids is not None:
            slots = slot_ids.astype(np.int64)
        else:  # distributed: the slot a key appeared in during the scan (-1: not seen)
            seen = dict(zip(self.key_slots[0].tolist(), self.key_slots[1].tolist()))
            slots = np.array([seen.get(int(k), -1) for k in keys.tolist()], dtype=np.int64)
        self.norms, self.slots = norms, slots
        self.projection = (self.engine.pca(vectors, 2)[0] if len(keys) >= 2
                           else np.zeros((len(keys), 2)))   # (N, 2), PCA of the rows
        self.slot_stats = []
        for slot in sorted(set(slots.tolist())):
            n = norms[slots == slot]
            self.slot_stats.append({"slot": slot, "keys": int(n.size), "mean": float(n.mean()), "std": float(n.std()),
                                    "min": float(n.min()), "max": float(n.max())})
        self._draw()

    def lookup(self, keys) -> dict:
        """{key: the key's vector (E,) float32, or None when the table does not hold it}."""
        out = {}
        for key in keys:
            row = self._row.get(int(key))
            out[int(key)] = None if row is None else self.vectors[row].copy()
        return out

    def show_lookup(self, text):
        try:
            keys = [int(t) for t in text.replace(",", " ").split()]
        except ValueError:
            self.lookup_html.value = "<span style='color:#b00'>keys must be integers</span>"
            return {}
        found = self.lookup(keys)
        rows = "".join(
            f"<tr><td>{k}</td><td style='font-family:monospace'>"
            + ("(not in the table)" if v is None else html.escape(np.array2string(v, precision=4, max_line_width=120)))
            + (f"</td><td>{np.linalg.norm(v):.4f}" if v is not None else "</td><td>") + "</td></tr>"
            for k, v in found.items())
        self.lookup_html.value = (f"<table style='{TABLE_STYLE}'><tr><th>key</th><th>vector</th><th>norm</th></tr>"
                                  f"{rows}</table>")
        return found

    def neighbors(self, key, k=10, metric="cosine"):
        """The ``k`` keys whose vectors are closest to ``key``'s ([(key, score)], closest first; score:
        cosine similarity, Euclidean distance or inner product). KeyError if the table lacks ``key``."""
        return nearest_keys(self.keys, self.vectors, int(key), k, metric, engine=self.engine)

    def show_neighbors(self, text):
        text = str(text).strip()
        if not text:
            return []
        try:
            found = self.neighbors(int(text), self.near_k.value, self.near_metric.value)
        except ValueError:
            self.near_html.value = "<span style='color:#b00'>the key must be an integer</span>"
            return []
        except KeyError as exc:
            self.near_html.value = f"<span style='color:#b00'>{html.escape(exc.args[0])}</span>"
            return []
        score = {"cosine": "cosine similarity", "euclidean": "distance", "dot": "inner product"}[self.near_metric.value]
        rows = "".join(f"<tr><td>{k}</td><td>{s:.4f}</td><td>{self._slot_of(k)}</td></tr>" for k, s in found)
        self.near_html.value = (f"<b>keys closest to {int(text)}</b> <small>({html.escape(self.engine.describe())})"
                                f"</small><table style='{TABLE_STYLE}'><tr><th>key</th><th>{score}</th><th>slot</th>"
                                f"</tr>{rows}</table>")
        return found

    def _slot_of(self, key):
        slot = int(self.slots[self._row[key]])
        return "unseen" if slot < 0 else slot

    # ---- views ---------------------------------------------------------------------------------

    def _draw(self):
        def table(header, rows):
            head = "".join(f"<th style='padding:1px 6px'>{h}</th>" for h in header)
            body = "".join("<tr>" + "".join(f"<td style='padding:1px 6px'>{c}</td>" for c in r) + "</tr>"
                           for r in rows)
            return f"<table style='{TABLE_STYLE}'><tr>{head}</tr>{body}</table>"

        self.slot_html.value = "<b>L2 norm per slot</b>" + table(
            ("slot", "keys", "mean", "std", "min", "max"),
            [("unseen" if s["slot"] < 0 else s["slot"], s["keys"], f"{s['mean']:.4f}", f"{s['std']:.4f}",
              f"{s['min']:.4f}", f"{s['max']:.4f}") for s in self.slot_stats])
        self.top_html.value = (f"<b>most frequent keys</b> (first {self.scan_batches} training batches)"
                               + table(("key", "count", "in table"),
                                       [(k, c, "yes" if k in self._row else "no") for k, c in self.top_keys]))
        with self.plot.lock:
            self._draw_plots()

    def _draw_plots(self):
        ax_slots, ax_top, ax_pca = self.plot.axes
        for ax in self.plot.axes:
            ax.clear()
        stats = [s for s in self.slot_stats if s["slot"] >= 0]
        ax_slots.bar([s["slot"] for s in stats], [s["mean"] for s in stats],
                     yerr=[s["std"] for s in stats], color="#4c72b0")
        ax_slots.set_title("mean L2 norm per slot", fontsize=10)
        ax_slots.set_xlabel("slot", fontsize=8)
        ax_top.bar(range(len(self.top_keys)), [c for _, c in self.top_keys], color="#dd8452")
        ax_top.set_xticks(range(len(self.top_keys)), [str(k) for k, _ in self.top_keys], rotation=90, fontsize=7)
        ax_top.set_title("key frequency", fontsize=10)
        if len(self.projection):
            ax_pca.scatter(self.projection[:, 0], self.projection[:, 1], c=self.slots, cmap="tab20", s=6)
        ax_pca.set_title("PCA of the table (colour: slot)", fontsize=10)
        self.plot.redraw(force=True)
