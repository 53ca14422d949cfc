"""--sharpness shown: the line 2/eta as eta was steered, and the static chart of λ against it
(svg.py's, kept in a saved notebook where the live panel is gone)."""

import numpy as np

from tfmagic.present.points import decimate
from tfmagic.present.svg import COLORS, chart_svg

LAMBDA, BOUND = COLORS[4], COLORS[3]


def ahead(steps_now):
    """How far past the current step the line 2/eta goes on, at the eta set now."""
    return max(1.0, 0.04 * steps_now)


def bound_points(history, steps_now, eta_now, max_points=2000):
    """The line 2/eta over the steps as (x, y): flat while eta held, a step where it changed,
    then on a little past `steps_now` at `eta_now` (the eta set now, also one dragged while paused)."""
    steps, eta = np.asarray(history["step"], np.float64), np.asarray(history["eta"], np.float64)
    x, y = np.zeros(0), np.zeros(0)
    if len(steps):
        changed = np.flatnonzero(eta[1:] != eta[:-1]) + 1
        starts = np.concatenate([[0], changed])
        x = np.column_stack([steps[starts], np.append(steps[changed], steps_now)]).ravel()
        y = np.repeat(2.0 / eta[starts], 2)
    x = np.append(x, [steps_now, steps_now + ahead(steps_now)])  # (the eta set now: what the next steps face)
    y = np.append(y, [2.0 / eta_now] * 2)
    if len(x) > max_points:
        keep = decimate(len(x), max_points)
        x, y = x[keep], y[keep]
    return x, y


def sharpness_svg(record, history):
    """λ at each measurement (dots on a line) and 2/eta as the run steered it; '' without --sharpness."""
    if record is None or not len(record["step"]):
        return ""
    last = float(record["step"][-1])
    bx, by = bound_points(history, last, float(record["eta"][-1]))
    lines = [("λ (largest Hessian eigenvalue)", record["step"], record["sharpness"], LAMBDA, False),
             ("2/eta", bx, by, BOUND, False)]
    svg = chart_svg("tfmagic-sharpness-svg", "sharpness λ and 2/eta", lines, log=False)
    if not svg:  # (one measurement: a dot)
        lines[0] = (*lines[0][:4], True)
        svg = chart_svg("tfmagic-sharpness-svg", "sharpness λ and 2/eta", lines, log=False)
    return svg
