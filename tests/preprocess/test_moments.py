"""Normalize's statistics (hugectr_lab.preprocess.moments): exact sums, correctly rounded mean and standard
deviation, independence from how the rows are split, and the normalised values of the whole pipeline
against an independent float64 computation."""

import os
import statistics
from fractions import Fraction

import numpy as np
import pytest
from criteo_tsv import write_criteo_tsv

from hugectr_lab.data import ParquetLayout, read_parquet_file
from hugectr_lab.preprocess import CriteoPipeline, preprocess_criteo
from hugectr_lab.preprocess import moments
from hugectr_lab.preprocess.moments import ExactMoments, exact_square_sums, exact_sums, normalize, sqrt_fraction


def awkward_matrices():
    rng = np.random.default_rng(0)
    wide = rng.normal(0, 1, (400, 3)) * 10.0 ** rng.integers(-300, 300, (400, 3))  # exponents over 2000 bits
    extremes = np.array([[5e-324, -2.0 ** -1074, 1e308], [2.0 ** -500, 3e200, -1e-200], [1e300, 1.0, -1e308]])
    return {
        "wide": wide,
        "extremes": np.concatenate([wide[:50], extremes]),
        "cancelling": np.array([[1e16, 1.0, 2.0 ** 60], [1.0, -1e-16, 3.0], [-1e16, 1e-16, -(2.0 ** 60)]] * 7),
        "normal": rng.normal(3, 2, (500, 3)),
        "float32 log": np.log1p(rng.integers(0, 10 ** 6, (500, 3))).astype(np.float32),
        "float32 large": (rng.normal(0, 1, (300, 3)) * 1e30).astype(np.float32),
        "integers": rng.integers(-10 ** 9, 10 ** 9, (500, 3)).astype(np.float64),
        "tiny": rng.normal(0, 1, (200, 3)) * 2.0 ** -890,
    }


@pytest.mark.parametrize("name", list(awkward_matrices()))
def test_exact_sums_equal_rational_sums(name):
    x = awkward_matrices()[name]
    sums, squares = exact_sums(np.asarray(x, np.float64)), exact_square_sums(x)
    binned = moments._binned_sums(np.asarray(x, np.float64))
    for j in range(x.shape[1]):
        column = [Fraction(float(v)) for v in x[:, j]]
        assert Fraction(sums[j], 2 ** 1126) == sum(column)
        assert Fraction(binned[j], 2 ** 1126) == sum(column)
        assert Fraction(squares[j], 2 ** 2252) == sum(v * v for v in column)


@pytest.mark.parametrize("name", list(awkward_matrices()))
def test_statistics_are_correctly_rounded(name):
    """mean and std (ddof=1) equal Python's statistics.mean / statistics.stdev, which compute exactly and
    round once."""
    x = awkward_matrices()[name]
    means, stds = ExactMoments(x.shape[1]).add(x).finalize()
    for j in range(x.shape[1]):
        column = np.asarray(x[:, j], np.float64).tolist()
        assert means[j] == statistics.mean(column)
        assert stds[j] == statistics.stdev(column)


def test_any_split_of_the_rows_gives_the_same_statistics():
    rng = np.random.default_rng(1)
    x = np.log1p(rng.integers(0, 5000, (3000, 13))).astype(np.float32)
    whole = ExactMoments(13).add(x)
    for seed in range(3):
        cuts = np.sort(np.random.default_rng(seed).choice(np.arange(1, len(x)), 9, replace=False))
        parts = [ExactMoments(13).add(p) for p in np.split(x, cuts)]
        merged = ExactMoments.combine(parts, 13)
        assert (merged.count, merged.sum, merged.sum_sq) == (whole.count, whole.sum, whole.sum_sq)
    # float32 and float64 inputs of the same values: the same integers
    same = ExactMoments(13).add(x.astype(np.float64))
    assert (same.sum, same.sum_sq) == (whole.sum, whole.sum_sq)


def test_missing_infinite_and_short_columns():
    x = np.array([[1.0, np.nan, 5.0, 1.0], [2.0, 4.0, np.inf, np.nan], [4.0, np.nan, 1.0, np.nan]])
    m = ExactMoments(4).add(x)
    means, stds = m.finalize()
    assert m.count == [3, 1, 3, 1]  # NaN skipped, as pandas' count
    assert means[0] == statistics.mean([1.0, 2.0, 4.0]) and stds[0] == statistics.stdev([1.0, 2.0, 4.0])
    assert means[1] == 4.0 and np.isnan(stds[1])  # one value: std NaN (NVTabular: var over n - 1 = 0)
    assert means[2] == np.inf and np.isnan(stds[2])
    assert means[3] == 1.0 and np.isnan(stds[3])
    means, stds = ExactMoments(2).add(np.zeros((0, 2))).finalize()
    assert np.isnan(means).all() and np.isnan(stds).all()
    # NVTabular's rule: x - mean where std is not > 0
    np.testing.assert_array_equal(normalize(np.array([4.0, 5.0]), 4.0, np.nan), [0.0, 1.0])
    np.testing.assert_array_equal(normalize(np.array([4.0, 5.0]), 4.0, 0.0), [0.0, 1.0])


def test_sqrt_fraction_is_correctly_rounded():
    rng = np.random.default_rng(2)
    for _ in range(300):
        n, d = int(rng.integers(1, 2 ** 62)) << int(rng.integers(0, 200)), int(rng.integers(1, 2 ** 62))
        got = sqrt_fraction(n, d)
        # the nearest float: its neighbours' midpoints bracket the exact root
        below, above = np.nextafter(got, 0), np.nextafter(got, np.inf)
        low, high = (Fraction(below) + Fraction(got)) / 2, (Fraction(got) + Fraction(above)) / 2
        assert low * low <= Fraction(n, d) <= high * high
    assert sqrt_fraction(0, 5) == 0.0 and sqrt_fraction(9, 4) == 1.5


def dense_by_hand(path, pipeline):
    """FillMissing, Clip and LogOp (float32, as NVTabular's LogOp) of a TSV's dense columns, in NumPy.  # (n, 13)"""
    rows = [line.split("\t")[1:14] for line in open(path).read().splitlines()]
    x = np.array([[float(v) if v else pipeline.fill_value for v in row] for row in rows], np.float64)
    if pipeline.clip_min is not None:
        x = np.maximum(x, pipeline.clip_min)
    return np.log(x.astype(np.float32) + np.float32(1)) if pipeline.log else x


@pytest.mark.parametrize("engine", ["pyarrow", "nvtabular"])
def test_normalized_dense_equals_an_independent_float64_computation(tmp_path, engine):
    """Exactly ``float32((x - mean) / std)`` in float64 with mean and sample std of the training split as
    Python's statistics module computes them (exact, rounded once); within 1 float32 ulp of the same with
    NumPy's float64 mean and std (pairwise sums, whose last bit may differ)."""
    if engine == "nvtabular" and not os.environ.get("CI"):  # CI installs NVTabular (test_engines_equal)
        pytest.importorskip("nvtabular", exc_type=ImportError)
    train = write_criteo_tsv(tmp_path / "day_0", 1500, seed=11)
    evaluation = write_criteo_tsv(tmp_path / "day_1", 400, seed=12)
    pipeline = CriteoPipeline(freq_threshold=2, normalize=True)
    summary = preprocess_criteo(tmp_path / "out", [train], [evaluation], format="parquet", engine=engine,
                                pipeline=pipeline, samples_per_file=5000, chunk_bytes=60_000, progress=False)
    layout = ParquetLayout(1, 13, (26,), "I64", tuple(summary.slot_size_array))
    x_train = dense_by_hand(train, pipeline).astype(np.float64)  # float32 values
    mean = np.array([statistics.mean(c) for c in x_train.T.tolist()])
    std = np.array([statistics.stdev(c) for c in x_train.T.tolist()])
    numpy_mean, numpy_std = x_train.mean(axis=0), x_train.std(axis=0, ddof=1)
    assert (std > 0).all()
    for split, path in (("train", train), ("val", evaluation)):
        got = read_parquet_file(summary.splits[split].files[0], layout).dense
        x = dense_by_hand(path, pipeline).astype(np.float64)
        np.testing.assert_array_equal(got, ((x - mean) / std).astype(np.float32))
        np.testing.assert_array_max_ulp(got, ((x - numpy_mean) / numpy_std).astype(np.float32), maxulp=1)
