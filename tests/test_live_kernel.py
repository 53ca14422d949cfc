"""Kernel-level tests of tfmagic.kernel (awaiting, ipykernel_fix) against a real ipykernel (no browser).

The test plays the frontend: it sends ``comm_msg`` updates to a slider's model
while an awaiting cell runs, the way JupyterLab's widget manager does (next
update of a model only after the idle status of the previous one).
"""

from __future__ import annotations

import json
import os
import queue
import statistics
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAGIC_DIR = ROOT / "tests" / "browser"  # livetest_magic.py lives there

STARTUP_TIMEOUT = 60
STEP_TIMEOUT = 20


# --------------------------------------------------------------------------
# unit tests that need no kernel
# --------------------------------------------------------------------------

def test_plain_shell_is_not_live():
    from IPython.core.interactiveshell import InteractiveShell

    from tfmagic.kernel import awaiting

    shell = InteractiveShell.instance()
    ok, reason = awaiting.live_supported(shell)
    assert not ok and "kernel" in reason
    assert awaiting.live_supported(None)[0] is False
    assert awaiting.register_await_transform(shell, ["descend"]) is False
    assert not awaiting.is_await_transform_registered(shell)
    # the transform does not change how a non-live shell runs the cell
    assert "await" not in shell.transform_cell("%%descend\nx\n")


def test_transformer_rewrites_only_named_cell_magics():
    from IPython.core.inputtransformer2 import TransformerManager

    from tfmagic.kernel import awaiting

    t = awaiting._AwaitCellMagicTransformer(["descend"])
    tm = TransformerManager()

    def run(cell):
        return "".join(t(tm.transform_cell(cell).splitlines(keepends=True)))

    out = run("%%descend -n 5 --eta 0.1\nf(x) = (x - 2)**2\n")
    assert out.startswith("await __import__('tfmagic.kernel.awaiting'")
    assert "'descend', '-n 5 --eta 0.1', 'f(x) = (x - 2)**2\\n')" in out
    compile(out, "<cell>", "exec", flags=0x2000)  # PyCF_ALLOW_TOP_LEVEL_AWAIT
    for other in ("%%timeit\nx\n", "x = 1\n", "%descend\n", "%%descendx\nx\n"):
        assert "await" not in run(other)


@pytest.mark.parametrize("cell, awaited", [
    ("%descend_runs stop\n", 1), ("%descend_runs\n", 1), ("x = 1\n%descend_runs stop\nprint(r.status)\n", 1),
    ("%descend_runs stop\n%descend_runs\n", 2), ("x = %descend_runs\n", 0), ("if True:\n    %descend_runs stop\n", 0),
    ("def f():\n    %descend_runs stop\n", 0), ("%descend_runsx\n", 0), ("%timeit 1\n", 0), ("%%descend_runs\nx\n", 0),
])
def test_transformer_awaits_named_line_magics_on_lines_of_their_own(cell, awaited):
    """`%descend_runs stop` awaits (it says "Stopped" once the runs have): where it is a line at the
    top level of a cell; assigned, indented or another magic, it runs as before."""
    from IPython.core.inputtransformer2 import TransformerManager

    from tfmagic.kernel import awaiting

    t = awaiting._AwaitCellMagicTransformer(["descend"], ["descend_runs"])
    out = "".join(t(TransformerManager().transform_cell(cell).splitlines(keepends=True)))
    assert out.count("run_line_magic_awaited(get_ipython(), 'descend_runs', ") == awaited, out
    assert out.count("await __import__") == awaited, out
    compile(out, "<cell>", "exec", flags=0x2000)  # PyCF_ALLOW_TOP_LEVEL_AWAIT


def test_idle_fix_without_private_api_is_a_noop(caplog):
    from tfmagic.kernel import awaiting
    from tfmagic.kernel import ipykernel_fix

    class NotAKernel:
        async def dispatch_shell(self, msg):  # no 'concurrent' parameter
            return msg

    k = NotAKernel()
    awaiting._warned.discard("idle-fix")
    assert ipykernel_fix.install(k) is False
    assert ipykernel_fix.install(k) is False
    assert "dispatch_shell" not in vars(k)
    assert sum("idle-status fix" in r.getMessage() for r in caplog.records) == 1
    ipykernel_fix.uninstall(k)  # harmless
    assert ipykernel_fix.install(None) is False


class _Kernel74:
    """Enough of an ipykernel 7.4 kernel for the patches: they wrap these two."""

    def __init__(self):
        from ipykernel.kernelbase import Kernel

        self.dispatch_shell = Kernel.dispatch_shell.__get__(self)
        self.published = []
        self.session = object()

    def _publish_status(self, status, channel, parent=None):
        self.published.append(status)

    def get_parent(self, channel):
        return {"header": {"msg_id": "cell"}}


@pytest.mark.parametrize("why", ["opt-out", "newer ipykernel"])
def test_kernel_patches_stay_off_when_told_or_unchecked(monkeypatch, why):
    import ipykernel

    from tfmagic.kernel import ipykernel_fix

    if why == "opt-out":
        monkeypatch.setenv("TFMAGIC_KERNEL_PATCHES", "0")
    else:
        monkeypatch.setattr(ipykernel, "__version__", "8.0.0")
    k = _Kernel74()
    assert ipykernel_fix.install(k) is False and not ipykernel_fix.installed(k)
    with ipykernel_fix.busy_while(k):
        assert "_publish_status" not in vars(k)  # not wrapped
    monkeypatch.undo()
    assert ipykernel_fix.install(k) is True and ipykernel_fix.installed(k)
    with ipykernel_fix.busy_while(k):
        assert "_publish_status" in vars(k)
    ipykernel_fix.uninstall(k)
    assert not ipykernel_fix.installed(k)


# --------------------------------------------------------------------------
# a real kernel
# --------------------------------------------------------------------------

class Kernel:
    """A started kernel plus a client and an ordered log of IOPub messages."""

    def __init__(self, tmp_path: Path):
        from jupyter_client import KernelManager

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), str(MAGIC_DIR)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        env["IPYTHONDIR"] = str(tmp_path / "ipython")
        # SIGUSR1 makes the kernel write every thread's stack: what a test that times out shows.
        self.stacks_path = tmp_path / "kernel-stacks.txt"
        startup = tmp_path / "ipython" / "profile_default" / "startup"
        startup.mkdir(parents=True, exist_ok=True)
        (startup / "00-stacks.py").write_text(
            "import faulthandler, signal\n"
            f"faulthandler.register(signal.SIGUSR1, file=open({str(self.stacks_path)!r}, 'w'), all_threads=True)\n")
        env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=STARTUP_TIMEOUT)
        self.iopub: list[dict] = []
        self.dead = None  # (once the kernel is gone, each later wait says so at once)

    def cpu_seconds(self):
        """The kernel process's CPU time so far (user + system, all threads)."""
        import psutil

        times = psutil.Process(self.km.provisioner.process.pid).cpu_times()
        return times.user + times.system

    def heard_within(self, seconds, cpu, bound=1.0):
        """A reaction within `bound` s of wall time; on a machine busier than its cores (other
        test workers), within `bound` s of the kernel's own CPU time and 2.5x `bound` of wall
        time: what a starved process cannot do faster."""
        if seconds < bound:
            return True
        return os.getloadavg()[0] > (os.cpu_count() or 1) and cpu < bound and seconds < 2.5 * bound

    def why_silent(self):
        """What a kernel that stopped answering is doing: its exit code, or every thread's stack."""
        import signal

        process = self.km.provisioner.process
        code = process.poll()
        if code is not None:
            self.dead = f"the kernel exited with {code}"
            return self.dead
        size = self.stacks_path.stat().st_size if self.stacks_path.exists() else 0
        os.kill(process.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (self.stacks_path.stat().st_size if self.stacks_path.exists() else 0) == size:
            time.sleep(0.1)
        time.sleep(0.2)
        text = self.stacks_path.read_text()[size:] if self.stacks_path.exists() else ""
        folder = Path(os.environ.get("TFMAGIC_ARTIFACTS", ROOT / "tests" / "artifacts"))
        folder.mkdir(parents=True, exist_ok=True)
        copy = folder / f"kernel-stacks-{process.pid}-{int(time.time())}.txt"
        copy.write_text(text)
        return f"the kernel (alive, load {os.getloadavg()[0]:.1f}) stands at ({copy}):\n{text[:8000]}"

    def close(self):
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=True)

    # -- IOPub ---------------------------------------------------------------
    def drain(self, seconds):
        """Log what IOPub brings for `seconds`."""
        self.wait_iopub(lambda m: False, timeout=seconds, start=len(self.iopub), expected=False)

    def wait_iopub(self, pred, timeout=STEP_TIMEOUT, start=0, expected=True):
        """Return the first logged or arriving IOPub message with pred(msg)."""
        for msg in self.iopub[start:]:
            if pred(msg):
                return msg
        if self.dead and expected:
            raise TimeoutError(self.dead)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if not expected:
                    return None
                raise TimeoutError(f"no matching IOPub message within {timeout}s; {self.why_silent()}")
            try:
                msg = self.kc.get_iopub_msg(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            msg["_t"] = time.monotonic()
            self.iopub.append(msg)
            if pred(msg):
                return msg

    def index(self, msg):
        return next(i for i, m in enumerate(self.iopub) if m is msg)

    @staticmethod
    def child_of(msg_id, msg_type=None, **content):
        def pred(m):
            if m["parent_header"].get("msg_id") != msg_id:
                return False
            if msg_type and m["msg_type"] != msg_type:
                return False
            return all(m["content"].get(k) == v for k, v in content.items())

        return pred

    def reply(self, msg_id, timeout=STEP_TIMEOUT):
        if self.dead:
            raise TimeoutError(self.dead)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no execute_reply within {timeout}s; {self.why_silent()}")
            try:
                r = self.kc.get_shell_msg(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if r["parent_header"].get("msg_id") == msg_id:
                return r

    def run(self, code, timeout=STEP_TIMEOUT):
        """Execute code; return (reply, stdout text, execute_result data)."""
        msg_id = self.kc.execute(code)
        start = len(self.iopub)
        reply = self.reply(msg_id, timeout)
        try:
            idle = self.wait_iopub(self.child_of(msg_id, "status", execution_state="idle"), timeout)
        except TimeoutError as err:  # (seen twice under load: say what did arrive)
            seen = [(m["msg_type"], m["content"].get("execution_state"), m["parent_header"].get("msg_type"),
                     m["parent_header"].get("msg_id") == msg_id) for m in self.iopub[start:]]
            raise TimeoutError(f"{err}; reply {reply['content'].get('status')}; {len(seen)} IOPub messages "
                               f"since the request, the last: {seen[-12:]}") from None
        out, result = self.outputs(msg_id, upto=idle)
        return reply, out, result

    def outputs(self, msg_id, upto=None):
        end = self.index(upto) + 1 if upto is not None else len(self.iopub)
        text, result = "", None
        for m in self.iopub[:end]:
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            if m["msg_type"] == "stream":
                text += m["content"]["text"]
            elif m["msg_type"] == "execute_result":
                result = m["content"]["data"]
            elif m["msg_type"] == "error":
                text += "\n".join(m["content"]["traceback"])
        return text, result

    # -- the widget frontend's part -----------------------------------------
    def create_subshell(self):
        msg = self.kc.session.msg("create_subshell_request", {})
        self.kc.control_channel.send(msg)
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                r = self.kc.get_control_msg(timeout=0.5)
            except queue.Empty:
                continue
            if r["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                return r["content"]["subshell_id"]
        raise TimeoutError("no create_subshell_reply")

    def shown(self, msg_id, timeout=STEP_TIMEOUT, start=0):
        """Wait for the cell's display and answer it as a front end that shows a widget view does
        (ipywidgets' _view_count +1: the panel's steering check, widgets/steering.py)."""
        disp = self.wait_iopub(self.child_of(msg_id, "display_data"), timeout=timeout, start=start)
        view = disp["content"]["data"].get("application/vnd.jupyter.widget-view+json")
        if view:
            state = {"method": "update", "state": {"_view_count": 1}, "buffer_paths": []}
            self.kc.shell_channel.send(self.kc.session.msg("comm_msg", {"comm_id": view["model_id"], "data": state}))
        return disp

    def send_update(self, model_id, value, subshell_id=None):
        content = {
            "comm_id": model_id,
            "data": {"method": "update", "state": {"value": value}, "buffer_paths": []},
        }
        msg = self.kc.session.msg("comm_msg", content)
        if subshell_id is not None:
            # JupyterLab 4.6's widget manager sends comm messages from a
            # kernel subshell it creates.
            msg["header"]["subshell_id"] = subshell_id
        self.kc.shell_channel.send(msg)
        return msg["header"]["msg_id"]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    k = Kernel(tmp_path_factory.mktemp("kernel"))
    try:
        reply, out, _ = k.run(
            "import json, time, livetest_magic\n"
            "print(json.dumps(livetest_magic.load(get_ipython())))"
        )
        assert reply["content"]["status"] == "ok", out
        info = json.loads(out.strip().splitlines()[-1])
        assert info == {"supported": True, "reason": "", "idle_fix": True, "registered": True}
        yield k
    finally:
        k.close()


def _start_long_cell(k, seconds):
    """Execute %%livetest; return (msg_id, model_id) once the slider is shown."""
    msg_id = k.kc.execute(f"%%livetest {seconds}\n# the body is ignored\n")
    disp = k.shown(msg_id)
    model_id = disp["content"]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    return msg_id, model_id


@pytest.mark.parametrize("frontend_subshell", [False, True], ids=["plain", "subshell"])
def test_slider_updates_arrive_while_cell_runs(kernel, frontend_subshell):
    """Updates reach the running loop.  With a frontend subshell (what
    JupyterLab 4.6 does) ipykernel 7.4 handles the first update on the main
    thread, and - because the comm's echo then has the subshell's id - routes
    the later ones to the subshell's thread, which runs concurrently with the
    cell: widget observers must be thread-safe."""
    k = kernel
    subshell = k.create_subshell() if frontend_subshell else None
    long_id, model_id = _start_long_cell(k, 3)
    # Queued right behind the long cell, like "Run All" / nbclient do.
    next_id = k.kc.execute(
        "print(json.dumps({'t': time.monotonic(), 'out': _, 'rec': livetest_last}))"
    )
    k.wait_iopub(lambda m: m["msg_type"] == "stream" and "livetest started" in m["content"].get("text", ""))

    sent = {}
    for value in (1.5, 2.5, 3.5):
        t0 = time.monotonic()
        mid = k.send_update(model_id, value, subshell)
        sent[value] = t0
        # The widget manager waits for the idle status of its comm_msg before
        # it sends the next update; without the idle-status fix this times out.
        busy = k.wait_iopub(k.child_of(mid, "status", execution_state="busy"), timeout=5)
        idle = k.wait_iopub(k.child_of(mid, "status", execution_state="idle"), timeout=5)
        assert k.index(busy) < k.index(idle)
        # Wait until the loop has seen it (its Label mirrors the last value seen).
        k.wait_iopub(lambda m, value=value: m["msg_type"] == "comm_msg"
                     and m["parent_header"].get("msg_id") == long_id
                     and m["content"]["data"].get("state", {}).get("value") == f"seen {value:g}",
                     timeout=5)

    reply = k.reply(long_id)
    assert reply["content"]["status"] == "ok"
    long_idle = k.wait_iopub(k.child_of(long_id, "status", execution_state="idle"))
    _, result = k.outputs(long_id, upto=long_idle)
    out = eval(result["text/plain"])  # the final summary, not a coroutine
    assert out["stopped"] == "finished"
    assert out["distinct"] == [0.0, 1.5, 2.5, 3.5]
    assert out["last"] == 3.5

    next_reply = k.reply(next_id)
    assert next_reply["content"]["status"] == "ok"
    next_input = k.wait_iopub(k.child_of(next_id, "execute_input"))
    assert k.index(next_input) > k.index(long_idle), "next cell started before the long one ended"
    next_idle = k.wait_iopub(k.child_of(next_id, "status", execution_state="idle"))
    text, _ = k.outputs(next_id, upto=next_idle)
    data = json.loads(text.strip().splitlines()[-1])
    rec = data["rec"]
    assert data["out"] == out  # `_` is the long cell's result
    assert data["t"] >= rec["t_end"]
    assert rec["awaited"] is True

    # The values changed mid-run: each update was seen by a later chunk while
    # the loop kept going, in the order sent.
    values = rec["values"]
    assert values[0] == 0.0 and values[-1] == 3.5
    firsts = [values.index(v) for v in (1.5, 2.5, 3.5)]
    assert 0 < firsts[0] < firsts[1] < firsts[2] < len(values) - 1
    assert len(values) > 50  # ~3 s of 20 ms chunks

    # Latency: comm_msg sent -> observer in the kernel ran (same host clock).
    changes = {v: t for t, v, _thread in rec["changes"]}
    threads = [thread for _t, _v, thread in rec["changes"]]
    assert threads[0] == "MainThread"
    if frontend_subshell:
        assert all(t.startswith("subshell") for t in threads[1:]), threads
    else:
        assert set(threads) == {"MainThread"}
    latencies = [changes[v] - sent[v] for v in sent]
    print(f"\nslider latency ms: {[round(x * 1000, 1) for x in latencies]}, "
          f"median {statistics.median(latencies) * 1000:.1f}, chunks {len(values)}, "
          f"observer threads {threads}")
    assert max(latencies) < 0.5


def test_interrupt_stops_the_loop_cleanly(kernel):
    k = kernel
    long_id, _ = _start_long_cell(k, 30)
    k.wait_iopub(lambda m: m["parent_header"].get("msg_id") == long_id
                 and m["msg_type"] == "stream" and "livetest started" in m["content"]["text"])
    t0 = time.monotonic()
    k.km.interrupt_kernel()
    reply = k.reply(long_id, timeout=10)
    assert time.monotonic() - t0 < 5
    assert reply["content"]["status"] == "ok"
    idle = k.wait_iopub(k.child_of(long_id, "status", execution_state="idle"))
    _, result = k.outputs(long_id, upto=idle)
    out = eval(result["text/plain"])
    assert out["stopped"] in ("CancelledError", "KeyboardInterrupt")
    assert out["chunks"] > 0

    # The kernel is fine and the magic is still live.
    reply, text, result = k.run("21 * 2")
    assert reply["content"]["status"] == "ok" and result["text/plain"] == "42"
    reply, text, result = k.run("%%livetest 0.2\npass\n")
    assert reply["content"]["status"] == "ok", text
    assert eval(result["text/plain"])["stopped"] == "finished"
