import asyncio
import gc
import threading

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
