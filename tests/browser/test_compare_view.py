"""The --compare view in JupyterLab at 1280 px with the file browser open: what a student
sees in learning_rate.ipynb. Measured in the page: every figure inside the cell, the
legend under the figures (never over a plot), and the loss axis set by the runs that did
not diverge (it once spanned 0-3e7 for eta=1.1 and flattened the others at 0)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

LAB_VIEWPORT = {"width": 1280, "height": 1200}
NB = "compare_view.ipynb"
CELLS = [
    "%load_ext tfmagic",
    "%%descend x=10.0 --steps 200 --compare eta=0.01,0.1,0.9,1.1 -o runs\n"
    "y = tf.pow(x, 2.0) - 4.0 * x + 4.0",
]


def _layout(cell) -> dict:
    return cell.evaluate("""(c) => {
      const box = e => { const r = e.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; };
      const view = c.querySelector('.tfmagic-compare-view');
      const out = view && view.closest('.jp-OutputArea-output');
      const loss = view && view.querySelector('.tfmagic-compare-loss');
      // the loss figure's vertical axis: its tick labels
      const ticks = loss ? Array.from(loss.querySelectorAll('g.axis')).filter(a => a.querySelector('.tick') &&
          a.getAttribute('transform') && /translate\\(\\s*-?[0-9.]+\\s*,\\s*0\\s*\\)/.test(a.getAttribute('transform'))) : [];
      return {
        figures: view ? Array.from(view.querySelectorAll('.bqplot.figure')).map(box) : [],
        legend: view && view.querySelector('.tfmagic-legend') && box(view.querySelector('.tfmagic-legend')),
        legend_text: view && view.querySelector('.tfmagic-legend') ? view.querySelector('.tfmagic-legend').textContent : '',
        output: out && {...box(out), scrollWidth: out.scrollWidth, clientWidth: out.clientWidth},
        y_ticks: ticks.length ? Array.from(ticks[0].querySelectorAll('.tick text')).map(t => t.textContent) : [],
        toggle: !!(view && view.querySelector('.tfmagic-logscale')),
      };
    }""")


@pytest.fixture(scope="module")
def compare(module_lab):
    lab = module_lab
    lab.run_all_with_sidebar(NB, CELLS)
    lab.wait_for_output(NB, 1, "best:", timeout_ms=180_000)
    cell = lab.cell(NB, 1)
    layout = lab.poll(lambda: (lambda d: d if len(d["figures"]) == 2 and d["y_ticks"] else None)(_layout(cell)),
                      timeout_s=30, what="the comparison's two figures drawn")
    lab.element_screenshot(cell, "compare-view-1280")
    return layout


def test_the_comparison_fits_the_cell_and_its_legend_is_under_the_plots(compare):
    out = compare["output"]
    assert out["scrollWidth"] <= out["clientWidth"] + 1, out
    for fig in compare["figures"]:
        assert out["left"] - 1 <= fig["left"] and fig["right"] <= out["right"] + 1, (fig, out)
    legend = compare["legend"]
    assert legend["top"] >= max(f["bottom"] for f in compare["figures"]) - 1  # under, never over a plot
    assert "eta=1.1: diverged at step" in compare["legend_text"] and compare["toggle"]


def test_the_loss_axis_is_set_by_the_runs_that_did_not_diverge(compare):
    values = [float(t.replace("−", "-")) for t in compare["y_ticks"] if t.strip()]
    assert values and max(values) <= 100, compare["y_ticks"]  # the kept runs start at 64
