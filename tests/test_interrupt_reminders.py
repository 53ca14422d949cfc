"""An interrupt that is already unwinding is not raised again inside its own cleanup.

raising() raises a swallowed interrupt again every REMIND_SECONDS. A reminder that came while
the first one unwound (TensorFlow's graph contexts closing, slow under load) raised a second
KeyboardInterrupt inside a finally or an __exit__, and the cleanup stopped half-way: the likely
cause of the "Exception ignored ... AssertionError: Nesting violated" that TensorFlow's graph
stack printed once above the one-line message (not reproduced since, in 60 interrupts)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

import pytest

from tfmagic.kernel import interrupts


@pytest.fixture(autouse=True)
def awaiting_cell():
    """SIGINT handled as in an awaiting cell: ipykernel's handler does not raise (it cancels the
    cell's task), so raising() raises, and reminds."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGINT, before)


def _work(seconds):
    """Python work (signals are heard between its bytecodes) for `seconds`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(100))


def _generator_cleanup(seconds, log):
    @contextlib.contextmanager
    def graph_context():  # as TensorFlow's default-graph stack is kept
        try:
            yield
        finally:
            _work(seconds)
            log.append("closed")

    with graph_context():
        os.kill(os.getpid(), signal.SIGINT)
        _work(5)


def _exit_cleanup(seconds, log):
    class Context:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            _work(seconds)
            log.append("closed")

    with Context():
        os.kill(os.getpid(), signal.SIGINT)
        _work(5)


def _nested_cleanups(seconds, log):
    try:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            _work(5)
        finally:
            _work(seconds / 2)
            log.append("inner")
    finally:
        _work(seconds / 2)
        log.append("closed")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT by os.kill")
@pytest.mark.parametrize("cleanup", [_generator_cleanup, _exit_cleanup, _nested_cleanups])
@pytest.mark.parametrize("reminders", [3, 6])
def test_a_cleanup_longer_than_the_reminder_runs_to_its_end(cleanup, reminders):
    log = []
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with interrupts.raising():
            cleanup(reminders * interrupts.REMIND_SECONDS, log)
    assert log[-1] == "closed", log  # no second KeyboardInterrupt cut the cleanup short
    assert time.monotonic() - t0 < reminders * interrupts.REMIND_SECONDS + 2.0  # heard at once, not after _work(5)
    _work(3 * interrupts.REMIND_SECONDS)  # no reminder is left over once the block has ended


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT by os.kill")
def test_an_interrupt_swallowed_by_the_code_is_still_raised_again():
    caught = []
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with interrupts.raising():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                _work(5)
            except KeyboardInterrupt:  # (code that swallows it, as some libraries do)
                caught.append(time.monotonic() - t0)
            _work(5)
    assert caught and time.monotonic() - t0 < 2.0
