"""The live panel's pictures and status line in JupyterLab at 1280 px with the file browser
open, as a student sees them after Run All: the 1-D loss curve stays readable after a
divergence and a triangle marks where the path left it (the loss axis once followed the path
to 3.5e7 and flattened the curve); each status row stays on one line (the device wrapped
alone onto a second line); a single Step shows no step rate ("299 steps/s" after one step)."""

from __future__ import annotations

import re

import pytest

from pixels import colour_counts

pytestmark = pytest.mark.browser

LAB_VIEWPORT = {"width": 1280, "height": 1200}
NB = "pictures_view.ipynb"
CELLS = [
    "%load_ext tfmagic\nimport numpy as np\nrng = np.random.default_rng(0)\n"
    "X = rng.normal(size=(96, 1)).astype('float32'); Y = 3 * X[:, 0] - 1",
    "%%descend a=10.0 --eta 1.1 --steps 300\ny = (a - 2.0) ** 2",
    "%%descend w=0.0 b=0.0 --data X,Y --batch-size 32 --epochs 3 --validate X,Y\n"
    "loss = tf.reduce_mean(tf.square(X[:, 0] * w + b - Y))",
]

_STATUS_JS = """(c) => {
  const status = c.querySelector('.tfmagic-status');
  const out = status.closest('.jp-OutputArea-output').getBoundingClientRect();
  // the badge and each field (every one a nowrap box), wherever the layout puts them
  const fields = Array.from(status.querySelectorAll('span')).filter(s =>
      (s.getAttribute('style') || '').includes('nowrap') || (s.getAttribute('style') || '').includes('border-radius'));
  return {text: status.textContent, right: out.right,
          fields: fields.map(s => { const b = s.getBoundingClientRect(); return [b.top, b.right, s.textContent]; })};
}"""


def lines_of(fields):
    """The fields grouped by the line they sit on (a wrap is ~20 px down)."""
    lines = []
    for top, right, text in sorted(fields):
        if lines and top - lines[-1][0][0] < 5:
            lines[-1].append((top, right, text))
        else:
            lines.append([(top, right, text)])
    return lines


@pytest.fixture(scope="module")
def page(module_lab):
    lab = module_lab
    lab.run_all_with_sidebar(NB, CELLS)
    lab.wait_for_output(NB, 1, "diverged after", timeout_ms=180_000)
    lab.wait_for_output(NB, 2, "max_steps", timeout_ms=180_000)
    return lab


def test_the_status_line_never_leaves_a_field_alone_on_a_line(page):
    """At 1280 px with the file browser open, 'CPU:0' wrapped alone onto a second line."""
    for i in (1, 2):
        cell = page.cell(NB, i)
        status = page.poll(lambda cell=cell: (lambda s: s if "CPU:0" in s["text"] and "iteration" in s["text"] else None)(
            cell.evaluate(_STATUS_JS)), timeout_s=30, what="the status line")
        page.element_screenshot(cell.locator(".tfmagic-status").first, f"status-line-{i}-1280")
        lines = lines_of(status["fields"])
        assert len(lines) <= 2 and all(len(line) >= 2 for line in lines), lines
        assert max(right for _, right, _ in status["fields"]) <= status["right"] + 1
        assert "sgd diverges above" in status["text"] and lines[-1][-1][2] == "CPU:0"
        assert re.search(r"\beta [0-9]", status["text"])  # (read as words: 'eta' after a space)


def test_the_curve_stays_readable_after_a_divergence_and_marks_where_the_path_left(page):
    cell = page.cell(NB, 1)
    fig = cell.locator(".tfmagic-curve-chart").first
    title = page.poll(lambda: (lambda t: t if "left this window" in t else None)(
        fig.locator(".mainheading").first.text_content() or ""), timeout_s=30, what="the curve's title")
    assert re.search(r"path left this window at step \d+", title)
    values = [float(t.replace("−", "-").replace(",", "")) for t in fig.evaluate("""(f) => {
        const axis = Array.from(f.querySelectorAll('g.axis')).find(a =>
            /translate\\(\\s*-?[0-9.]+\\s*,\\s*0\\s*\\)/.test(a.getAttribute('transform') || ''));
        return Array.from(axis.querySelectorAll('.tick text')).map(t => t.textContent).filter(t => t.trim());
    }""")]
    assert values and max(values) < 1e5, values  # the curve's range (~2e4), not the path's 4.6e7
    page.element_screenshot(fig, "curve-after-divergence-1280")
    red = colour_counts(page.page, fig, ["#d62728"])["#d62728"]
    assert red >= 10  # the triangle where the path left (the present point is off the window)


def test_a_single_step_shows_no_step_rate(page):
    cell = page.cell(NB, 2)
    status = cell.locator(".tfmagic-status").first
    before = int(re.search(r"iteration (\d+)", status.text_content()).group(1))
    cell.locator(".tfmagic-step").first.click()
    text = page.poll(lambda: (lambda t: t if f"iteration {before + 1}" in t and t.startswith("paused") else None)(
        status.text_content()), timeout_s=30, what="the step taken")
    assert "steps/s" not in text
