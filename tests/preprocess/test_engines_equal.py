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
    return [preprocess_criteo(base / f"{name}_{engine}", [train], [evaluation], engine=engine, progress=False,
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


def test_engines_agree_with_normalize(days):
    """Normalize's statistics are sums whose rounding depends on how each engine partitions the input, so
    normalized values may differ in the last bit; codes and everything else are identical."""
    base, train, evaluation = days
    arrow, nvt = run_both(base, train, evaluation, "pq", format="parquet", samples_per_file=3000,
                          pipeline=CriteoPipeline(freq_threshold=2, normalize=True))
    assert arrow.slot_size_array == nvt.slot_size_array
    layout = ParquetLayout(1, 13, (26,), "I64", tuple(arrow.slot_size_array))
    for split in ("train", "val"):
        a = read_parquet_file(arrow.splits[split].files[0], layout)
        b = read_parquet_file(nvt.splits[split].files[0], layout)
        np.testing.assert_array_equal(a.sparse[0].keys, b.sparse[0].keys)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_max_ulp(a.dense, b.dense, maxulp=1)
        assert abs(float(a.dense[:, 0].mean())) < 0.1 or split == "val"  # standardized with training moments
