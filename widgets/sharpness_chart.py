"""The live chart of --sharpness: λ, the largest eigenvalue of the loss's Hessian, every K
steps, against the line 2/eta (plain gradient descent is unstable above it). The line follows
eta as it is steered: a step in it where eta changed, and its end at the eta set now."""

from __future__ import annotations

import bqplot as bq
import ipywidgets as W
import numpy as np

from tfmagic.present.sharpness import BOUND, LAMBDA, ahead, bound_points

from .figures import axes, empty, figure, legend, nice_ticks, to_wire

SPAN = 4.0  # the y axis shows 2/eta up to SPAN times the largest λ (a tiny eta's line would flatten λ)


class SharpnessChart:
    """The λ chart of a panel; `update(record, history, steps_now, eta_now)` redraws it."""

    def __init__(self, every):
        self.x_scale, self.y_scale = bq.LinearScale(min=0.0, max=1.0), bq.LinearScale()
        scales = {"x": self.x_scale, "y": self.y_scale}
        self.bound_line = bq.Lines(x=empty(), y=empty(), scales=scales, colors=[BOUND], line_style="dashed",
                                   stroke_width=2)
        self.sharpness_line = bq.Lines(x=empty(), y=empty(), scales=scales, colors=[LAMBDA], marker="circle",
                                       marker_size=16, stroke_width=1.5)
        self.axes = axes(self.x_scale, self.y_scale, "iteration", "λ")
        self.every = every
        self.figure = figure(f"Sharpness λ every {every} steps, and 2/eta", "tfmagic-sharpness-chart",
                             [self.bound_line, self.sharpness_line], self.axes)
        self.legend = legend(["λ: the loss's largest curvature", "2/eta: plain gradient descent unstable above"],
                             [LAMBDA, BOUND], ["solid", "dashed"], ["circle", None])
        self.widget = W.VBox([self.figure, self.legend], layout=W.Layout(width="100%", max_width="460px"))
        self.widget.add_class("tfmagic-sharpness")

    def update(self, record, history, steps_now, eta_now):
        lam_x, lam_y = record["step"].astype(np.float64), record["sharpness"]
        finite = np.isfinite(lam_y)
        lam_x, lam_y = lam_x[finite], lam_y[finite]
        bx, by = bound_points(history, float(steps_now), float(eta_now))
        last = float(steps_now) + ahead(float(steps_now))
        with self.x_scale.hold_sync():
            self.x_scale.min, self.x_scale.max = 0.0, last
        self.axes[0].tick_values = nice_ticks(0, float(steps_now) or 1.0, integer=True)
        top = max([*lam_y, 0.0])
        shown = by[by <= SPAN * top] if top > 0 else by
        hi = max(top, shown.max() if len(shown) else top) * 1.1 or 1.0
        lo = min(0.0, lam_y.min() * 1.1 if len(lam_y) else 0.0)
        with self.y_scale.hold_sync():
            self.y_scale.min, self.y_scale.max = float(lo), float(hi)
        said = f"λ = {lam_y[-1]:.3g}, " if len(lam_y) else ""  # (the numbers, also where the line is off the axis)
        self.figure.title = f"Sharpness every {self.every} steps: {said}2/eta = {2 / eta_now:.3g}"
        with self.bound_line.hold_sync():
            self.bound_line.x, self.bound_line.y = to_wire(bx), to_wire(by)  # (above the axis: clipped by the figure)
        with self.sharpness_line.hold_sync():
            self.sharpness_line.x, self.sharpness_line.y = to_wire(lam_x), to_wire(lam_y)
