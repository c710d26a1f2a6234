"""HugeCTR v3.1's inference API: ``InferenceParams`` and ``CreateInferenceSession(graph_json, params)``.

The model config is the training graph ``Model.graph_to_json`` wrote (no ``inference`` clause); the
parameters name the model files. The session predicts from arrays (``predict(dense, keys, row_ptrs)``,
as v3.0) or from a dataset (``predict(num_batches, source, data_reader_type, check_type)``, a NumPy
array of ``num_batches * max_batchsize`` values), and ``evaluate`` returns the AUC over a dataset.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from ..config import parse_config
from ..data import DataReader32, DataReader64
from ..fileio import atomic_write
from ..inference import CreateEmbeddingCache, CreateParameterServer, InferenceSession, inference_config, predict_inputs
from ..metrics import auc
from .layers import enum_name


@dataclass(frozen=True)
class InferenceParams:
    """``hugectr.inference.InferenceParams`` (v3.1)."""

    model_name: str
    max_batchsize: int
    hit_rate_threshold: float
    dense_model_file: str
    sparse_model_files: list
    device_id: int
    use_gpu_embedding_cache: bool
    cache_size_percentage: float
    i64_input_key: bool
    use_mixed_precision: bool = False
    scaler: float = 1.0
    use_algorithm_search: bool = True
    use_cuda_graph: bool = True    # as HugeCTR; the captured path passed the GPU lane (H100, 2026-12-07)

    def __post_init__(self):
        files = self.sparse_model_files
        object.__setattr__(self, "sparse_model_files", [files] if isinstance(files, str) else list(files))


class InferenceSessionV31:
    """The session ``CreateInferenceSession`` returns: a v3.0 ``InferenceSession`` plus dataset methods."""

    def __init__(self, model_config_path, params: InferenceParams, *, backend=None):
        if not isinstance(params, InferenceParams):
            raise TypeError(f"CreateInferenceSession(inference_params=...) needs InferenceParams(...), got "
                            f"{type(params).__name__}")
        self.params = params
        self.graph = parse_config(model_config_path, ignore=("solver",), require=("layers",))
        scaler = int(params.scaler) if params.use_mixed_precision else None
        config = inference_config(model_config_path, os.path.abspath(params.dense_model_file),
                                  [os.path.abspath(f) for f in params.sparse_model_files],
                                  max_batchsize=params.max_batchsize, hit_rate_threshold=params.hit_rate_threshold,
                                  input_key_type="I64" if params.i64_input_key else "I32",
                                  mixed_precision=scaler or None)
        config["inference"]["algorithm_search"] = params.use_algorithm_search
        config["inference"]["cuda_graph"] = params.use_cuda_graph
        # The inference config is derived, not the user's file: it lives in a private directory.
        self._dir = tempfile.TemporaryDirectory(prefix="hugectr_lab_inference_")   # removed with the session
        self.config_path = os.path.join(self._dir.name, f"{params.model_name}.json")
        with atomic_write(self.config_path, "w") as f:
            json.dump(config, f, indent=1)
        ps = CreateParameterServer([self.config_path], [params.model_name], params.i64_input_key)
        cache = CreateEmbeddingCache(ps, params.device_id, params.use_gpu_embedding_cache,
                                     params.cache_size_percentage, self.config_path, params.model_name,
                                     params.i64_input_key, backend=backend)
        self.session = InferenceSession(self.config_path, params.device_id, cache)

    def predict(self, *args, **kwargs):
        """``predict(dense_feature, embeddingcolumns, row_ptrs)`` → list of floats, or
        ``predict(num_batches, source, data_reader_type, check_type, slot_size_array=[])`` → NumPy array."""
        if args and isinstance(args[0], (int, np.integer)) or "num_batches" in kwargs:
            return self._over_dataset("predict", *args, **kwargs)[0]
        return self.session.predict(*args, **kwargs)

    def evaluate(self, num_batches, source, data_reader_type, check_type, slot_size_array=()):
        """AUC of the predictions over ``num_batches`` batches of ``max_batchsize`` samples of ``source``."""
        preds, labels = self._over_dataset("evaluate", num_batches, source, data_reader_type, check_type,
                                           slot_size_array)
        return float(auc(preds, labels))

    def _over_dataset(self, what, num_batches, source, data_reader_type, check_type, slot_size_array=()):
        if not isinstance(num_batches, (int, np.integer)) or num_batches < 1:
            raise ValueError(f"{what}(num_batches=...) must be a positive int, got {num_batches!r}")
        fmt = enum_name(data_reader_type, f"{what}(data_reader_type=...)", ("Norm", "Raw", "Parquet"))
        check = enum_name(check_type, f"{what}(check_type=...)", ("Sum", "Non", "None"))
        data = dataclasses.replace(self.graph.data, format=fmt, source=str(source), num_workers=1,
                                   check="None" if check == "Non" else check,
                                   slot_size_array=tuple(slot_size_array) or self.graph.data.slot_size_array)
        batch = self.params.max_batchsize
        cls = DataReader64 if self.params.i64_input_key else DataReader32
        in_order = {"seed": 0, "shuffle": False} if fmt == "Raw" else {}   # a Raw training reader would shuffle
        reader = cls.from_data_spec(data, batch, repeat=False, eval=False, num_devices=1, **in_order)
        preds, labels = [], []
        try:
            reader.set_source(str(source))
            for _ in range(num_batches):
                samples = reader.read_a_batch()
                if samples is None or samples.size == 0:
                    break
                real = samples.take(0, samples.size)
                args = predict_inputs(real)
                preds.append(self.session.predict_array(args.dense_feature, args.embeddingcolumns,
                                                        args.row_ptrs).reshape(-1))
                labels.append(real.labels.reshape(-1))
        finally:
            reader.close()
        if not preds:
            raise ValueError(f"{what}(): {source} holds no samples")
        return np.concatenate(preds), np.concatenate(labels)


def CreateInferenceSession(model_config_path, inference_params, *, backend=None):
    """``hugectr.inference.CreateInferenceSession(model_config_path, inference_params)`` (v3.1)."""
    return InferenceSessionV31(model_config_path, inference_params, backend=backend)


__all__ = ["InferenceParams", "CreateInferenceSession", "InferenceSessionV31"]
