"""LRSchedulerExplorer: the curve is get_next()'s values; load from and save to a config."""

import json

import pytest

from hugectr_lab.optim import LearningRateScheduler, get_learning_rate_scheduler
from hugectr_lab.widgets import LRSchedulerExplorer

from session_helpers import dnn_config, optimizer, write_config


def get_next_values(n, **kw):
    sch = LearningRateScheduler(**kw)
    return [sch.get_next() for _ in range(n)]


def test_curve_is_exactly_what_get_next_returns():
    kw = dict(base_lr=0.01, warmup_steps=10, decay_start=40, decay_steps=30, decay_power=2.0, end_lr=1e-4)
    ex = LRSchedulerExplorer(steps=100, **kw)
    assert ex.values() == kw
    assert ex.lr_values == get_next_values(100, **kw)
    assert list(ex.line.get_ydata()) == ex.lr_values and list(ex.line.get_xdata()) == list(range(1, 101))


def test_moving_a_slider_redraws_the_curve():
    ex = LRSchedulerExplorer(steps=50, base_lr=0.001)
    before = ex.plot.redraws
    ex.sliders["warmup_steps"].value = 20
    ex.sliders["decay_start"].value = 25
    ex.steps.value = 60
    assert ex.plot.redraws == before + 3
    assert ex.lr_values == get_next_values(60, base_lr=ex.values()["base_lr"], warmup_steps=20, decay_start=25)
    assert ex.lr_values[19] == pytest.approx(ex.values()["base_lr"])


def test_an_invalid_schedule_shows_the_error():
    ex = LRSchedulerExplorer(steps=10)
    ex.sliders["end_lr"].value = ex.sliders["end_lr"].min  # still valid
    assert ex.message.value == ""
    with pytest.raises(ValueError):
        LRSchedulerExplorer(steps=10, decay_power=0.5).scheduler()


def test_load_and_save_round_trip_through_the_config(tmp_path):
    config = dnn_config(opt=optimizer("SGD", lr=0.05))
    config["optimizer"]["sgd_hparam"].update(warmup_steps=7, decay_start=30, decay_steps=12, decay_power=2.0,
                                             end_lr=0.001)
    path = write_config(tmp_path / "c.json", config)
    ex = LRSchedulerExplorer(path, steps=80)
    assert ex.values() == dict(base_lr=0.05, warmup_steps=7, decay_start=30, decay_steps=12, decay_power=2.0,
                               end_lr=0.001)
    assert ex.lr_values == get_learning_rate_scheduler(path).schedule(80)
    ex.set_values(warmup_steps=3, decay_steps=20, decay_power=3.0)
    ex.save_button.click()
    assert ex.message.value.startswith("saved")
    saved = json.loads(open(path).read())
    hparam = saved["optimizer"]["sgd_hparam"]
    assert hparam["warmup_steps"] == 3 and hparam["decay_steps"] == 20 and hparam["decay_power"] == 3.0
    assert hparam["atomic_update"] is True and saved["layers"] == config["layers"]  # the rest is untouched
    assert get_learning_rate_scheduler(path).schedule(80) == ex.lr_values
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]   # no temporary file left behind
    other = LRSchedulerExplorer(path, steps=80)
    assert other.values() == ex.values()


def test_values_outside_a_slider_range_widen_it(tmp_path):
    ex = LRSchedulerExplorer(steps=10, warmup_steps=500, base_lr=50.0, end_lr=0.5)
    assert ex.values()["warmup_steps"] == 500 and ex.sliders["warmup_steps"].max >= 500
    assert ex.values()["base_lr"] == pytest.approx(50.0) and ex.values()["end_lr"] == 0.5


def test_save_without_a_path_shows_an_error():
    ex = LRSchedulerExplorer(steps=5)
    assert ex.save_button.disabled
    ex._try(ex.save)
    assert "no config path" in ex.message.value
