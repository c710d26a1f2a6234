"""The NVTabular engine (23.8, CPU mode) and the pyarrow engine write the same files from the same input.

CI installs NVTabular (README command (b)), so there a missing NVTabular fails instead of skipping.
"""

import os
import warnings

import numpy as np
import pytest
from criteo_tsv import write_criteo_tsv

from hugectr_lab.data import ParquetLayout, read_file_list, read_parquet_file
from hugectr_lab.preprocess import CriteoPipeline, preprocess_criteo

if os.environ.get("CI"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import nvtabular  # noqa: F401  (must be installed by the test command)
else:
    pytest.importorskip("nvtabular", exc_type=ImportError)


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    base = tmp_path_factory.mktemp("criteo")
    return base, write_criteo_tsv(base / "day_0", 2500, seed=7), write_criteo_tsv(base / "day_1", 500, seed=8)


def run_both(base, train, evaluation, name, **options):
    train = [train] if isinstance(train, str) else train
    return [preprocess_criteo(base / f"{name}_{engine}", train, [evaluation], engine=engine, progress=False,
                              **options) for engine in ("pyarrow", "nvtabular")]


def output_files(summary):
    files = []
    for split in summary.splits.values():
        files += split.files + [p for pair in split.parts for p in pair]
        files += [p for p in (split.source, split.keyset) if p and os.path.exists(p)]
    return files


@pytest.mark.parametrize("format, options", [
    ("norm", dict(samples_per_file=700, file_list_length=2, chunk_bytes=200_000)),
    ("raw", dict(samples_per_file=1000, float_label_dense=False)),
])
def test_engines_write_identical_files(days, format, options):
    base, train, evaluation = days
    arrow, nvt = run_both(base, train, evaluation, format, format=format, pipeline=CriteoPipeline(freq_threshold=3),
                          **options)
    assert (arrow.engine, nvt.engine) == ("pyarrow", "nvtabular")
    assert arrow.slot_size_array == nvt.slot_size_array and sum(arrow.slot_size_array) > 26 * 3
    assert arrow.data_layer["format"] == nvt.data_layer["format"]
    files = list(zip(output_files(arrow), output_files(nvt)))
    assert len(files) >= 4
    for a, b in files:
        assert os.path.basename(a) == os.path.basename(b)
        if a.endswith(".txt"):  # file lists name their own output directory
            assert [os.path.basename(e) for e in read_file_list(a)] == [os.path.basename(e) for e in read_file_list(b)]
        else:
            assert open(a, "rb").read() == open(b, "rb").read(), (a, b)


@pytest.mark.parametrize("format, pipeline, options", [
    # clip at 0 (the inputs hold negatives) and LogOp: float32 inputs to Normalize; several blocks/partitions
    ("norm", CriteoPipeline(freq_threshold=2, normalize=True), dict(samples_per_file=700, chunk_bytes=100_000)),
    ("parquet", CriteoPipeline(freq_threshold=2, normalize=True), dict(samples_per_file=3000)),
    # no clip, no log, a fractional fill value: float64 inputs with negative values
    ("raw", CriteoPipeline(freq_threshold=2, normalize=True, clip_min=None, log=False, fill_value=-0.25),
     dict(samples_per_file=1000, float_label_dense=True, chunk_bytes=150_000)),
])
def test_engines_write_identical_files_with_normalize(days, format, pipeline, options):
    """Normalize's statistics are summed exactly (hugectr_lab.preprocess.moments), so the engines write the
    same bytes whatever their partitioning -- and the same bytes as the pyarrow engine reading 64 MB blocks
    (one block per file here). Inputs: missing values, negative values, tied category counts, two files."""
    base, train, evaluation = days
    train = [train, write_criteo_tsv(base / "day_2", 1500, seed=9)]  # NVTabular: a partition per file at least
    arrow, nvt = run_both(base, train, evaluation, f"{format}_normalize", format=format, pipeline=pipeline, **options)
    whole = preprocess_criteo(base / f"{format}_normalize_whole", train, [evaluation], engine="pyarrow",
                              format=format, pipeline=pipeline, progress=False,
                              **{**options, "chunk_bytes": 64 << 20})
    assert arrow.slot_size_array == nvt.slot_size_array == whole.slot_size_array
    files = list(zip(output_files(arrow), output_files(nvt), output_files(whole)))
    assert len(files) >= 4
    for a, b, c in files:
        assert os.path.basename(a) == os.path.basename(b) == os.path.basename(c)
        if a.endswith(".txt"):
            continue
        assert open(a, "rb").read() == open(b, "rb").read() == open(c, "rb").read(), (a, b, c)
    if format == "parquet":  # standardized with the training moments
        layout = ParquetLayout(1, 13, (26,), "I64", tuple(arrow.slot_size_array))
        dense = np.concatenate([read_parquet_file(p, layout).dense for p in arrow.splits["train"].files])
        assert len(dense) == 4000 and np.abs(dense.mean(axis=0, dtype=np.float64)).max() < 1e-6
        assert np.abs(dense.std(axis=0, ddof=1, dtype=np.float64) - 1).max() < 1e-6
