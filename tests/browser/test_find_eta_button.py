"""The panel's Find eta button, clicked with the mouse in JupyterLab at 1280 px with the file
browser open: the range test runs, its suggestion lands in the eta entry and the status line
says it, and the buttons' row stays inside the cell."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

NB = "find_eta_button.ipynb"
CELLS = [
    "%load_ext tfmagic",
    "%%descend x=10.0 --eta 0.0001 --steps 20\ny = (x - 2.0) ** 2",
]


def test_find_eta_click_puts_the_suggestion_into_the_eta_entry(lab):
    lab.run_all_with_sidebar(NB, CELLS)
    lab.wait_for_output(NB, 1, "max_steps", timeout_ms=120_000)
    cell = lab.cell(NB, 1)
    button = cell.locator(".tfmagic-find-eta")
    button.click()  # a mouse click, as a person does
    status = lab.poll(lambda: (lambda t: t if "now in the eta control" in t else None)(
        cell.locator(".tfmagic-status").first.text_content() or ""), timeout_s=60, what="the suggestion")
    eta = float(cell.locator(".tfmagic-eta-text input").first.input_value())
    assert 1e-3 < eta < 1.0  # (x - 2)^2: sgd diverges above 1
    assert f"eta ≈ {eta:.3g}" in status and "diverges above ≈ 1" in status
    lab.poll(lambda: not button.is_disabled(), timeout_s=10, what="Find eta enabled again")
    box = cell.evaluate("""(c) => {
      const r = e => e.getBoundingClientRect();
      const out = c.querySelector('.tfmagic-panel').closest('.jp-OutputArea-output');
      return {button: r(c.querySelector('.tfmagic-find-eta')).right, output: r(out).right};
    }""")
    assert box["button"] <= box["output"] + 1, box
    lab.element_screenshot(cell, "find-eta-button-1280")
