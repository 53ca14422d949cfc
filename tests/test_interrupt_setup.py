"""Kernel > Interrupt at any moment of a live run's set-up (options, the build, the panel): the
cell says so in one line, the namespace is as it was, and the next runs, of this cell or of
another on the same names, work and equal a fresh build. A KeyboardInterrupt is raised at the
N-th line tfmagic runs, for N spread over the whole set-up (sys.settrace)."""

import gc
import os
import sys
import traceback

import numpy as np

import tfmagic
from tfmagic.kernel import awaiting
from tfmagic.run_guards import InterruptedBeforeFirstStep

PACKAGE = os.path.dirname(tfmagic.__file__)
CELL = "y = (x - 2.0) ** 2 + 0.1 * x ** 4"
LINE = "x=3.0 --eta 0.01 --steps 7"
POINTS = 16  # interrupts spread over the set-up's lines


class InterruptAtLine:
    """A trace that counts the lines run in tfmagic's files; at line `at` it raises KeyboardInterrupt
    (as Ctrl-C lands in Python code); `first_step`: the count when the run's first chunk began."""

    def __init__(self, at=None):
        self.at, self.count, self.first_step, self.started = at, 0, None, False

    def __call__(self, frame, event, arg):
        if not frame.f_code.co_filename.startswith(PACKAGE):
            return None
        # (from the first call inside the magic's guard: a signal in the lines before it is Python's)
        self.started = self.started or frame.f_code.co_name == "descend_options"
        if not self.started:
            return self
        if event == "call" and self.first_step is None and frame.f_code.co_name == "run_chunks":
            self.first_step = self.count
        if event == "line":
            self.count += 1
            if self.count == self.at:
                raise KeyboardInterrupt
        return self


async def descend(ip, line, cell, trace=None):
    sys.settrace(trace)
    try:
        return await awaiting.run_cell_magic_awaited(ip, "descend", line, cell)
    finally:
        sys.settrace(None)


def test_an_interrupt_anywhere_in_a_live_set_up_leaves_nothing_half_made(ip, loop):
    async def scenario():
        counting = InterruptAtLine()
        fresh = await descend(ip, LINE, CELL, counting)
        assert fresh.status == "max_steps" and counting.first_step, counting.first_step
        want = fresh.history["loss"].copy()
        outcomes = []
        for at in np.unique(np.linspace(1, counting.first_step, POINTS).astype(int)):
            ip.user_ns["x"] = before = "the user's x"
            try:
                await descend(ip, LINE, CELL, InterruptAtLine(int(at)))
                outcomes.append("ran")  # (a line of the run's own steps: it ran, was heard later)
            except InterruptedBeforeFirstStep as err:
                assert "nothing changed" in str(err)
                assert ip.user_ns["x"] is before, at  # the namespace as it was
                outcomes.append("refused")
            except (KeyboardInterrupt, Exception) as err:  # (a bare KeyboardInterrupt: a traceback wall)
                where = traceback.extract_tb(err.__traceback__)[-2]  # (the line it landed on)
                raise AssertionError(f"line {at}: {type(err).__name__} {err} at {where.filename}:{where.lineno}") from None
            again = await descend(ip, LINE, CELL)  # this cell again (its kept build)
            other = await descend(ip, LINE + " --optimizer momentum", CELL)  # another run on the same names
            assert again.status == "max_steps" and other.status == "max_steps", at
            np.testing.assert_array_equal(again.history["loss"], want)
        return outcomes

    outcomes = loop.run_until_complete(scenario())
    assert outcomes.count("refused") >= POINTS - 4, outcomes


def _cut_trace(close_first):
    """Two graphs pushed by TensorFlow's graph-stack generators, an interrupt before either is left,
    and the generators closed out of order (the outer first), as the frames of a cut trace go."""
    import tensorflow as tf
    from tensorflow.python.framework import ops

    outer = ops._default_graph_stack.get_controller(tf.Graph())
    inner = ops._default_graph_stack.get_controller(tf.Graph())
    outer.__enter__()
    inner.__enter__()
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as err:
        close_first(err)
        del outer  # (closed first: the inner graph is still on top of the stack)
        gc.collect()
        del inner
        gc.collect()


def test_a_trace_cut_short_closes_quietly_and_leaves_the_graph_stack_as_it_was(monkeypatch):
    from tensorflow.python.framework import ops
    from tfmagic.run_guards import cut_traces_quiet

    said = []  # what Python would print as "Exception ignored in ..."
    monkeypatch.setattr(sys, "unraisablehook", lambda u: said.append(f"{type(u.exc_value).__name__}: {u.exc_value}"))
    before = list(ops._default_graph_stack.stack)
    _cut_trace(lambda err: None)  # (unguarded: what TensorFlow says)
    assert any("Nesting violated" in s for s in said), said
    del ops._default_graph_stack.stack[len(before):]

    said.clear()
    with cut_traces_quiet() as forget_cut_trace:
        _cut_trace(forget_cut_trace)
    assert said == [] and ops._default_graph_stack.stack == before, said
    assert sys.unraisablehook.__name__ == "<lambda>"  # (put back)
