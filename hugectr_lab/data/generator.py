"""Synthetic Norm, Raw and Parquet datasets with a planted signal, so a model that learns reaches a known AUC.

Labels are drawn from a hidden logistic model (``PlantedModel``):

    logit = bias + scale * (w . (dense - 1/2) + sum over slots of the mean weight of the slot's keys)

with ``w ~ N(0, 1)`` per dense feature and a pseudo-random weight in [-sqrt(3), sqrt(3)] per key (a hash
of the key, so no table is stored), and ``scale`` set so the logit has about ``logit_std`` standard
deviation. The generator reports the Bayes AUC of what it wrote: the exact AUC of the true
probabilities against the drawn labels, the best any model can score on that data.

Layout follows HugeCTR's ``data_generator``: dense features ~ U(0, 1); slot k draws nnz uniformly from
``[min_nnz_k, max_nnz_k]`` and its keys from its own contiguous range ``[offset_k, offset_k + vocab_k)``
(uniform or power law), so slots never share keys; data files are ``<list dir>/train/gen_<k>.data``
and ``<eval list dir>/val/gen_<k>.data``; each file list gets a keyset file of its unique keys.

``format="Raw"``: ``source`` / ``eval_source`` are the data files themselves (one file per split, the
chunks k appended); one key per slot, stored without the slot offsets (the Data layer's
``slot_size_array`` = the vocabulary sizes adds them back); without ``float_label_dense`` the dense
values are integers in [0, 32) and the planted model sees ln(x + 1), as the reader hands them out.
``format="Parquet"``: ``<list dir>/<train|val>/part_<k>.parquet`` with ``_metadata.json`` beside them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..metrics import auc
from ..rules.keys import key_type_name
from .batch import CSR, Samples, key_dtype
from .file_list import write_file_list
from .keyset import write_keyset
from .norm import check_mode, write_norm_file
from .parquet import ParquetDatasetWriter, ParquetLayout
from .raw import RawLayout, RawRecords

DISTRIBUTIONS = ("uniform", "zipf-0.9", "zipf-1.1", "zipf-1.3")  # presets; any "zipf-<alpha>" works
AUTO_PROGRESS_SAMPLES = 1_000_000  # show a progress bar from this many samples on, unless told


def power_law_exponent(distribution: str):
    """None for "uniform", alpha for "zipf-<alpha>" (P(rank r) roughly proportional to r^-alpha)."""
    if distribution == "uniform":
        return None
    prefix, _, alpha = distribution.partition("-")
    try:
        if prefix == "zipf" and float(alpha) > 0:
            return float(alpha)
    except ValueError:
        pass
    raise ValueError(f"distribution must be 'uniform' or 'zipf-<alpha>' with alpha > 0 "
                     f"(e.g. {', '.join(DISTRIBUTIONS[1:])}), got {distribution!r}")


def draw_ranks(rng, vocab, alpha) -> np.ndarray:
    """One rank in ``[0, vocab[i])`` per entry of ``vocab``: uniform, or power law with exponent alpha
    (continuous inverse CDF of density y^-alpha on [1, vocab + 1), floored).  # (K,) int64"""
    u = rng.random(len(vocab))
    if alpha is None:
        return np.minimum((u * vocab).astype(np.int64), vocab - 1)
    top = vocab + 1.0
    if alpha == 1.0:
        y = top ** u
    else:
        e = 1.0 - alpha
        y = (1.0 + u * (top ** e - 1.0)) ** (1.0 / e)
    return np.clip(np.floor(y).astype(np.int64) - 1, 0, vocab - 1)


def _mix64(x):
    """splitmix64 finaliser: a well-spread 64-bit hash of each uint64."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@dataclass(frozen=True, eq=False)
class PlantedModel:
    """The hidden logistic model behind a generated dataset's labels."""

    dense_weights: np.ndarray  # (D,) float64
    scale: float
    bias: float
    seed: int  # of the key-weight hash

    def key_weights(self, keys) -> np.ndarray:
        """Weight of each key, uniform in [-sqrt(3), sqrt(3)] (variance 1).  # (K,) float64"""
        with np.errstate(over="ignore"):
            h = _mix64(np.asarray(keys).astype(np.uint64) ^ _mix64(np.full(1, self.seed, np.uint64)))
        return ((h >> np.uint64(11)).astype(np.float64) * 2.0**-53 - 0.5) * np.sqrt(12.0)

    def logits(self, samples: Samples) -> np.ndarray:
        """The true logit of each sample.  # (N,) float64"""
        n = len(samples)
        total = (samples.dense.astype(np.float64) - 0.5) @ self.dense_weights
        for csr in samples.sparse:
            row_nnz = csr.row_nnz()
            row_sum = np.bincount(np.repeat(np.arange(len(row_nnz)), row_nnz), self.key_weights(csr.keys),
                                  minlength=len(row_nnz))
            total = total + (row_sum / np.maximum(row_nnz, 1)).reshape(n, -1).sum(axis=1)
        return self.bias + self.scale * total

    def probabilities(self, samples: Samples) -> np.ndarray:
        """P(label = 1) of each sample.  # (N,) float64"""
        return 1.0 / (1.0 + np.exp(-self.logits(samples)))


@dataclass(frozen=True, eq=False)
class DatasetSummary:
    """What ``generate_dataset`` wrote. ``bayes_auc`` is the exact AUC of the true probabilities on
    the drawn labels (label column 0), i.e. what a perfect model scores."""

    file_lists: tuple  # every file list written (training, training parts, evaluation)
    keysets: tuple  # the keyset file of each file list, same order
    train_files: int
    train_samples: int
    eval_files: int
    eval_samples: int
    slot_nums: tuple
    vocab_sizes: tuple  # per slot (over all sparse inputs)
    key_type: str
    check: str
    distribution: str
    key_range: tuple  # (first, last) key of the vocabulary; slot k's keys follow those of slots < k
    label_mean: float  # of the training labels
    bayes_auc: float  # training data
    eval_bayes_auc: float  # evaluation data (nan without one)
    model: PlantedModel
    format: str = "Norm"  # for Raw, ``file_lists`` are the data files

    def __str__(self):
        return "\n".join([
            f"{self.format} files: {self.train_files} train ({self.train_samples} samples), "
            f"{self.eval_files} eval ({self.eval_samples} samples); check {self.check}, keys {self.key_type}",
            f"slots: {list(self.slot_nums)} per sparse input, {sum(self.slot_nums)} in all; "
            f"keys {self.key_range[0]}..{self.key_range[1]} ({self.distribution})",
            f"label mean {self.label_mean:.4f}; Bayes AUC train {self.bayes_auc:.4f}, eval {self.eval_bayes_auc:.4f}",
            "file lists: " + ", ".join(self.file_lists),
        ])


def _per_slot(value, slot_count, name):
    values = np.asarray(value, np.int64)
    values = np.full(slot_count, values) if values.ndim == 0 else values
    if values.shape != (slot_count,):
        raise ValueError(f"{name} needs one value or one per slot ({slot_count}), got {len(values)}")
    return values


@dataclass(frozen=True, eq=False)
class _SlotTable:
    """Per slot (over all sparse inputs): key range and nnz bounds; and how keys are drawn."""

    vocab: np.ndarray  # (S,) int64
    offsets: np.ndarray  # (S,) int64: slot k owns keys [offsets[k], offsets[k] + vocab[k])
    min_nnz: np.ndarray  # (S,) int64
    max_nnz: np.ndarray  # (S,) int64
    alpha: float | None  # power-law exponent, None for uniform
    dtype: np.dtype  # key dtype


def _slot_table(slot_nums, vocab_sizes, min_nnz, max_nnz, max_feature_nums, distribution, key_type) -> _SlotTable:
    """The per-slot table, checked against the key type and each input's max_feature_num_per_sample."""
    slot_count = sum(slot_nums)
    vocab = _per_slot(vocab_sizes, slot_count, "vocab_sizes")
    low, high = _per_slot(min_nnz, slot_count, "min_nnz"), _per_slot(max_nnz, slot_count, "max_nnz")
    if (vocab < 1).any() or (low < 0).any() or (high < low).any():
        raise ValueError("need vocab_sizes >= 1 and 0 <= min_nnz <= max_nnz")
    bounds = np.cumsum((0,) + slot_nums)
    for j, limit in enumerate(max_feature_nums or ()):
        if high[bounds[j]:bounds[j + 1]].sum() > limit:
            raise ValueError(f"sparse input {j}: the sum of max_nnz over its slots exceeds its "
                             f"max_feature_num_per_sample {limit}")
    dtype = key_dtype(key_type)
    if vocab.sum() - 1 > np.iinfo(dtype).max:
        raise ValueError(f"{int(vocab.sum())} keys do not fit {key_type_name(dtype)} keys")
    return _SlotTable(vocab, np.cumsum(vocab) - vocab, low, high, power_law_exponent(distribution), dtype)


def _sample_file(rng, count, label_dim, dense_dim, slot_nums, table: _SlotTable, model: PlantedModel,
                 int_dense=False):
    """``count`` samples, every label column drawn from ``model``; also returns the true probabilities.

    ``int_dense``: the dense values are ln(x + 1) of integers x in [0, 32) (Raw without
    float_label_dense); the integers are returned too (else None)."""
    dense = rng.random((count, dense_dim), dtype=np.float32)
    raw_dense = None
    if int_dense:
        raw_dense = np.floor(dense * 32).astype(np.int32)
        dense = np.log(raw_dense.astype(np.float32) + np.float32(1))
    sparse, first = [], 0
    for s in slot_nums:
        slots = np.arange(first, first + s)
        nnz = rng.integers(table.min_nnz[slots], table.max_nnz[slots] + 1, size=(count, s)).ravel()  # (N*S,)
        row_offsets = np.zeros(count * s + 1, np.int64)
        np.cumsum(nnz, out=row_offsets[1:])
        key_slot = np.repeat(np.tile(slots, count), nnz)  # (K,)
        keys = table.offsets[key_slot] + draw_ranks(rng, table.vocab[key_slot], table.alpha)
        sparse.append(CSR(row_offsets, keys.astype(table.dtype)))
        first += s
    probability = model.probabilities(Samples(np.zeros((count, label_dim), np.float32), dense, tuple(sparse)))
    labels = (rng.random((count, label_dim)) < probability[:, None]).astype(np.float32)
    return Samples(labels, dense, tuple(sparse)), probability, raw_dense


def _plant_model(rng, dense_dim, table: _SlotTable, logit_std, bias, seed) -> PlantedModel:
    dense_weights = rng.standard_normal(dense_dim)
    # variance of the unscaled logit: dense terms w^2/12; a slot's mean of nnz key weights 1/nnz (0 if empty)
    slot_variance = [np.mean([1.0 / k if k else 0.0 for k in range(lo, hi + 1)])
                     for lo, hi in zip(table.min_nnz, table.max_nnz)]
    variance = float(dense_weights @ dense_weights) / 12.0 + float(np.sum(slot_variance))
    return PlantedModel(dense_weights, logit_std / np.sqrt(variance) if variance else 0.0, float(bias), int(seed))


def generate_dataset(source, eval_source=None, *, label_dim=1, dense_dim=13, slot_nums=(26,), max_feature_nums=None,
                     key_type="I32", check="Sum", num_files=4, samples_per_file=4096, eval_files=None,
                     eval_samples_per_file=None, vocab_sizes=1000, min_nnz=1, max_nnz=1, distribution="uniform",
                     logit_std=1.5, bias=0.0, train_parts=1, seed=0, base_dir=None, overwrite=False,
                     progress=None, format="Norm", float_label_dense=False, num_samples=None,
                     eval_num_samples=None) -> DatasetSummary:
    """Write a training (and evaluation) dataset with file lists and keyset files.

    ``source`` / ``eval_source`` are the file-list paths (relative ones are relative to ``base_dir``,
    default the working directory); list entries are written in the same form, e.g. a list
    ``data/file_list.txt`` names ``data/train/gen_0.data``. ``vocab_sizes``, ``min_nnz`` and ``max_nnz``
    take one value or one per slot (over all sparse inputs). ``train_parts`` > 1 also splits the
    training files into ``<stem>.<n>.txt`` lists (with ``<stem>.<n>.keyset``) for model
    oversubscription. ``eval_files`` / ``eval_samples_per_file`` default to the training counts, as in
    HugeCTR's tool. ``progress``: a tqdm bar (None: only for large jobs). Same seed, same bytes.

    ``format``: "Norm" (default), "Raw" or "Parquet" (see the module docstring; both one-hot, so
    ``min_nnz = max_nnz = 1``). For Raw, ``source`` / ``eval_source`` name the data files, which hold
    ``num_samples`` / ``eval_num_samples`` samples (default: files x samples per file; the chunks of
    ``samples_per_file`` are generated one by one), and ``train_parts`` writes ``<stem>.<n><ext>``
    data files beside the whole one. ``float_label_dense`` stores Raw labels and dense values as floats.
    """
    if format not in ("Norm", "Raw", "Parquet"):
        raise ValueError(f"format must be 'Norm', 'Raw' or 'Parquet', got {format!r}")
    slot_nums = tuple(int(s) for s in slot_nums)
    table = _slot_table(slot_nums, vocab_sizes, min_nnz, max_nnz, max_feature_nums, distribution, key_type)
    if label_dim < 1:
        raise ValueError("need label_dim >= 1")
    if format != "Norm" and ((table.min_nnz != 1).any() or (table.max_nnz != 1).any()):
        raise ValueError(f"the {format} format holds exactly one key per slot: use min_nnz = max_nnz = 1")
    check = check_mode(check)
    base = Path(os.getcwd() if base_dir is None else base_dir)
    int_dense = format == "Raw" and not float_label_dense

    def sizes(files, per_file, total):
        if format == "Raw" and total is not None:
            return [min(per_file, total - start) for start in range(0, total, per_file)] or [0]
        return [per_file] * files

    splits = [_Split("train", str(source), sizes(num_files, samples_per_file, num_samples), format)]
    if eval_source:
        eval_per_file = samples_per_file if eval_samples_per_file is None else eval_samples_per_file
        splits.append(_Split("val", str(eval_source), sizes(num_files if eval_files is None else eval_files,
                                                             eval_per_file, eval_num_samples), format))
    lists = _plan_lists(splits, train_parts, format)
    for list_path, _, _ in lists:
        if (base / list_path).exists() and not overwrite:
            raise FileExistsError(f"{base / list_path} exists; pass overwrite=True to replace the dataset")

    model = _plant_model(np.random.default_rng([seed, 0]), dense_dim, table, logit_std, bias, seed)
    raw_layout = RawLayout(label_dim, dense_dim, slot_nums, table.dtype, float_label_dense, tuple(table.vocab))
    total = sum(split.num_samples for split in splits)
    with tqdm(total=total, unit="samples", desc="generating",
              disable=not (total >= AUTO_PROGRESS_SAMPLES if progress is None else progress)) as bar:
        for split_id, split in enumerate(splits, start=1):
            split_lists = [(path, ids) for path, sp, ids in lists if sp is split]
            if format == "Raw":
                for path, _ in split_lists:
                    (base / path).parent.mkdir(parents=True, exist_ok=True)
                    (base / path).write_bytes(b"")
            else:
                (base / split.list_path).parent.joinpath(split.folder).mkdir(parents=True, exist_ok=True)
            parquet = (ParquetDatasetWriter(base / os.path.dirname(split.list_path) / split.folder,
                                            ParquetLayout(label_dim, dense_dim, slot_nums, table.dtype,
                                                          tuple(table.vocab)))
                       if format == "Parquet" else None)
            for k, count in enumerate(split.sizes):
                rng = np.random.default_rng([seed, split_id, k])
                samples, probability, raw_dense = _sample_file(rng, count, label_dim, dense_dim, slot_nums, table,
                                                               model, int_dense)
                if format == "Norm":
                    write_norm_file(base / split.entry(k), samples, check=check, key_type=table.dtype)
                elif format == "Parquet":
                    parquet.write(samples)
                else:
                    records = raw_layout.records_of(samples)
                    if int_dense:
                        records = RawRecords(records.labels, raw_dense, records.keys)
                    data = raw_layout.encode(records).tobytes()
                    for path, ids in split_lists:
                        if k in ids:
                            with open(base / path, "ab") as f:
                                f.write(data)
                split.record(samples, probability)
                bar.update(count)
            if parquet is not None:
                parquet.close(write_list=False)

    for list_path, split, file_ids in lists:
        if format != "Raw":
            write_file_list(base / list_path, [split.entry(k) for k in file_ids])
        write_keyset(base / _keyset_path(list_path), np.unique(np.concatenate([split.keys[k] for k in file_ids])),
                     table.dtype)

    train, evaluation = splits[0], (splits[1:] or [None])[0]
    return DatasetSummary(
        file_lists=tuple(path for path, _, _ in lists), keysets=tuple(_keyset_path(path) for path, _, _ in lists),
        train_files=train.files, train_samples=train.num_samples,
        eval_files=evaluation.files if evaluation else 0,
        eval_samples=evaluation.num_samples if evaluation else 0,
        slot_nums=slot_nums, vocab_sizes=tuple(int(v) for v in table.vocab), key_type=key_type_name(table.dtype),
        check=check, distribution=distribution, key_range=(0, int(table.vocab.sum()) - 1),
        label_mean=float(np.mean(np.concatenate(train.labels))),
        bayes_auc=train.bayes_auc(), eval_bayes_auc=evaluation.bayes_auc() if evaluation else float("nan"),
        model=model, format=format)


class _Split:
    """The training or evaluation part of a dataset: where its files go, and what was written."""

    def __init__(self, folder, list_path, sizes, format="Norm"):
        self.folder, self.list_path, self.sizes, self.format = folder, list_path, list(sizes), format
        self.probabilities, self.labels, self.keys = [], [], []  # per data file

    @property
    def files(self) -> int:
        """Data files (Raw: chunks of the one data file)."""
        return len(self.sizes)

    @property
    def num_samples(self) -> int:
        return sum(self.sizes)

    def entry(self, k) -> str:
        """Data file k as the file list names it (same form as the list path: relative or absolute)."""
        name = f"part_{k}.parquet" if self.format == "Parquet" else f"gen_{k}.data"
        return os.path.join(os.path.dirname(self.list_path), self.folder, name)

    def record(self, samples, probability):
        self.probabilities.append(probability)
        self.labels.append(samples.labels[:, 0])
        self.keys.append(np.unique(np.concatenate([csr.keys for csr in samples.sparse] + [np.zeros(0, np.int64)])))

    def bayes_auc(self) -> float:
        return auc(np.concatenate(self.probabilities), np.concatenate(self.labels))


def _plan_lists(splits, train_parts, format="Norm"):
    """(file-list path, split, data-file indices) of every file list to write (Raw: data files, chunks)."""
    train = splits[0]
    lists = [(train.list_path, train, range(train.files))]
    if train_parts > 1:
        stem, suffix = os.path.splitext(train.list_path)
        default = ".bin" if format == "Raw" else ".txt"
        lists += [(f"{stem}.{n}{suffix or default}", train, [int(k) for k in part])
                  for n, part in enumerate(np.array_split(np.arange(train.files), train_parts))]
    return lists + [(split.list_path, split, range(split.files)) for split in splits[1:]]


def _keyset_path(list_path):
    return os.path.splitext(list_path)[0] + ".keyset"


# --- from a JSON config -----------------------------------------------------------------------

def _field(node, name, default=KeyError):
    """``node[name]`` for dicts (parsed JSON), ``node.name`` for spec objects."""
    value = node.get(name, default) if isinstance(node, dict) else getattr(node, name, default)
    if value is KeyError:
        raise ValueError(f"the config's Data layer lacks {name!r}")
    return value


def _load_config(config):
    """The parsed config: ``hugectr_lab.config.parse_config`` when available, else plain JSON."""
    if hasattr(config, "data"):
        return config
    try:
        from hugectr_lab.config import parse_config
    except ImportError:
        parse_config = None
    if parse_config is not None:
        return parse_config(config)
    if isinstance(config, dict):
        return config
    text = str(config)
    return json.loads(text if text.lstrip().startswith("{") else Path(text).read_text(encoding="utf-8"))


def data_layer_options(config) -> dict:
    """``generate_dataset`` arguments from a config's Data layer and ``solver.input_key_type``.

    ``config`` is a path, JSON text, dict or parsed ModelConfig.
    """
    parsed = _load_config(config)
    if isinstance(parsed, dict):
        data = next((layer for layer in parsed.get("layers", []) if layer.get("type") == "Data"), None)
        if data is None:
            raise ValueError("the config has no layer of type 'Data'")
        solver = parsed.get("solver", {})
    else:
        data, solver = parsed.data, getattr(parsed, "solver", None)
    fmt = _field(data, "format", "Norm") or "Norm"
    sparse = _field(data, "sparse")
    options = dict(source=_field(data, "source"), eval_source=_field(data, "eval_source", "") or None,
                   check=_field(data, "check"), label_dim=_field(_field(data, "label"), "label_dim"),
                   dense_dim=_field(_field(data, "dense"), "dense_dim"),
                   slot_nums=[_field(s, "slot_num") for s in sparse],
                   max_feature_nums=[_field(s, "max_feature_num_per_sample") for s in sparse],
                   key_type=_field(solver, "input_key_type", "I32") if solver is not None else "I32")
    if fmt != "Norm":
        sizes = _field(data, "slot_size_array", None)
        if not sizes:
            raise ValueError(f"generating {fmt} data needs the Data layer's slot_size_array (the keys of slot k "
                             "are drawn from [0, slot_size_array[k]))")
        options.update(format=fmt, vocab_sizes=list(sizes), min_nnz=1, max_nnz=1)
    if fmt == "Raw":
        options.update(float_label_dense=bool(_field(data, "float_label_dense", False)),
                       num_samples=_field(data, "num_samples"), eval_num_samples=_field(data, "eval_num_samples", 0))
    return options


def generate_for_config(config, out_dir=None, **options) -> DatasetSummary:
    """Generate exactly the files a config's Data layer names (``source``, ``eval_source``), with its
    label/dense/slot layout, check mode and key type.

    Relative paths are taken relative to ``out_dir`` (default: the working directory, as HugeCTR does).
    ``options`` go to ``generate_dataset`` (num_files, samples_per_file, vocab_sizes, distribution, ...);
    what the config fixes wins (for Raw and Parquet: the vocabulary sizes = ``slot_size_array``, one key
    per slot; for Raw: ``num_samples`` / ``eval_num_samples``).
    """
    return generate_dataset(**{**options, **data_layer_options(config)}, base_dir=out_dir)
