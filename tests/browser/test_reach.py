"""No run out of reach, in JupyterLab at 1280 px with the file browser open: Pause then Play
runs a panel in the background (the panel and the kernel indicator say so); after a real page
reload a new cell's `%descend_runs` shows that panel again, live; Kernel > Interrupt, pressed
in JupyterLab's menu, stops it within a second (2.5 s on a machine busier than its cores)."""

from __future__ import annotations

import os
import time

import pytest

pytestmark = pytest.mark.browser

NB = "reach.ipynb"
CELLS = [
    "%load_ext tfmagic",
    "%%descend x=10.0 --eta 0.0001 --steps 100000000 --jit off -o r\ny = (x - 2.0) ** 2",
]


def _status(locator):
    return locator.locator(".tfmagic-status").first.text_content() or ""


def _insert_and_run(lab, index, source):
    lab.page.evaluate(lab._js("""
        panel.content.model.sharedModel.insertCell(args[1], {cell_type: 'code', source: args[2]});
        panel.content.activeCellIndex = args[1];
        window.jupyterapp.commands.execute('notebook:run-cell');
        return true;
    """), [NB, index, source])


def test_a_background_run_is_seen_reached_after_a_reload_and_interrupted_from_the_menu(lab):
    lab.run_all_with_sidebar(NB, CELLS)
    cell = lab.cell(NB, 1)
    lab.poll(lambda: "running" in _status(cell), timeout_s=120, what="the run to start")
    cell.locator(".tfmagic-play").first.click()  # Pause: the cell ends
    lab.poll(lambda: "paused" in _status(cell) and not lab.cell_running(NB, 1), timeout_s=30, what="paused")
    cell.locator(".tfmagic-play").first.click()  # Play: on in the background
    lab.poll(lambda: "running in the background" in _status(cell), timeout_s=30, what="the panel saying so")
    # The kernel indicator says busy all along (it said idle on main).
    seen = set()
    for _ in range(10):
        seen.add(lab.kernel_status(NB))
        lab.page.wait_for_timeout(200)  # sampling the indicator over 2 s
    assert seen == {"busy"}, seen
    lab.element_screenshot(cell, "reach-background-run")

    lab.page.reload()  # a real reload: the page's widget views and unsaved outputs are gone
    _wait_connected(lab)
    lab.poll(lambda: lab.kernel_status(NB) == "busy", timeout_s=10, what="the reopened page's indicator busy")
    lab.page.wait_for_timeout(1000)
    assert lab.kernel_status(NB) == "busy"  # (after the kernel_info exchange of the new connection)
    _insert_and_run(lab, 2, "%descend_runs")
    shown = lab.cell(NB, 2)
    lab.poll(lambda: "running in the background" in _status(shown), timeout_s=30, what="the panel shown again")
    out = lab.output_text(lab.cell_outputs(NB, 2))
    assert "-o r" in out and "running in the background" in out, out
    first = _iteration(shown)
    lab.poll(lambda: _iteration(shown) > first > 0, timeout_s=10, what="its steps going on, shown live")
    lab.element_screenshot(shown, "reach-after-reload")

    # Kernel > Interrupt, from the menu bar.
    lab.page.locator(".lm-MenuBar-item", has_text="Kernel").first.click()
    item = lab.page.locator('.lm-Menu-item[data-command="kernelmenu:interrupt"]').first
    item.wait_for()
    t0 = time.monotonic()
    item.click()
    lab.poll(lambda: "interrupted" in _status(shown), timeout_s=5, what="the run interrupted", interval_ms=20)
    heard = time.monotonic() - t0
    load = os.getloadavg()[0]
    print(f"\nKernel > Interrupt from the menu: the background run ended {heard:.2f} s after the click (load {load:.1f})")
    # (the kernel's own reaction is held to 1 s in test_reach_kernel; here the server and the
    # page come between, and on a machine busier than its cores, as Kernel.heard_within allows, 2.5 s)
    assert heard < (1.0 if load <= (os.cpu_count() or 1) else 2.5), (heard, load)
    at = _iteration(shown)
    lab.page.wait_for_timeout(1000)  # (nothing goes on)
    assert _iteration(shown) == at
    lab.poll(lambda: lab.kernel_status(NB) == "idle", timeout_s=10, what="the kernel idle")
    lab.element_screenshot(shown, "reach-interrupted")


def _iteration(locator):
    import re

    m = re.search(r"iteration\s+([\d,]+)", _status(locator))
    return int(m.group(1).replace(",", "")) if m else -1


def _wait_connected(lab):
    lab.page.wait_for_function(
        lab._js("""
          if (!panel.context.isReady) return false;
          const s = panel.sessionContext.session;
          return !!(s && s.kernel && s.kernel.connectionStatus === 'connected');
        """),
        arg=[NB], timeout=60_000,
    )
