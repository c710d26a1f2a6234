"""Run JupyterLab on 127.0.0.1 and drive it with headless Chromium (Playwright's sync API).

``LabServer`` starts ``python -m jupyterlab`` on a free port with a random token, a temporary root
directory and temporary Jupyter/JupyterLab/IPython directories, so nothing of the user's
configuration, settings or workspaces leaks in (and nothing is written to them). Its process group is
killed in ``stop()``; ``log_tail()`` is the server's (and the kernels') log.

``open_browser`` launches the system Chromium (``/usr/bin/chromium``; Playwright's own browser
downloads are never used).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]

# JupyterLab user settings: no news/update toasts; every cell attached to the DOM (the default
# windowing mode leaves off-screen cells unrendered).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def chromium_path():
    """The system Chromium (Debian's ``/usr/bin/chromium``, else ``chromium`` on the PATH), or None."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """``LabServer(workdir, files)``: JupyterLab serving a copy of ``files`` (paths) from ``workdir/root``."""

    def __init__(self, workdir, files, *, startup_timeout=90):
        self.workdir = Path(workdir)
        self.root = self.workdir / "root"
        self.root.mkdir(parents=True)
        for f in files:
            shutil.copy(f, self.root)
        self.token = os.urandom(16).hex()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "jupyterlab.log"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("JUPYTER", "IPYTHON", "MPLBACKEND"))}
        dirs = {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data", "JUPYTER_RUNTIME_DIR": "runtime",
                "JUPYTERLAB_SETTINGS_DIR": "lab-settings", "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces",
                "IPYTHONDIR": "ipython", "MPLCONFIGDIR": "matplotlib"}
        for var, name in dirs.items():
            path = self.workdir / name
            path.mkdir()
            env[var] = str(path)
        for rel, settings in LAB_SETTINGS.items():
            path = self.workdir / "lab-settings" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(settings))
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--ServerApp.allow_root=True",   # CI runs as root
               "--ServerApp.terminals_enabled=False", "--LabApp.extension_manager=readonly",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url=None"]
        self._log = open(self.log_path, "wb")
        # A process group of its own: stop() ends the server and the kernels it started, nothing else.
        self.process = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_ready(startup_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"jupyter lab did not answer within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.25)

    def lab_url(self, path):
        return f"{self.url}/lab/tree/{path}?token={self.token}"

    def log_tail(self, limit=20000) -> str:
        try:
            self._log.flush()
            text = self.log_path.read_text(errors="replace")
        except (OSError, ValueError):
            return "(no log)"
        return text[-limit:]

    def stop(self):
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)   # the server shuts its kernels down
                self.process.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)       # whatever of the group is left
        except (ProcessLookupError, PermissionError):
            pass
        if self.process.poll() is None:
            self.process.wait(5)
        self._log.close()


def open_browser(playwright, *, viewport=(1400, 1000)):
    browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True,
                                         timeout=60_000)
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=1)
    return browser, context
