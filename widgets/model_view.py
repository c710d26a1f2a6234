"""``ModelView``: the layer graph of a HugeCTR JSON config, with tensor shapes and parameter counts.

The dense graph is built on the NumPy backend (the same ``Network`` a Session builds, for one
sample); the table holds the data inputs, the embeddings and every dense layer in config order.
"""

from __future__ import annotations

import html
import os

import ipywidgets as W

from hugectr_lab.config import parse_config
from hugectr_lab.layers.base import BuildContext
from hugectr_lab.layers.network import Network, network_inputs


def _shape(shape):
    """``(B, 26, 16)``: the batch dimension as B."""
    return "(" + ", ".join(["B", *map(str, shape[1:])]) + ")"


class ModelView:
    """``ModelView(config_path)``: ``rows`` (one dict per input/embedding/layer: index, kind, type,
    name, bottoms, tops, shapes, params), ``dense_params``, ``embedding_params`` (per GPU:
    ``max_vocabulary_size_per_gpu`` (or the sum of
    ``slot_size_array``) × ``embedding_vec_size``) and ``widget`` (an HTML table)."""

    COLUMNS = ("#", "type", "name", "bottoms", "tops (shape)", "params")

    def __init__(self, config_path):
        self.config_path = os.fspath(config_path)
        self.config = cfg = parse_config(self.config_path)
        data = cfg.data
        shapes = network_inputs(cfg, 1)
        self.rows = [{"index": 0, "kind": "data", "type": "Data", "name": "data", "bottoms": [],
                      "tops": {data.dense.top: shapes[data.dense.top], **(
                          {data.label.top: shapes[data.label.top]} if data.label.top else {})},
                      "params": 0}]
        for s in data.sparse:
            self.rows[0]["tops"][s.top] = (1, s.slot_num, "nnz≤" + str(s.max_feature_num_per_sample))
        self.embedding_params = 0
        for i, spec in enumerate(cfg.embeddings):
            shape = shapes[spec.top]
            vocab = spec.max_vocabulary_size_per_gpu or sum(spec.slot_size_array or ())
            count = int(vocab) * spec.embedding_vec_size
            self.embedding_params += count
            self.rows.append({"index": 1 + i, "kind": "embedding", "type": spec.type, "name": spec.name or "",
                              "bottoms": [spec.bottom], "tops": {spec.top: shape}, "params": count})
        net = Network(cfg.layers, shapes, BuildContext(training=False), first_index=1 + len(cfg.embeddings))
        self.network = net
        self.rows += net.summary_rows()
        self.dense_params = net.num_params
        self.widget = W.HTML(self.to_html())
        self.widget.add_class("hugectr-lab-model-view")

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def to_html(self) -> str:
        esc = html.escape
        head = "".join(f"<th style='text-align:left;padding:2px 8px'>{esc(c)}</th>" for c in self.COLUMNS)
        body = []
        colours = {"data": "#eef5ff", "embedding": "#fff6e6", "loss": "#f3f3f3", "dense": "#ffffff"}
        for row in self.rows:
            tops = "(loss)" if row["kind"] == "loss" else ", ".join(
                f"{t} {_shape(s)}" for t, s in row["tops"].items())
            cells = (str(row["index"]), row["type"], row["name"], ", ".join(row["bottoms"]), tops,
                     f"{row['params']:,}")
            body.append(f"<tr style='background:{colours[row['kind']]}'>" + "".join(
                f"<td style='padding:2px 8px;font-family:monospace'>{esc(c)}</td>" for c in cells) + "</tr>")
        total = (f"<p>{len(self.rows) - 1 - len(self.config.embeddings)} dense layers, "
                 f"{len(self.config.embeddings)} embedding(s); dense parameters: {self.dense_params:,}; "
                 f"embedding parameters per GPU (vocabulary × vector size): {self.embedding_params:,}</p>")
        return (f"<b>{esc(os.path.basename(self.config_path))}</b><table style='border-collapse:collapse'>"
                f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{total}")
