"""Tweak and run again, in JupyterLab at 1280 px with the file browser open: the course's cell
run, its eta edited in the cell (0.1 → 0.3 → 1.0) and run again with Ctrl+Enter. The third
panel shows the two earlier runs as faint lines behind its loss and on its curve (counted in
the page's SVG, and their colours counted in the pixels), a legend naming each by what changed,
and the table under the charts; in the light and the dark theme."""

from __future__ import annotations

import pytest

from pixels import colour_counts

pytestmark = pytest.mark.browser

LAB_VIEWPORT = {"width": 1280, "height": 1200}
NB = "earlier_runs_ui.ipynb"
LOSS = "y = tf.pow(x, 2.0) - 4.0 * x + 4.0"
FIRST_LINE = "%%descend x=10.0 --eta {} --steps 50 -o run"
FAINT = ["#ff7f0e", "#2ca02c"]  # runs 2 and 1 (widgets/earlier.py: COLORS[1], COLORS[2])

_SEEN = """(c) => {
  const panel = c.querySelector('.tfmagic-panel');
  if (!panel) return null;
  const box = e => { const r = e.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top,
                                                                  bottom: r.bottom, height: r.height}; };
  const shown = (e, top) => {  // (bqplot hides a mark, the log scale's when linear shows, by display: none)
    for (; e && e !== top; e = e.parentNode) {
      const cs = getComputedStyle(e);
      if (cs.display === 'none' || cs.visibility === 'hidden') return false;
    }
    return true;
  };
  // bqplot draws each line of a Lines mark as a g.curve's path.line, its opacity in its style
  const faint = fig => fig ? Array.from(fig.querySelectorAll('g.curve path.line')).filter(p => {
      const o = parseFloat(getComputedStyle(p).opacity) * parseFloat(getComputedStyle(p.parentNode).opacity);
      return o > 0 && o < 1 && (p.getAttribute('d') || '').length > 10 && shown(p, fig);
    }).length : 0;
  const loss = panel.querySelector('.tfmagic-loss-chart'), curve = panel.querySelector('.tfmagic-curve-chart');
  const table = panel.querySelector('.tfmagic-earlier-table');
  const legend = panel.querySelector('.tfmagic-earlier-legend');
  const out = panel.closest('.jp-OutputArea-output');
  return {
    faint_loss: faint(loss), faint_curve: faint(curve),
    legend: legend ? legend.textContent : '', legend_box: legend && box(legend), loss_box: loss && box(loss),
    rows: table ? Array.from(table.querySelectorAll('tbody tr')).map(r => Array.from(r.cells).map(td => td.textContent)) : [],
    table_box: table && box(table), output: out && {...box(out), scrollWidth: out.scrollWidth, clientWidth: out.clientWidth},
  };
}"""


def _run_again_with_eta(lab, eta):
    """Edit the cell's first line to the new eta, as a person does, and run it with Ctrl+Enter."""
    editor = lab.cell(NB, 1).locator(".cm-content").first
    editor.click()
    page = lab.page
    page.keyboard.press("Control+Home")
    page.keyboard.press("Shift+End")
    page.keyboard.type(FIRST_LINE.format(eta))
    page.keyboard.press("Control+Enter")
    lab.wait_for_output(NB, 1, f"max_steps: 50 steps of sgd (eta={eta:g})", timeout_ms=120_000)


@pytest.fixture(scope="module")
def third(module_lab):
    lab = module_lab
    lab.run_all_with_sidebar(NB, ["%load_ext tfmagic", FIRST_LINE.format(0.1) + "\n" + LOSS])
    lab.wait_for_output(NB, 1, "max_steps: 50 steps of sgd (eta=0.1)", timeout_ms=180_000)
    _run_again_with_eta(lab, 0.3)
    _run_again_with_eta(lab, 1.0)
    cell = lab.cell(NB, 1)
    last = {}

    def drawn():
        last["seen"] = d = cell.evaluate(_SEEN)
        return d if d and d["faint_loss"] == 2 and len(d["rows"]) == 3 else None

    try:
        seen = lab.poll(drawn, timeout_s=30, what="the earlier runs drawn")
    except TimeoutError:
        raise AssertionError(f"not drawn: {last.get('seen')}") from None
    lab.element_screenshot(cell, "earlier-runs-1280-light")
    return lab, cell, seen


def test_the_earlier_runs_are_faint_lines_behind_the_loss_and_on_the_curve(third):
    lab, cell, seen = third
    assert seen["faint_loss"] == 2 and seen["faint_curve"] == 2, seen
    counts = colour_counts(lab.page, cell.locator(".tfmagic-loss-chart").first,
                           ["#ffbb86", "#95cf95"], tol=40)  # (#ff7f0e and #2ca02c at 0.45 on white)
    assert all(n >= 30 for n in counts.values()), counts


def test_a_legend_names_each_run_by_what_changed(third):
    _, _, seen = third
    legend = seen["legend"]
    for label in ("this run, run 3: eta 0.3 → 1", "run 2: eta 0.1 → 0.3", "run 1: first run (sgd, eta 0.1)"):
        assert label in legend, legend
    assert seen["legend_box"]["top"] >= seen["loss_box"]["bottom"] - 1  # under the chart, not over it


def test_the_table_says_what_changed_steps_final_loss_and_status(third):
    _, _, seen = third
    assert seen["rows"] == [["3 (this run)", "eta 0.3 → 1", "50", "64", "max_steps"],
                            ["2", "eta 0.1 → 0.3", "50", "0", "max_steps"],
                            ["1", "first run (sgd, eta 0.1)", "50", "0", "max_steps"]], seen["rows"]
    out = seen["output"]
    assert seen["table_box"]["height"] > 40 and out["scrollWidth"] <= out["clientWidth"] + 1, seen


def test_the_faint_lines_show_in_the_dark_theme(third):
    lab, cell, _ = third
    lab.page.evaluate("(t) => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})", "JupyterLab Dark")
    try:
        lab.poll(lambda: lab.page.evaluate("() => document.body.dataset.jpThemeLight") == "false", timeout_s=20,
                 what="the dark theme")
        lab.page.wait_for_timeout(500)
        seen = cell.evaluate(_SEEN)
        assert seen["faint_loss"] == 2 and len(seen["rows"]) == 3
        lab.element_screenshot(cell, "earlier-runs-1280-dark")
        counts = colour_counts(lab.page, cell.locator(".tfmagic-loss-chart").first, FAINT, tol=200)
        assert all(n >= 30 for n in counts.values()), counts
    finally:
        lab.page.evaluate("(t) => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})",
                          "JupyterLab Light")
