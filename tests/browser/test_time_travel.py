"""Time travel as a person does it, in JupyterLab + chromium at 1280 px with the file browser open:
a finished run's timeline dragged back with the mouse (the point on the surface and on the loss
chart, the status line and the values follow; the variables stay), "Go on from here", Play, and
the history then says where the run branched."""

from __future__ import annotations

import math
import time

import pytest

from test_descend_ui import slider_exponent, wait_status
from test_eta_gestures import _drag

pytestmark = pytest.mark.browser

NB = "time_travel.ipynb"
STEPS = 200
CELLS = [
    "%load_ext tfmagic",
    f"%%descend x=-1.5 y=2.0 --eta 0.002 --optimizer adam --steps {STEPS} -o r\nf = (1 - x)**2 + 10.0 * (y - x**2)**2",
    "branch = r.history.get('branch', [0])  # (a history has it once the run branched)\n"
    "print('end', r.steps, r.engine.branches, int(branch[0]), int(branch[-1]), float(x.numpy()))",
]
SETTLE_S = 30

# (bqplot draws each dot as a path in a group that is translated to its place)
_DOTS = """els => els.map(e => e.getAttribute('transform') || e.parentNode.getAttribute('transform') || '')"""


def _dots(cell, chart):
    """Where the scatter dots of a chart are drawn (their transforms)."""
    return cell.locator(f"{chart} svg path.dot").evaluate_all(_DOTS)


def _run_cell(lab, index):
    lab.page.evaluate(lab._js("panel.content.activeCellIndex = args[1]; "
                              "window.jupyterapp.commands.execute('notebook:run-cell'); return true;"), [NB, index])


@pytest.fixture(scope="module")
def travelled(module_lab):
    lab = module_lab
    lab.run_all_with_sidebar(NB, CELLS)
    before = lab.wait_for_output(NB, 2, "end", timeout_ms=180_000).split()
    cell = lab.cell(NB, 1)
    wait_status(lab, cell, lambda s: s["badge"] == "max_steps" and s["iteration"] == STEPS, timeout_s=60,
                what="the run's end")
    handle = cell.locator(".tfmagic-timeline .noUi-handle[role=slider]").first
    handle.wait_for(state="visible", timeout=20_000)
    rec = {"before": before, "handle_name": handle.get_attribute("aria-label"),
           "at_end": int(float(handle.get_attribute("aria-valuenow")))}
    lab.poll(lambda: _dots(cell, ".tfmagic-surface-chart"), SETTLE_S, what="the surface's point")
    rec["surface_end"] = _dots(cell, ".tfmagic-surface-chart")
    rec["drags"] = []
    for dx in (-260, 90):  # back a long way, then forward a little
        k = round(_drag(lab, handle, dx, 20, 30))  # (a hand's drag, let go; the step it shows)
        st = wait_status(lab, cell, lambda s, k=k: s["iteration"] == k, timeout_s=SETTLE_S, what=f"iteration {k}")
        label = cell.locator(".tfmagic-timeline-shown").first
        lab.poll(lambda k=k, label=label: f"showing step {k} of {STEPS}" in label.inner_text(), SETTLE_S, what="the values shown")
        rec["drags"].append({"k": k, "status": st, "label": label.inner_text(),
                             "surface": _dots(cell, ".tfmagic-surface-chart"),
                             "loss_dots": _dots(cell, ".tfmagic-loss-chart")})
    lab.element_screenshot(cell, "time-travel-scrubbed")
    k = rec["drags"][-1]["k"]
    rec["k"] = k
    _run_cell(lab, 2)  # the variables did not move while scrubbing
    rec["while_scrubbed"] = lab.wait_for_output(NB, 2, "end", timeout_ms=60_000).split()
    cell.locator("button.tfmagic-go-on").first.click()
    rec["went_back"] = wait_status(lab, cell, lambda s: s["iteration"] == k and s["badge"] == "paused",
                                   timeout_s=SETTLE_S, what=f"paused at {k}")
    lab.poll(lambda: f"branched at step {k}" in cell.locator(".tfmagic-timeline-shown").first.inner_text(),
             SETTLE_S, what="the branch's start")
    cell.locator("button.tfmagic-play").first.click()
    rec["went_on"] = wait_status(lab, cell, lambda s: s["badge"] == "max_steps" and s["iteration"] == k + STEPS,
                                 timeout_s=120, what="the branch's end")
    lab.element_screenshot(cell, "time-travel-branched")
    lab.poll(lambda: lab.kernel_status(NB) == "idle", 30, what="the kernel to be idle")
    _run_cell(lab, 2)
    rec["after"] = lab.poll(lambda: (lambda out: out if f"end {k + STEPS}" in out else None)(
        lab.output_text(lab.cell_outputs(NB, 2))), 60, what="the report after the branch").split()
    rec["handle_after"] = int(float(handle.get_attribute("aria-valuenow")))
    return rec


def test_the_timeline_has_a_name_and_starts_at_the_runs_end(travelled):
    assert travelled["handle_name"] == "timeline: the step shown"
    assert travelled["at_end"] == STEPS


def test_dragging_the_timeline_moves_the_point_and_the_status_line_not_the_variables(travelled):
    first, second = travelled["drags"]
    assert 0 <= first["k"] < second["k"] < STEPS, (first["k"], second["k"])
    for drag in (first, second):
        assert drag["status"]["badge"] == "max_steps"  # (the run is still at its end)
        assert drag["surface"] and drag["surface"] != travelled["surface_end"]
        assert len(drag["loss_dots"]) >= 1  # the step shown, on the loss chart
    assert first["surface"] != second["surface"]
    assert travelled["while_scrubbed"][1] == str(STEPS) and travelled["while_scrubbed"][-1] == travelled["before"][-1]


def test_go_on_from_here_then_play_makes_a_branch_the_history_records(travelled):
    k = travelled["k"]
    assert travelled["went_back"]["iteration"] == k
    after = travelled["after"]
    assert after[1] == str(k + STEPS)
    assert " ".join(after[2:6]) == f"[(0, 0), ({k}, 1)]"  # engine.branches
    assert after[6:8] == ["0", "1"]  # history['branch'] of the first row and of the last
    assert travelled["handle_after"] == k + STEPS


def test_the_lesson_after_run_all_shows_its_last_branch(module_lab):
    """examples/time_travel.ipynb at 1280 px with the file browser open: its panel ends on the
    last branch the code made (from step 20, eta 0.9), marked, and its timeline spans it."""
    from test_lessons import _open_example

    lab, name = module_lab, "time_travel.ipynb"
    _open_example(lab, name)
    lab.wait_for_output(name, 6, "branches (step, number): [(0, 0), (20, 5)]", timeout_ms=180_000)
    cell = lab.cell(name, 2)
    wait_status(lab, cell, lambda s: s["iteration"] == 40 and s["eta"] == 0.9, timeout_s=60, what="the last branch")
    label = cell.locator(".tfmagic-timeline-shown").first
    lab.poll(lambda: "branched at step 20" in label.inner_text(), SETTLE_S, what="the branch's start")
    handle = cell.locator(".tfmagic-timeline .noUi-handle[role=slider]").first
    assert int(float(handle.get_attribute("aria-valuenow"))) == 40
    # eta set from code: the eta handle at its grid position too, and the browser's answer to that
    # move (its snapped value) leaves the engine's 0.9 as it was
    eta_handle = cell.locator(".tfmagic-eta .noUi-handle").first
    lab.poll(lambda: abs(slider_exponent(eta_handle) - math.log10(0.9)) <= 0.005 + 1e-6, SETTLE_S, what="the eta handle")
    time.sleep(1.0)
    assert wait_status(lab, cell, lambda s: s["iteration"] == 40, timeout_s=10, what="the status")["eta"] == 0.9
    lab.element_screenshot(cell, "time-travel-lesson-panel")
    lab.screenshot("time-travel-lesson")
