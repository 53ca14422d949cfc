import asyncio
import faulthandler
import gc
import os
import threading
import warnings
from pathlib import Path

import pytest

from tfmagic.runtime.tfimport import tensorflow

tf = tensorflow()
# Two logical CPUs, so device selection is tested on a machine without a GPU.
# This must happen before TensorFlow's runtime starts, hence at import time.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
except RuntimeError:  # already initialised by an earlier import in this process
    pass


STALL_SECONDS = float(os.environ.get("TFMAGIC_STALL_SECONDS", 75))  # no test outside tests/browser takes this long unless it stalls


@pytest.fixture(autouse=True)
def stall_watch(request):
    """Every thread's stack, written to tests/artifacts/ when a test goes on past STALL_SECONDS.

    Full runs on 2026-12-07 had in-process tests that take 1 s alone stall for 20-190 s, once
    each, on a different test every run: this says where the next one waits."""
    if request.node.get_closest_marker("browser"):
        yield
        return
    folder = Path(os.environ.get("TFMAGIC_ARTIFACTS", Path(__file__).resolve().parent / "artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("stall-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in request.node.nodeid)[-150:] + ".txt")
    with open(path, "w") as file:
        faulthandler.dump_traceback_later(STALL_SECONDS, repeat=True, file=file)
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()
    if path.stat().st_size:
        warnings.warn(f"{request.node.nodeid} went on past {STALL_SECONDS} s: every thread's stack is in {path}", stacklevel=2)
    else:
        path.unlink()


@pytest.fixture(scope="session")
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "tfmagic")
    return ip


def _reset(shell):
    """shell.reset without its full gc.collect.

    Once TensorFlow's graphs fill the heap that collection costs ~0.25 s, twice a test: it was
    40 % of the suite's CPU time. Python's own generational collection still runs, and the tests
    that count on an object being freed call gc.collect themselves.
    """
    collect = gc.collect
    gc.collect = lambda *args, **kwargs: 0
    try:
        shell.reset(new_session=False)
    finally:
        gc.collect = collect


@pytest.fixture
def ip(shell):
    """The shell with a fresh user namespace that has `tf`, as after `import tensorflow as tf`."""
    _reset(shell)
    shell.user_ns["tf"] = tf
    yield shell
    _reset(shell)


@pytest.fixture
def run(ip):
    """Run a cell magic: run('descend', 'x=10.0', 'y = x*x')."""

    def _run(magic, line, cell):
        return ip.run_cell_magic(magic, line, cell)

    return _run


class Loop:
    """Runs a scenario on a fresh event loop in its own thread.

    Its own thread, because another test module's Playwright (sync API) may
    keep an event loop running on the main thread for the whole session.
    """

    def run_until_complete(self, coro):
        out = {}

        def target():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                out["value"] = loop.run_until_complete(coro)
            except BaseException as err:  # re-raised in the test's thread
                out["error"] = err
            finally:
                loop.close()

        thread = threading.Thread(target=target)
        thread.start()
        thread.join(120)
        if "error" in out:
            raise out["error"]
        return out["value"]

    @staticmethod
    def time():
        return asyncio.get_running_loop().time()


@pytest.fixture
def loop():
    yield Loop()
    from tfmagic.kernel.runner import LiveRunner

    LiveRunner._active.clear()
