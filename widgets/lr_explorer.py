"""``LRSchedulerExplorer``: sliders for HugeCTR's learning-rate schedule and the curve it gives.

The curve is exactly what ``LearningRateScheduler.get_next()`` returns over the first ``steps``
steps (``LearningRateScheduler.schedule``, float32 like HugeCTR). The values load from a JSON
config's optimizer clause and write back to it atomically (temporary file + rename).
"""

from __future__ import annotations

import dataclasses
import json
import os

import ipywidgets as W

from hugectr_lab.config import load_json, parse_optimizer_clause, schedule_to_json
from hugectr_lab.fileio import atomic_write
from hugectr_lab.optim.scheduler import SPEC_FIELDS, LearningRateScheduler

from ._figure import LiveFigure

FIELDS = tuple(SPEC_FIELDS)   # the scheduler's arguments: base_lr, warmup_steps, ..., end_lr


class LRSchedulerExplorer:
    """``LRSchedulerExplorer(config_path=None, steps=10000, **values)``.

    ``values`` (base_lr, warmup_steps, decay_start, decay_steps, decay_power, end_lr) override the
    config's. ``sliders`` maps each name to its slider; ``scheduler()`` builds the scheduler the
    sliders describe; ``lr_values`` is the plotted schedule; ``save(path=None)`` writes the values
    into the config's optimizer hparam object. An invalid combination shows its ValueError in
    ``message`` and leaves the curve empty.
    """

    def __init__(self, config_path=None, steps=10000, **values):
        unknown = set(values) - set(FIELDS)
        if unknown:
            raise TypeError(f"LRSchedulerExplorer: unknown argument(s) {', '.join(sorted(unknown))}; "
                            f"expected {', '.join(FIELDS)}")
        self.config_path = os.fspath(config_path) if config_path is not None else None
        self.lr_values = []
        self.message = W.HTML("")
        self.steps = W.BoundedIntText(value=steps, min=1, max=10_000_000, description="steps",
                                      layout=W.Layout(width="220px"))
        self.sliders = {
            "base_lr": W.FloatLogSlider(value=1e-3, base=10, min=-6, max=1, step=0.01, description="base_lr",
                                        readout_format=".2e"),
            "warmup_steps": W.IntSlider(value=1, min=1, max=steps, description="warmup_steps"),
            "decay_start": W.IntSlider(value=0, min=0, max=steps, description="decay_start"),
            "decay_steps": W.IntSlider(value=1, min=1, max=steps, description="decay_steps"),
            "decay_power": W.FloatSlider(value=2.0, min=1.0, max=10.0, step=0.1, description="decay_power"),
            "end_lr": W.FloatSlider(value=0.0, min=0.0, max=1e-2, step=1e-6, description="end_lr",
                                    readout_format=".2e"),
        }
        for slider in self.sliders.values():
            slider.style.description_width = "105px"
        self.plot = LiveFigure(1, 1, figsize=(7, 3), min_interval=0.0)
        (self.line,) = self.plot.axes[0].plot([], [], lw=1.5)
        self.plot.axes[0].set_xlabel("step (get_next call)")
        self.plot.axes[0].set_ylabel("learning rate")
        self.load_button = W.Button(description="Load from config", icon="folder-open",
                                    disabled=self.config_path is None, layout=W.Layout(width="auto"))
        self.save_button = W.Button(description="Save to config", icon="save", disabled=self.config_path is None,
                                    layout=W.Layout(width="auto"))
        self.load_button.on_click(lambda _: self._try(self.load))
        self.save_button.on_click(lambda _: self._try(self.save))
        self._updating = False
        if self.config_path is not None:
            self.load(update=False)
        self.set_values(update=False, **values)
        for widget in (self.steps, *self.sliders.values()):
            widget.observe(lambda _: self.update(), names="value")
        self.widget = W.VBox([W.HBox([self.load_button, self.save_button, self.steps]),
                              W.HBox([W.VBox(list(self.sliders.values())), self.plot.widget]), self.message])
        self.widget.add_class("hugectr-lab-lr-explorer")
        self.update()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # ---- values ---------------------------------------------------------------------------------

    def values(self) -> dict:
        """The slider values as ``LearningRateScheduler`` arguments."""
        out = {name: slider.value for name, slider in self.sliders.items()}
        for name in ("warmup_steps", "decay_start", "decay_steps"):
            out[name] = int(out[name])
        for name in ("base_lr", "decay_power", "end_lr"):
            out[name] = float(out[name])
        return out

    def set_values(self, update=True, **values):
        """Move sliders (widening a slider's range when a value lies outside it)."""
        self._updating = True
        try:
            for name, value in values.items():
                slider = self.sliders[name]
                if isinstance(slider, W.FloatLogSlider):
                    import math

                    if value > 0:
                        exponent = math.log10(value)
                        slider.min = min(slider.min, math.floor(exponent))
                        slider.max = max(slider.max, math.ceil(exponent))
                else:
                    slider.max = max(slider.max, value)
                    slider.min = min(slider.min, value)
                slider.value = value
        finally:
            self._updating = False
        if update:
            self.update()

    def scheduler(self) -> LearningRateScheduler:
        """A fresh scheduler with the slider values (ValueError for an invalid combination)."""
        return LearningRateScheduler(**self.values())

    def update(self):
        """Recompute and redraw the schedule."""
        if self._updating:
            return
        try:
            self.lr_values = self.scheduler().schedule(int(self.steps.value))
        except ValueError as exc:
            self.lr_values = []
            self.message.value = f"<span style='color:#b00'>{exc}</span>"
        else:
            self.message.value = ""
        with self.plot.lock:
            self.line.set_data(range(1, len(self.lr_values) + 1), self.lr_values)
            self.plot.redraw(force=True)

    # ---- the config file ------------------------------------------------------------------------

    def load(self, path=None, update=True):
        """Set the sliders from ``path``'s (default: the config's) optimizer clause."""
        path = os.fspath(path) if path is not None else self.config_path
        if path is None:
            raise ValueError("load(): no config path (pass one, or give config_path to the explorer)")
        sch = LearningRateScheduler.from_spec(parse_optimizer_clause(path))
        self.set_values(update=update, **{name: getattr(sch, name) for name in FIELDS})
        self.message.value = f"loaded {path}"

    def save(self, path=None):
        """Write the values into ``path``'s (default: the config's) optimizer hparam object, atomically.

        The file is re-read first and only the six schedule keys change, written by the config's
        writer (``config.schedule_to_json``; a key at its default is left out; the JSON is re-indented)."""
        path = os.fspath(path) if path is not None else self.config_path
        if path is None:
            raise ValueError("save(): no config path (pass one, or give config_path to the explorer)")
        self.scheduler()  # refuse to write an invalid schedule
        spec = dataclasses.replace(parse_optimizer_clause(path),   # errors name the file
                                   **{SPEC_FIELDS[name]: value for name, value in self.values().items()})
        config, _ = load_json(path)
        config = {**config, "optimizer": schedule_to_json(config["optimizer"], spec)}
        with atomic_write(path, "w") as f:
            json.dump(config, f, indent=2)
            f.write("\n")
        self.message.value = f"saved to {path}"
        return path

    def _try(self, action):
        try:
            action()
        except (OSError, ValueError) as exc:
            self.message.value = f"<span style='color:#b00'>{exc}</span>"
