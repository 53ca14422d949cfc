"""Front ends that cannot steer, in real kernels (jupyter_client; the test plays the front end):
a front end that answers the panel's round trip steers as before; one that never answers, or a
kernel that hands widget messages over only between cells, gets the panel saying so within 1 s,
its controls off while the cell runs, and every control working once it ends."""

import os

import pytest

from test_descend_kernel import _click, _widget_ids
from test_live_kernel import Kernel
from test_reach_kernel import execute, kernel, run  # noqa: F401 (kernel: the fixture)

NOTE = "Steering is off while this cell runs"
RUN = "%%descend x=10.0 --eta 0.001 --steps {steps} --pace 20 -o r\ny = (x - 2.0) ** 2"

# A kernel as before ipykernel 7.4: a widget message that arrives while a cell runs waits for it to end.
OLD_KERNEL = """
k = get_ipython().kernel
real = type(k).dispatch_shell
async def dispatch_shell(self, msg, /, subshell_id=None, **options):
    if options.get("concurrent"):
        async with self._main_asyncio_lock:
            return await real(self, msg, subshell_id=subshell_id)
    return await real(self, msg, subshell_id=subshell_id, **options)
type(k).dispatch_shell = dispatch_shell
"""


def states(k, ids, css, start):
    """(arrival time, state) of each update of the widget with class `css` since `start`."""
    return [(m["_t"], m["content"]["data"].get("state", {})) for m in k.iopub[start:]
            if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == ids[css]]


def wait_status(k, ids, start, pred, timeout=20):
    return k.wait_iopub(lambda m: m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == ids["tfmagic-status"]
                        and pred(m["content"]["data"].get("state", {}).get("value")), timeout=timeout, start=start)


def send_view_count(k, model_id, count=1):
    """What the widget manager sends when it displays the panel (JupyterLab's, Notebook 7's, Voila's)."""
    msg = k.kc.session.msg("comm_msg", {"comm_id": model_id, "data": {"method": "update",
                                                                       "state": {"_view_count": count},
                                                                       "buffer_paths": []}})
    k.kc.shell_channel.send(msg)


def start_run(k, steps):
    start = len(k.iopub)
    msg_id = execute(k, RUN.format(steps=steps))
    shown = k.wait_iopub(k.child_of(msg_id, "display_data"), timeout=60, start=start)
    return msg_id, start, shown, _widget_ids(k, msg_id)


def eta_disabled(k, ids, start):
    """Whether the eta slider is off, as the last update since `start` left it (a moment for it to arrive)."""
    k.drain(0.3)
    flags = [s["disabled"] for _, s in states(k, ids, "tfmagic-eta", start) if "disabled" in s]
    return flags[-1] if flags else False


def test_a_front_end_that_answers_steers_and_is_told_nothing(kernel):  # noqa: F811
    k = kernel
    msg_id, start, shown, ids = start_run(k, steps=40)
    counts = [m["content"]["data"]["state"]["_view_count"] for m in k.iopub[start:k.index(shown)]
              if m["msg_type"] in ("comm_open", "comm_msg") and m["content"]["comm_id"] == ids["tfmagic-panel"]
              and "_view_count" in m["content"]["data"].get("state", {})]
    assert counts[-1] == 0  # (a number: the front end counts the views it shows, and so answers)
    send_view_count(k, ids["tfmagic-panel"])
    k.send_update(ids["tfmagic-eta"], 0.002)  # steering works mid-run
    wait_status(k, ids, start, lambda v: v and "eta 0.002" in v and "running" in v)
    k.reply(msg_id, timeout=30)
    k.wait_iopub(k.child_of(msg_id, "status", execution_state="idle"), start=start)
    assert not any(NOTE in (s.get("value") or "") for _, s in states(k, ids, "tfmagic-status", start))
    assert not eta_disabled(k, ids, start)


def test_a_front_end_that_never_answers_is_told_within_a_second_and_a_late_answer_undoes_it(kernel):  # noqa: F811
    k = kernel
    msg_id, start, shown, ids = start_run(k, steps=80)
    cpu = k.cpu_seconds()  # (the run's steps keep the kernel busy: a starved one gets less CPU than wall time)
    said = wait_status(k, ids, start, lambda v: v and NOTE in v and "no answer from the front end within a second" in v, timeout=5)
    assert k.heard_within(said["_t"] - shown["_t"], k.cpu_seconds() - cpu), (said["_t"] - shown["_t"], os.getloadavg())
    assert "Kernel &gt; Interrupt stops the run now" in said["content"]["data"]["state"]["value"]
    assert eta_disabled(k, ids, start)  # (a slider that would do nothing is off)
    mark = len(k.iopub)
    send_view_count(k, ids["tfmagic-panel"])  # the front end shows it late: steering is back
    wait_status(k, ids, mark, lambda v: v and NOTE not in v and "running" in v)
    assert not eta_disabled(k, ids, start)
    reply = k.reply(msg_id, timeout=30)
    assert reply["content"]["status"] == "ok"
    _, text, _ = run(k, "print(r.status, r.steps)")
    assert text.split() == ["max_steps", "80"]


def test_the_note_goes_when_the_cell_ends_and_every_control_then_works(kernel):  # noqa: F811
    k = kernel
    msg_id, start, shown, ids = start_run(k, steps=30)
    wait_status(k, ids, start, lambda v: v and NOTE in v, timeout=5)
    k.reply(msg_id, timeout=30)
    idle = k.wait_iopub(k.child_of(msg_id, "status", execution_state="idle"), start=start)
    last = [s["value"] for _, s in states(k, ids, "tfmagic-status", start) if "value" in s][-1]
    assert NOTE not in last and not eta_disabled(k, ids, start)
    mark = k.index(idle)
    k.send_update(ids["tfmagic-steps"], 100000)
    _click(k, ids["tfmagic-play"])  # Play after the cell: in the background, steerable
    wait_status(k, ids, mark, lambda v: v and ">running<" in v)
    k.send_update(ids["tfmagic-eta"], 0.003)
    wait_status(k, ids, mark, lambda v: v and "eta 0.003" in v)
    _click(k, ids["tfmagic-stop"])
    wait_status(k, ids, mark, lambda v: v and ">stopped<" in v)


@pytest.fixture
def old_kernel(tmp_path):
    k = Kernel(tmp_path)
    try:
        reply, out, _ = run(k, OLD_KERNEL + "\n%load_ext tfmagic", timeout=120)
        assert reply["content"]["status"] == "ok", out
        yield k
    finally:
        k.close()


def test_a_kernel_without_concurrent_widget_messages_says_so_at_once(old_kernel):
    k = old_kernel
    msg_id, start, shown, ids = start_run(k, steps=40)
    send_view_count(k, ids["tfmagic-panel"])  # (it waits for the cell's end: no answer meanwhile)
    k.send_update(ids["tfmagic-eta"], 0.005)
    cpu = k.cpu_seconds()
    said = wait_status(k, ids, start, lambda v: v and NOTE in v, timeout=5)
    assert k.heard_within(said["_t"] - shown["_t"], k.cpu_seconds() - cpu), (said["_t"] - shown["_t"], os.getloadavg())
    assert "handles widget messages only between cells" in said["content"]["data"]["state"]["value"]
    assert eta_disabled(k, ids, start)
    k.reply(msg_id, timeout=30)
    idle = k.wait_iopub(k.child_of(msg_id, "status", execution_state="idle"), start=start)
    # the eta sent mid-run reached the kernel only after the cell: the run took all its steps at 0.001
    _, text, _ = run(k, "print(r.status, r.steps, sorted(set(float(e) for e in r.history['eta'])))")
    assert text.startswith("max_steps 40 [0.00")
    assert "0.005" not in text.split("[")[1]
    mark = k.index(idle)
    _click(k, ids["tfmagic-step"])  # after the cell every control acts
    wait_status(k, ids, mark, lambda v: v and "iteration <b>41</b>" in v)
    last = [s["value"] for _, s in states(k, ids, "tfmagic-status", start) if "value" in s][-1]
    assert NOTE not in last and not eta_disabled(k, ids, start)
