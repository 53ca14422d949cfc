"""Every sentence %%descend says about a run: what its status means, its outcome, its notes,
advice on eta.

The engine records facts (a status.Status, steps, the error, what the diverging step
reached, status.Note codes); this module words them, so the words live in one place.
"""

import math

from tfmagic.cell.explain import tf_message
from tfmagic.descent.calls import BLOWUP_FACTOR
from tfmagic.descent.earlier import is_digest
from tfmagic.descent.rewind import Refusal, RewindRefused
from tfmagic.descent.status import CUT_SHORT, DATA_STOPS, ESCAPED, Note, Retrace, Status, Whose

ADAPTIVE = ("adam", "rmsprop", "adagrad")  # optimizers that scale their own steps


# What each way a run ends means: the README's status table is this table (tests/test_status.py).
STATUS_MEANINGS = [
    ((Status.MAX_STEPS,), "it took all the steps it was given"),
    ((Status.CONVERGED,), "the gradient norm fell below `--tol` (a `--compare`/`--restarts` run: below `--tol`, "
                          "default 1e-3)"),
    ((Status.DIVERGED,), "a step made the loss blow up (infinite, or far beyond its start), or it was not finite at "
                         "the start"),
    ((Status.UNDEFINED,), "a step made the loss NaN without blowing up: the cell computed something undefined there "
                          "(sqrt or log of a negative, 0/0)"),
    ((Status.STOPPED, Status.PAUSED), "Stop / Pause or Step in the panel"),
    ((Status.INTERRUPTED,), "Ctrl-C or Kernel → Interrupt"),
    ((Status.ERROR,), "the cell raised at some step (`.message` says which and why)"),
    ((Status.OUT_OF_DATA,), "a dataset (`--data NAMES=DS`) had no batch for the next step: it ended before `--steps`"),
    ((Status.BAD_DATA,), "a dataset's batch held NaN or inf (`.message` names the step, the name and its row)"),
]


def status_table():
    """STATUS_MEANINGS as the README's markdown table."""
    rows = [" / ".join(f"`{s}`" for s in statuses) for statuses, _ in STATUS_MEANINGS]
    return "\n".join(["| status | the run ended because |", "|---|---|"]
                     + [f"| {words} | {meaning} |" for words, (_, meaning) in zip(rows, STATUS_MEANINGS)])


def steps_text(n):
    """'1 step', '2 steps'."""
    return f"{n} step{'' if n == 1 else 's'}"


def outcome(engine):
    """One paragraph on how the last run ended ('' while it runs or when it simply ran its steps)."""
    status = engine.status
    if status in DATA_STOPS and engine.data_stop is not None:
        return data_stop(engine)
    if status in ESCAPED:
        return divergence(engine)
    if status == Status.CONVERGED:
        return f"converged: gradient norm below tol={engine.tol} after {steps_text(engine.steps)}"
    if status == Status.INTERRUPTED:
        return f"interrupted after {steps_text(engine.steps)}; the variables hold the last good values"
    if status == Status.ERROR and engine.error is not None:
        if engine.error_redone:
            return (f"stopped after {steps_text(engine.steps)} by an error that did not come back when its steps were "
                    f"redone one at a time (randomness in the cell?): {tf_message(engine.error)}")
        return f"stopped by an error after {steps_text(engine.steps)}: {tf_message(engine.error)}"
    return ""


_REUSED = {  # whose compiled steps a re-run ran on
    Whose.THIS_CELL: "this cell's last run",
    Whose.ANOTHER_CELL: "another cell with the same code",
    Whose.SAME_CODE: "an earlier run of the same code",
}
_TRACED_AGAIN = {  # why a re-run was built afresh (descent/reuse.py)
    Retrace.GRAPH: "the cell traced to another graph than its last run (a value it reads has changed).",
    Retrace.VARIABLES: "its variables are not its last run's (another variable or model, or another shape).",
    Retrace.RUNNING: "its last run is still going (from its panel).",
    Retrace.SWITCHED: "its last run's optimizer or device was switched in its panel.",
    Retrace.DATASET: "a run on a tf.data.Dataset is never reused: its iterator cannot go back.",
    Retrace.PYTHON_RANDOM: "the cell draws Python random numbers (numpy, random) when traced; a fresh build draws them at each trace.",
    Retrace.CONSTRAINT: "a variable has a constraint, and the check of the trace does not cover its function.",
    Retrace.UNJUDGEABLE: "what the cell's trace captured cannot be compared with its last run's.",
    Retrace.HELD: "the last run's {0} is also held elsewhere (another name, a container, an attribute, Out), so it was not moved; {0} is a new variable.",
    Retrace.UNCHECKED: "there is too much in the namespace to check that nothing else holds the last run's {0}; {0} is a new variable.",
    Retrace.RANDOM_OPS: "its op {0} keeps its random state in the compiled steps; a fresh build starts it afresh.",
}
_NOTES = {  # Note -> (its detail ->) the sentence
    Note.NO_XLA_FOR_CHECKS: lambda: "The cell has checks (tf.debugging asserts, check_numerics) that XLA would skip, so it runs without XLA.",
    Note.XLA_DROPS_CHECKS: lambda: "XLA skips the cell's checks (tf.debugging asserts, check_numerics): with --jit on they are not run.",
    Note.XLA_FAILED: lambda error: f"XLA could not compile this cell ({error}); it runs without XLA.",
    Note.REUSED: lambda whose: f"Reused the compiled steps of {_REUSED[whose]}: the cell traced to the same graph, so its "
                               f"steps were not traced again.",
    Note.TRACED_AGAIN: lambda reason, *named: "Traced again: " + _TRACED_AGAIN[reason].format(*named),
}


def note(noted):
    """The sentence for one of the engine's notes (a status.Note, or a Noted with its detail)."""
    return _NOTES[noted.code](*noted.detail)


ON_THE_BOUND = 1e-3  # an eta this close (relatively) to 2/λ is taken as on it: no claim either way
CHANGED = 0.05  # λ where a run ended differs from the start's by more than this: it changed along the path


def eta_advice(engine, runs=None, only_if_cheap=False):
    """Where plain gradient descent diverges, from the largest curvature at the start ('' if
    unknown), checked against `runs` (label -> a --compare run of sgd) when given: 2/λ at the
    start bounds eta exactly only where λ is the same everywhere (a quadratic), so the runs
    that went above it and did not diverge, or below it and did, are named."""
    lam = engine.curvature(only_if_cheap)
    if not lam:
        return ""
    bound = 2.0 / lam
    said = (f"The largest curvature at the start is λ ≈ {lam:.4g}, so plain gradient descent "
            f"diverges above eta ≈ 2/λ = {bound:.4g}")
    if not runs or engine.optimizer_name != "sgd":
        return said + "."
    above_fine, below_diverged = [], []
    for run in runs.values():
        if not run.steps or run.status == Status.UNDEFINED or run.status in CUT_SHORT:
            continue  # (no step, or stopped for another reason: no evidence either way)
        eta = float(run.history["eta"][0])
        if eta > bound * (1 + ON_THE_BOUND) and run.status != Status.DIVERGED:
            above_fine.append(run)
        elif eta < bound * (1 - ON_THE_BOUND) and run.status == Status.DIVERGED:
            below_diverged.append(run)
    if not above_fine and not below_diverged:
        return said + "."
    from tfmagic.descent.curvature import at_values

    groups = {}  # what the runs show -> [(label, λ where it ended)]
    for run in above_fine:
        there = at_values(engine, run.values)
        fell = there and there < lam * (1 - CHANGED)
        first, last = float(run.history["loss"][0]), run.final_loss
        grew = " (though {their} loss grew)" if last is not None and last > first else ""
        key = "above it and did not diverge: λ fell along {their} path{s} (≈ {ends} where {they} ended)" if fell else \
            "above it and did not diverge in {their} {lengths}" + grew
        groups.setdefault(key, []).append((run, there))
    for run in below_diverged:
        there = at_values(engine, run.values)
        grew = there and there > lam * (1 + CHANGED)
        key = "below it and diverged: λ grew along {their} path{s} (≈ {ends} where {they} blew up)" if grew else \
            "below it and diverged"
        groups.setdefault(key, []).append((run, there))
    changed = any("λ" in key for key in groups)
    notes = []
    for key, members in groups.items():
        many = len(members) > 1
        labels = [r.label for r, _ in members]
        notes.append(f"{' and '.join(labels) if len(labels) < 3 else ', '.join(labels[:-1]) + ' and ' + labels[-1]} "
                     f"{'are' if many else 'is'} " + key.format(
                         their="their" if many else "its", they="they" if many else "it", s="s" if many else "",
                         ends=" and ".join(f"{t:.4g}" for _, t in members),
                         lengths=" and ".join(dict.fromkeys(steps_text(r.steps) for r, _ in members))))
    head = said + ("; λ changes along the path, so this holds near the start only" if changed else "")
    return head + ": " + "; ".join(notes) + "."


def _last_values(engine):
    """'x = 0.157, y = 2.5' for the variables with one value each; their names for larger ones."""
    values = engine.final_values or {n: v.numpy() for n, v in engine.variables.items()}
    shown = [f"{n} = {float(v.reshape(-1)[0]):.6g}" if v.size == 1 else n for n, v in values.items()]
    return ", ".join(shown)


def data_stop(engine):
    """A run on a dataset that stopped because of the data: it ended, or a batch held NaN/inf."""
    stop, names = engine.data_stop, ", ".join(engine.variables)
    hold = "holds" if len(engine.variables) == 1 else "hold"
    kept = f"The {steps_text(engine.steps)} before it are kept: {names} {hold} the values after step {engine.steps}."
    if stop.status == Status.OUT_OF_DATA:
        return (f"the dataset ended: it had no batch for step {stop.step} (a generator that stopped, or fewer batches "
                f"than --steps). {kept}")
    return (f"the data is not finite: the batch of step {stop.step} has {stop.value} in {stop.name} (row {stop.row} of that "
            f"batch), so the loss there is not finite; the step and eta are not at fault. {kept} Drop such rows "
            f"before batching, e.g. ds.unbatch().filter(lambda x, y: tf.reduce_all(tf.math.is_finite(x))).batch(B).")


def _blowup_step(engine):
    return engine.steps + max(engine.unkept_steps, 1)


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
    if engine.status == Status.UNDEFINED:
        return (
            f"undefined after {steps_text(engine.steps)}: step {_blowup_step(engine)} made the loss NaN (not a number) "
            f"while it was not blowing up: the cell computed something undefined there, e.g. the sqrt or "
            f"log of a negative number or 0/0. "
            + (f"The variables hold the last finite values ({_last_values(engine)}): the step from there left the "
               f"function's domain. " if engine.unkept_steps <= 1 else f"{_put_back(engine, names)} ")
            + "Keep it inside (a smaller eta, or tf.abs/tf.maximum in the cell)."
        )
    suggestion = engine.suggested_eta()
    advice = eta_advice(engine)
    back = engine.kept.rewound
    if back is not None:  # (the variables went back: the curvature where it blew up is not theirs)
        return went_back(engine, back, names, advice)
    if suggestion and engine.optimizer_name == "sgd" and eta < suggestion * (1 - ON_THE_BOUND):
        advice = _grew(engine, suggestion)
    smaller = 0.5 * suggestion if suggestion and suggestion < eta else eta / 10
    adaptive = "" if engine.optimizer_name in ADAPTIVE else " or an adaptive optimizer such as adam"
    return (
        f"diverged after {steps_text(engine.steps)}: step {_blowup_step(engine)} made the loss blow up (infinite, NaN "
        f"or over {BLOWUP_FACTOR:g}x its starting value). eta={eta:g} is too large for this function: each "
        f"step overshoots the minimum by more than it gains. {advice + ' ' if advice else ''}"
        f"Try a smaller eta (e.g. {smaller:.3g}){adaptive}. "
        f"{_put_back(engine, names)}"
    )


def went_back(engine, back, names, advice):
    """A divergence after eta was raised: which point the variables hold now, and why."""
    if back.step == back.raised_at:
        where = "the point where eta was raised"
    else:
        where = "the lowest loss the run passed after eta was raised" + (
            " (checked between chunks of steps)" if back.moved else ", the last before the blow-up")
    blew = back.diverged_after + max(engine.unkept_steps, 1)  # (a dataset's run went back a chunk first)
    return (
        f"diverged after {steps_text(blew - 1)}: step {blew} made the loss blow up "
        f"at eta={back.blowup_eta:g} (eta was raised from {back.raised_from:g} to {back.raised_to:g} at step "
        f"{back.raised_at}). {advice + ' ' if advice else ''}"
        f"The variables ({names}) and the optimizer's state {'went back' if back.moved else 'stay'} at step "
        f"{back.step}, loss {back.loss:.4g}: {where}; the history ends there, and eta is {back.eta:g} again, "
        f"so Play goes on from there"
        + (" with the batches that come next (a dataset cannot give its batches again)." if engine.one_way else ".")
    )


def _grew(engine, bound):
    """An sgd run that diverged below 2/λ at the start: the curvature where it blew up."""
    from tfmagic.descent.curvature import at_values

    lam = at_values(engine, {n: v.numpy() for n, v in engine.variables.items()})
    there = f"; where it blew up λ ≈ {lam:.4g} (2/λ = {2.0 / lam:.4g})" if lam else ""
    return (f"At the start the largest curvature is λ ≈ {2.0 / bound:.4g} and 2/λ = {bound:.4g} is above this eta, "
            f"but λ changes along the path{there}.")


def _put_back(engine, names, kept="were put back to"):
    """Where a divergence left the variables (a dataset's run goes back a whole chunk: one_way.py)."""
    if engine.unkept_steps <= 1:
        return f"The variables ({names}) {kept} the last finite values."
    return (f"The variables ({names}) were put back to their values after step {engine.steps}: a dataset cannot give "
            f"its batches again, so the {engine.unkept_steps - 1} finite steps before the blow-up were not kept.")


def cannot_steer(kernel=None):
    """The live panel's line when the front end's messages do not reach the running cell:
    `kernel` names a kernel that cannot hand them over (else the front end did not answer)."""
    why = (f"this kernel, {kernel}, handles widget messages only between cells" if kernel else
           "no answer from the front end within a second of the run starting (its widget messages do not "
           "reach the kernel while the cell runs, or it has not shown the panel yet)")
    return (f"Steering is off while this cell runs: {why}. Kernel > Interrupt stops the run now; "
            "when the cell ends, Play, Step, Stop (at the end of a chunk) and eta work, the run going on "
            "in the background. --pace N makes a run slow enough to watch.")


def rewind_refused(code, facts):
    """Why engine.rewind(k) did not go back (descent/rewind.py); nothing changed."""
    k, last = (list(facts) + [None, None])[:2]
    return {
        Refusal.OUT_OF_RANGE: f"cannot rewind to step {k!r}: this run has the steps 0 to {last}",
        Refusal.PAST_DIVERGENCE: f"cannot rewind to step {k}: that step blew up; the last finite point is "
                                 f"step {last}",
        Refusal.WHILE_RUNNING: "cannot rewind while the run is going: pause or stop it first",
        Refusal.ONE_WAY: "cannot rewind a run that reads a tf.data.Dataset: its batches cannot be read again "
                         "(pass arrays to --data to rewind)",
        Refusal.OPTIMIZER_CHANGED: f"cannot rewind to step {k}: the optimizer was switched at step {last}; "
                                   f"rewind to step {last} or later",
        Refusal.NOT_REPEATABLE: f"cannot rewind to step {k}: replaying the steps did not give the recorded "
                                f"loss (the cell has randomness in it); the run stays where it was",
    }[code]


RewindRefused.words = rewind_refused  # (the engine's refusals say themselves in these words)

def start_text(values):
    """'x = 1.5, y = -0.3': a start picked on the loss picture, as the variables hold it."""
    return ", ".join(f"{n} = {float(v):.4g}" for n, v in values.items())


def next_start(values, running, clamped):
    """The status line after a click on the loss picture (start_point.StartPoint.set_start)."""
    where = f"next run starts at {start_text(values)}" + (" (the click, moved onto the drawn range)" if clamped else "")
    if running:
        return f"{where}: this run goes on; Reset, or Play once it ends, starts there."
    return f"{where}: Play or Reset starts there."


def start_refused(err):
    """A start_point.BadStart in words."""
    why = {"unknown": "is not a variable of this run", "not_scalar": "has more than one element",
           "not_finite": f"would be {err.value!r}, not a finite number"}.get(err.why)
    if err.why == "multi_worker":
        return "no new start: a multi-worker run starts where every worker starts (the chief's click would move it alone)."
    return f"no new start: {err.name} {why}."


def picked_start(values):
    """The status line once a run started from a clicked start (Reset, Play or Step took it up)."""
    return f"this run starts at {start_text(values)}, the point clicked."


# -- the earlier runs of a cell (descent/earlier.py): what changed from one run to the next --
EARLIER_WORDS = {"steps": "steps", "tol": "tol", "device": "device", "jit": "jit", "pace": "pace", "seed": "seed",
                 "batch_size": "batch size", "data": "data", "eta_schedule": "eta schedule", "strategy": "strategy"}


def _setting(value):
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def earlier_change(setting, old, new):
    """One change between two runs of a cell: 'eta 0.1 → 0.3', 'adam → sgd', 'x=10.0 → 5.0',
    'w: another start', 'A: other values'."""
    kind, _, name = setting.partition(":")
    a, b = _setting(old), _setting(new)
    if a == b:  # (values that print alike, 0.1 and 0.1000001, True and 1: in full)
        a, b = _in_full(old), _in_full(new)
    if kind in ("start", "value") and (is_digest(old) or is_digest(new)):
        return f"{name}: another start" if kind == "start" else f"{name}: other values"
    if setting == "optimizer":
        return f"{a} → {b}"
    if kind == "start":  # the variable's value at the run's start
        return f"{name}={a} → {b}"
    if kind == "value":  # a number the cell read from the namespace
        return f"{name} {a} → {b}"
    return f"{EARLIER_WORDS.get(setting, setting)} {a} → {b}"


def _in_full(value):
    return repr(value) if isinstance(value, (float, bool, int)) else _setting(value)


def earlier_label(run):
    """What changed in a run of a cell from the run before it (a descent.earlier.EarlierRun)."""
    if run.changes is None:
        s = run.settings
        return f"first run ({s.get('optimizer')}, eta {_setting(s.get('eta'))})"
    if not run.changes:
        return "same settings"
    starts = [c for c in run.changes if c[0].startswith("start:")]
    if len(starts) < 2 or not any(is_digest(v) for c in starts for v in c[1:]):
        return ", ".join(earlier_change(*c) for c in run.changes)
    moved = [c[0][6:] for c in starts]  # (a model's variables: one phrase)
    named = ", ".join(moved[:3]) + (f" and {len(moved) - 3} more" if len(moved) > 3 else "")
    return ", ".join([earlier_change(*c) for c in run.changes if c not in starts] + [f"another start: {named}"])


EARLIER_HEAD = ("run", "what changed", "steps", "final loss", "status")
EARLIER_TITLE = "earlier runs of this cell, newest first"


def landscape_not_needed(count):
    """--landscape on a cell of one or two scalar variables: its own picture shows the loss."""
    what = "curve" if count == 1 else "surface"
    return (f"tfmagic: --landscape is for models of more than two scalars; with {count} scalar "
            f"variable{'s' if count > 1 else ''} the panel's loss {what} shows the loss itself.")


def sharpness_said(record, optimizer, error=None, samples=None):
    """--sharpness: the last λ measured against 2/eta, in one line ('' before any); `error`: why
    measuring stopped; `samples`: (rows, of how many) a --data run's λ is of."""
    if error is not None:
        return (f"sharpness: λ could not be measured (the loss's second derivative failed: {type(error).__name__}); "
                "the run went on without it.")
    if record is None or not len(record["step"]):
        return ""
    step, lam, eta = int(record["step"][-1]), float(record["sharpness"][-1]), float(record["eta"][-1])
    if not math.isfinite(lam):
        return f"sharpness: λ at step {step} is not finite (the loss or its curvature is not)."
    where = ("above it: plain gradient descent is unstable there (past the edge of stability)" if lam * eta > 2
             else "below it: plain gradient descent is stable there")
    own = "" if optimizer == "sgd" else f" ({optimizer} steps differently: 2/eta is plain gradient descent's bound)"
    of = "" if samples is None else " λ is of the loss on {:,} fixed rows of the {:,}.".format(*samples)
    return f"sharpness λ = {lam:.4g} at step {step}; 2/eta = {2 / eta:.4g}: {where}{own}.{of}"
