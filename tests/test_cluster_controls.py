"""A multi-worker run steered from the chief's panel (descent/cluster_controls.py), and
`python -m tfmagic.worker NOTEBOOK.ipynb` running a worker from the command line. Each test starts
its own worker processes on free localhost ports (marked `cluster`: safe beside other tests)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from test_strategy import _free_ports

pytestmark = pytest.mark.cluster
CHIEF = os.path.join(os.path.dirname(__file__), "workers", "chief.py")
SETUP = ("import json\nimport numpy as np\nimport tensorflow as tf\nrng = np.random.default_rng(0)\n"
         "X = rng.normal(size=(200, 3)).astype(np.float32)\nY = X @ np.array([1.0, -2.0, 0.5], np.float32)")
LINE = "w=tf.zeros([3]) --data X,Y --batch-size 16 --seed 1 --eta 0.001 --strategy multiworker -o fit"
CELL = "loss = tf.reduce_mean((tf.linalg.matvec(X, w) - Y) ** 2)"
REPORT = ("h = fit.engine.history\nprint('RESULT ' + json.dumps({'status': str(fit.engine.status), 'steps': fit.engine.steps, "
          "'eta': h['eta'].tolist(), 'loss': h['loss'].tolist(), 'paused_at': fit.engine.cluster.paused_at, "
          "'values': {'w': w.numpy().tolist()}}))")


def notebook(path, cells):
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": c} for c in cells]}))
    return str(path)


def tf_configs(n):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(n)]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(n)]


def start(args, tf_config, cwd):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=cwd)


def finish(procs, timeout=120):
    try:
        return [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()


def last_json(out, prefix=""):
    lines = [s[len(prefix):] for s in out.splitlines() if s.startswith(prefix) and s[len(prefix):].startswith("{")]
    assert lines, out
    return json.loads(lines[-1])


@pytest.mark.parametrize("plan", [
    {"eta_at": 40, "eta": 0.02, "pause_at": 120, "stop_at": 250},
    {"eta_at": 20, "eta": 0.005, "pause_at": 60, "eta_paused": 0.01, "stop_at": 100, "stop_while_paused": True},
    {"eta_at": 10, "eta": 0.01, "pause_at": 30, "stop_at": 60, "end": "interrupt"},
], ids=["stop", "eta_and_stop_while_paused", "interrupt"])
def test_the_chiefs_panel_steers_every_worker(tmp_path, plan):
    """Before: a multi-worker panel's controls were off; eta, Pause and Stop acted on no worker."""
    nb = notebook(tmp_path / "train.ipynb", ["%load_ext tfmagic", SETUP, f"%%descend {LINE} --steps 100000\n{CELL}", REPORT])
    chief_config, worker_config = tf_configs(2)
    procs = [start([CHIEF, SETUP, json.dumps([f"{LINE} --steps 100000", CELL]), json.dumps(plan)], chief_config, tmp_path),
             start(["-m", "tfmagic.worker", nb], worker_config, tmp_path)]
    (chief_out, chief_err), (worker_out, worker_err) = finish(procs)
    assert procs[1].returncode == 0, worker_err[-3000:]
    chief, worker = last_json(chief_out), last_json(worker_out, "RESULT ")
    seen = chief["seen"]
    # The chief's controls are on while it runs and while paused; Step and Reset would act on it alone.
    assert seen["running"] == {"play": False, "stop": False, "eta_slider": False, "step": True, "reset": True}
    assert seen["paused"] == {"play": False, "stop": False, "eta_slider": False, "step": True, "reset": True}
    assert seen["ended"] == {"play": True, "stop": True, "eta_slider": True}
    assert seen["paused_status"] == "paused" and seen["cell_result"] == "paused"
    assert chief["status"] == worker["status"] == ("interrupted" if plan.get("end") == "interrupt" else "stopped")
    assert chief["steps"] == worker["steps"] >= plan["stop_at"]  # they stopped at the same step
    assert chief["paused_at"] == worker["paused_at"]  # every worker paused at the chief's steps
    assert worker["paused_at"][0] == seen["paused_steps"] and len(worker["paused_at"]) == 1 + bool(plan.get("stop_while_paused"))
    assert chief["eta"] == worker["eta"]  # step by step
    etas, paused = np.array(worker["eta"]), seen["paused_steps"]
    changed = int(np.argmax(etas != etas[0]))  # (row k: the eta of step k + 1)
    assert plan["eta_at"] <= changed < plan["pause_at"] <= paused
    assert set(etas[:changed]) == {np.float32(0.001)} and set(etas[changed:paused]) == {np.float32(plan["eta"])}
    assert set(etas[paused:]) == {np.float32(plan.get("eta_paused", plan["eta"]))}  # (set while paused: from Play on)
    assert "INFO:tensorflow" not in chief_out + worker_out + worker_err  # (TensorFlow's log lines stay out)
    assert "already loaded" not in worker_out and "live widgets are off" not in worker_out
    np.testing.assert_array_equal(chief["loss"], worker["loss"])
    assert chief["values"] == worker["values"]  # the same final variables, bit for bit


def test_a_paused_worker_whose_chief_goes_away_ends_with_a_short_message(tmp_path):
    """A worker waits in a pause as long as the chief lives; the chief's process gone, it ends
    (exit code 1) saying so, and runs no later cell."""
    plan = {"eta_at": 10, "eta": 0.01, "pause_at": 30, "stop_at": 10**6, "pause_seconds": 600}
    nb = notebook(tmp_path / "train.ipynb", [SETUP, f"%%descend {LINE} --steps 100000\n{CELL}", "print('after')"])
    chief_config, worker_config = tf_configs(2)
    procs = [start([CHIEF, SETUP, json.dumps([f"{LINE} --steps 100000", CELL]), json.dumps(plan)], chief_config, tmp_path),
             start(["-m", "tfmagic.worker", nb], worker_config, tmp_path)]
    try:
        for line in procs[0].stdout:  # (until the chief's panel paused the run)
            if line.startswith("PAUSED"):
                break
        assert procs[1].poll() is None  # the worker waits
        procs[0].kill()
        out, err = procs[1].communicate(timeout=90)
    finally:
        for p in procs:
            p.kill()
    assert procs[1].returncode == 1 and "after" not in out
    assert "UnavailableError while running step" in out and "a process of this multi-worker run went away" in out
    assert "tfmagic.worker: code cell 2 of" in err


def test_the_worker_command_runs_a_notebook_on_two_workers(tmp_path):
    """Both workers through `python -m tfmagic.worker`: nothing steers them; they end alike."""
    nb = notebook(tmp_path / "train.ipynb", [SETUP, f"%%descend {LINE} --steps 60\n{CELL}", REPORT])
    procs = [start(["-m", "tfmagic.worker", nb], c, tmp_path) for c in tf_configs(2)]
    outs = finish(procs)
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-3000:]
    first, second = (last_json(out, "RESULT ") for out, _ in outs)
    assert first["status"] == second["status"] == "max_steps" and first["steps"] == second["steps"] == 60
    assert first["values"] == second["values"] and first["eta"] == second["eta"] == [pytest.approx(0.001)] * 60
    assert "tfmagic.worker: worker 0 runs 3 code cells" in outs[0][0]


GOOD = json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}})


@pytest.mark.parametrize("args, tf_config, message", [
    ([], GOOD, "usage: python -m tfmagic.worker NOTEBOOK.ipynb"),
    (["a.ipynb", "b.ipynb"], GOOD, "usage: python -m tfmagic.worker NOTEBOOK.ipynb"),
    (["NB"], None, "TF_CONFIG is not set: it says where every worker is"),
    (["NB"], "{cluster", "TF_CONFIG is not JSON"),
    (["NB"], json.dumps({"cluster": {"worker": ["h:1"]}}), 'TF_CONFIG needs "cluster" and "task"'),
    (["NB"], json.dumps({"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 1}}),
     "TF_CONFIG's task worker 1 is not in its cluster"),
    (["missing.ipynb"], GOOD, "no notebook at missing.ipynb"),
    (["NOT_JSON"], GOOD, "is not a notebook (.ipynb JSON with cells)"),
])
def test_the_worker_command_says_what_is_wrong_with_its_input(tmp_path, args, tf_config, message):
    nb = notebook(tmp_path / "nb.ipynb", ["x = 1"])
    (tmp_path / "bad.ipynb").write_text("print(1)")
    args = [{"NB": nb, "NOT_JSON": str(tmp_path / "bad.ipynb")}.get(a, a) for a in args]
    p = start(["-m", "tfmagic.worker", *args], tf_config, tmp_path)
    out, err = finish([p], 60)[0]
    assert p.returncode == 2 and err.strip().startswith("tfmagic.worker: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_cell_that_fails_stops_the_worker_with_its_error_in_a_line(tmp_path):
    nb = notebook(tmp_path / "nb.ipynb", ["x = 1\nprint('first ran')", "y = 1 / 0", "print('third ran')"])
    p = start(["-m", "tfmagic.worker", nb], GOOD, tmp_path)
    out, err = finish([p], 60)[0]
    assert p.returncode == 1
    assert "first ran" in out and "third ran" not in out
    shown = out + err
    assert "ZeroDivisionError: division by zero" in shown and "Traceback" not in shown
    assert "tfmagic.worker: code cell 2 of" in err and "the cells after it did not run" in err
