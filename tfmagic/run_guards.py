"""What stands around a %%descend run: one run at a time on the same variables, and an
interrupt before its first step (a set-up or a first trace that takes seconds) leaves the
namespace as it was and says so in one line."""

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
