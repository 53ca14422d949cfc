"""What stands around a %%descend run: one run at a time on the same variables, and an
interrupt before its first step (a set-up or a first trace that takes seconds) leaves the
namespace as it was and says so in one line."""

import contextlib
import sys

from tfmagic.descent.status import Status

_MISSING = object()


class InterruptedBeforeFirstStep(KeyboardInterrupt):
    """Kernel > Interrupt (Ctrl-C) before a run's first step: nothing was published."""

    def _render_traceback_(self):
        return [f"\x1b[31m\x1b[1mKeyboardInterrupt\x1b[0m: {self}"]


def put_back(namespace, before):
    """The namespace as it was: names added since are removed, names changed get their values back."""
    for name in [n for n in namespace if n not in before]:
        del namespace[name]
    for name, value in before.items():
        if namespace.get(name, _MISSING) is not value:
            namespace[name] = value


INTERRUPTED_AT_START = "interrupted before the first step: nothing changed (your variables and names are as they were)."


def refused(namespace, before):
    """The namespace put back as it was; the error that says so."""
    if before is not None:
        put_back(namespace, before)
    return InterruptedBeforeFirstStep(INTERRUPTED_AT_START)


@contextlib.contextmanager
def cut_traces_quiet():
    """Around a run's set-up: an interrupt that cuts TensorFlow's tracing short leaves its graph-stack
    generators suspended, and closing them out of order said "Exception ignored ... Nesting violated"
    (a traceback) above the one-line message. That text is not printed, and forget_cut_trace() puts
    this thread's graph stack back as it was."""
    stack = _graph_stack()
    before = list(stack) if stack is not None else None
    hook = sys.unraisablehook

    def quiet(unraisable):
        if not (isinstance(unraisable.exc_value, AssertionError) and "Nesting violated" in str(unraisable.exc_value)):
            hook(unraisable)

    sys.unraisablehook = quiet
    try:
        yield lambda err: _forget_cut_trace(err, stack, before)
    finally:
        if sys.unraisablehook is quiet:
            sys.unraisablehook = hook


def _forget_cut_trace(err, stack, before):
    """The interrupted set-up's frames go now (their suspended generators close here), and the graph
    stack is as it was before the set-up."""
    err.__traceback__ = None
    if stack is not None and stack[: len(before)] == before:
        del stack[len(before):]


def _graph_stack():
    try:
        from tensorflow.python.framework import ops

        return ops._default_graph_stack.stack
    except (ImportError, AttributeError):
        return None


def interrupted_at_start(done, engine):
    """`done` (what a run returned) was interrupted before any step."""
    series = getattr(done, "runs", None)
    if series is not None:  # --compare, --restarts
        first = not any(r.steps for r in series.values())
    elif hasattr(done, "etas"):  # a --find-eta sweep (it puts the variables back itself)
        first = len(done.etas) == 0
    else:
        first = engine.steps == 0
    return first and (getattr(done, "status", None) or engine.status) == Status.INTERRUPTED


def detach_panels_sharing(engine):
    """Before a run's first step: a live panel on its variables (the same objects, or the
    same names) stops and is detached, so two runs never interleave their steps."""
    from tfmagic.kernel.runner import LiveRunner

    stopped = LiveRunner.detach_sharing(engine)
    if stopped:
        mine = set(engine.variables) | {id(v) for v in engine.variables.values()}
        shared = sorted({n for r in stopped for n, v in r.engine.variables.items() if n in mine or id(v) in mine})
        at = ", ".join(f"{r.engine.steps:,}" for r in stopped)
        print(f"tfmagic: stopped the live panel running on {', '.join(shared)} (at step {at}) first: "
              f"one run at a time on the same variables; that panel no longer controls them.")
