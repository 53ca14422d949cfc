"""Real-browser fixtures: one JupyterLab server per test session, driven by
Playwright (sync API) with Debian's /usr/bin/chromium.

Never run ``playwright install``: the browser is the system chromium.
Every wait has a timeout; the server, its kernels and the browser are always
torn down.
"""

from __future__ import annotations

import contextlib

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TOKEN = "tfmagic-test-token"
CHROMIUM = os.environ.get("TFMAGIC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_TIMEOUT = 90  # s
PAGE_TIMEOUT_MS = 60_000
# Where each front end served by the one server opens a notebook: JupyterLab, and
# Notebook 7 (the `notebook` package). Both expose window.jupyterapp (see start()).
UI_PATHS = {"lab": "/lab/tree/", "notebook": "/notebooks/"}
REQUIRED_LABEXTENSIONS = ("@jupyter-widgets/jupyterlab-manager", "bqplot", "bqscales")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives JupyterLab in a real (headless) chromium; slow"
    )


# --------------------------------------------------------------------------
# artifacts
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    d = Path(os.environ.get("TFMAGIC_ARTIFACTS", ROOT / "tests" / "artifacts"))
    d.mkdir(parents=True, exist_ok=True)
    return d


# --------------------------------------------------------------------------
# JupyterLab server
# --------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    def __init__(self, base: Path):
        self.base = base
        self.root_dir = base / "notebooks"
        self.root_dir.mkdir()
        self.log_path = base / "jupyterlab.log"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    # -- environment ---------------------------------------------------------
    def env(self) -> dict:
        env = dict(os.environ)
        dirs = {
            "JUPYTER_CONFIG_DIR": self.base / "config",
            "JUPYTER_DATA_DIR": self.base / "data",
            "JUPYTER_RUNTIME_DIR": self.base / "runtime",
            "IPYTHONDIR": self.base / "ipython",
            "JUPYTERLAB_SETTINGS_DIR": self.base / "config" / "lab" / "user-settings",
            "JUPYTERLAB_WORKSPACES_DIR": self.base / "workspaces",
        }
        for k, v in dirs.items():
            v.mkdir(parents=True, exist_ok=True)
            env[k] = str(v)
        # Kernels inherit this: the repo (tfmagic) and livetest_magic.py.
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        env.pop("JUPYTER_PREFER_ENV_PATH", None)
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        # The news / update notification would cover the notebook.
        settings = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True, exist_ok=True)
        (settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"checkForUpdates": False, "fetchNews": "false"})
        )
        return env

    # -- lifecycle -------------------------------------------------------------
    def start(self):
        cmd = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--LabApp.expose_app_in_browser=True",
            # Notebook 7 (/notebooks/...) is its own app with its own switch.
            "--JupyterNotebookApp.expose_app_in_browser=True",
            "--ServerApp.open_browser=False",
        ]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, env=self.env(), cwd=self.root_dir, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited early:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status", timeout=2)
                return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"JupyterLab did not start:\n{self.log_tail()}")
            time.sleep(0.2)  # polling interval for the HTTP endpoint

    def api(self, method: str, path: str, timeout: float = 10):
        req = urllib.request.Request(
            f"{self.url}{path}", method=method,
            headers={"Authorization": f"token {TOKEN}"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self):
        try:
            for k in self.api("GET", "/api/kernels"):
                self.api("DELETE", f"/api/kernels/{k['id']}", timeout=15)
        except Exception:
            pass

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.shutdown_kernels()
            # SIGTERM: the server stops its loop and shuts its kernels down.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    server = LabServer(tmp_path_factory.mktemp("jupyterlab"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------
# browser
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@contextlib.contextmanager
def _page(lab_server, browser, artifacts_dir, viewport, failed_name):
    """A page on the session's JupyterLab. `failed_name()` is called at the end:
    a name means something failed, so save a screenshot and the logs under it."""
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    helper = Lab(lab_server, page, artifacts_dir, console)
    try:
        yield helper
    finally:
        name = failed_name()
        if name:
            try:
                helper.screenshot(f"{name}-FAILED")
            except Exception:
                pass
            (artifacts_dir / f"{name}-console.log").write_text("\n".join(console))
            (artifacts_dir / f"{name}-jupyterlab.log").write_text(lab_server.log_tail(200_000))
        for kernel_id in helper.opened_kernels:
            try:
                lab_server.api("DELETE", f"/api/kernels/{kernel_id}", timeout=15)
            except Exception:
                pass
        context.close()


@pytest.fixture
def lab(lab_server, browser, artifacts_dir, request):
    """A fresh page on the session's JupyterLab; screenshot on failure."""

    def failed_name():
        rep = getattr(request.node, "rep_call", None)
        return request.node.name if rep is not None and rep.failed else None

    with _page(lab_server, browser, artifacts_dir, {"width": 1280, "height": 900}, failed_name) as helper:
        yield helper


@pytest.fixture(scope="module")
def module_lab(lab_server, browser, artifacts_dir, request):
    """One page on the session's JupyterLab for a whole test module, for tests
    that share one notebook and one Run All (a page load + kernel start costs
    10-20 s). The viewport is the module's ``LAB_VIEWPORT`` (default 1280x900).
    If any test of the module failed: a screenshot and the console and server
    logs, named after the module."""
    viewport = getattr(request.module, "LAB_VIEWPORT", {"width": 1280, "height": 900})

    def failed_name():
        failed = any(
            item.module is request.module
            and any(getattr(getattr(item, f"rep_{w}", None), "failed", False) for w in ("setup", "call"))
            for item in request.session.items
        )
        return request.module.__name__.rsplit(".", 1)[-1] if failed else None

    with _page(lab_server, browser, artifacts_dir, viewport, failed_name) as helper:
        yield helper


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

# Find the notebook panel for a path among the main-area widgets.
_FIND_PANEL = """
(path) => {
  const app = window.jupyterapp;
  if (!app) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.sessionContext) return w;
  }
  return null;
}
"""


class Lab:
    def __init__(self, server: LabServer, page, artifacts: Path, console: list[str]):
        self.server = server
        self.page = page
        self.artifacts = artifacts
        self.console = console
        self.opened_kernels: list[str] = []  # shut down when the page is closed

    def _js(self, body: str) -> str:
        """A function of (path, ...) that has `panel` bound (or returns null)."""
        return f"""(args) => {{
          const panel = ({_FIND_PANEL})(args[0]);
          if (!panel) return null;
          {body}
        }}"""

    def write_notebook(self, name: str, sources: list[str]) -> str:
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {
            "name": "python3", "display_name": "Python 3", "language": "python",
        }
        nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
        nbformat.write(nb, self.server.root_dir / name)
        return name

    def open_notebook(self, name: str, timeout_ms: int = PAGE_TIMEOUT_MS, ui: str = "lab"):
        """Open a notebook in JupyterLab (ui="lab") or Notebook 7 (ui="notebook");
        wait until its kernel is connected and idle."""
        self.page.goto(f"{self.server.url}{UI_PATHS[ui]}{name}?token={TOKEN}")
        # Not the toolbar text ("Kernel idle" shows before the session exists):
        # the notebook context, its session and the kernel itself.
        self.page.wait_for_function(
            self._js("""
              if (!panel.context.isReady) return false;
              const s = panel.sessionContext.session;
              if (!s || !s.kernel) return false;
              return s.kernel.connectionStatus === 'connected'
                  && s.kernel.status === 'idle';
            """),
            arg=[name], timeout=timeout_ms,
        )
        self.page.evaluate(self._js("window.jupyterapp.shell.activateById(panel.id); return true;"), [name])

    def page_config(self) -> dict:
        return self.page.evaluate(
            "() => JSON.parse(document.getElementById('jupyter-config-data').textContent)"
        )

    def kernel_status(self, name: str) -> str | None:
        return self.page.evaluate(self._js("""
            const s = panel.sessionContext.session;
            return s && s.kernel ? s.kernel.status : null;
        """), [name])

    def run_all(self):
        # Do not await the command's promise: it settles only when all cells
        # have run, and the sync API could not interact meanwhile.
        self.page.evaluate(
            "() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); return true; }"
        )

    def run_all_with_sidebar(self, name: str, sources: list[str]):
        """Write and open notebook `name`, open the file browser beside it (the width a
        person has), and Run All; its kernel is shut down with the page."""
        self.write_notebook(name, sources)
        self.open_notebook(name)
        self.page.evaluate("() => window.jupyterapp.commands.execute('filebrowser:activate')")
        kernel = self.kernel_id(name)
        if kernel:
            self.opened_kernels.append(kernel)
        self.run_all()

    def cell_outputs(self, name: str, index: int) -> list[dict]:
        return self.page.evaluate(self._js("""
            const cell = panel.content.model.cells.get(args[1]);
            return cell && cell.outputs ? cell.outputs.toJSON() : [];
        """), [name, index]) or []

    def cell_running(self, name: str, index: int) -> bool:
        return bool(self.page.evaluate(self._js("""
            const cell = panel.content.model.cells.get(args[1]);
            return cell.executionState === 'running';
        """), [name, index]))

    @staticmethod
    def output_text(outputs: list[dict]) -> str:
        parts = []
        for o in outputs:
            if o.get("output_type") == "stream":
                t = o.get("text", "")
                parts.append("".join(t) if isinstance(t, list) else t)
            elif o.get("output_type") in ("execute_result", "display_data"):
                t = o.get("data", {}).get("text/plain", "")
                parts.append("".join(t) if isinstance(t, list) else t)
            elif o.get("output_type") == "error":
                parts.append("\n".join(o.get("traceback", [])))
        return "".join(parts)

    def wait_for_output(self, name: str, index: int, text: str, timeout_ms: int = PAGE_TIMEOUT_MS) -> str:
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            out = self.output_text(self.cell_outputs(name, index))
            if text in out:
                return out
            if "Traceback" in out or "Error" in out.splitlines()[0:1]:
                raise AssertionError(f"cell {index} failed:\n{out}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"cell {index} output has no {text!r}; has:\n{out}")
            self.page.wait_for_timeout(100)  # poll interval

    def slider_handle(self, css_scope: str):
        """The keyboard-focusable handle of an ipywidgets 8 slider.

        ipywidgets 8 renders FloatSlider / FloatLogSlider with noUiSlider:
        ``.widget-slider .noUi-handle[role=slider]``; its ``aria-valuenow`` is
        in slider space (the value; log10 of it for FloatLogSlider).
        """
        return self.page.locator(f"{css_scope} .noUi-handle[role=slider]").first

    def press_on_slider(self, handle, key: str, expect: float | None = None, timeout_ms: int = 5000):
        """Press a key on a slider handle; wait until aria-valuenow == expect."""
        handle.focus()
        handle.press(key)
        if expect is not None:
            self.page.wait_for_function(
                "([el, v]) => Math.abs(parseFloat(el.getAttribute('aria-valuenow')) - v) < 1e-6",
                arg=[handle.element_handle(), expect], timeout=timeout_ms,
            )

    def wait_for_text(self, selector: str, text: str, timeout_ms: int = 5000) -> bool:
        """Poll until the element's text equals text; False on timeout."""
        try:
            self.page.wait_for_function(
                "([sel, t]) => { const e = document.querySelector(sel);"
                " return !!e && e.textContent.trim() === t; }",
                arg=[selector, text], timeout=timeout_ms,
            )
            return True
        except Exception as exc:  # playwright TimeoutError
            if type(exc).__name__ != "TimeoutError":
                raise
            return False

    # -- helpers for tests that look inside cells ---------------------------

    def kernel_id(self, name: str) -> str | None:
        return self.page.evaluate(self._js("""
            const s = panel.sessionContext.session;
            return s && s.kernel ? s.kernel.id : null;
        """), [name])

    def cell(self, name: str, index: int):
        """A locator for cell `index` of notebook `name` (input and outputs).

        JupyterLab 4 renders cells in a windowed list; every cell carries
        ``data-windowed-list-index``.
        """
        panel_id = self.page.evaluate(self._js("return panel.id;"), [name])
        assert panel_id, f"notebook {name} is not open"
        return self.page.locator(
            f'[id="{panel_id}"] .jp-Cell[data-windowed-list-index="{index}"]'
        )

    def execution_count(self, name: str, index: int):
        return self.page.evaluate(self._js("""
            const cell = panel.content.model.cells.get(args[1]);
            return cell ? cell.executionCount : null;
        """), [name, index])

    def poll(self, fn, timeout_s: float, what: str = "condition", interval_ms: int = 50):
        """Call fn() until it returns something truthy; return that.

        Raises TimeoutError (with fn's last value) after timeout_s. The wait
        between calls is a polling interval, not a synchronisation.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            value = fn()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}; last: {value!r}")
            self.page.wait_for_timeout(interval_ms)

    def element_screenshot(self, locator, stem: str) -> Path:
        """A screenshot of one element (scrolled into view), as stem.png."""
        path = self.artifacts / f"{stem}.png"
        locator.scroll_into_view_if_needed(timeout=10_000)
        locator.screenshot(path=str(path), timeout=20_000, animations="disabled")
        return path

    def screenshot(self, stem: str) -> Path:
        path = self.artifacts / f"{stem}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path
