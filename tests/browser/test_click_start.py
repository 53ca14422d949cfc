"""Click to start and the optimizer's arrows (issue 26 §3, §4), with the mouse in JupyterLab at
1280 px with the file browser open: a click on the 1-D loss curve and on the 2-D loss surface,
at pixels computed from the axes as drawn, makes the status line say the new start and puts a
marker there; Reset and Play then run from it (the history's first row is the point clicked).
On the surface, the arrows of a momentum run show, and their checkbox hides them."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pixels import colour_counts

pytestmark = pytest.mark.browser

NB = "click_start.ipynb"
CELLS = [
    "%load_ext tfmagic",
    "%%descend a=3.0 --eta 0.05 --steps 20 -o curve_run\nloss = (a - 1.0) ** 2",
    "%%descend x=-1.0 y=1.5 --eta 0.02 --optimizer momentum --steps 30 -o surface_run\n"
    "loss = (x - 0.5) ** 2 + 3.0 * (y + 0.25) ** 2",
    "print('FIRST', *(repr(float(r.history[n][0])) for r, n in ((curve_run, 'a'), (surface_run, 'x'), (surface_run, 'y'))))",
]
GRADIENT, STEP = "#ff7f0e", "#e377c2"  # widgets/arrows.py

# (value, page coordinate) of each tick of the figure's x axis (page x) and y axis (page y)
_TICKS_JS = """(f) => {
  const out = {x: [], y: []};
  for (const axis of f.querySelectorAll('g.axis')) {
    const ticks = Array.from(axis.querySelectorAll('g.tick')).filter(t => t.querySelector('text').textContent.trim());
    if (ticks.length < 2) continue;
    const at = ticks.map(t => t.getScreenCTM());  // (the tick's origin on the page: its place on the scale)
    const vertical = Math.abs(at[0].e - at[at.length - 1].e) < 0.5;  // a y axis: ticks one above another
    ticks.forEach((t, i) => {
      const v = parseFloat(t.querySelector('text').textContent.replace('\u2212', '-'));
      (vertical ? out.y : out.x).push([v, vertical ? at[i].f : at[i].e]);
    });
  }
  return out;
}"""


def to_page(fig, *values):
    """The page pixel of data point `values` (x, and y on a surface) from the drawn ticks; and
    the data units one pixel spans along each axis."""
    ticks = fig.evaluate(_TICKS_JS)
    pixels, per_pixel = [], []
    for axis, v in zip(("x", "y"), values):
        t = np.array(ticks[axis], np.float64)
        slope, offset = np.polyfit(t[:, 0], t[:, 1], 1)
        pixels.append(slope * v + offset)
        per_pixel.append(1 / abs(slope))
    return pixels, per_pixel


def said_start(text):
    """name -> value of 'next run starts at a = 1.5, ...' in the status line."""
    m = re.search(r"next run starts at ((?:\w+ = [-0-9.e+]+(?:, )?)+)", text)
    return {k: float(v) for k, v in re.findall(r"(\w+) = ([-0-9.e+]+)", m.group(1))} if m else None


def click_and_check(lab, cell, chart, target, names):
    fig = cell.locator(chart).first
    fig.scroll_into_view_if_needed()
    at = cell.locator(".tfmagic-status").first
    if len(target) == 1:  # the curve: any height (a loss) on the plot
        (px,), per = to_page(fig, *target)
        box = fig.locator(".plotarea_events").first.bounding_box()
        py = box["y"] + 0.6 * box["height"]
    else:
        (px, py), per = to_page(fig, *target)
    lab.page.mouse.click(px, py)
    said = lab.poll(lambda: said_start(at.text_content() or ""), timeout_s=20, what="the new start said")
    assert list(said) == names
    for name, v, unit in zip(names, target, per):
        assert abs(said[name] - v) <= 1.5 * unit + 1e-3, (name, said, target, per)
    assert "Play or Reset starts there" in at.text_content()
    return said


def test_a_click_on_the_curve_and_on_the_surface_starts_the_next_run_there(lab):
    lab.run_all_with_sidebar(NB, CELLS)
    lab.wait_for_output(NB, 3, "FIRST", timeout_ms=180_000)

    curve, surface = lab.cell(NB, 1), lab.cell(NB, 2)
    said_curve = click_and_check(lab, curve, ".tfmagic-curve-chart", (1.7,), ["a"])
    lab.element_screenshot(curve.locator(".tfmagic-panel").first, "click-start-curve-1280")
    said_surface = click_and_check(lab, surface, ".tfmagic-surface-chart", (0.2, -0.6), ["x", "y"])
    lab.element_screenshot(surface.locator(".tfmagic-panel").first, "click-start-surface-1280")

    curve.locator(".tfmagic-reset").first.click()  # Reset takes the curve's start; Play the surface's
    lab.poll(lambda: "the point clicked" in (curve.locator(".tfmagic-status").first.text_content() or ""),
             timeout_s=20, what="the curve reset to the click")
    curve.locator(".tfmagic-play").first.click()
    surface.locator(".tfmagic-play").first.click()
    for c in (curve, surface):
        # (both say max_steps before their Play's run too, where the cell's run ended: wait for the new one's words)
        lab.poll(lambda c=c: all(w in (c.locator(".tfmagic-status").first.text_content() or "")
                                 for w in ("max_steps", "the point clicked")), timeout_s=60, what="Play's run to end")
        assert "the point clicked" in c.locator(".tfmagic-status").first.text_content()

    lab.page.evaluate("""([path]) => { const app = window.jupyterapp;
        for (const w of app.shell.widgets('main')) if (w.context && w.context.path === path) {
          w.content.activeCellIndex = 3; app.commands.execute('notebook:run-cell'); } }""", [NB])
    first = lab.poll(lambda: (lambda t: t if t.count("FIRST") >= 1 and lab.execution_count(NB, 3) == 5 else None)(
        lab.output_text(lab.cell_outputs(NB, 3))), timeout_s=60, what="the history read")
    a0, x0, y0 = (float(v) for v in first.split("FIRST")[-1].split())
    # the status line said them at 4 digits; the history holds them at float32
    assert (a0, x0, y0) == pytest.approx((said_curve["a"], said_surface["x"], said_surface["y"]), rel=5e-4, abs=5e-4)
    assert a0 != 3.0 and (x0, y0) != (-1.0, 1.5)


def test_the_arrows_show_on_the_surface_and_the_checkbox_hides_them(lab):
    lab.run_all_with_sidebar(NB, CELLS)
    lab.wait_for_output(NB, 3, "FIRST", timeout_ms=180_000)
    surface = lab.cell(NB, 2)
    fig = surface.locator(".tfmagic-surface-chart").first
    seen = lab.poll(lambda: (lambda c: c if c[GRADIENT] > 20 and c[STEP] > 20 else None)(
        colour_counts(lab.page, fig, [GRADIENT, STEP])), timeout_s=30, what="both arrows drawn")
    legend = surface.locator(".tfmagic-arrows-legend").first.text_content()
    assert re.search(r"−gradient ×[0-9.e+-]+", legend) and re.search(r"step taken ×[0-9.e+-]+", legend)
    lab.element_screenshot(surface.locator(".tfmagic-panel").first, "arrows-surface-1280")
    toggle = surface.get_by_role("checkbox", name="arrows")
    toggle.click()
    hidden = lab.poll(lambda: (lambda c: c if c[GRADIENT] < 5 and c[STEP] < 5 else None)(
        colour_counts(lab.page, fig, [GRADIENT, STEP])), timeout_s=20, what="the arrows hidden")
    assert seen[GRADIENT] > 20 and hidden[GRADIENT] < 5
    lab.element_screenshot(surface.locator(".tfmagic-panel").first, "arrows-hidden-1280")
    toggle.click()
    lab.poll(lambda: colour_counts(lab.page, fig, [GRADIENT])[GRADIENT] > 20, timeout_s=20, what="the arrows back")
    # dark theme: the arrows and their legend on JupyterLab Dark
    lab.page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    lab.page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=20_000)
    lab.poll(lambda: colour_counts(lab.page, fig, [GRADIENT])[GRADIENT] > 20, timeout_s=20, what="the arrows in dark")
    lab.element_screenshot(surface.locator(".tfmagic-panel").first, "arrows-surface-dark-1280")
    lab.page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Light'})")
