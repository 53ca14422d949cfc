"""Every sentence %%descend says about a run: its outcome, its notes, advice on eta.

The engine records facts (status, steps, the error, what the diverging step
reached, NOTE_* codes); this module words them, so the words live in one place.
"""

import math

from tfmagic.cell.explain import tf_message
from tfmagic.descent.calls import BLOWUP_FACTOR, NOTE_XLA_DROPS_CHECKS
from tfmagic.descent.engine import NOTE_NO_XLA_FOR_CHECKS, NOTE_XLA_FAILED
from tfmagic.descent.facts import NOTE_REUSED, NOTE_TRACED_AGAIN

ADAPTIVE = ("adam", "rmsprop", "adagrad")  # optimizers that scale their own steps


def steps_text(n):
    """'1 step', '2 steps'."""
    return f"{n} step{'' if n == 1 else 's'}"


def outcome(engine):
    """One paragraph on how the last run ended ('' while it runs or when it simply ran its steps)."""
    status = engine.status
    if status in ("diverged", "undefined"):
        return divergence(engine)
    if status == "converged":
        return f"converged: gradient norm below tol={engine.tol} after {steps_text(engine.steps)}"
    if status == "interrupted":
        return f"interrupted after {steps_text(engine.steps)}; the variables hold the last good values"
    if status == "error" and engine.error is not None:
        if engine.error_redone:
            return (f"stopped after {steps_text(engine.steps)} by an error that did not come back when its steps were "
                    f"redone one at a time (randomness in the cell?): {tf_message(engine.error)}")
        return f"stopped by an error after {steps_text(engine.steps)}: {tf_message(engine.error)}"
    return ""


_NOTES = {
    NOTE_NO_XLA_FOR_CHECKS: "The cell has checks (tf.debugging asserts, check_numerics) that XLA would skip, so it runs without XLA.",
    NOTE_XLA_DROPS_CHECKS: "XLA skips the cell's checks (tf.debugging asserts, check_numerics): with --jit on they are not run.",
}


_REUSED = {  # whose compiled steps a re-run ran on
    "this-cell": "this cell's last run",
    "another-cell": "another cell with the same code",
    "same-code": "an earlier run of the same code",
}
_TRACED_AGAIN = {  # why a re-run was built afresh (descent/reuse.py's reason codes)
    "graph": "the cell traced to another graph than its last run (a value it reads has changed).",
    "variables": "its variables are not its last run's (another variable or model, or another shape).",
    "running": "its last run is still going (from its panel).",
    "switched": "its last run's optimizer or device was switched in its panel.",
    "dataset": "a run on a tf.data.Dataset is never reused: its iterator cannot go back.",
    "python-random": "the cell draws Python random numbers (numpy, random) when traced; a fresh build draws them at each trace.",
    "constraint": "a variable has a constraint, and the check of the trace does not cover its function.",
    "unjudgeable": "what the cell's trace captured cannot be compared with its last run's.",
    "held": "the last run's {0} is also held elsewhere (another name, a container, an attribute, Out), so it was not moved; {0} is a new variable.",
    "unchecked": "there is too much in the namespace to check that nothing else holds the last run's {0}; {0} is a new variable.",
    "random-ops": "its op {0} keeps its random state in the compiled steps; a fresh build starts it afresh.",
}


def note(code):
    """The sentence for one of the engine's NOTE_* codes."""
    if code.startswith(NOTE_REUSED):
        whose = _REUSED[code[len(NOTE_REUSED):]]
        return f"Reused the compiled steps of {whose}: the cell traced to the same graph, so its steps were not traced again."
    if code.startswith(NOTE_TRACED_AGAIN):
        reason, _, detail = code[len(NOTE_TRACED_AGAIN):].partition(":")
        return "Traced again: " + _TRACED_AGAIN[reason].format(detail)
    if code.startswith(NOTE_XLA_FAILED):
        return f"XLA could not compile this cell ({code[len(NOTE_XLA_FAILED):]}); it runs without XLA."
    return _NOTES[code]


def eta_advice(engine):
    """Where plain gradient descent starts to diverge, from the curvature at the start ('' if unknown)."""
    lam = engine.curvature()
    if not lam:
        return ""
    return (
        f"The largest curvature at the start is λ ≈ {lam:.4g}, so plain gradient descent "
        f"diverges above eta ≈ 2/λ = {2.0 / lam:.4g}."
    )


def divergence(engine):
    """Why a run diverged and what to do, told apart by what the engine saw."""
    eta = engine.eta
    names = ", ".join(engine.variables)
    if engine.unhealthy_start:
        return (
            f"diverged at the starting point: the loss or its gradient is not finite (or huge) "
            f"at the start, before any step. Check the initial values of {names}."
        )
    bad = engine.blowup_loss
    if bad < 0 and not math.isnan(bad):  # -inf or far below the start
        return (
            f"diverged after {steps_text(engine.steps)}: the loss keeps decreasing without bound (step "
            f"{engine.steps + 1} took it to {bad:.3g}), so this function has no minimum in that direction; "
            f"a smaller eta only takes longer. Check the sign of the loss (minimising -f maximises f) or "
            f"add a term that bounds it. The variables ({names}) hold the last finite values."
        )
    if engine.status == "undefined":
        return (
            f"undefined after {steps_text(engine.steps)}: step {engine.steps + 1} made the loss NaN (not a number) "
            f"while it was not blowing up: the cell computed something undefined there, e.g. the sqrt or "
            f"log of a negative number or 0/0. Look at the values of {names} below and keep the step "
            f"inside the function's domain (a smaller eta, or tf.abs/tf.maximum in the cell). "
            f"The variables ({names}) hold the last finite values."
        )
    suggestion = engine.suggested_eta()
    advice = eta_advice(engine)
    smaller = 0.5 * suggestion if suggestion and suggestion < eta else eta / 10
    adaptive = "" if engine.optimizer_name in ADAPTIVE else " or an adaptive optimizer such as adam"
    return (
        f"diverged after {steps_text(engine.steps)}: step {engine.steps + 1} made the loss blow up (infinite, NaN "
        f"or over {BLOWUP_FACTOR:g}x its starting value). eta={eta:g} is too large for this function: each "
        f"step overshoots the minimum by more than it gains. {advice + ' ' if advice else ''}"
        f"Try a smaller eta (e.g. {smaller:.3g}){adaptive}. "
        f"The variables ({names}) were put back to the last finite values."
    )
