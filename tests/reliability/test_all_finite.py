"""The step's finiteness check ``backend.ops.all_finite`` (the NumPy reference ``numerics.all_finite`` with
``xp=numpy``, the flag kernel of kernels/numerics.cu with ``xp=cupy``): exact for every float dtype and
placement of a non-finite value, in contiguous arrays and row-strided views, and never fooled by large
finite values (the reference's float64 sum cannot overflow)."""

import numpy as np
import pytest

from hugectr_lab.backend import get_backend


def all_finite(xp, *arrays):
    return get_backend(xp.__name__).ops.all_finite(*arrays)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_one_non_finite_element_anywhere_is_found(xp, dtype):
    a = xp.asarray(np.random.default_rng(0).normal(size=(37, 11)).astype(dtype))
    b = xp.ones(5, dtype=dtype)
    assert bool(all_finite(xp, a, b))
    for bad in (np.inf, -np.inf, np.nan):
        for at in (0, 200, a.size - 1):
            c = a.copy()
            c.reshape(-1)[at] = bad
            assert not bool(all_finite(xp, c, b)), (bad, at)
            assert not bool(all_finite(xp, b, c)), (bad, at)


def test_opposite_infinities_and_nan_next_to_inf_are_found(xp):
    a = xp.asarray(np.array([np.inf, -np.inf, 1.0], np.float32))
    assert not bool(all_finite(xp, a))
    assert not bool(all_finite(xp, xp.asarray(np.array([np.nan, np.inf], np.float16))))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_the_largest_finite_values_are_finite(xp, dtype):
    top = np.finfo(dtype).max
    a = xp.full(100003, top, dtype=dtype)
    a[1::2] = top if dtype == np.float16 else -top / 3
    assert bool(all_finite(xp, a))


def test_integer_and_boolean_arrays_are_finite(xp):
    assert bool(all_finite(xp, xp.arange(7), xp.zeros(3, dtype=bool)))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_large_arrays_summed_by_rows_find_every_placement(xp, dtype):
    # 64 Ki elements and up are summed as 1024 row sums and a remainder (one block a row on CuPy)
    a = xp.asarray(np.random.default_rng(1).normal(size=(70001,)).astype(dtype))
    assert bool(all_finite(xp, a))
    for at in (0, 12345, 70001 - 70001 % 1024 - 1, 70001 - 70001 % 1024, 70000):   # rows, then the remainder
        for bad in (np.inf, np.nan):
            c = a.copy()
            c[at] = bad
            assert not bool(all_finite(xp, c)), (at, bad)
    wide = xp.asarray(np.random.default_rng(2).normal(size=(300, 700)).astype(dtype))
    view = wide[:, ::3]            # strided: summed through a contiguous copy
    assert bool(all_finite(xp, view))
    wide[299, 698] = np.inf        # outside the view (every third column from 0)
    assert bool(all_finite(xp, view))
    wide[299, 696] = np.inf
    assert not bool(all_finite(xp, view))


def test_a_row_strided_view_of_many_rows_is_checked_in_place(xp):
    # an embedding's (B, S, E) slice of a Concat gradient: rows of S*E contiguous values, 429 apart
    base = xp.asarray(np.random.default_rng(3).normal(size=(300, 429)).astype(np.float16))
    view = base[:, :416].reshape(300, 26, 16)
    assert bool(all_finite(xp, view))
    base[7, 420] = np.inf          # in the row's tail outside the view
    assert bool(all_finite(xp, view))
    for at in ((0, 0), (150, 200), (299, 415)):
        c = base.copy()
        c[at] = np.nan
        assert not bool(all_finite(xp, c[:, :416].reshape(300, 26, 16))), at


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_strided_views_mixed_dtypes_and_empty_arrays(xp, dtype):
    base = xp.asarray(np.random.default_rng(4).normal(size=(65, 50)).astype(dtype))
    cols = base[:, 3:40]                                         # rows of 37 values, 50 apart
    every_other = base[::2, 5:9]                                 # rows 100 apart
    not_rows = base[:, ::2]                                      # no contiguous rows: checked through a copy
    extra = (xp.arange(5), xp.zeros(0, dtype=dtype), xp.ones(3, dtype=np.float64))
    assert bool(all_finite(xp, cols, every_other, not_rows, *extra))
    base[1, 45] = np.nan                                         # in none of the three views (odd column, odd row)
    assert bool(all_finite(xp, cols, every_other, *extra))
    assert bool(all_finite(xp, not_rows))
    base[64, 39] = np.inf                                        # cols' last element
    assert not bool(all_finite(xp, cols, *extra))
    assert bool(all_finite(xp, every_other))                     # row 64 is in it, column 39 is not
    base[64, 6] = -np.inf
    assert not bool(all_finite(xp, every_other))
    assert not bool(all_finite(xp, xp.ones(3, dtype=dtype), xp.asarray(np.array([1.0, np.nan]))))   # float64 part
