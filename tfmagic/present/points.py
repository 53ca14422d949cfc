"""The points every picture of a run draws: its history rows, then the point it is at.

A history row is the point *before* its step, so the point after the last step (where
the variables are: a finished run's final loss and values, a running one's latest point)
is in no row. Every chart (the live panel's, --compare's, the result's static one) draws
`path_points`, so the last point drawn is the last one reported.
"""

import math

import numpy as np


def decimate(n, max_points=2000):
    """Indices of at most `max_points` evenly spread steps of a length-n history,
    always including the first and the last."""
    if n <= max_points:
        return np.arange(n)
    # The step exceeds 1, so rounding keeps the indices strictly increasing.
    return np.linspace(0, n - 1, max_points).round().astype(np.int64)


def final_point(steps, loss, values, grad_norm=None):
    """The point a finished run ended at, as a history row: 'step', 'loss' (NaN when it was
    not finite), 'grad_norm' and each variable (its value, or its norm when it has more
    than one element, as the history records it)."""
    row = {"step": steps, "loss": math.nan if loss is None else float(loss),
           "grad_norm": math.nan if grad_norm is None else float(grad_norm)}
    for name, value in values.items():
        arr = np.asarray(value, np.float64)
        row[name] = float(arr.reshape(())) if arr.size == 1 else float(np.linalg.norm(arr))
    return row


def is_point(end):
    """`end` is a point of the run (it has its step and loss), not only the variables' values."""
    return end is not None and "step" in end and "loss" in end


def path_points(history, end=None, max_points=None):
    """column -> array: the history's rows (at most `max_points` - 1 of them, spread evenly,
    the first and last kept), then `end`, the point after the last row (a row as
    `final_point` or the engine's `now` gives it), when it is one. 'step' says which
    step each point is."""
    n = len(history["loss"])
    room = None if max_points is None else max(max_points - (1 if is_point(end) else 0), 2)
    if room is None or n <= room:
        pick = np.asarray
    else:
        kept = decimate(n, room)
        pick = lambda v: np.asarray(v)[kept]  # noqa: E731
    steps = history.get("step")
    cols = {c: pick(v) for c, v in history.items() if c != "step"}
    cols["step"] = pick(np.arange(n) if steps is None else steps).astype(np.float64)
    if is_point(end):
        cols = {c: np.append(v, end.get(c, math.nan)) for c, v in cols.items()}
    return cols


def trailing_means(values, rows, w):
    """At each of `rows` (increasing indices into `values`), the mean of the `w` values up to and
    including it (of what there is before the w-th), NaN counted as 0 and inf as the largest
    float. Only the sums between the windows' ends are taken: ~2 ms over 700 000 values, where
    a cumulative sum of every value took ~12 ms."""
    values = np.asarray(values)
    if not len(rows):
        return np.zeros(0)
    if not np.isfinite(values).all():
        values = np.nan_to_num(values.astype(np.float64))
    lo, hi = np.maximum(rows + 1 - w, 0), rows + 1
    cuts = np.unique(np.concatenate([[0], lo, hi]))  # (the last is len(values): the last row's end)
    sums = np.concatenate([[0.0], np.cumsum(np.add.reduceat(values, cuts[:-1], dtype=np.float64))])
    return (sums[np.searchsorted(cuts, hi)] - sums[np.searchsorted(cuts, lo)]) / (hi - lo)
