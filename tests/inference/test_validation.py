"""predict's argument checks (spec 9.4) and the factories' consistency checks: each error names the
argument, its length and the expected length instead of failing deep inside."""

import numpy as np
import pytest

from hugectr_lab.inference import (CreateEmbeddingCache, CreateParameterServer, InferenceConfigError,
                                   InferenceSession, PredictInputError)
from inference_helpers import table, tiny_model


@pytest.fixture
def session(tmp_path):
    # Two tables of 2 slots each (S = 4), dense_dim 2, max_feature_num_per_sample 8 + 8.
    config = tiny_model(tmp_path, [table(100), table(100, vec=2, start=1000)], max_batchsize=4)
    ps = CreateParameterServer([config], ["tiny"], False)
    return InferenceSession(config, 0, CreateEmbeddingCache(ps, 0, True, 0.5, config, "tiny", False))


def good(n):
    return [0.5] * (2 * n), list(range(4 * n)), list(range(4 * n + 1))


def test_a_well_formed_request_of_any_size(session):
    for n in (1, 3, 4, 9):            # 9 > max_batchsize 4: three chunks
        dense, keys, ptrs = good(n)
        out = session.predict(dense, keys, ptrs)
        assert len(out) == n and all(0 < p < 1 for p in out)
    middle = session.predict([0.5] * 8, list(range(16, 32)), list(range(17)))   # samples 4..7 of good(9)
    np.testing.assert_allclose(session.predict(*good(9))[4:8], middle, rtol=0, atol=1e-7)


@pytest.mark.parametrize("args, message", [
    ((good(2)[0], good(2)[1], list(range(8))), r"row_ptrs has 8 entries; expected num_samples × slot_num \+ 1 "
                                               r"with slot_num = 4 \(e.g. 9 for 2 samples\)"),
    (([0.5] * 5, good(2)[1], good(2)[2]), r"dense_feature has 5 values; expected num_samples × dense_dim = "
                                          r"2 × 2 = 4 \(num_samples = \(len\(row_ptrs\) - 1\) / slot_num = "
                                          r"\(9 - 1\) / 4 = 2\)"),
    ((good(1)[0], list(range(17)), [0, 1, 2, 3, 17]), r"embeddingcolumns has 17 keys; expected at most "
                                                      r"num_samples × max_feature_num_per_sample = 1 × 16 = 16"),
    ((good(1)[0], [1, 2, 3, 4], [1, 2, 3, 4, 4]), r"row_ptrs\[0\] must be 0, got 1"),
    ((good(1)[0], [1, 2, 3, 4], [0, 2, 1, 3, 4]), r"row_ptrs must be non-decreasing; row_ptrs\[2\] = 1 < "
                                                  r"row_ptrs\[1\] = 2"),
    ((good(1)[0], [1, 2, 3, 4], [0, 1, 2, 3, 3]), r"row_ptrs\[-1\] = 3 but embeddingcolumns has 4 keys"),
    ((good(1)[0], [1, -2, 3, 4], good(1)[2]), r"embeddingcolumns\[1\] = -2 does not fit the config's "
                                              r"input_key_type I32"),
    ((good(1)[0], [1, 2, 2 ** 32 - 1, 4], good(1)[2]), r"embeddingcolumns\[2\] = 4294967295 is the reserved key"),
    ((["a", "b"], [1, 2, 3, 4], good(1)[2]), r"dense_feature must be a list of numbers"),
    (([0.5, 0.5, 0.5, float("nan")], *good(2)[1:]), r"dense_feature\[3\] = nan \(sample 1, dense feature 1\) is "
                                                   r"not finite; 1 of 4 values are NaN or infinite"),
    (([float("inf")] * 2, *good(1)[1:]), r"dense_feature\[0\] = inf \(sample 0, dense feature 0\)"),
    ((good(1)[0], [1.5, 2, 3, 4], good(1)[2]), r"embeddingcolumns must be a list of integers"),
])
def test_bad_arguments_are_named(session, args, message):
    with pytest.raises(PredictInputError, match=message):
        session.predict(*args)


def test_key_type_overload_must_match_the_config(session, tmp_path):
    with pytest.raises(PredictInputError, match=r"i64_input_key=True\) does not match .* input_key_type I32"):
        session.predict(*good(1), True)
    assert len(session.predict(*good(1), False)) == 1
    config = tiny_model(tmp_path, [table(10, dtype=np.int64)], key_type="I64", name="wide")
    ps = CreateParameterServer([config], ["wide"], True)
    wide = InferenceSession(config, 0, CreateEmbeddingCache(ps, 0, True, 0.5, config, "wide", True))
    with pytest.raises(PredictInputError, match="input_key_type I64; call predict"):
        wide.predict([0.0, 0.0], [1, 2], [0, 1, 2])
    assert len(wide.predict([0.0, 0.0], [2 ** 40, -5], [0, 1, 2], True)) == 1


def test_factories_check_their_arguments(tmp_path):
    config = tiny_model(tmp_path, [table(10)])
    with pytest.raises(InferenceConfigError, match="model_config_path has 1 entries but model_name has 2"):
        CreateParameterServer([config], ["a", "b"], False)
    with pytest.raises(TypeError, match="model_config_path=...\\) must be a list of strings"):
        CreateParameterServer(config, ["a"], False)
    with pytest.raises(InferenceConfigError, match="input_key_type 'I32' but i64_input_key=True"):
        CreateParameterServer([config], ["a"], True)
    ps = CreateParameterServer([config], ["a"], False)
    with pytest.raises(KeyError, match="no model named 'b'"):
        ps.look_up([1], "b", 0)
    cache = CreateEmbeddingCache(ps, 0, True, 0.5, config, "a", False)
    with pytest.raises(InferenceConfigError, match=r"device_id=1\) must be the embedding cache's device"):
        InferenceSession(config, 1, cache)
    other = tiny_model(tmp_path, [table(10, vec=3)], name="other")
    with pytest.raises(InferenceConfigError, match="do not match model 'a'"):
        InferenceSession(other, 0, cache)
    missing = tiny_model(tmp_path, [table(10)], name="gone")
    (tmp_path / "gone0_sparse.model").unlink()
    with pytest.raises(FileNotFoundError, match=r"inference.sparse_model_file\[0\]"):
        CreateParameterServer([missing], ["gone"], False)


def test_short_dense_model_file_is_an_error(tmp_path):
    config = tiny_model(tmp_path, [table(10)])
    (tmp_path / "tiny_dense.model").write_bytes(np.zeros(3, np.float32).tobytes())
    ps = CreateParameterServer([config], ["a"], False)
    with pytest.raises(InferenceConfigError, match="holds 3 float32 values, the graph .* has 11 dense parameters"):
        InferenceSession(config, 0, CreateEmbeddingCache(ps, 0, True, 0.5, config, "a", False))
