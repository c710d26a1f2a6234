import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hugectr_lab.config import ConfigError
from hugectr_lab.optim import LearningRateScheduler, get_learning_rate_scheduler


def reference_lr(step, base_lr, warmup_steps, decay_start, decay_steps, decay_power, end_lr):
    """The schedule in exact (float64) arithmetic, written from the formula."""
    if step <= warmup_steps:
        return step / warmup_steps * base_lr
    if decay_start and step > decay_start:
        remaining = decay_start + decay_steps - step
        if remaining < 0:
            return end_lr
        return max(base_lr * (remaining / decay_steps) ** decay_power, end_lr)
    return base_lr


def test_defaults_give_constant_base_lr_from_step_one():
    s = LearningRateScheduler(0.5)
    assert (s.get_lr(), s.get_step()) == (0.0, 0)
    assert [s.get_next() for _ in range(3)] == [0.5, 0.5, 0.5]
    assert (s.get_lr(), s.get_step()) == (0.5, 3)


def test_values_are_float32_like_hugectr():
    assert LearningRateScheduler(0.001).get_next() == float(np.float32(0.001))


def test_warmup_hold_decay_and_end_lr_edges():
    # base 0.5 keeps every value exact in float32 except end_lr.
    s = LearningRateScheduler(0.5, warmup_steps=4, decay_start=6, decay_steps=4, decay_power=2.0,
                              end_lr=0.01)
    end = float(np.float32(0.01))
    expected = [0.125, 0.25, 0.375, 0.5,  # warm-up, step 4 = warmup_steps reaches base_lr
                0.5, 0.5,  # hold until decay_start
                0.5 * (3 / 4) ** 2, 0.5 * (2 / 4) ** 2, 0.5 * (1 / 4) ** 2,
                end,  # step decay_start + decay_steps: factor 0, clamped to end_lr
                end, end]
    assert [s.get_next() for _ in expected] == expected


def test_decay_start_zero_disables_decay():
    s = LearningRateScheduler(1.0, warmup_steps=2, decay_start=0, decay_steps=3, end_lr=0.5)
    assert [s.get_next() for _ in range(6)] == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_warmup_longer_than_decay_start_wins():
    s = LearningRateScheduler(1.0, warmup_steps=4, decay_start=2, decay_steps=4, decay_power=1.0)
    assert [s.get_next() for _ in range(7)] == [0.25, 0.5, 0.75, 1.0, 0.25, 0.0, 0.0]


def test_schedule_previews_without_advancing():
    s = LearningRateScheduler(0.1, warmup_steps=3, decay_start=4, decay_steps=5, end_lr=1e-3)
    s.get_next()
    preview = s.schedule(10)
    assert s.get_step() == 1
    assert preview == [s.get_next() for _ in range(10)]
    assert s.schedule(0) == []
    with pytest.raises(ValueError, match="n must be"):
        s.schedule(-1)


@settings(max_examples=200, deadline=None)
@given(base_lr=st.floats(1e-6, 10.0), warmup_steps=st.integers(1, 20),
       decay_start=st.integers(0, 30), decay_steps=st.integers(1, 20),
       decay_power=st.floats(1.0, 4.0), end_lr=st.floats(0.0, 1e-2))
def test_matches_reference_formula(base_lr, warmup_steps, decay_start, decay_steps, decay_power,
                                   end_lr):
    args = (base_lr, warmup_steps, decay_start, decay_steps, decay_power, end_lr)
    s = LearningRateScheduler(*args)
    for step in range(1, warmup_steps + decay_start + decay_steps + 3):
        lr = s.get_next()
        assert lr == float(np.float32(lr))  # a float32 value
        assert lr == pytest.approx(reference_lr(step, *args), rel=1e-5, abs=1e-12)
    assert s.get_step() == step


@pytest.mark.parametrize("argument, value, message", [
    ("base_lr", -0.1, "base_lr must be >= 0"),
    ("warmup_steps", 0, "warmup_steps must be >= 1"),
    ("decay_steps", 0, "decay_steps must be >= 1"),
    ("decay_power", 0.5, "decay_power must be >= 1"),
    ("end_lr", -1e-3, "end_lr must be >= 0"),
    ("decay_start", -1, "decay_start must be >= 0"),
    ("warmup_steps", 1.5, "warmup_steps must be an integer"),
    ("base_lr", float("nan"), "base_lr must be >= 0"),
    ("end_lr", "0", "end_lr must be a number"),
])
def test_constructor_validation_names_the_argument(argument, value, message):
    kwargs = {"base_lr": 0.1, argument: value}
    with pytest.raises(ValueError, match=message):
        LearningRateScheduler(**kwargs)


HPARAM_KEYS = {"Adam": "adam_hparam", "AdaGrad": "adagrad_hparam",
               "MomentumSGD": "momentum_sgd_hparam", "Nesterov": "nesterov_hparam",
               "SGD": "sgd_hparam"}


def write_config(tmp_path, config):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("opt_type, hparam_key", HPARAM_KEYS.items())
def test_reads_the_hparam_object_of_every_optimizer_type(tmp_path, opt_type, hparam_key):
    schedule = {"warmup_steps": 2, "decay_start": 3, "decay_steps": 2, "decay_power": 1.0,
                "end_lr": 0.125}
    config = {"solver": {}, "optimizer": {"type": opt_type, "update_type": "Local",
                                          hparam_key: {"learning_rate": 1.0, **schedule}}}
    s = get_learning_rate_scheduler(write_config(tmp_path, config))
    assert [s.get_next() for _ in range(6)] == [0.5, 1.0, 1.0, 0.5, 0.125, 0.125]


def test_soft_keys_default(tmp_path):
    config = {"optimizer": {"type": "SGD", "sgd_hparam": {"learning_rate": 0.25}}}
    s = get_learning_rate_scheduler(str(write_config(tmp_path, config)))
    assert (s.warmup_steps, s.decay_start, s.decay_steps, s.decay_power, s.end_lr) == (1, 0, 1, 2.0, 0.0)
    assert [s.get_next() for _ in range(3)] == [0.25] * 3


# The optimizer clause is read by the config parser: its errors (ConfigError) give the JSON path, the
# rule and the file.
@pytest.mark.parametrize("config, message", [
    ({"optimizer": {"type": "Adam", "adam_hparam": {"beta1": 0.9}}},
     "optimizer.adam_hparam.learning_rate: is required"),
    ({"solver": {}}, "optimizer: the clause is required"),
    ({"optimizer": {"type": "RMSProp"}}, "optimizer.type: must be one of"),
    ({"optimizer": {"type": "Nesterov", "sgd_hparam": {"learning_rate": 0.1}}},
     "optimizer.nesterov_hparam: is required"),
    ({"optimizer": {"type": "SGD", "sgd_hparam": {"learning_rate": 0.1, "warmup_steps": 0}}},
     "optimizer.sgd_hparam.warmup_steps: must be a positive integer, got 0"),
    ({"optimizer": {"type": "SGD", "sgd_hparam": {"learning_rate": -1}}},
     "optimizer.sgd_hparam.learning_rate: must be a positive number, got -1"),
    ({"optimizer": {"type": "SGD", "sgd_hparam": {"learning_rate": 0.1, "decay_steps": "5"}}},
     'optimizer.sgd_hparam.decay_steps: must be a positive integer, got "5"'),
])
def test_json_errors_name_file_and_path(tmp_path, config, message):
    path = write_config(tmp_path, config)
    with pytest.raises(ConfigError) as info:
        get_learning_rate_scheduler(path)
    assert str(info.value).startswith(message)
    assert str(info.value).endswith(f"(in {path})")


def test_invalid_json_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"optimizer": ')
    with pytest.raises(ConfigError, match=r"^invalid JSON: .*\(in .*broken\.json\)$"):
        get_learning_rate_scheduler(path)
