"""Turn a training config into an inference config (what HugeCTR's inference notebook does by hand)."""

from __future__ import annotations

import copy

from ..config import load_json

HEADS = {"BinaryCrossEntropyLoss": "Sigmoid", "MultiCrossEntropyLoss": "Sigmoid", "CrossEntropyLoss": "Softmax"}


def inference_config(training_config, dense_model_file, sparse_model_files, *, max_batchsize=1024,
                     hit_rate_threshold=0.5, input_key_type=None, mixed_precision=None,
                     default_emb_vec_value=None) -> dict:
    """The inference JSON (a dict) for a training config (path, JSON text or dict) and its model files.

    The Data layer loses its sources, the loss layer becomes its head (Sigmoid for the BCE losses,
    Softmax for CrossEntropyLoss) on the loss's first bottom, and an ``inference`` clause names the
    files. ``input_key_type`` and ``mixed_precision`` default to the config's ``solver`` clause;
    ``default_emb_vec_value`` (if given) is set on every embedding.
    """
    obj, _ = load_json(training_config)
    solver = obj.get("solver", {})
    layers = []
    for layer in copy.deepcopy(list(obj["layers"])):
        kind = layer.get("type")
        if kind == "Data":
            for key in ("source", "eval_source"):
                layer.pop(key, None)
        elif "sparse_embedding_hparam" in layer and default_emb_vec_value is not None:
            layer["sparse_embedding_hparam"]["default_emb_vec_value"] = default_emb_vec_value
        elif kind in HEADS:
            bottoms = layer["bottom"] if isinstance(layer["bottom"], list) else [layer["bottom"]]
            name = HEADS[kind].lower()
            layer = {"name": name, "type": HEADS[kind], "bottom": bottoms[0], "top": name}
        layers.append(layer)
    files = [sparse_model_files] if isinstance(sparse_model_files, str) else list(sparse_model_files)
    inference = {"max_batchsize": max_batchsize, "hit_rate_threshold": hit_rate_threshold,
                 "dense_model_file": str(dense_model_file), "sparse_model_file": [str(f) for f in files],
                 "input_key_type": input_key_type or solver.get("input_key_type", "I32")}
    precision = mixed_precision if mixed_precision is not None else solver.get("mixed_precision")
    if precision:
        inference["mixed_precision"] = precision
    return {"inference": inference, "layers": layers}
