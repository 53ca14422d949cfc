"""The chief of tests/test_cluster_controls.py's two-worker run: the notebook's %%descend cell
runs with its live panel (as a kernel awaits it), steered through the panel's widgets as a person
would: argv[1] the notebook's set-up code, argv[2] the cell's [line, body] (JSON), argv[3] when to
set eta, Pause, Play and Stop (JSON). TF_CONFIG comes from the environment; prints the run as JSON
on its last line."""

import asyncio
import gc
import json
import sys

from IPython.core.interactiveshell import InteractiveShell

from tfmagic.kernel.awaiting import run_cell_magic_awaited
from tfmagic.kernel.runner import LiveRunner
from tfmagic.widgets.panel import DescentPanel

ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "tfmagic")
setup, (line, cell), plan = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ip.run_cell(setup)
seen = {}


async def until(done, what):
    for _ in range(6000):  # (60 s)
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def scenario():
    cell_run = asyncio.ensure_future(run_cell_magic_awaited(ip, "descend", line, cell))
    await until(lambda: [o for o in gc.get_objects() if isinstance(o, DescentPanel)], "the panel")
    panel = next(o for o in gc.get_objects() if isinstance(o, DescentPanel))  # (the one the cell shows)
    global engine
    engine, runner = panel.engine, panel.runner
    await until(lambda: engine.steps >= plan["eta_at"], "eta_at")
    seen["running"] = {b: getattr(panel, b).disabled for b in ("play", "stop", "eta_slider", "step", "reset")}
    panel.eta_text.value = str(plan["eta"])
    await until(lambda: engine.steps >= plan["pause_at"], "pause_at")
    panel.play.click()  # Pause
    await until(lambda: not runner.running, "the pause")
    seen["paused"] = {b: getattr(panel, b).disabled for b in ("play", "stop", "eta_slider", "step", "reset")}
    seen["paused_status"], seen["paused_steps"] = str(engine.status), engine.steps
    print("PAUSED", engine.steps, flush=True)
    if "eta_paused" in plan:  # (takes effect with Play, on every worker)
        panel.eta_text.value = str(plan["eta_paused"])
    await asyncio.sleep(plan.get("pause_seconds", 1.0))
    panel.play.click()  # Play
    seen["cell_result"] = str((await cell_run).status)  # (the cell ended at the pause)
    await until(lambda: engine.steps >= plan["stop_at"], "stop_at")
    if plan.get("stop_while_paused"):
        panel.play.click()
        await until(lambda: not runner.running, "the second pause")
        await asyncio.sleep(0.5)
    if plan.get("end") == "interrupt":
        LiveRunner.interrupt_all()  # (what Kernel > Interrupt's signal handler calls: tfmagic/kernel/interrupts.py)
    else:
        panel.stop.click()
    await until(lambda: not runner.running and str(engine.status) in ("stopped", "interrupted"), "the end")
    seen["ended"] = {b: getattr(panel, b).disabled for b in ("play", "stop", "eta_slider")}


asyncio.get_event_loop().run_until_complete(scenario())
h = engine.history
print(json.dumps({"status": str(engine.status), "steps": engine.steps, "eta": h["eta"].tolist(),
                  "loss": h["loss"].tolist(), "paused_at": engine.cluster.paused_at, "seen": seen,
                  "values": {n: v.numpy().tolist() for n, v in engine.variables.items()}}))
