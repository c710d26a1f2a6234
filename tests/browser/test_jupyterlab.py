"""Notebook 05's dashboards in a real browser: JupyterLab + headless Chromium (Playwright, sync API).

The module opens ``notebooks/05_dashboards.ipynb`` (a copy, in a temporary JupyterLab root), clears
its stored outputs, runs all cells from the Run menu and waits for the last cell's fresh output. The
tests then press the dashboards' buttons and move a slider as a user would, and read what the
browser shows: the iteration readout, the status line and the pixels of the plots.

Screenshots of every dashboard go to a temporary directory, and also to the directory named by
``HUGECTR_LAB_SCREENSHOTS`` (relative to the repository root; ``docs/images`` regenerates the
documentation's images) when that variable is set. Skipped only when Chromium, Playwright or
JupyterLab is missing (conftest.py).
"""

import hashlib
import os
import re
import shutil
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = "05_dashboards.ipynb"
DONE_MARKER = "dashboard: paused at iteration"      # the notebook's last cell prints this
PAUSED_AT = 40                                      # notebook 05: dash.train_for(40)
TRAINING = ".hugectr-lab-training-dashboard"
LR_EXPLORER = ".hugectr-lab-lr-explorer"
DASHBOARDS = {   # screenshot name -> the dashboard's CSS class
    "training_dashboard": TRAINING,
    "lr_explorer": LR_EXPLORER,
    "model_view": ".hugectr-lab-model-view",
    "embedding_inspector": ".hugectr-lab-embedding-inspector",
    "inference_inspector": ".hugectr-lab-inference-inspector",
}
MAX_SCREENSHOT_BYTES = 200_000


class Lab:
    """A JupyterLab page (notebook 05, or another notebook run by `run_all`) and what the tests read from it."""

    def __init__(self, page, server, artifacts):
        self.page, self.server, self.artifacts = page, server, artifacts
        self.console_errors = []
        page.on("console", lambda msg: msg.type == "error" and self.console_errors.append(msg.text))

    def wait_until(self, predicate, timeout, what):
        """Poll ``predicate`` (dismissing dialogs and toasts) until it is true, at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            self.dismiss_popups()
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                shot = self.artifacts / f"timeout-{re.sub(r'[^a-z0-9]+', '-', what.lower())[:60]}.png"
                self.page.screenshot(path=shot)
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; page: {shot}; "
                                     f"browser console errors: {self.console_errors[-5:]}")
            self.page.wait_for_timeout(200)

    def dismiss_popups(self):
        page = self.page
        # JupyterLab asks for a kernel when the notebook's kernel is not up yet: take the preselected one.
        dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
        if dialog.count():
            dialog.locator(".jp-Dialog-button.jp-mod-accept").first.click()
        # news / update toasts (turned off in the settings; dismissed here should one appear anyway)
        for button in page.locator(".jp-Notification-Toast-Close, .Toastify__close-button").all():
            if button.is_visible():
                button.click()

    def menu(self, menu, item):
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).first.click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).first.click()

    def errors_in_outputs(self):
        stderr = self.page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        return [t for t in stderr.all_inner_texts() if "Error" in t or "Traceback" in t]

    def run_all(self, notebook, done_marker, timeout, failure_shot):
        """Open ``notebook``, clear its stored outputs (they hold ``done_marker`` too), run all cells from
        the Run menu and wait at most ``timeout`` s for a fresh output holding ``done_marker``. A cell's
        error fails at once; any failure leaves a full-page ``failure_shot`` in the artifacts."""
        page = self.page
        try:
            page.goto(self.server.lab_url(notebook), wait_until="domcontentloaded", timeout=60_000)
            self.wait_until(lambda: page.locator(".jp-Notebook .jp-Cell").count() > 5, 60, "the notebook to open")
            self.wait_until(lambda: page.locator(".jp-StatusBar-TextItem", has_text="| Idle").count() > 0, 90,
                            "the kernel to start")   # a kernel dialog would block the menus
            self.menu("Edit", "Clear Outputs of All Cells")
            self.wait_until(lambda: page.get_by_text(done_marker).count() == 0, 30, "the outputs to clear")
            self.menu("Run", "Run All Cells")

            def finished():
                errors = self.errors_in_outputs()
                assert not errors, f"a notebook cell failed in the browser:\n{errors[0]}"
                return page.locator(".jp-OutputArea-output", has_text=done_marker).count() > 0

            t0 = time.monotonic()
            self.wait_until(finished, timeout, "Run All Cells to finish")
            print(f"Run All Cells took {time.monotonic() - t0:.1f} s")
        except BaseException:
            page.screenshot(path=self.artifacts / failure_shot, full_page=True)
            raise

    def screenshot(self, name, root):
        """The element ``root`` scrolled into view and screenshot, cropped to it, as ``name``.png in the
        artifacts (and in ``$HUGECTR_LAB_SCREENSHOTS``, relative to the repository root, when set);
        returns the element."""
        element = self.page.locator(root).first
        element.scroll_into_view_if_needed()
        path = self.artifacts / f"{name}.png"
        element.screenshot(path=path, animations="disabled")
        size = path.stat().st_size
        assert 2_000 < size <= MAX_SCREENSHOT_BYTES, f"{name}.png is {size} bytes"
        target = os.environ.get("HUGECTR_LAB_SCREENSHOTS")
        if target:
            (REPO / target).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, REPO / target / path.name)
        return element

    # ---- readouts -------------------------------------------------------------------------------

    def text(self, selector):
        return self.page.locator(selector).first.inner_text().strip()

    def iteration(self) -> int:
        """The training dashboard's iteration readout ("123 / 800")."""
        return int(self.text(f"{TRAINING} .hugectr-lab-iteration").split("/")[0])

    def status(self) -> str:
        return self.text(f"{TRAINING} .hugectr-lab-status")

    def plot_digest(self, root) -> str:
        """A digest of the plot's pixels as the browser shows them (PNG image or ipympl canvas)."""
        png = self.page.locator(f"{root} .hugectr-lab-plot").first.screenshot(animations="disabled")
        return hashlib.sha256(png).hexdigest()

    def button(self, root, pattern):
        return self.page.locator(f"{root} button", has_text=re.compile(pattern)).first


@pytest.fixture(scope="module")
def lab(lab_server, browser_context, artifacts):
    page = browser_context.new_page()
    page.set_default_timeout(30_000)
    lab = Lab(page, lab_server, artifacts)
    lab.run_all(NOTEBOOK, DONE_MARKER, 150, "setup-failure.png")
    yield lab
    page.close()


def test_dashboards_render(lab):
    for name, root in DASHBOARDS.items():
        element = lab.page.locator(root)
        assert element.count() == 1, f"{name}: {root} is not on the page"
        box = element.first.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 100, f"{name} renders too small: {box}"
    assert lab.iteration() == PAUSED_AT
    assert lab.button(TRAINING, "^Resume$").is_enabled() and not lab.button(TRAINING, "^Pause$").is_enabled()
    plot = lab.page.locator(f"{TRAINING} .hugectr-lab-plot").first.bounding_box()
    assert plot and plot["width"] > 500 and plot["height"] > 150   # the loss/AUC/lr figure
    assert "MultiCross" in lab.text(".hugectr-lab-model-view")
    assert "L2 norm per slot" in lab.text(".hugectr-lab-embedding-inspector")
    assert "hit_rate" in lab.text(".hugectr-lab-inference-inspector")


def test_loss_plot_changes_as_training_advances(lab):
    start, picture = lab.iteration(), lab.plot_digest(TRAINING)
    lab.button(TRAINING, "^(Resume|Start)$").click()
    try:
        for _ in range(2):   # two successive redraws, each after more iterations
            lab.wait_until(lambda: lab.iteration() > start and lab.plot_digest(TRAINING) != picture, 60,
                           f"the loss plot to change after iteration {start}")
            start, picture = lab.iteration(), lab.plot_digest(TRAINING)
    finally:
        lab.button(TRAINING, "^Pause$").click()
        lab.wait_until(lambda: lab.status() == "paused", 60, "the dashboard to pause")


def test_pause_stops_the_iteration_counter(lab):
    start = lab.iteration()
    lab.button(TRAINING, "^(Resume|Start)$").click()
    lab.wait_until(lambda: lab.iteration() >= start + 3, 60, "training to run")   # (status: evals overwrite it)
    lab.button(TRAINING, "^Pause$").click()
    lab.wait_until(lambda: lab.status() == "paused", 60, "the dashboard to pause")
    first, picture = lab.iteration(), lab.plot_digest(TRAINING)
    time.sleep(1.0)
    assert lab.iteration() == first > start
    assert lab.plot_digest(TRAINING) == picture and lab.status() == "paused"
    assert lab.button(TRAINING, "^Resume$").is_enabled()


def test_screenshots_of_every_dashboard(lab):
    """Cropped to each dashboard; taken after the training tests (more than the notebook's 40 iterations)
    and before the slider test (the explorer shows the config's schedule)."""
    for name, root in DASHBOARDS.items():
        lab.screenshot(name, root)


def test_lr_explorer_redraws_when_a_slider_moves(lab):
    page = lab.page
    slider = page.locator(f"{LR_EXPLORER} .widget-slider", has_text="decay_power").first
    readout = slider.locator(".widget-readout").first
    value, picture = readout.inner_text(), lab.plot_digest(LR_EXPLORER)
    handle = slider.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)      # drag the handle to the right, as a user would
    page.mouse.down()
    page.mouse.move(x + 50, y, steps=10)
    page.mouse.up()
    lab.wait_until(lambda: readout.inner_text() != value, 30, "the slider's readout to change")
    lab.wait_until(lambda: lab.plot_digest(LR_EXPLORER) != picture, 30, "the schedule plot to redraw")
    assert float(readout.inner_text()) > float(value)
    # and from the keyboard: End moves the focused handle to the slider's maximum
    value, picture = readout.inner_text(), lab.plot_digest(LR_EXPLORER)
    handle.focus()
    page.keyboard.press("End")
    lab.wait_until(lambda: readout.inner_text() != value, 30, "the readout to change after End")
    lab.wait_until(lambda: lab.plot_digest(LR_EXPLORER) != picture, 30, "the plot to redraw after End")
    assert float(readout.inner_text()) == 10.0
