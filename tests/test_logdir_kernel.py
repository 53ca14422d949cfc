"""--logdir with the live panel in a real kernel (jupyter_client), steered by widget messages:
Pause, Play after the cell ended, Stop, Reset and Play again, each written as `history` has it."""

import os
import time

import numpy as np

from test_descend_kernel import _click, _widget_ids
from test_logdir import assert_matches_history, board, no_step_twice, runs_under
from test_reach_kernel import execute, kernel, run, status_has  # noqa: F401 (kernel: the fixture)


def wait_for(k, expression, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, text, _ = run(k, f"print({expression})")
        if text.strip() == "True":
            return
        time.sleep(0.2)
    raise AssertionError(f"not {expression} within {timeout} s")


def test_pause_play_stop_reset_in_the_panel_are_written_as_history(kernel, tmp_path):  # noqa: F811
    k, logdir = kernel, tmp_path / "logs"
    start = len(k.iopub)
    msg_id = execute(k, f"%%descend x=10.0 --eta 0.001 --steps 100000000 --jit off --logdir {logdir} -o r\n"
                        "y = (x - 2.0) ** 2")
    k.shown(msg_id, timeout=60, start=start)
    ids = _widget_ids(k, msg_id)
    k.wait_iopub(status_has(k, ids, "running"), timeout=30, start=start)
    _click(k, ids["tfmagic-play"])  # Pause: the cell ends
    assert k.reply(msg_id, timeout=30)["content"]["status"] == "ok"
    paused = int(run(k, "print(r.steps)")[1])
    _click(k, ids["tfmagic-play"])  # Play after the cell ended: the run goes on in the background
    wait_for(k, f"r.steps > {paused} + 2000")
    _click(k, ids["tfmagic-stop"])
    wait_for(k, "r.status == 'stopped'")
    before_reset = int(run(k, "print(r.steps)")[1])
    np.testing.assert_array_less(paused, before_reset)
    _click(k, ids["tfmagic-reset"])
    wait_for(k, "r.steps == 0")
    _click(k, ids["tfmagic-play"])
    wait_for(k, "r.steps > 500")
    _click(k, ids["tfmagic-stop"])
    wait_for(k, "r.status == 'stopped'")
    saved = tmp_path / "history.npz"
    reply, text, _ = run(k, f"import numpy as np; np.savez({str(saved)!r}, **r.history)")
    assert reply["content"]["status"] == "ok", text
    history = dict(np.load(saved))

    first, again = runs_under(logdir)
    assert first.startswith("r-") and again == f"{first}.2"  # Reset: a new run directory
    assert_matches_history(logdir / again, history)
    no_step_twice(logdir / first)  # Pause and Play went on at the next step
    steps, _ = board(logdir / first)["loss"]
    assert steps[:1000].tolist() == list(range(1000)) and steps[-1] == before_reset - 1
    assert os.path.isdir(logdir / first)
