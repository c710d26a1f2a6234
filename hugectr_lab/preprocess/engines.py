"""Two engines behind one interface: ``fit(train_paths, pipeline) -> Fitted`` and
``transform(paths, fitted, pipeline) -> iterator of Chunk``.

* ``ArrowEngine`` ("pyarrow", alias "pandas"): pyarrow's streaming CSV reader, ``chunk_bytes`` of input
  at a time; a first pass counts categories (merged as it goes, so memory is bounded by the
  vocabularies) and, for Normalize, sums moments exactly (``moments.ExactMoments``); the second pass
  transforms.
* ``NVTabularEngine`` ("nvtabular"): an NVTabular 23.8 workflow in CPU mode (FillMissing, Clip,
  LogOp, Normalize, Categorify) over dask partitions of ``chunk_bytes``. Normalize is
  ``nvt_normalize.ExactNormalize``, NVTabular's op with the same exact statistics and float64
  arithmetic as the pyarrow engine (NVTabular's own sums depend on the partitioning). After fitting,
  each column's vocabulary file is re-sorted to the stable order (count descending, value ascending)
  before transforming.

Only the empty field counts as missing in both (pandas would also read "NA", "null", ... as missing).
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import warnings

import numpy as np
from tqdm.auto import tqdm

from .schema import CATS, COLUMNS, DENSE, LABEL, NULL_CODE, OOV_CODE, RESERVED_CODES, Chunk, Fitted
from .moments import ExactMoments, normalize
from .validate import DENSE_OPS, bad_line_error, dense_after_ops

_MERGE_ENTRIES = 1 << 22  # merge a column's partial category counts once they hold this many entries


def get_engine(name, **options):
    """The engine called ``name``: "pyarrow" (or "pandas") or "nvtabular"."""
    key = str(name).lower()
    if key in ("pyarrow", "pandas", "arrow"):
        return ArrowEngine(**options)
    if key in ("nvtabular", "nvt"):
        return NVTabularEngine(**options)
    raise ValueError(f"engine must be 'pyarrow' (alias 'pandas') or 'nvtabular', got {name!r}")


def _dense_ops(x, pipeline, means=None, stds=None):
    """FillMissing → Clip → LogOp → Normalize on one dense column, as the NVTabular engine does.  # (n,)"""
    with np.errstate(invalid="ignore", divide="ignore"):  # log of x < -1 or -1: reported with its line
        x = dense_after_ops(x, pipeline)
    if means is not None:
        x = normalize(x, means, stds)  # as ExactNormalize: float64 arithmetic, rounded once to float32
    return x


class ArrowEngine:
    """The pyarrow engine (see the module docstring)."""

    name = "pyarrow"

    def __init__(self, chunk_bytes=64 << 20, progress=None):
        try:
            importlib.import_module("pyarrow.csv")   # availability check: fail at construction, with the hint
        except ImportError:
            raise ImportError('the preprocess pipeline needs pyarrow: pip install "hugectr-lab[parquet]"') from None
        self.chunk_bytes, self.progress = int(chunk_bytes), progress

    def _batches(self, paths, desc, pipeline):
        import pyarrow as pa
        import pyarrow.csv as csv

        types = {LABEL: pa.int64(), **{c: pa.float64() for c in DENSE}, **{c: pa.string() for c in CATS}}
        total = sum(os.path.getsize(p) for p in paths)
        disable = not (total >= 64 << 20 if self.progress is None else self.progress)
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=disable) as bar:
            for path in paths:
                read = csv.ReadOptions(column_names=list(COLUMNS), block_size=self.chunk_bytes)
                parse = csv.ParseOptions(delimiter="\t", quote_char=False)
                convert = csv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True)
                done = 0
                try:
                    with open(path, "rb") as f:
                        reader = csv.open_csv(f, read_options=read, parse_options=parse, convert_options=convert)
                        for batch in reader:
                            yield path, batch
                            position = f.tell()
                            bar.update(position - done)
                            done = position
                except pa.ArrowInvalid as err:
                    raise bad_line_error([path], pipeline,
                                         f"not Criteo-format TSV (label, I1-I13, C1-C26): {err}") from None
                bar.update(os.path.getsize(path) - done)

    def fit(self, paths, pipeline) -> Fitted:
        import pyarrow as pa
        import pyarrow.compute as pc

        partial = [[] for _ in CATS]  # per column: value_counts struct arrays
        sizes = [0] * len(CATS)
        moments = ExactMoments(len(DENSE))
        for path, batch in self._batches(paths, "fit", pipeline):
            self._check_labels(path, batch, pipeline)
            for j, name in enumerate(CATS):
                column = batch.column(name).drop_null()
                if len(column):
                    counts = pc.value_counts(column)
                    partial[j].append(pa.table({"values": counts.field("values"), "counts": counts.field("counts")}))
                    sizes[j] += len(counts)
                if sizes[j] > _MERGE_ENTRIES:
                    partial[j] = [_merge_counts(partial[j])]
                    sizes[j] = len(partial[j][0])
            if pipeline.normalize:
                moments.add(np.stack([_dense_ops(_floats(batch.column(name)), pipeline) for name in DENSE], axis=1))
        vocabs = []
        for j in range(len(CATS)):
            table = (_merge_counts(partial[j]) if partial[j] else
                     pa.table({"values": pa.array([], pa.string()), "counts": pa.array([], pa.int64())}))
            table = table.filter(pc.greater_equal(table["counts"], pipeline.freq_threshold))
            order = pc.sort_indices(table, sort_keys=[("counts", "descending"), ("values", "ascending")])
            vocabs.append(table["values"].take(order).combine_chunks())
        means = stds = None
        if pipeline.normalize:
            means, stds = moments.finalize()
        return Fitted([len(v) for v in vocabs], means, stds, state=vocabs)

    def transform(self, paths, fitted: Fitted, pipeline):
        import pyarrow.compute as pc

        for path, batch in self._batches(paths, "transform", pipeline):
            self._check_labels(path, batch, pipeline)
            n = batch.num_rows
            labels = batch.column(LABEL).to_numpy().astype(np.float32)
            columns = []
            for j, name in enumerate(DENSE):
                columns.append(_dense_ops(_floats(batch.column(name)), pipeline,
                                          None if fitted.means is None else fitted.means[j],
                                          None if fitted.stds is None else fitted.stds[j]))
            dense = np.stack(columns, axis=1) if columns else np.zeros((n, 0), np.float32)
            _check_dense([path], dense, pipeline)
            codes = np.empty((n, len(CATS)), np.int64)
            for j, name in enumerate(CATS):
                column = batch.column(name)
                index = pc.fill_null(pc.index_in(column, value_set=fitted.state[j]), -1).to_numpy()
                code = np.where(index >= 0, index.astype(np.int64) + RESERVED_CODES, OOV_CODE)
                code[column.is_null().to_numpy(zero_copy_only=False)] = NULL_CODE
                codes[:, j] = code
            yield Chunk(labels, dense, codes)

    def close(self, fitted):
        """Free what fitting left behind (nothing here)."""

    @staticmethod
    def _check_labels(path, batch, pipeline):
        labels = batch.column(LABEL).to_numpy(zero_copy_only=False)  # float64 with NaN where one is missing
        if not ((labels == 0) | (labels == 1)).all():
            raise bad_line_error([path], pipeline, "a label is missing or not 0/1 (column 1 must be 0 or 1)")


def _check_dense(paths, dense, pipeline):
    """DataError naming the input line when the operators made a dense value NaN or infinite."""
    if not np.isfinite(dense).all():
        raise bad_line_error(paths, pipeline, f"{DENSE_OPS} (and Normalize) made a dense value NaN or infinite")


def _floats(column):
    """A pyarrow float column as float64 with NaN for missing values.  # (n,)"""
    return column.to_numpy(zero_copy_only=False).astype(np.float64)


def _merge_counts(parts):
    """One table (values, counts) from partial count tables."""
    import pyarrow as pa

    if len(parts) == 1:
        return parts[0]
    grouped = pa.concat_tables(parts).group_by("values").aggregate([("counts", "sum")])
    return pa.table({"values": grouped["values"], "counts": grouped["counts_sum"]})


class NVTabularEngine:
    """The NVTabular engine (see the module docstring). Needs ``pip install "hugectr-lab[nvtabular]"`` and
    ``pip install --no-deps nvtabular==23.8.0 merlin-core==23.8.0 merlin-dataloader==23.8.0`` (docs/install.md)."""

    name = "nvtabular"

    def __init__(self, chunk_bytes=64 << 20, progress=None, workdir=None):
        self.chunk_bytes, self.progress = int(chunk_bytes), progress
        self.workdir = workdir
        # CPU mode is what this engine uses; merlin warns it is experimental every time a Dataset is made
        warnings.filterwarnings("ignore", message="Initializing an NVTabular Dataset in CPU mode")

    @staticmethod
    def _modules():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # merlin warns that TensorFlow and Triton are absent
                import nvtabular as nvt
                from nvtabular import ops
        except ImportError as err:
            raise ImportError("the nvtabular engine needs NVTabular 23.8 (see docs/install.md): "
                              f"{err}") from None
        return nvt, ops

    def _dataset(self, paths):
        nvt, _ = self._modules()
        dtypes = {LABEL: "int64", **{c: "float64" for c in DENSE}, **{c: "str" for c in CATS}}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*CPU mode")  # "experimental": this is the mode we test
            return nvt.Dataset(list(paths), engine="csv", sep="\t", names=list(COLUMNS), dtype=dtypes,
                               na_values=[""], keep_default_na=False, quoting=3, cpu=True,
                               part_size=max(self.chunk_bytes, 1 << 20))

    def fit(self, paths, pipeline) -> Fitted:
        nvt, ops = self._modules()
        out = tempfile.mkdtemp(prefix="hugectr-lab-nvt-", dir=self.workdir)
        cont = list(DENSE) >> ops.FillMissing(fill_val=pipeline.fill_value)
        if pipeline.clip_min is not None:
            cont = cont >> ops.Clip(min_value=pipeline.clip_min)
        if pipeline.log:
            cont = cont >> ops.LogOp()
        normalizer = None
        if pipeline.normalize:
            from .nvt_normalize import ExactNormalize

            normalizer = ExactNormalize()
            cont = cont >> normalizer
        categorify = ops.Categorify(freq_threshold=pipeline.freq_threshold, out_path=out)
        workflow = nvt.Workflow(cont + (list(CATS) >> categorify) + [LABEL])
        try:
            workflow.fit(self._dataset(paths))
        except ValueError as err:
            raise bad_line_error(paths, pipeline, f"not Criteo-format TSV (label, I1-I13, C1-C26): {err}") from None
        sizes = [_stable_vocabulary(categorify.categories[name], name) for name in CATS]
        means = stds = None
        if normalizer is not None:
            means = np.array([normalizer.means[c] for c in DENSE])
            stds = np.array([normalizer.stds[c] for c in DENSE])
        self._outputs = getattr(self, "_outputs", []) + [out]
        return Fitted(sizes, means, stds, state=workflow)

    def transform(self, paths, fitted: Fitted, pipeline):
        ddf = fitted.state.transform(self._dataset(paths)).to_ddf()
        disable = not (ddf.npartitions > 1 if self.progress is None else self.progress)
        for i in tqdm(range(ddf.npartitions), desc="transform", unit="part", disable=disable):
            df = ddf.get_partition(i).compute()
            if not df[LABEL].isin((0, 1)).all():  # a missing label is NA, not in the set either
                raise bad_line_error(paths, pipeline, "a label is missing or not 0/1 (column 1 must be 0 or 1)")
            dense = np.stack([df[c].to_numpy() for c in DENSE], axis=1)
            _check_dense(paths, dense, pipeline)
            yield Chunk(df[LABEL].to_numpy().astype(np.float32),
                        dense.astype(np.float32) if pipeline.log or pipeline.normalize else dense.astype(np.float64),
                        np.stack([df[c].to_numpy() for c in CATS], axis=1).astype(np.int64))

    def close(self, fitted):
        """Remove the vocabulary files fitting wrote."""
        for out in getattr(self, "_outputs", []):
            shutil.rmtree(out, ignore_errors=True)
        self._outputs = []


def _stable_vocabulary(path, column):
    """Re-sort NVTabular's vocabulary file of ``column`` to count descending, value ascending (its own
    order of equal counts is not stable); returns the vocabulary size."""
    import pandas as pd

    table = pd.read_parquet(path)
    size_column = f"{column}_size"
    table = table.sort_values([size_column, column], ascending=[False, True], kind="mergesort")
    table.index = pd.RangeIndex(RESERVED_CODES, RESERVED_CODES + len(table))  # codes are the index
    if os.path.isdir(path):
        shutil.rmtree(path)
    table.to_parquet(path)
    return len(table)
