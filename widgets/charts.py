"""Live bqplot charts of a gradient descent: loss, variables, and the loss
curve (one scalar variable) or surface (two scalar variables) with the path.

No TensorFlow here: the curve/surface are callables handed in by the caller.
Budget (FACTS.md "bqplot"): every push resends whole arrays, so marks get at
most `max_points` float32 points, each mark's changes go in one message
(`mark.hold_sync()`), and the expensive callables run only when the path
leaves the drawn range.
"""

from __future__ import annotations

import math
import time

import bqplot as bq
import ipywidgets as W
import numpy as np

CURVE_POINTS = 241  # samples of the 1-D loss curve, at most
GRID = 60  # the 2-D loss surface is at most GRID x GRID
TRAIL_POINTS = 200
GROW_LIMIT = 8  # the curve/surface window grows to at most this many times its first span
MARGIN = 0.2  # when the path leaves the drawn range, extend by this fraction of the new span
FIG_HEIGHT = "300px"
FIG_MARGIN = dict(top=40, bottom=42, left=62, right=36)  # room for the last x tick label
PROBE_SHARE = 0.1  # the loss picture may take this share of the run's wall time
FIRST_DRAW_SECONDS = 0.05  # before the first step, and a graph call cannot be interrupted
LOG_DECADES = 2  # default to a log loss axis when the loss spans more than this
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def decimate(n, max_points=2000):
    """Indices of at most `max_points` evenly spread steps of a length-n history,
    always including the first and the last."""
    if n <= max_points:
        return np.arange(n)
    # The step exceeds 1, so rounding keeps the indices strictly increasing.
    return np.linspace(0, n - 1, max_points).round().astype(np.int64)


def to_wire(a):
    """float32 for the wire; ±inf becomes NaN, which bqplot leaves out of the
    line and out of the axis range instead of stretching the axis to infinity."""
    a = np.asarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        a = np.where(np.isinf(a), np.float32(np.nan), a)
    return a


def _empty():
    return np.zeros(0, np.float32)


def _initial_range(x0):
    half = max(1.2 * abs(x0), 2.0)
    return x0 - half, x0 + half


def _grown_range(lo, hi, values, limit):
    """(lo, hi) if the finite `values` inside `limit` lie inside it, else the
    union of both widened by MARGIN; None when nothing changed. A path that
    escapes (a divergence) leaves the window instead of stretching it away."""
    v = values[np.isfinite(values) & (values >= limit[0]) & (values <= limit[1])]
    if v.size == 0:
        return None
    vmin, vmax = float(v.min()), float(v.max())
    if lo <= vmin and vmax <= hi:
        return None
    lo, hi = min(lo, vmin), max(hi, vmax)
    pad = MARGIN * (hi - lo)
    return lo - pad, hi + pad


def _limit(lo, hi):
    """How far the window starting at (lo, hi) may grow: GROW_LIMIT times its span."""
    mid, half = (lo + hi) / 2, GROW_LIMIT * (hi - lo) / 2
    return mid - half, mid + half


def _left_at(values, lo, hi):
    """The first index where `values` are outside [lo, hi] or not finite, else None."""
    out = ~(np.isfinite(values) & (values >= lo) & (values <= hi))
    return int(np.argmax(out)) if out.any() else None


def _on_window(v, lo, hi):
    """v moved onto [lo, hi] (NaN to hi: the path escaped)."""
    return float(np.clip(np.nan_to_num(v, nan=hi, posinf=hi, neginf=lo), lo, hi))


def _nice_ticks(lo, hi, count=5):
    """At most about `count` round tick values in [lo, hi]: a horizontal axis of
    ~360 px has room for about five labels, more than d3's default of ten."""
    span = hi - lo
    if not span > 0:
        return np.array([lo], np.float64)
    base = 10 ** math.floor(math.log10(span / count))
    step = next(m * base for m in (1, 2, 5, 10) if span / (m * base) <= count)
    return np.arange(math.ceil(lo / step), math.floor(hi / step) + 1) * step


def _log_ticks(y):
    """Whole decades inside the positive range of y, at most about six; empty
    (bqplot's own ticks) under two. bqplot's own log ticks crowd the axis
    with 2s and 5s when the data spans 2 to 7 decades."""
    v = y[np.isfinite(y) & (y > 0)]
    if not v.size:
        return np.zeros(0)
    lo, hi = math.ceil(math.log10(v.min())), math.floor(math.log10(v.max()))
    step = max(1, math.ceil((hi - lo) / 6))
    ticks = 10.0 ** np.arange(lo, hi + 1, step)
    return ticks if len(ticks) >= 2 else np.zeros(0)


def affordable(sampler, seconds, most, dims, least):
    """Points per axis a drawing can have within `seconds` (at most `most`; 0 when
    even `least` is too costly), for a sampler with a measured `per_point` cost."""
    per_point = getattr(sampler, "per_point", 0.0)
    n = most if per_point <= 0 else min(most, int((max(seconds, 0) / per_point) ** (1 / dims)))
    return n if n >= least else 0


class _Resolution:
    """How finely to sample the loss picture: first what FIRST_DRAW_SECONDS allow
    (nothing when even a coarse picture costs more), then finer as the run goes
    on, so that all drawing takes at most PROBE_SHARE of the charts' lifetime."""

    def __init__(self, sampler, most, dims, least):
        self.sampler, self.most, self.dims, self.least = sampler, most, dims, least
        self.n = affordable(sampler, FIRST_DRAW_SECONDS, most, dims, least)
        self.spent, self.t0 = 0.0, time.perf_counter()

    def __call__(self, *args):
        t0 = time.perf_counter()
        try:
            return self.sampler(*args)
        finally:
            self.spent += time.perf_counter() - t0

    def finer(self):
        """True (and a larger n) when a finer drawing fits the budget now."""
        if self.n >= self.most:
            return False
        allowed = PROBE_SHARE * (time.perf_counter() - self.t0) - self.spent
        n = affordable(self.sampler, allowed, self.most, self.dims, self.least)
        if n < min(self.most, 1.5 * self.n):
            return False
        self.n = n
        return True


def _figure(title, css_class, marks, axes, **kwargs):
    fig = bq.Figure(
        title=title, marks=marks, axes=axes, animation_duration=0,
        fig_margin=dict(FIG_MARGIN),
        layout=W.Layout(width="100%", height=FIG_HEIGHT, min_width="0", margin="0"),
        title_style={"font-size": "14px"}, **{"padding_y": 0.05, **kwargs},
    )
    fig.add_class(css_class)
    return fig


def _y_axis(scale, label, **kwargs):
    return bq.Axis(scale=scale, label=label, side="left", label_offset="46px", **kwargs)


def _axes(sx, sy, xlabel, ylabel):
    return [bq.Axis(scale=sx, label=xlabel, side="bottom"), _y_axis(sy, ylabel)]


def _set_x_range(scale, axis, lo, hi):
    """Pin a horizontal axis to [lo, hi] with round ticks."""
    with scale.hold_sync():
        scale.min, scale.max = float(lo), float(hi)
    axis.tick_values = _nice_ticks(lo, hi)


class HistoryCharts:
    """Charts of a descent's history; call `update(history, current)` to redraw.

    `variables` maps each variable's name to its shape (`()` for a scalar).
    `curve(xs) -> losses` (one scalar variable) and `surface(xs, ys) -> losses`
    of shape (len(ys), len(xs)) (two scalar variables) add a picture of the
    loss with the path on it. A callable with a `per_point` cost (seconds) is
    sampled as finely as the run's time allows (see _Resolution).
    """

    def __init__(self, variables, curve=None, surface=None, max_points=2000):
        self.variables = {k: tuple(v) for k, v in variables.items()}
        self.max_points = max_points
        # A one-element variable is recorded by its value, like a scalar.
        self._scalars = [k for k, s in self.variables.items() if math.prod(s) == 1]
        all_scalar = len(self._scalars) == len(self.variables)
        self._curve_fn = curve if all_scalar and len(self._scalars) == 1 else None
        self._surface_fn = surface if all_scalar and len(self._scalars) == 2 else None
        if self._curve_fn is not None:
            self._curve_fn = _Resolution(self._curve_fn, CURVE_POINTS, 1, least=21)
        if self._surface_fn is not None:
            self._surface_fn = _Resolution(self._surface_fn, GRID, 2, least=8)

        self._log_user = False  # True once the user has clicked the toggle
        self._setting_log = False
        self._iter_scale = bq.LinearScale(min=0.0, max=1.0)  # shared by the iteration axes
        self._iter_axes = []
        self._build_loss()
        self._build_vars(all_scalar)
        figures = [self.loss_fig]
        if self._curve_fn is not None:
            self._build_curve()
            figures.append(self.curve_fig)
        elif self._surface_fn is not None:
            self._build_surface()
            figures.append(self.surface_fig)
        figures.append(self.vars_fig)
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
                x=_empty(), y=_empty(), scales={"x": self._iter_scale, "y": sy},
                colors=[COLORS[0]], stroke_width=1.5, visible=not log)
            self._loss_yaxes[log] = _y_axis(sy, "loss", visible=not log,
                                            **({"tick_format": ".0e"} if log else {}))
        self._iter_axes.append(self._loss_xaxis)
        self.loss_fig = _figure("Loss", "tfmagic-loss-chart", list(self._loss_lines.values()),
                                [self._loss_xaxis, *self._loss_yaxes.values()])
        self.log_toggle = W.ToggleButton(
            value=False, description="log scale", icon="line-chart",
            tooltip="Loss axis on a log scale", layout=W.Layout(width="auto", align_self="flex-start"),
        )
        self.log_toggle.add_class("tfmagic-logscale")
        self.log_toggle.observe(self._on_log_toggle, "value")

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
            self._var_series = [(k, k if k in self._scalars else f"‖{k}‖") for k in self.variables]
            self._var_series.append(("grad_norm", "‖gradient‖"))
            title = "Variable and gradient norms"
            ylabel = "value / norm" if self._scalars else "norm"
        sy = bq.LinearScale()
        k = len(self._var_series)
        self.vars_line = bq.Lines(
            x=_empty(), y=np.zeros((k, 0), np.float32), scales={"x": self._iter_scale, "y": sy},
            labels=[label for _, label in self._var_series],
            colors=[COLORS[(i + 1) % len(COLORS)] for i in range(k)],
            display_legend=k > 1, stroke_width=1.5,  # one line: the axis label says what it is
        )
        axes = _axes(self._iter_scale, sy, "iteration", ylabel)
        self._iter_axes.append(axes[0])
        self.vars_fig = _figure(title, "tfmagic-vars-chart", [self.vars_line], axes,
                                legend_location="top-right")

    def _build_curve(self):
        name = self._scalars[0]
        self._px = bq.LinearScale()
        scales = {"x": self._px, "y": bq.LinearScale()}
        self.curve_line = bq.Lines(x=_empty(), y=_empty(), scales=scales,
                                   colors=["#888888"], stroke_width=2)
        self.trail = bq.Lines(x=_empty(), y=_empty(), scales=scales, colors=[COLORS[1]],
                              marker="circle", marker_size=12, stroke_width=1)
        self.point = bq.Scatter(x=_empty(), y=_empty(), scales=scales, colors=["#d62728"],
                                stroke="black", default_size=90)
        axes = _axes(self._px, scales["y"], name, "loss")
        self._px_axis = axes[0]
        self._picture_title = f"Loss as a function of {name}"
        self.curve_fig = _figure(self._picture_title, "tfmagic-curve-chart",
                                 [self.curve_line, self.trail, self.point], axes)

    def _build_surface(self):
        a, b = self._scalars
        self._px, self._py = bq.LinearScale(), bq.LinearScale()
        self.heatmap = bq.HeatMap(
            x=np.arange(2, dtype=np.float32), y=np.arange(2, dtype=np.float32),
            color=np.zeros((2, 2), np.float32),
            scales={"x": self._px, "y": self._py, "color": bq.ColorScale(scheme="viridis")},
        )
        scales = {"x": self._px, "y": self._py}
        self.path = bq.Lines(x=_empty(), y=_empty(), scales=scales, colors=["white"], stroke_width=2)
        self.point = bq.Scatter(x=_empty(), y=_empty(), scales=scales, colors=["#d62728"],
                                stroke="white", default_size=90)
        axes = _axes(self._px, self._py, a, b)
        self._px_axis = axes[0]
        self._picture_title = f"Loss over ({a}, {b}), colour: log scale"
        self.surface_fig = _figure(
            self._picture_title, "tfmagic-surface-chart",
            [self.heatmap, self.path, self.point], axes, padding_y=0.0,
        )

    # -- public ----------------------------------------------------------------
    def reset(self):
        """Clear the lines; the next update redraws the curve/surface around its start."""
        self._range = None  # (lo, hi) of the curve, or (xlo, xhi, ylo, yhi) of the surface
        if self._curve_fn is not None or self._surface_fn is not None:
            (self.curve_fig if self._curve_fn is not None else self.surface_fig).title = self._picture_title
        self._last_loss = None  # (steps, loss) last pushed, to redraw on a toggle
        self._n = None
        self._clip_floor = None
        self._log_tick_values = None
        self._set_loss_title()
        self._set_iterations(0)
        marks = [*self._loss_lines.values()]
        if self._curve_fn is not None:
            marks += [self.curve_line, self.trail, self.point]
        elif self._surface_fn is not None:
            marks += [self.path, self.point]
        for mark in marks:
            with mark.hold_sync():
                mark.x, mark.y = _empty(), _empty()
        with self.vars_line.hold_sync():
            self.vars_line.x = _empty()
            self.vars_line.y = np.zeros((len(self._var_series), 0), np.float32)

    def update(self, history, current=None):
        """Redraw from `history` (per-step arrays: 'loss', 'eta', 'grad_norm' and one
        per variable) and `current` (the present value of each scalar variable)."""
        n = len(history["loss"])
        idx = decimate(n, self.max_points)
        # The iteration of each row: a long or XLA-blocked run keeps every k-th step only.
        rows_steps = history.get("step")
        steps = (idx if rows_steps is None else np.asarray(rows_steps)[idx]).astype(np.float32)
        loss = to_wire(np.asarray(history["loss"])[idx])

        self._set_iterations(int(steps[-1]) + 1 if n else 0)
        if not self._log_user and n:
            self._auto_log(loss)
        self._push_loss(steps, loss)
        with self.vars_line.hold_sync():
            self.vars_line.x = steps
            self.vars_line.y = np.stack([to_wire(np.asarray(history[key])[idx])
                                         for key, _ in self._var_series])

        if self._curve_fn is not None:
            if self._range is not None and self._curve_fn.finer():
                self._draw_curve(*self._range)
            self._update_curve(history, current, idx, loss)
        elif self._surface_fn is not None:
            if self._range is not None and self._surface_fn.finer():
                self._draw_surface(*self._range)
            self._update_surface(history, current, idx)

    def _set_iterations(self, n):
        if n != self._n:
            self._n = n
            with self._iter_scale.hold_sync():
                self._iter_scale.min, self._iter_scale.max = 0.0, float(max(n - 1, 1))
            ticks = _nice_ticks(0, max(n - 1, 1))
            for axis in self._iter_axes:
                axis.tick_values = ticks

    # -- loss ------------------------------------------------------------------
    def _auto_log(self, loss):
        v = loss[np.isfinite(loss)]
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
            ticks = _log_ticks(y)
            if not np.array_equal(ticks, self._log_tick_values):
                self._log_tick_values = ticks
                self._loss_yaxes[True].tick_values = ticks
        if floor != self._clip_floor:
            self._clip_floor = floor
            self._set_loss_title()

    def _set_loss_title(self):
        floor = self._clip_floor if self.log_toggle.value else None
        self.loss_fig.title = "Loss" if floor is None else f"Loss (values ≤ 0 drawn at {floor:.0e})"

    # -- 1-D curve ------------------------------------------------------------------
    def _update_curve(self, history, current, idx, loss):
        name = self._scalars[0]
        xs = np.asarray(history[name])
        now = float(current[name]) if current and name in current else None
        if self._range is None:
            x0 = float(xs[0]) if len(xs) else now
            if x0 is None or not math.isfinite(x0):
                return
            self._limits = [_limit(*_initial_range(x0))]
            self._draw_curve(*_initial_range(x0))
        path = xs if now is None else np.append(xs, now)
        grown = _grown_range(*self._range, path, self._limits[0])
        if grown is not None:
            self._draw_curve(*grown)
        self._say_where_it_left(history, (path,))

        # Every trail point is an SVG marker: a few hundred are plenty to see the steps.
        trail_idx = decimate(len(xs), TRAIL_POINTS)
        trail_x = to_wire(xs[trail_idx])
        with self.trail.hold_sync():
            self.trail.x, self.trail.y = trail_x, to_wire(np.asarray(history["loss"])[trail_idx])
        if now is not None:
            x, y = now, None  # after the last step: not in the history
        elif len(xs):
            x, y = float(xs[-1]), float(np.asarray(history["loss"])[-1])
        else:
            return
        edge = _on_window(x, *self._range)
        if edge != x or y is None:
            # Read the loss off the drawn curve; an escaped point sits on the window's edge.
            y = np.interp(edge, self._curve_x, self._curve_y) if len(self._curve_x) else np.nan
        with self.point.hold_sync():
            self.point.x, self.point.y = to_wire([edge]), to_wire([y])

    def _draw_curve(self, lo, hi):
        self._range = (lo, hi)
        xs = np.linspace(lo, hi, self._curve_fn.n, dtype=np.float32)
        ys = to_wire(np.reshape(self._curve_fn(xs), xs.shape)) if len(xs) else _empty()
        self._curve_x, self._curve_y = xs, ys
        with self.curve_line.hold_sync():
            self.curve_line.x, self.curve_line.y = xs, ys
        _set_x_range(self._px, self._px_axis, lo, hi)

    def _say_where_it_left(self, history, paths):
        """Name the step where the path left the picture's window (a divergence)."""
        fig = self.curve_fig if self._curve_fn is not None else self.surface_fig
        ranges = [self._range[2 * i:2 * i + 2] for i in range(len(paths))]
        left = [_left_at(p, *r) for p, r in zip(paths, ranges)]
        left = [i for i in left if i is not None]
        title = self._picture_title
        if left:
            row = min(left)
            steps = history.get("step")
            if steps is None:
                step = row
            else:  # row len(steps) is the present point, after the last recorded step
                step = int(steps[row]) if row < len(steps) else int(steps[-1]) + 1
            title += f" · path left this window at step {step}"
        fn = self._curve_fn if self._curve_fn is not None else self._surface_fn
        if not fn.n:
            title += " · not drawn yet: the loss is costly"
        if fig.title != title:
            fig.title = title

    # -- 2-D surface ---------------------------------------------------------------
    def _update_surface(self, history, current, idx):
        a, b = self._scalars
        ha, hb = np.asarray(history[a]), np.asarray(history[b])
        now = (float(current[a]), float(current[b])) if current and a in current and b in current else None
        if self._range is None:
            p0 = (float(ha[0]), float(hb[0])) if len(ha) else now
            if p0 is None or not all(map(math.isfinite, p0)):
                return
            self._limits = [_limit(*_initial_range(p0[0])), _limit(*_initial_range(p0[1]))]
            self._draw_surface(*_initial_range(p0[0]), *_initial_range(p0[1]))
        pa = ha if now is None else np.append(ha, now[0])
        pb = hb if now is None else np.append(hb, now[1])
        ga = _grown_range(*self._range[:2], pa, self._limits[0])
        gb = _grown_range(*self._range[2:], pb, self._limits[1])
        if ga is not None or gb is not None:
            self._draw_surface(*(ga or self._range[:2]), *(gb or self._range[2:]))
        self._say_where_it_left(history, (pa, pb))

        if now is not None:
            idx = decimate(len(ha), self.max_points - 1)  # room for the present point
        px, py = to_wire(ha[idx]), to_wire(hb[idx])
        if now is not None:
            px, py = np.append(px, to_wire(now[0])), np.append(py, to_wire(now[1]))
        if not len(px):
            return
        with self.path.hold_sync():
            self.path.x, self.path.y = px, py
        # An escaped point sits on the window's edge, where the path left it.
        with self.point.hold_sync():
            self.point.x = to_wire([_on_window(px[-1], *self._range[:2])])
            self.point.y = to_wire([_on_window(py[-1], *self._range[2:])])

    def _draw_surface(self, xlo, xhi, ylo, yhi):
        self._range = (xlo, xhi, ylo, yhi)
        n = self._surface_fn.n
        _set_x_range(self._px, self._px_axis, xlo, xhi)
        with self._py.hold_sync():
            self._py.min, self._py.max = float(ylo), float(yhi)
        if not n:
            return  # too costly to draw yet: the path on empty axes
        xs = np.linspace(xlo, xhi, n, dtype=np.float32)
        ys = np.linspace(ylo, yhi, n, dtype=np.float32)
        z = np.reshape(np.asarray(self._surface_fn(xs, ys), dtype=np.float64), (n, n))
        finite = np.isfinite(z)
        if finite.any():
            # log10 of the height above the lowest point, so a narrow valley
            # (Rosenbrock) stands out against walls many decades higher.
            zmin, zmax = z[finite].min(), z[finite].max()
            eps = max((zmax - zmin) * 1e-4, 1e-12)
            color = np.log10(np.where(finite, z - zmin, np.nan) + eps)
        else:
            color = np.full_like(z, np.nan)
        with self.heatmap.hold_sync():
            self.heatmap.x, self.heatmap.y = xs, ys
            self.heatmap.color = color.astype(np.float32)
