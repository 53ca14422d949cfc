"""The lessons done as their text says, with the mouse, in JupyterLab at 1280 px with the file
browser open, on the example notebooks themselves after Run All:

- examples/learning_rate.ipynb: a steady hand moves eta in small steps (a 10-px drag of the
  handle changes eta by at most 20 %; on main, 32 px a decade: x2 for 10 px); dragged past 1.0
  the point jumps from side to side further each time and the loss turns upward; dragged back
  below 1.0 it settles again (or, if the loss blew up first, the run kept the point where eta
  was raised and eta below 1: Play goes on from there and settles).
- examples/lecture1.ipynb: the "Steer it yourself" panel still responds to Play after Run All
  (on main it was detached by the later cells that make their own x).
"""

from __future__ import annotations

import math
import re
import shutil

import pytest

from test_descend_ui import read_status, slider_exponent, wait_status
from test_eta_gestures import _drag

pytestmark = pytest.mark.browser

EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[2] / "examples"
TEN_PX_MAX_RATIO = 1.2  # a 10-px drag moves eta by at most this factor
_LOSS_RE = re.compile(r"loss ([0-9][0-9.]*(?:e[+-]?\d+)?)")


def _open_example(lab, name):
    shutil.copy(EXAMPLES / name, lab.server.root_dir / name)
    lab.open_notebook(name)
    lab.opened_kernels.append(lab.kernel_id(name))
    lab.page.evaluate("() => window.jupyterapp.commands.execute('filebrowser:activate')")
    lab.run_all()


def _cell_index(name, marker):
    import nbformat

    nb = nbformat.read(EXAMPLES / name, as_version=4)
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and marker in c.source)


def _loss(cell):
    st = read_status(cell)
    m = st and _LOSS_RE.search(st["text"])
    return float(m[1]) if m else None


def _handle(cell):
    return cell.locator(".tfmagic-eta .noUi-handle[role=slider]").first


def _drag_to(lab, cell, x_to, moves=12, pause_ms=30):
    """Press the handle, move the mouse to x_to in small moves, release; the exponent let go at."""
    handle = _handle(cell)
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    return _drag(lab, handle, x_to - (box["x"] + box["width"] / 2), moves, pause_ms)


def _x_of(cell, exponent):
    """The page x of the slider position for log10(eta) = exponent."""
    handle, track = _handle(cell), cell.locator(".tfmagic-eta .noUi-base").first.bounding_box()
    lo, hi = (float(handle.get_attribute(a)) for a in ("aria-valuemin", "aria-valuemax"))
    return track["x"] + (exponent - lo) / (hi - lo) * track["width"]


def _eta_settles(lab, cell, want_exp):
    """The status line's eta reaches the slider's value (to 6 digits)."""
    return wait_status(lab, cell, lambda s: s["eta"] and abs(math.log10(s["eta"]) - want_exp) < 1e-4,
                       timeout_s=30, what=f"eta 10^{want_exp:.3f} in the status")


def _play_paced(lab, cell, steps):
    """Type a number of steps and press Play (the panel's own gestures)."""
    entry = cell.locator(".tfmagic-steps input").first
    entry.fill(str(steps))
    entry.press("Enter")
    cell.locator("button.tfmagic-play").first.click()
    wait_status(lab, cell, lambda s: s["badge"] == "running", timeout_s=30, what="running after Play")


def test_learning_rate_lesson_with_the_mouse(lab):
    name = "learning_rate.ipynb"
    _open_example(lab, name)
    index = _cell_index(name, "--pace 30")
    cell = lab.cell(name, index)
    wait_status(lab, cell, lambda s: s["badge"] == "max_steps", timeout_s=240, what="the paced run's end")
    _play_paced(lab, cell, 6000)  # 200 s at 30 steps/s: time for the gestures under load

    # 1. a steady hand: 10 px either way moves eta by little
    handle = _handle(cell)
    start = slider_exponent(handle)
    box = handle.bounding_box()
    right = _drag_to(lab, cell, box["x"] + box["width"] / 2 + 10, moves=5)
    _eta_settles(lab, cell, right)
    assert 0 < right - start <= math.log10(TEN_PX_MAX_RATIO), (start, right)
    box = handle.bounding_box()
    left = _drag_to(lab, cell, box["x"] + box["width"] / 2 - 10, moves=5)
    assert 0 < right - left <= math.log10(TEN_PX_MAX_RATIO), (right, left)

    # 2. up to about 0.5: the minimum within a few steps, hopping around it
    _eta_settles(lab, cell, _drag_to(lab, cell, _x_of(cell, math.log10(0.5))))
    wait_status(lab, cell, lambda s: (_loss(cell) or 99) < 2.5, timeout_s=30, what="loss near its minimum")
    low = _loss(cell)

    # 3. past 1.0: each step overshoots further; the loss turns upward
    past = _drag_to(lab, cell, _x_of(cell, math.log10(1.12)))
    assert past > 0.01, past  # eta > 1
    wait_status(lab, cell, lambda s: s["badge"] == "diverged" or (_loss(cell) or 0) > 20 * low,
                timeout_s=60, what="the loss turning upward past 1.0")
    lab.element_screenshot(cell, "lesson-learning-rate-past-1")

    # 4. back below 1.0: it settles again. A divergence goes back to where eta was last raised,
    # and a drag the kernel heard as two raises (0.5 -> 1.05 -> 1.12, under load) goes back to
    # 1.05, still above 1: then the student drags it down too.
    now = wait_status(lab, cell, lambda s: True, timeout_s=5, what="the status line")
    if now["badge"] != "diverged" or now["eta"] >= 1:
        _drag_to(lab, cell, _x_of(cell, math.log10(0.5)))
    status = wait_status(lab, cell, lambda s: s["badge"] in ("running", "diverged") and s["eta"] < 1,
                         timeout_s=60, what="eta below 1 again")
    if status["badge"] == "diverged":  # the loss blew up first: the run kept the point where eta was raised
        assert re.search(r"stay at step \d+|went back at step \d+", status["text"]), status["text"]
        assert "eta is" in status["text"] and "Play goes on from there" in status["text"]
        cell.locator("button.tfmagic-play").first.click()
    wait_status(lab, cell, lambda s: s["badge"] == "running" and (_loss(cell) or 99) < 2.5, timeout_s=60,
                what="settled again below 1.0")
    lab.element_screenshot(cell, "lesson-learning-rate-settled")
    cell.locator("button.tfmagic-stop").first.click()
    wait_status(lab, cell, lambda s: s["badge"] == "stopped", timeout_s=30, what="stopped")


def test_lecture1_steer_panel_is_live_after_run_all(lab):
    name = "lecture1.ipynb"
    _open_example(lab, name)
    last = _cell_index(name, "print(rosen.status")
    lab.wait_for_output(name, last, "steps: a =", timeout_ms=300_000)  # Run All has finished
    cell = lab.cell(name, _cell_index(name, "--pace 30"))
    before = wait_status(lab, cell, lambda s: s["badge"] == "max_steps", timeout_s=30, what="the steer panel")
    cell.locator("button.tfmagic-play").first.click()  # the text: "Play continues it at the same pace"
    wait_status(lab, cell, lambda s: s["badge"] == "running" and s["iteration"] > before["iteration"] + 30,
                timeout_s=60, what="Play to continue the steered run")
    # Stop at once: Play's 300 steps last 10 s, and a screenshot taken first under load outlasted them.
    cell.locator("button.tfmagic-stop").first.click()
    wait_status(lab, cell, lambda s: s["badge"] == "stopped", timeout_s=30, what="stopped")
    lab.element_screenshot(cell, "lesson-lecture1-steer-after-run-all")
