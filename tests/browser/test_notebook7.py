"""The live %%descend panel in Jupyter Notebook 7 (the `notebook` package: the
classic-looking front end many classrooms use), not JupyterLab.

The session's server serves Notebook 7 at /notebooks/<name>.ipynb. At 1280 px:
Run All starts a paced run (100 steps/s, 3000 steps: ~30 s); while it runs the
mouse drags the eta slider's handle most of a decade to the right. The status line
(the kernel's eta), the entry and the slider must then agree on the eta where the
mouse let go; after Stop, the run's `history['eta']` ends with it. The charts are
drawn (bqplot lines with points) and no figure sticks out of the cell's output area.
"""

from __future__ import annotations

import math
import time

import pytest

from test_descend_ui import line_points, path_d, read_status, slider_exponent, wait_status
from test_eta_gestures import _drag

pytestmark = pytest.mark.browser

NB = "notebook7.ipynb"
ETA0 = 0.001
CELLS = [
    "%load_ext tfmagic",
    f"%%descend x=10.0 --eta {ETA0} --steps 3000 --pace 100 -o r\n"
    "y = (x - 2.0) ** 2",
    "print(r.status, float(r.eta), float(r.history['eta'][-1]))",
]
C_RUN, C_PRINT = 1, 2
LAB_VIEWPORT = {"width": 1280, "height": 1200}  # module_lab's; tall enough for the whole panel's screenshot
RUNNING_TIMEOUT = 60  # s: page load done -> TensorFlow imported, the run going (slow CI box)
SETTLE_TIMEOUT = 30  # s: the mouse let go -> the kernel's eta back in the status line
CHARTS = (".tfmagic-loss-chart", ".tfmagic-curve-chart", ".tfmagic-vars-chart")


def _entry(cell) -> float:
    return float(cell.locator(".tfmagic-eta-text input").first.input_value())


def _boxes(cell) -> dict:
    """Bounding boxes (x, right, width) of the bqplot figures, the output area and the notebook."""
    return cell.evaluate("""(c) => {
      const box = e => { const r = e.getBoundingClientRect(); return {x: r.left, right: r.right, width: r.width}; };
      const out = c.querySelector('.jp-OutputArea-output:has(.tfmagic-panel)');
      return {
        figures: Array.from(c.querySelectorAll('.tfmagic-panel .bqplot.figure')).map(f => ({
            cls: Array.from(f.classList).filter(k => k.startsWith('tfmagic-')).join(' '), ...box(f)})),
        output: out && {...box(out), scrollWidth: out.scrollWidth, clientWidth: out.clientWidth},
        notebook: box(c.closest('.jp-Notebook')),
      };
    }""")


@pytest.fixture(scope="module")
def nb7(module_lab):
    """Run All in Notebook 7, drag eta while the run goes, Stop; the record of what was seen."""
    pytest.importorskip("notebook", minversion="7", reason="Notebook 7: pip install -e '.[test]'")
    lab, rec = module_lab, {}
    lab.write_notebook(NB, CELLS)
    lab.open_notebook(NB, ui="notebook")
    kernel = lab.kernel_id(NB)
    if kernel:
        lab.opened_kernels.append(kernel)  # shut down (ends a run left going) at teardown
    rec["app"] = lab.page.evaluate("() => window.jupyterapp.name")
    rec["url_path"] = lab.page.evaluate("() => location.pathname")
    rec["federated"] = {e["name"] for e in lab.page_config().get("federated_extensions", [])}
    lab.run_all()

    cell = lab.cell(NB, C_RUN)
    rec["running"] = wait_status(lab, cell, lambda s: s["badge"] == "running" and (s["iteration"] or 0) > 0,
                                 timeout_s=RUNNING_TIMEOUT, what="the paced run to be running")
    handle = cell.locator(".tfmagic-eta .noUi-handle[role=slider]").first
    handle.wait_for(state="visible", timeout=10_000)
    rec["start_exponent"] = slider_exponent(handle)

    # A person's drag: press the handle, 30 small moves to the right, let go
    # (140 px on the slider's ~170 px a decade: most of a decade up).
    let_go = _drag(lab, handle, 140, 30, 30)
    t_let_go = time.monotonic()
    want = float(f"{10 ** let_go:.6g}")
    rec["let_go"], rec["want"] = let_go, want

    def agreed():
        st = read_status(cell)
        if st and st["eta"] is not None and math.isclose(st["eta"], want, rel_tol=1e-5) \
                and math.isclose(_entry(cell), want, rel_tol=1e-5):
            return st
        return None

    rec["agreed_status"] = lab.poll(agreed, SETTLE_TIMEOUT, what=f"status line and entry to show eta {want}")
    rec["settle_s"] = time.monotonic() - t_let_go
    rec["entry"] = _entry(cell)
    rec["slider_exponent_after"] = slider_exponent(handle)
    # Steps go on at the new eta: the iteration count moves past where it agreed.
    agreed_at = rec["agreed_status"]["iteration"]
    rec["later"] = wait_status(lab, cell, lambda s: (s["iteration"] or 0) > agreed_at + 20,
                               what="more steps after the eta change")

    lab.poll(lambda: any(line_points(d) >= 10 for d in path_d(cell, ".tfmagic-loss-chart")),
             10, what="the loss line to be drawn")
    rec["lines"] = {css: path_d(cell, css) for css in CHARTS}
    rec["boxes"] = _boxes(cell)
    rec["shot"] = lab.element_screenshot(cell, "notebook7-descend")

    stop = cell.locator("button.tfmagic-stop").first
    lab.poll(stop.is_enabled, 10, what="an enabled Stop button")
    stop.click(timeout=10_000)
    rec["stopped"] = wait_status(lab, cell, lambda s: s["badge"] == "stopped", what="the stopped badge")
    rec["printed"] = lab.wait_for_output(NB, C_PRINT, "stopped", timeout_ms=30_000).split()
    rec["entry_after_stop"] = _entry(cell)
    rec["page_shot"] = lab.screenshot("notebook7-page")
    return rec


def test_panel_runs_in_notebook7(nb7):
    assert nb7["app"] == "Jupyter Notebook" and nb7["url_path"] == f"/notebooks/{NB}", nb7
    assert {"@jupyter-widgets/jupyterlab-manager", "bqplot", "bqscales"} <= nb7["federated"]
    assert math.isclose(nb7["running"]["eta"], ETA0, rel_tol=1e-5), nb7["running"]
    assert nb7["start_exponent"] == pytest.approx(math.log10(ETA0), abs=1e-6)


def test_mouse_drag_steers_eta(nb7):
    print(f"\nNotebook 7: dragged eta {ETA0:g} -> {nb7['want']:g}; status line and entry agreed "
          f"{nb7['settle_s']:.2f} s after the mouse let go")
    # The drag moved the handle clearly (more than half a decade up) and it stayed where it was let go.
    assert nb7["let_go"] > math.log10(ETA0) + 0.5, nb7["let_go"]
    assert nb7["slider_exponent_after"] == nb7["let_go"], "the handle jumped away from where the mouse let go"
    want = nb7["want"]
    st = nb7["agreed_status"]
    assert st["badge"] == "running", st  # steered mid-run, not after it ended
    assert nb7["entry"] == pytest.approx(want, rel=1e-5)
    assert nb7["later"]["eta"] == pytest.approx(want, rel=1e-5), nb7["later"]


def test_history_ends_with_the_dragged_eta(nb7):
    status, eta, last_recorded = nb7["printed"][:3]
    assert status == "stopped", nb7["printed"]
    assert float(eta) == pytest.approx(nb7["want"], rel=1e-5), nb7["printed"]
    assert float(last_recorded) == pytest.approx(nb7["want"], rel=1e-5), nb7["printed"]
    assert nb7["stopped"]["iteration"] < 3000, nb7["stopped"]  # Stop ended it, not max_steps
    assert nb7["entry_after_stop"] == pytest.approx(nb7["want"], rel=1e-5)


def test_charts_drawn_and_inside_the_cell(nb7):
    for css, ds in nb7["lines"].items():
        assert max((line_points(d) for d in ds), default=0) >= 10, f"{css} has no line: {ds!r}"
    boxes = nb7["boxes"]
    out, notebook = boxes["output"], boxes["notebook"]
    assert out, "no output area holds the panel"
    figures = boxes["figures"]
    assert {c for f in figures for c in f["cls"].split()} >= {c.lstrip(".") for c in CHARTS}, figures
    for f in figures:
        assert f["width"] > 150, f
        assert f["x"] >= out["x"] - 1 and f["right"] <= out["right"] + 1, (f, out)
    assert out["scrollWidth"] <= out["clientWidth"] + 1, out  # no horizontal scrolling in the output
    assert out["right"] <= notebook["right"] + 1, (out, notebook)


def test_screenshots_saved(nb7, artifacts_dir):
    for p in (nb7["shot"], nb7["page_shot"]):
        assert p.parent == artifacts_dir and p.stat().st_size > 5_000, p
