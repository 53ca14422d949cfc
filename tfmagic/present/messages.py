"""Every sentence %%descend says about a run: its outcome, its notes, advice on eta.

The engine records facts (status, steps, the error, what the diverging step
reached, NOTE_* codes); this module words them, so the words live in one place.
"""

import math

from tfmagic.cell.explain import tf_message
from tfmagic.descent.calls import BLOWUP_FACTOR, NOTE_XLA_DROPS_CHECKS
from tfmagic.descent.engine import NOTE_NO_XLA_FOR_CHECKS, NOTE_XLA_FAILED
from tfmagic.descent.facts import NOTE_REUSED

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
    NOTE_REUSED: "Reused the compiled steps of this cell's last run: nothing was traced again.",
    NOTE_XLA_DROPS_CHECKS: "XLA skips the cell's checks (tf.debugging asserts, check_numerics): with --jit on they are not run.",
}


def note(code):
    """The sentence for one of the engine's NOTE_* codes."""
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
    back = engine.kept.rewound
    if back is not None:
        return went_back(engine, back, names, advice)
    smaller = 0.5 * suggestion if suggestion and suggestion < eta else eta / 10
    adaptive = "" if engine.optimizer_name in ADAPTIVE else " or an adaptive optimizer such as adam"
    return (
        f"diverged after {steps_text(engine.steps)}: step {engine.steps + 1} made the loss blow up (infinite, NaN "
        f"or over {BLOWUP_FACTOR:g}x its starting value). eta={eta:g} is too large for this function: each "
        f"step overshoots the minimum by more than it gains. {advice + ' ' if advice else ''}"
        f"Try a smaller eta (e.g. {smaller:.3g}){adaptive}. "
        f"The variables ({names}) were put back to the last finite values."
    )


def went_back(engine, back, names, advice):
    """A divergence after eta was raised: which point the variables hold now, and why."""
    if back.step == back.raised_at:
        where = "the point where eta was raised"
    else:
        where = "the lowest loss the run passed after eta was raised" + (
            " (checked between chunks of steps)" if back.moved else ", the last before the blow-up")
    return (
        f"diverged after {steps_text(back.diverged_after)}: step {back.diverged_after + 1} made the loss blow up "
        f"at eta={back.blowup_eta:g} (eta was raised from {back.raised_from:g} to {back.raised_to:g} at step "
        f"{back.raised_at}). {advice + ' ' if advice else ''}"
        f"The variables ({names}) and the optimizer's state {'went back' if back.moved else 'stay'} at step "
        f"{back.step}, loss {back.loss:.4g}: {where}; the history ends there, and eta is {back.eta:g} again, "
        f"so Play goes on from there."
    )
