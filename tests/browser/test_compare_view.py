"""The --compare and --restarts views in JupyterLab at 1280 px with the file browser open:
what a student sees in learning_rate.ipynb. Measured in the page: every figure inside the
cell, the legend under the figures (never over a plot), the loss axis set by the runs that
did not diverge (it once spanned 0-3e7 for eta=1.1 and flattened the others at 0), every run
of the legend visible in the pixels of each chart (a run that converged in 1 step was in the
legend only), and the colour key of the restarts' surface readable."""

from __future__ import annotations

import pytest

from pixels import colour_counts

pytestmark = pytest.mark.browser

LAB_VIEWPORT = {"width": 1280, "height": 1200}
NB = "compare_view.ipynb"
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]  # the views' first five
CELLS = [
    "%load_ext tfmagic",
    "%%descend x=10.0 --steps 200 --compare eta=0.01,0.1,0.5,0.9,1.1 -o runs\n"
    "y = tf.pow(x, 2.0) - 4.0 * x + 4.0",
    "%%descend u=-5:5 v=-5:5 --restarts 5 --seed 1 --eta 0.01 --steps 300\n"
    "f = (u**2 + v - 11)**2 + (u + v**2 - 7)**2 - 50",
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
def views(module_lab):
    lab = module_lab
    lab.run_all_with_sidebar(NB, CELLS)
    lab.wait_for_output(NB, 1, "best:", timeout_ms=180_000)
    lab.wait_for_output(NB, 2, "best:", timeout_ms=180_000)
    out = {}
    for i in (1, 2):
        cell = lab.cell(NB, i)
        out[i] = lab.poll(lambda cell=cell: (lambda d: d if len(d["figures"]) == 2 and d["y_ticks"] else None)(_layout(cell)),
                          timeout_s=30, what="the two figures drawn")
        lab.element_screenshot(cell, f"{'compare' if i == 1 else 'restarts'}-view-1280")
    return lab, out


def test_the_comparison_fits_the_cell_and_its_legend_is_under_the_plots(views):
    _, layouts = views
    for compare in layouts.values():
        out = compare["output"]
        assert out["scrollWidth"] <= out["clientWidth"] + 1, out
        for fig in compare["figures"]:
            assert out["left"] - 1 <= fig["left"] and fig["right"] <= out["right"] + 1, (fig, out)
        legend = compare["legend"]
        assert legend["top"] >= max(f["bottom"] for f in compare["figures"]) - 1  # under, never over a plot
    assert "eta=1.1: diverged at step" in layouts[1]["legend_text"] and layouts[1]["toggle"]


def test_the_loss_axis_is_set_by_the_runs_that_did_not_diverge(views):
    """The kept runs start at 64; the axis takes in the diverged run's first steps (up to about
    three times that), never its 4.6e7."""
    values = [float(t.replace("−", "-")) for t in views[1][1]["y_ticks"] if t.strip()]
    assert values and 64 <= max(values) <= 300, views[1][1]["y_ticks"]


@pytest.mark.parametrize("index,runs", [(1, 5), (2, 5)])
def test_every_run_in_the_legend_shows_in_the_loss_chart(views, index, runs):
    """Counted in the screenshot's pixels: each run's colour, in the loss chart (and in the
    compare's paths on the curve: no heatmap there to share its colours)."""
    lab, _ = views
    cell = lab.cell(NB, index)
    figures = [cell.locator(".tfmagic-compare-loss").first]
    if index == 1:
        figures.append(cell.locator(".tfmagic-compare-paths").first)
    for fig in figures:
        counts = colour_counts(lab.page, fig, COLORS[:runs])
        assert all(n >= 12 for n in counts.values()), counts


def test_the_restarts_colour_key_says_what_its_numbers_are(views):
    lab, _ = views
    key = lab.cell(NB, 2).evaluate("""(c) => {
      const view = c.querySelector('.tfmagic-compare-view');
      const html = Array.from(view.querySelectorAll('.widget-html-content')).find(e => e.textContent.includes('colour'));
      const spans = Array.from(html.querySelectorAll('span')).filter(s => s.textContent.trim() && !s.children.length);
      const out = view.closest('.jp-OutputArea-output').getBoundingClientRect();
      return {text: html.textContent, out: out.right,
              boxes: spans.map(s => { const r = s.getBoundingClientRect(); return [r.left, r.right, r.top, r.bottom, s.textContent]; })};
    }""")
    assert "the loss above its lowest, on a log scale" in key["text"]
    boxes = sorted(key["boxes"])
    for a, b in zip(boxes, boxes[1:]):  # no label over another
        assert a[1] <= b[0] + 0.5 or a[3] <= b[2] + 0.5 or b[3] <= a[2] + 0.5, (a, b)
    assert max(b[1] for b in boxes) <= key["out"] + 1
