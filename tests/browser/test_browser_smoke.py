"""Smoke test in a real JupyterLab + chromium: a slider stays live while an
awaiting cell runs (the dead-slider trap of FACTS.md), and "Run All" runs the
next cell only after the long one.

Set TFMAGIC_TEST_DISABLE_IDLE_FIX=1 to load the test magic *without*
tfmagic.kernel.ipykernel_fix.install: the test then fails and shows how many
presses reached the kernel (1 on ipykernel 7.4).
"""

from __future__ import annotations

import json
import os
import time

import pytest

pytestmark = pytest.mark.browser

CELL_SECONDS = 8  # long enough for the presses; the test waits for all of it
PRESSES = 8
STEP = 0.1


def test_slider_stays_live_while_cell_runs(lab):
    idle_fix = os.environ.get("TFMAGIC_TEST_DISABLE_IDLE_FIX", "") in ("", "0")
    name = lab.write_notebook("smoke.ipynb", [
        "import json, livetest_magic\n"
        f"print('LOADED', json.dumps(livetest_magic.load(get_ipython(), idle_fix={idle_fix})))",
        f"%%livetest {CELL_SECONDS}\n# a stand-in for %%descend",
        "rec = livetest_last\n"
        "print('RESULT', json.dumps({'values': rec['values'], 'stopped': rec['stopped'],"
        " 't_start': rec['t_start'], 't_end': rec['t_end'], 'changes': rec['changes']}))",
    ])
    lab.open_notebook(name)

    # The widget labextensions are found in sys.prefix/share/jupyter/labextensions
    # even with a temporary JUPYTER_DATA_DIR.
    federated = {e["name"] for e in lab.page_config().get("federated_extensions", [])}
    assert {"@jupyter-widgets/jupyterlab-manager", "bqplot", "bqscales"} <= federated

    lab.run_all()
    loaded = lab.wait_for_output(name, 0, "LOADED")
    info = json.loads(loaded.split("LOADED", 1)[1].strip().splitlines()[0])
    assert info["supported"] and info["registered"], info
    assert info["idle_fix"] is idle_fix

    # The slider is rendered by the running cell; the loop has started.
    lab.wait_for_output(name, 1, "livetest started", timeout_ms=30_000)
    handle = lab.slider_handle(".livetest-slider")
    handle.wait_for(state="visible", timeout=30_000)
    assert lab.cell_running(name, 1)

    # Press the arrow key; after each press wait (polling the DOM) until the
    # kernel's loop reports the new value.  Once one press does not arrive
    # the slider is dead: stop waiting for the kernel, keep pressing.
    arrived, latencies, dead = 0, [], False
    t_presses = time.monotonic()
    for i in range(1, PRESSES + 1):
        t0 = time.monotonic()
        lab.press_on_slider(handle, "ArrowRight", expect=round(i * STEP, 6))
        if not dead and lab.wait_for_text(".livetest-seen", f"seen {i * STEP:g}", timeout_ms=2000):
            arrived += 1
            latencies.append(time.monotonic() - t0)
        else:
            dead = True
    presses_took = time.monotonic() - t_presses
    still_running = lab.cell_running(name, 1)
    lab.screenshot("smoke-mid-run")

    out = lab.wait_for_output(name, 2, "RESULT", timeout_ms=(CELL_SECONDS + 30) * 1000)
    lab.screenshot("smoke-done")
    rec = json.loads(out.split("RESULT", 1)[1].strip().splitlines()[0])
    distinct = []
    for v in rec["values"]:
        if not distinct or abs(v - distinct[-1]) > 1e-9:
            distinct.append(v)
    print(
        f"\nidle_fix={idle_fix}: {arrived}/{PRESSES} presses confirmed by the kernel, "
        f"distinct values seen by the loop {[round(v, 3) for v in distinct]}, "
        f"press->kernel round trip ms {[round(x * 1000) for x in latencies]}, "
        f"presses took {presses_took:.2f}s, observer threads {sorted({c[2] for c in rec['changes']})}"
    )

    assert still_running, "the cell ended before the presses did; raise CELL_SECONDS"
    assert rec["stopped"] == "finished"
    # The dead-slider trap: without the idle-status fix only the first arrives.
    assert len(distinct) - 1 > 1, f"only {len(distinct) - 1} slider value(s) reached the kernel"
    assert arrived == PRESSES
    assert abs(distinct[-1] - PRESSES * STEP) < 1e-6
