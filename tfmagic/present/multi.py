"""The rows and lines of several runs (--compare, --restarts): the table, the best run, the
minima, and the eta advice checked against the runs beside it (text.py and html.py show them)."""

import numpy as np

from tfmagic.descent.experiments import found_minimum
from tfmagic.descent.status import CUT_SHORT, ESCAPED, Status
from tfmagic.present.messages import eta_advice


def multi_rows(multi):
    for run in multi.runs.values():
        values = ", ".join(
            f"{n}={float(np.ravel(v)[0]):.4g}" if np.size(v) == 1 else f"‖{n}‖={np.linalg.norm(v):.4g}"
            for n, v in run.values.items()
        )
        yield (
            run.label,
            run.status,
            "–" if run.final_loss is None else f"{run.final_loss:.4g}",
            "–" if run.converged_at is None else str(run.converged_at),
            str(run.steps),
            values,
        )


MULTI_HEAD = ("run", "status", "final loss", "steps to |grad|<tol", "steps", "final values")


def multi_summary(multi):
    """The lines under a --compare/--restarts table: the best run, the minima, eta advice."""
    lines = [f"best: {multi.best} (its values are now in the variables)"]
    if multi.kind == "restarts":
        lines += _minima_lines(multi)
    # (shown by the display hook, where no interrupt reaches λ's seconds of C++ on a deep model)
    interrupted = any(r.status == Status.INTERRUPTED for r in multi.runs.values())
    advice = eta_advice(multi.engine, multi.runs, only_if_cheap=True) if multi.what == "eta" and not interrupted else ""
    if advice:
        lines.append(advice)
    return lines


def _minima_lines(multi):
    n, tol = len(multi.runs), f"{multi.tol:g}"
    found = sum(found_minimum(r) for r in multi.runs.values())
    count = lambda *statuses: sum(r.status in statuses for r in multi.runs.values())
    diverged, cut = count(*ESCAPED), count(*CUT_SHORT)
    short = n - found - diverged - cut  # ran all their steps (or were stopped) still descending
    runs = lambda k: f"{k} run{'s' if k > 1 else ''}"
    others = [
        line for k, line in (
            (short, f"{runs(short)} did not reach |grad| < {tol} in {multi.steps} steps: give more --steps or a larger --eta."),
            (diverged, f"{runs(diverged)} diverged: try a smaller --eta."),
            (cut, f"{runs(cut)} interrupted."),
        ) if k
    ]
    if not found:
        return [f"no minimum found: none of the {n} runs reached |grad| < {tol}, so the best run is not a minimum yet:"] + others
    k = len(multi.minima)
    head = f"{k} distinct minim{'um' if k == 1 else 'a'} found by {found} of {n} runs (|grad| < {tol})"
    return [head + ("; not counted:" if others else "")] + others
