"""Live bqplot charts of a gradient descent: the loss, the variables (or their
norms), and the picture of the loss around the path (picture.py).

No TensorFlow here: the picture's probe is a callable handed in by the caller.
Budget (FACTS.md "bqplot"): every push resends whole arrays, so marks get at
most `max_points` float32 points and each mark's changes go in one message
(`mark.hold_sync()`).
"""

from __future__ import annotations

import math

import bqplot as bq
import ipywidgets as W
import numpy as np

from tfmagic.present.points import decimate, path_points, trailing_means

from .figures import COLORS, axes, empty, figure, legend, log_ticks, nice_ticks, to_wire, y_axis
from .picture import Picture

__all__ = ["HistoryCharts", "decimate", "to_wire", "COLORS"]

LOG_DECADES = 2  # default to a log loss axis when the loss spans more than this
SMOOTHED = "#3366cc"  # the smoothed loss of a --data run: 3:1 or more against both themes' backgrounds


def _short_names(names):
    """name -> label without the path all names share ('model.sequential/dense_1/kernel' ->
    'dense_1/kernel'), keeping two parts at least."""
    parts = [n.split("/") for n in names]
    drop = 0
    while len(names) > 1 and all(len(p) > drop + 2 for p in parts) and len({p[drop] for p in parts}) == 1:
        drop += 1
    return {n: "/".join(p[drop:]) for n, p in zip(names, parts)}


class HistoryCharts:
    """Charts of a descent's history; call `update(history, current)` to redraw.

    `variables` maps each variable's name to its shape (`()` for a scalar).
    `curve(xs) -> losses` (one scalar variable) and `surface(xs, ys) -> losses`
    of shape (len(ys), len(xs)) (two scalar variables) add a picture of the
    loss with the path on it. A callable with a `per_point` cost (seconds) is
    sampled as finely as the run's time allows (see picture.Resolution).
    """

    behind = None  # earlier runs drawn behind the loss (widgets/earlier.py): .marks {log: mark}, .last_step, .losses

    def __init__(self, variables, curve=None, surface=None, max_points=2000, epochs=False, validation=True, extra=()):
        self.variables = {k: tuple(v) for k, v in variables.items()}
        self.epochs = epochs  # a --data run: the loss chart adds a smoothed line and each epoch's losses
        self.validation = validation  # (with epochs: is there a validation loss to show)
        self.max_points = max_points
        # A one-element variable is recorded by its value, like a scalar.
        self._scalars = [k for k, s in self.variables.items() if math.prod(s) == 1]
        all_scalar = len(self._scalars) == len(self.variables)
        sampler = {1: curve, 2: surface}.get(len(self._scalars)) if all_scalar else None
        self.picture = Picture(self._scalars, sampler, max_points) if sampler is not None else None

        self._log_user = False  # True once the user has clicked the toggle
        self._setting_log = False
        self._iter_scale = bq.LinearScale(min=0.0, max=1.0)  # shared by the iteration axes
        self._iter_axes = []
        self._build_loss()
        self._build_vars(all_scalar)
        figures = [self.loss_box] + ([self.picture.box] if self.picture else []) + list(extra) + [self.vars_box]
        # Two ~440 px columns in a ~900 px notebook; one column when narrower.
        grid = W.GridBox(figures, layout=W.Layout(
            width="100%", grid_template_columns="repeat(auto-fit, minmax(360px, 1fr))",
            grid_gap="4px 8px",
        ))
        self.widget = W.VBox([self.log_toggle, grid], layout=W.Layout(width="100%", max_width="1000px"))
        self.widget.add_class("tfmagic-charts")
        self.reset()

    # -- building ------------------------------------------------------------
    def _build_loss(self):
        # A line and a y axis per scale, all in the figure; the toggle shows one
        # pair. (Re-pointing a drawn mark and axis at another scale, or
        # swapping marks/axes right after display, left stale axes in the
        # browser, bqplot 0.13.1.)
        self._loss_xaxis = bq.Axis(scale=self._iter_scale, label="iteration", side="bottom")
        self._loss_lines, self._loss_yaxes = {}, {}
        for log in (False, True):
            sy = bq.LogScale() if log else bq.LinearScale()
            self._loss_lines[log] = bq.Lines(
                x=empty(), y=empty(), scales={"x": self._iter_scale, "y": sy},
                colors=[COLORS[0]], stroke_width=1.5, visible=not log)
            self._loss_yaxes[log] = y_axis(sy, "loss", visible=not log,
                                            **({"tick_format": ".0e"} if log else {}))
        self._iter_axes.append(self._loss_xaxis)
        self._epoch_marks = {log: self._build_epoch_marks(self._loss_lines[log]) for log in (False, True)} \
            if self.epochs else {}
        marks = list(self._loss_lines.values()) + [m for ms in self._epoch_marks.values() for m in ms]
        self.loss_fig = figure("Loss", "tfmagic-loss-chart", marks, [self._loss_xaxis, *self._loss_yaxes.values()])
        parts = [self.loss_fig]
        if self.epochs:
            keys = [("loss of each step (its mini-batch)", "rgba(31,119,180,0.35)"), ("smoothed", SMOOTHED),
                    ("epoch mean", COLORS[1])] + [("validation", COLORS[3])] * bool(self.validation)
            parts.append(legend([k for k, _ in keys], [c for _, c in keys]))
        self.loss_box = W.VBox(parts, layout=W.Layout(min_width="0"))
        self.log_toggle = W.ToggleButton(
            value=False, description="log scale", icon="line-chart",
            tooltip="Loss axis on a log scale", layout=W.Layout(width="auto", align_self="flex-start"),
        )
        self.log_toggle.add_class("tfmagic-logscale")
        self.log_toggle.observe(self._on_log_toggle, "value")

    @staticmethod
    def _build_epoch_marks(step_line):
        """(smoothed loss, epoch means, validation losses) on the step line's scales."""
        step_line.opacities = [0.35]
        smooth = bq.Lines(x=empty(), y=empty(), scales=step_line.scales, colors=[SMOOTHED], stroke_width=2,
                          visible=step_line.visible)
        train, val = (bq.Lines(x=empty(), y=empty(), scales=step_line.scales, colors=[c], marker="circle",
                               marker_size=28, stroke_width=2, visible=step_line.visible) for c in (COLORS[1], COLORS[3]))
        return smooth, train, val

    def _push_epochs(self, history, epochs):
        """The smoothed loss of the steps and `epochs` = (end steps, mean training losses, validation losses)."""
        loss, n = history["loss"], len(history["loss"])
        drawn = decimate(n, self.max_points)  # (the points the steps' line has, as path_points picks them)
        steps = np.asarray(history["step"])[drawn] if "step" in history else drawn
        w = max(1, min(n, max(5, n // 20)))  # a moving average over 5 % of the run (5 steps at least)
        rows = {"step": steps, "loss": trailing_means(loss, drawn, w)}
        ends, train, val = epochs
        if len(ends) > self.max_points:  # (as the steps' line: a long run's thousands of epochs cost each push)
            ends, train, val = (np.asarray(a)[decimate(len(a), self.max_points)] for a in (ends, train, val))
        for log, (sm, tr, va) in self._epoch_marks.items():
            visible = log == self.log_toggle.value
            for mark, x, y in ((sm, rows["step"], rows["loss"]), (tr, ends, train), (va, ends, val)):
                x, y = np.asarray(x, np.float64), to_wire(y)
                if mark is not sm:  # (a marker at a NaN height is an SVG error in the page: no validation, inf)
                    x, y = x[np.isfinite(y)], y[np.isfinite(y)]
                with mark.hold_sync():
                    mark.visible = visible
                    mark.x, mark.y = x, y

    loss_lines = property(lambda self: self._loss_lines)  # log scale? -> the loss line drawn on it
    loss_scales = property(lambda self: {log: line.scales for log, line in self._loss_lines.items()})

    @property
    def loss_line(self):
        """The loss line on screen (on a linear or log y scale)."""
        return self._loss_lines[self.log_toggle.value]

    def _build_vars(self, all_scalar):
        if all_scalar:
            self._var_series = [(k, k) for k in self.variables]
            title = "Variables" if len(self.variables) > 1 else f"Value of {next(iter(self.variables))}"
            ylabel = "value"
        else:
            # Non-scalars are drawn by their norm, scalars (if any) by value.
            short = _short_names(list(self.variables))
            self._var_series = [(k, short[k] if k in self._scalars else f"‖{short[k]}‖") for k in self.variables]
            self._var_series.append(("grad_norm", "‖gradient‖"))
            title = "Variable and gradient norms"
            ylabel = "value / norm" if self._scalars else "norm"
        sy = bq.LinearScale()
        k = len(self._var_series)
        self.vars_line = bq.Lines(
            x=empty(), y=np.zeros((k, 0), np.float32), scales={"x": self._iter_scale, "y": sy},
            labels=[label for _, label in self._var_series],
            colors=[COLORS[(i + 1) % len(COLORS)] for i in range(k)],
            stroke_width=1.5,
        )
        ax = axes(self._iter_scale, sy, "iteration", ylabel)
        self._iter_axes.append(ax[0])
        self.vars_fig = figure(title, "tfmagic-vars-chart", [self.vars_line], ax)
        # The legend under the chart: over the plot it hid the lines and long names were clipped.
        labels = [label for _, label in self._var_series]
        self.vars_legend = legend(labels, self.vars_line.colors) if k > 1 else None
        self.vars_box = W.VBox([self.vars_fig] + ([self.vars_legend] if k > 1 else []),
                               layout=W.Layout(min_width="0"))

    # -- public ----------------------------------------------------------------
    def reset(self):
        """Clear the lines; the next update redraws the curve/surface around its start."""
        if self.picture:
            self.picture.reset()
        self._last_loss = None  # (steps, loss) last pushed, to redraw on a toggle
        self._n = None
        self._clip_floor = None
        self._log_tick_values = None
        self._set_loss_title()
        self._set_iterations(0)
        for mark in self._loss_lines.values():
            with mark.hold_sync():
                mark.x, mark.y = empty(), empty()
        with self.vars_line.hold_sync():
            self.vars_line.x = empty()
            self.vars_line.y = np.zeros((len(self._var_series), 0), np.float32)

    def update(self, history, end=None, epochs=None):
        """Redraw from `history` (per-step arrays: 'loss', 'eta', 'grad_norm' and one
        per variable, 'step'), `end` (the point after the last row, as the engine's `now`
        gives it: every chart ends there; before a run, the variables' values only, which
        place the picture) and, for charts made with epochs=True, `epochs` = (the step
        each epoch ended at, its mean training loss, its validation loss)."""
        points = path_points(history, end, self.max_points)
        steps = points["step"]
        if not len(steps) or steps[-1] < 2 ** 24:  # float32 is exact up to 2^24: half the bytes to send
            steps = steps.astype(np.float32)
        loss = to_wire(points["loss"])

        self._set_iterations(int(steps[-1]) + 1 if len(steps) else 0)
        if not self._log_user and len(steps):
            self._auto_log(loss)
        self._push_loss(steps, loss)
        if self.epochs and epochs is not None:
            self._push_epochs(history, epochs)
        ys = np.stack([to_wire(points[key]) for key, _ in self._var_series])
        x = steps
        if len(ys) > 1 and ys.shape[1] == 1:  # (bqplot squeezes (k, 1) into one line of k points)
            x, ys = np.repeat(steps, 2), np.repeat(ys, 2, axis=1)
        with self.vars_line.hold_sync():
            self.vars_line.x = x
            self.vars_line.y = ys[0] if len(ys) == 1 else ys

        if self.picture:
            self.picture.update(history, end)

    def _set_iterations(self, n):
        n = max(n, self.behind.last_step + 1 if self.behind else 0)
        if n != self._n:
            self._n = n
            with self._iter_scale.hold_sync():
                self._iter_scale.min, self._iter_scale.max = 0.0, float(max(n - 1, 1))
            ticks = nice_ticks(0, max(n - 1, 1), integer=True)
            for axis in self._iter_axes:
                axis.tick_values = ticks

    # -- loss ------------------------------------------------------------------
    def _auto_log(self, loss):
        v = loss[np.isfinite(loss)]
        if self.behind:
            v = np.concatenate([v, self.behind.losses])
        use_log = bool(v.size and v.min() > 0 and v.max() / v.min() > 10 ** LOG_DECADES)
        if use_log != self.log_toggle.value:
            self._setting_log = True
            try:
                self.log_toggle.value = use_log
            finally:
                self._setting_log = False

    def _on_log_toggle(self, change):
        if not self._setting_log:
            self._log_user = True
        for log in (False, True):
            self._loss_lines[log].visible = self._loss_yaxes[log].visible = log == change["new"]
            for mark in (*self._epoch_marks.get(log, ()), *([self.behind.marks[log]] if self.behind else ())):
                mark.visible = log == change["new"]
        self._set_loss_title()
        if self._last_loss is not None:
            self._push_loss(*self._last_loss)

    def _push_loss(self, steps, loss):
        self._last_loss = (steps, loss)
        y, floor = loss, None
        if self.log_toggle.value:
            # A log axis cannot show values <= 0: draw them at a floor below the data.
            bad = loss <= 0
            if bad.any():
                pos = loss[loss > 0]
                floor = float(pos.min() / 10) if pos.size else 1e-12
                y = np.where(bad, np.float32(floor), loss)
        line = self.loss_line
        with line.hold_sync():
            line.x, line.y = steps, y
        if self.log_toggle.value:
            ticks = log_ticks(y)
            if not np.array_equal(ticks, self._log_tick_values):
                self._log_tick_values = ticks
                self._loss_yaxes[True].tick_values = ticks
        if floor != self._clip_floor:
            self._clip_floor = floor
            self._set_loss_title()

    def _set_loss_title(self):
        if not self.log_toggle.value:
            self.loss_fig.title = "Loss"
        elif self._clip_floor is None:
            self.loss_fig.title = "Loss (log scale)"
        else:
            self.loss_fig.title = f"Loss (log scale; values ≤ 0 drawn at {self._clip_floor:.2g})"

