"""Several runs of one descent: side-by-side comparisons and random restarts.

Each run starts from a reset engine, so they all share the compiled chunk
(eta is a variable; an optimizer switch builds one chunk per optimizer).
"""

from dataclasses import dataclass

import numpy as np

from tfmagic.descent.engine import drain
from tfmagic.descent.optimizers import check_eta, unknown_optimizer
from tfmagic.descent.status import CUT_SHORT, ESCAPED, Status


@dataclass
class RunSummary:
    label: str
    history: dict  # column -> numpy array (a copy)
    status: Status
    steps: int
    final_loss: float | None
    start: dict  # name -> numpy value
    values: dict  # name -> numpy value at the end
    converged_at: int | None  # first step with |grad| < tol


def _snapshot(engine, label, start, tol):
    history = {k: v.copy() for k, v in engine.history.items()}
    below = np.flatnonzero(history["grad_norm"] < tol) if engine.steps else []
    at = int(history["step"][below[0]]) if len(below) else None  # a step, not a row (long runs are strided)
    if engine.status == Status.CONVERGED:
        at = engine.steps
    return RunSummary(
        label=label,
        history=history,
        status=engine.status,
        steps=engine.steps,
        final_loss=engine.final_loss,
        start=start,
        values={n: v.numpy().copy() for n, v in engine.variables.items()},
        converged_at=at,
    )


def _keep_best(engine, runs):
    finished = [r for r in runs.values() if r.final_loss is not None and r.status not in ESCAPED]
    best = min(finished or runs.values(), key=lambda r: np.inf if r.final_loss is None else r.final_loss)
    for name, var in engine.variables.items():
        var.assign(best.values[name])
    return best.label


def parse_compare(spec, optimizers):
    """'eta=0.01,0.1' -> ('eta', [0.01, 0.1]); 'optimizer=sgd,adam' -> ('optimizer', [...])."""
    what, sep, values = spec.partition("=")
    what = what.strip()
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or what not in ("eta", "optimizer") or len(items) < 2:
        raise ValueError(f"--compare takes eta=V1,V2,... or optimizer=NAME1,NAME2,...; got {spec!r}")
    if what == "eta":
        values = [check_eta(v) for v in items]
        # float32 is what the optimizer uses: values equal there give the same run
        same = np.float32
    else:
        unknown = [v for v in items if v not in optimizers]
        if unknown:
            raise unknown_optimizer(unknown[0])
        values, same = items, str
    seen = {}
    for item, value in zip(items, values):
        first = seen.get(same(value))
        if first is not None:
            why = "given twice" if first[1] == value else "given twice (equal in float32, the precision runs use)"
            raise ValueError(f"--compare {what}: {first[0]} and {item} are the same value, {why}")
        seen[same(value)] = (item, value)
    return what, values


def eta_labels(values):
    """'eta=V' labels, with as many significant digits as it takes to tell them apart."""
    for digits in range(6, 18):
        labels = [f"eta={v:.{digits}g}" for v in values]
        if len(set(labels)) == len(labels):
            return labels
    return [f"eta={v!r}" for v in values]


def compare(*args, **kwargs):
    return drain(compare_chunks(*args, **kwargs))


def restarts(*args, **kwargs):
    return drain(restarts_chunks(*args, **kwargs))


def _series_chunks(engine, plans, steps, tol, watch):
    """Run each (label, start, prepare) of `plans` after prepare(), yielding each chunk;
    returns label -> RunSummary. A run ends where |grad| < tol: CONVERGED, as its row says."""
    runs, tol0 = {}, engine.tol
    engine.tol = tol
    try:
        for label, start, prepare in plans:
            prepare()
            watching = watch(label) if watch else None  # (e.g. --print-every's printer; several: a tuple)
            with engine.observers.attached(*(watching if isinstance(watching, tuple) else (watching,))):
                yield from engine.run_chunks(steps)
            runs[label] = _snapshot(engine, label, start, tol)
            if engine.status == Status.INTERRUPTED:
                break
    finally:
        engine.tol = tol0
    return runs


def compare_chunks(engine, what, values, steps, tol=1e-3, watch=None):
    """One run per value of eta or optimizer, all from the same start, yielding each chunk;
    returns the Experiment. `watch(label)`: an observer of that run, or None."""
    eta0, opt0 = engine.eta, engine.optimizer_name
    start = engine.initial_values()

    def prepare(value):
        engine.reset()
        if what == "eta":
            engine.eta = value
        else:
            engine.set_optimizer(value)

    labels = eta_labels(values) if what == "eta" else list(values)
    plans = ((label, start, lambda v=value: prepare(v)) for value, label in zip(values, labels))
    try:
        runs = yield from _series_chunks(engine, plans, steps, tol, watch)
    finally:
        engine.eta = eta0
        engine.set_optimizer(opt0)
    return Experiment("compare", what, runs, _keep_best(engine, runs), engine, tol, steps)


def restarts_chunks(engine, ranges, count, steps, seed=None, tol=1e-3, watch=None):
    """`count` runs from random starts drawn uniformly from `ranges` (name -> (lo, hi)),
    yielding each chunk; returns the Experiment."""
    rng = np.random.default_rng(seed)

    def plans():
        for i in range(count):
            start = {}
            for name, var in engine.variables.items():
                lo, hi = ranges.get(name, (None, None))
                if lo is None:
                    start[name] = engine.initial_values()[name]
                else:
                    start[name] = rng.uniform(lo, hi, size=tuple(var.shape)).astype(np.float32)
            yield f"start {i + 1}", start, lambda s=start: engine.reset(start=s)

    runs = yield from _series_chunks(engine, plans(), steps, tol, watch)
    return Experiment("restarts", "start", runs, _keep_best(engine, runs), engine, tol, steps)


def found_minimum(run):
    # a run still descending has not found a minimum, wherever it stopped
    return run.converged_at is not None and run.status not in ESCAPED | CUT_SHORT


def distinct_minima(runs, rel=1e-2):
    """Groups of runs that converged (|grad| < tol) to the same point."""
    groups = []  # (representative vector, [labels])
    for run in runs.values():
        if not found_minimum(run):
            continue
        vec = np.concatenate([np.ravel(v) for v in run.values.values()]).astype(np.float64)
        for rep, labels in groups:
            if np.linalg.norm(vec - rep) <= rel * (1.0 + np.linalg.norm(rep)):
                labels.append(run.label)
                break
        else:
            groups.append((vec, [run.label]))
    return groups


class Experiment:
    """The runs of --compare or --restarts; the variables hold the best run's values."""

    def __init__(self, kind, what, runs, best, engine, tol=1e-3, steps=None):
        self.kind, self.what, self.runs, self.best, self.engine = kind, what, runs, best, engine
        self.tol, self.steps = tol, steps
        self.minima = distinct_minima(runs)
