"""A class served from one machine: `voila examples/learning_rate.ipynb`, as a teacher starts it.

Two students open the page at once. Each sees the text and the panels, never the code, and has a
kernel of their own: one presses Reset, Play, drags eta with the mouse and presses Stop; the
other's panel stays as its own run left it.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from conftest import ROOT, Lab, _free_port
from test_descend_ui import read_status, slider_exponent, wait_status
from test_eta_gestures import _drag

pytestmark = pytest.mark.browser

NOTEBOOK = "examples/learning_rate.ipynb"
START_TIMEOUT = 90  # s: voila up
PAGE_TIMEOUT_MS = 240_000  # the page comes once every cell ran (the paced panel runs 10 s)


@pytest.fixture(scope="module")
def voila(tmp_path_factory):
    """`voila examples/learning_rate.ipynb` on 127.0.0.1, its kernels importing this copy."""
    base = tmp_path_factory.mktemp("voila")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
               JUPYTER_RUNTIME_DIR=str(base / "runtime"), JUPYTER_DATA_DIR=str(base / "data"),
               IPYTHONDIR=str(base / "ipython"))
    log = open(base / "voila.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "voila", NOTEBOOK, "--no-browser", f"--port={port}",
                             "--Voila.ip=127.0.0.1"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            try:
                urllib.request.urlopen(url + "voila/static/", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # (the server answers)
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"voila did not start: {(base / 'voila.log').read_text()[-3000:]}") from None
                time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _student(browser, artifacts_dir, url, console):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.goto(url, timeout=PAGE_TIMEOUT_MS, wait_until="domcontentloaded")
    return context, Lab(None, page, artifacts_dir, console)


def test_two_students_steer_their_own_kernels(voila, browser, artifacts_dir):
    consoles = [[], []]
    students = [_student(browser, artifacts_dir, voila, c) for c in consoles]
    try:
        (_, a), (_, b) = students
        panels = []
        for s in (a, b):  # the steer panel (the only one with a status line), its run done
            panel = s.page.locator(".tfmagic-panel").first
            panel.wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)
            wait_status(s, panel, lambda st: st["badge"] == "max_steps" and st["iteration"] == 300, 120,
                        "the paced run's end")
            panels.append(panel)
        for s in (a, b):  # the lesson's text and charts, no code
            body = s.page.inner_text("body")
            assert "What happens if" in body and "Try it yourself" in body, body[:500]
            assert "%%descend" not in body and "import numpy" not in body and "%load_ext" not in body
            assert s.page.locator(".tfmagic-compare-view").count() == 1
            assert "Error displaying widget" not in body  # (the panel's anywidget, widgets/a11y.py, loads too)
            named = s.page.locator(".tfmagic-panel .tfmagic-eta .noUi-handle[aria-label='eta, log scale']")
            s.poll(lambda named=named: named.count() >= 1, 30, "the eta slider named for a screen reader")
        pa, pb = panels
        b_before = read_status(pb)

        # Student A: Reset, Play, a mouse drag of eta while it runs, Stop.
        pa.locator(".tfmagic-reset button, button.tfmagic-reset").first.click()
        wait_status(a, pa, lambda st: st["badge"] == "ready" and st["iteration"] == 0, 30, "reset")
        pa.locator("button.tfmagic-play").first.click()
        wait_status(a, pa, lambda st: st["badge"] == "running" and (st["iteration"] or 0) > 0, 30, "running again")
        handle = pa.locator(".tfmagic-eta .noUi-handle[role=slider]").first
        let_go = _drag(a, handle, 120, 25, 30)
        want = float(f"{10 ** let_go:.6g}")
        assert let_go > math.log10(0.02) + 0.3, let_go
        wait_status(a, pa, lambda st: st["eta"] is not None and math.isclose(st["eta"], want, rel_tol=1e-5), 30,
                    f"eta {want} in the status line")
        assert slider_exponent(handle) == let_go
        pa.locator("button.tfmagic-stop").first.click()
        stopped = wait_status(a, pa, lambda st: st["badge"] == "stopped", 30, "stopped")
        assert 0 < stopped["iteration"] < 300 and math.isclose(stopped["eta"], want, rel_tol=1e-5), stopped
        a.element_screenshot(pa, "voila-student-a")

        # Student B's kernel is another: its panel is as its own run left it.
        after = read_status(pb)
        assert (after["badge"], after["iteration"], after["eta"]) == ("max_steps", 300, 0.02) == \
               (b_before["badge"], b_before["iteration"], b_before["eta"]), after
        b.element_screenshot(pb, "voila-student-b")
        # (no chart drew at a NaN position: before, each epoch marker without validation was an error)
        errors = [m for c in consoles for m in c if m.startswith("error") and ("NaN" in m or "tfmagic" in m.lower())]
        assert not errors, errors[:5]
    finally:
        for context, _ in students:
            context.close()
