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


# The files that take longest (summed test time of a two-worker run), started first: with
# `-n 2 --dist loadfile` a long file started last kept one worker busy while the other idled.
LONGEST_FIRST = [
    "test_rerun_differential.py", "test_examples.py", "test_epoch_loop.py", "test_cluster_controls.py",
    "browser/test_records_reopen.py", "test_find_eta_trains.py", "browser/test_landscape_view.py",
    "test_extension.py", "browser/test_lessons.py", "test_reach_kernel.py", "test_strategy.py",
    "browser/test_click_start.py", "browser/test_voila.py", "browser/test_eta_gestures.py",
    "browser/test_sharpness_view.py", "browser/test_reach.py", "test_train.py", "test_constraints.py",
]


def pytest_collection_modifyitems(items):
    def rank(item):
        path = item.nodeid.split("::")[0].removeprefix("tests/")
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # (stable: a file's tests keep their order)
