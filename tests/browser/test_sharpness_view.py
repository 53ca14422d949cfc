"""The sharpness lesson (examples/sharpness.ipynb) in JupyterLab at 1280 px with the file browser
open, after Run All: the too-large-eta run's panel draws λ (dots) and the dashed line 2/eta at
λ's level (the edge of stability); a drag of eta with the mouse to a larger eta moves the line's
end below the dots (λ now above 2/eta), and the status line says the eta dragged to."""

from __future__ import annotations

import math
import re

import pytest

from test_descend_ui import wait_status
from test_lessons import _cell_index, _drag_to, _eta_settles, _open_example, _x_of

pytestmark = pytest.mark.browser

NAME = "sharpness.ipynb"

# The chart's marks as drawn: each bqplot line's path ("M x,y L x,y ..."), its dash, and its dots.
_MARKS_JS = """(fig) => Array.from(fig.querySelectorAll('g.curve')).map(g => {
    const path = g.querySelector('path.line');
    return {d: path ? path.getAttribute('d') || '' : '',
            dash: path ? getComputedStyle(path).strokeDasharray : '',
            dots: Array.from(g.querySelectorAll('path.dot')).map(p => p.getAttribute('transform') || '')};
})"""
_NUM = r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?"


def _points(d):
    return [(float(x), float(y)) for x, y in re.findall(rf"({_NUM}),({_NUM})", d)]


def _marks(cell):
    fig = cell.locator(".tfmagic-sharpness-chart").first
    marks = fig.evaluate(_MARKS_JS)
    bound = next(m for m in marks if m["dash"] not in ("", "none"))
    lam = next(m for m in marks if m["dots"])
    dots = [tuple(float(v) for v in re.findall(_NUM, t)[:2]) for t in lam["dots"]]
    return _points(bound["d"]), dots


def test_the_lesson_draws_lambda_against_two_over_eta_and_the_line_follows_a_drag(lab):
    _open_example(lab, NAME)
    cell = lab.cell(NAME, _cell_index(NAME, "--eta 0.05 --steps 3000 --sharpness 100"))
    wait_status(lab, cell, lambda s: s["badge"] == "max_steps", timeout_s=400, what="the edge run's end")
    chart = cell.locator(".tfmagic-sharpness-chart").first
    chart.scroll_into_view_if_needed()

    def drawn():
        line, dots = _marks(cell)
        return (line, dots) if len(dots) == 31 and len(line) >= 2 else None

    line, dots = lab.poll(drawn, 30, what="31 λ dots and the 2/eta line")
    # λ hovers at 2/eta = 40 in the second half: the late dots sit on the line (within 10 % of its height)
    height = chart.locator("svg").first.bounding_box()["height"]
    line_y = line[-1][1]
    assert all(abs(y - line_y) < 0.1 * height for _, y in dots[-10:]), (line_y, dots[-10:])
    assert dots == sorted(dots)  # (along the steps)
    lab.page.evaluate("() => window.jupyterapp.commands.execute('filebrowser:activate')")
    lab.element_screenshot(cell, "sharpness-edge-of-stability")

    # A larger eta, dragged: 2/eta falls below λ; the line's end follows the eta set (the run is over)
    to = math.log10(0.1)
    _eta_settles(lab, cell, _drag_to(lab, cell, _x_of(cell, to)))

    def moved():
        now, dots_now = _marks(cell)
        return now if now[-1][1] > max(y for _, y in dots_now[-10:]) + 10 else None  # (SVG y grows downward)

    after = lab.poll(moved, 30, what="the 2/eta line's end below λ's dots")
    assert after[0][1] == pytest.approx(line[0][1], abs=40)  # (the run's own eta kept its line)
    status = wait_status(lab, cell, lambda s: s["eta"] and s["eta"] > 0.08, timeout_s=10, what="eta in the status")
    assert status["badge"] == "max_steps"
    lab.element_screenshot(cell, "sharpness-eta-dragged")
