"""The loss around the path: a 1-D curve with the trail of steps, or a 2-D
surface (heatmap) with the path, drawn by a probe callable handed in by the
caller (no TensorFlow here).

The probe is the expensive part: it runs when the path leaves the drawn window
and, for a costly loss, as coarsely as the run's time allows (see Resolution).
A path that escapes (a divergence) leaves the window instead of stretching it.
"""

from __future__ import annotations

import math
import time

import bqplot as bq
import numpy as np

import ipywidgets as W

from tfmagic.present.points import is_point, path_points

from .figures import COLORS, axes, colour_key, empty, figure, set_x_range, to_wire

CURVE_POINTS = 241  # samples of the 1-D loss curve, at most
GRID = 60  # the 2-D loss surface is at most GRID x GRID
TRAIL_POINTS = 200  # every trail point is an SVG marker: a few hundred show the steps
GROW_LIMIT = 8  # the window grows to at most this many times its first span
MARGIN = 0.2  # when the path leaves the window, extend by this fraction of the new span
PROBE_SHARE = 0.1  # the picture may take this share of the run's wall time
FIRST_DRAW_SECONDS = 0.01  # before the first step (a short run is over in ~10 ms): finer ones follow
DRAW_SECONDS = 0.5  # any one drawing, so Stop and Kernel > Interrupt act within about this
LOSS_OVERSHOOT = 2.0  # the curve's loss axis takes in path points at most this many spans beyond the curve


def initial_range(x0):
    half = max(1.2 * abs(x0), 2.0)
    return x0 - half, x0 + half


def grown_range(lo, hi, values, limit):
    """(lo, hi) if the finite `values` (an array, or a list of them: a history's column and
    the present point, not copied into one) inside `limit` lie inside it, else the union of
    both widened by MARGIN; None when nothing changed."""
    parts = [np.asarray(a) for a in (values if isinstance(values, list) else [values])]
    parts = [a[np.isfinite(a) & (a >= limit[0]) & (a <= limit[1])] for a in parts]
    parts = [a for a in parts if a.size]
    if not parts:
        return None
    vmin, vmax = min(float(a.min()) for a in parts), max(float(a.max()) for a in parts)
    if lo <= vmin and vmax <= hi:
        return None
    lo, hi = min(lo, vmin), max(hi, vmax)
    pad = MARGIN * (hi - lo)
    return lo - pad, hi + pad


def growth_limit(lo, hi):
    """How far the window starting at (lo, hi) may grow: GROW_LIMIT times its span."""
    mid, half = (lo + hi) / 2, GROW_LIMIT * (hi - lo) / 2
    return mid - half, mid + half


def left_at(values, lo, hi):
    """The first index where `values` are outside [lo, hi] or not finite, else None."""
    out = ~(np.isfinite(values) & (values >= lo) & (values <= hi))
    return int(np.argmax(out)) if out.any() else None


def on_window(v, lo, hi):
    """v moved onto [lo, hi] (NaN to hi: the path escaped)."""
    return float(np.clip(np.nan_to_num(v, nan=hi, posinf=hi, neginf=lo), lo, hi))


def where_it_left(columns, ranges):
    """(row, point): the first row of `columns` outside `ranges` (or not finite), and where
    the line from the row before crosses their edge; None when the path stays inside."""
    rows = [r for r in (left_at(c, *rg) for c, rg in zip(columns, ranges)) if r is not None]
    if not rows:
        return None
    row = min(rows)
    out = np.array([on_window(c[row], *rg) if not np.isfinite(c[row]) else c[row]
                    for c, rg in zip(columns, ranges)], np.float64)
    if row == 0:
        return row, [on_window(v, *rg) for v, rg in zip(out, ranges)]
    inside = np.array([c[row - 1] for c in columns], np.float64)
    t = 1.0
    for p, q, (lo, hi) in zip(inside, out, ranges):
        edge = hi if q > hi else lo if q < lo else None
        if edge is not None and q != p:
            t = min(t, (edge - p) / (q - p))
    return row, [on_window(p + t * (q - p), *rg) for p, q, rg in zip(inside, out, ranges)]


def affordable(sampler, seconds, most, dims, least):
    """Points per axis a drawing can have within `seconds` (at most `most`; 0 when
    even `least` is too costly), for a sampler with a measured `per_point` cost."""
    per_point = getattr(sampler, "per_point", 0.0)
    n = most if per_point <= 0 else min(most, int((max(seconds, 0) / per_point) ** (1 / dims)))
    if n >= 0.75 * most:
        return most  # (a cheap loss timed on a busy machine still gets the full picture)
    return n if n >= least else 0


def surface_colors(z):
    """log10 of the height above the lowest point (float32, NaN where the loss failed), so a
    narrow valley (Rosenbrock) stands out against walls many decades higher."""
    z = np.asarray(z, np.float64)
    finite = np.isfinite(z)
    if not finite.any():
        return np.full(z.shape, np.nan, np.float32)
    zmin, zmax = z[finite].min(), z[finite].max()
    eps = max((zmax - zmin) * 1e-4, 1e-12)
    return np.log10(np.where(finite, z - zmin, np.nan) + eps).astype(np.float32)


class Resolution:
    """How finely to sample the loss: first what FIRST_DRAW_SECONDS allow (nothing
    when even a coarse picture costs more), then finer as the run goes on, so that
    all drawing takes at most PROBE_SHARE of the picture's lifetime. The cost of a
    point is the sampler's timing at first, then what the last drawing took: on a
    machine whose load changed, the next drawing is sized by what drawing costs now."""

    def __init__(self, sampler, most, dims, least):
        self.sampler, self.most, self.dims, self.least = sampler, most, dims, least
        self.per_point = getattr(sampler, "per_point", 0.0)
        self.n = affordable(self, FIRST_DRAW_SECONDS, most, dims, least)
        self.spent, self.t0 = 0.0, time.perf_counter()

    def __call__(self, *args):
        t0 = time.perf_counter()
        try:
            return self.sampler(*args)
        finally:
            took = time.perf_counter() - t0
            self.spent += took
            if self.per_point > 0:  # (a sampler without a cost is drawn in full: keep it so)
                self.per_point = took / max(math.prod(np.size(a) for a in args), 1)

    def finer(self):
        """True (and a larger n) when a finer drawing fits the budget now."""
        if self.n >= self.most:
            return False
        allowed = min(PROBE_SHARE * (time.perf_counter() - self.t0) - self.spent, DRAW_SECONDS)
        n = affordable(self, allowed, self.most, self.dims, self.least)
        if not n or n < min(self.most, 1.5 * self.n):
            return False
        self.n = n
        return True


class Picture:
    """The curve (one scalar variable) or the surface (two) with the path on it.

    The path is every point the run reported, to where the variables are (its last point);
    the window stays near the start and the minimum: a path that runs off leaves it (the
    marks are clipped), and a triangle on the window's edge marks where it left."""

    def __init__(self, names, sampler, max_points):
        self.names, self.max_points = list(names), max_points
        self.dims = len(self.names)
        self.resolution = Resolution(sampler, CURVE_POINTS if self.dims == 1 else GRID, self.dims,
                                     least=21 if self.dims == 1 else 8)
        self.window = None  # (lo, hi) of the curve, or (xlo, xhi, ylo, yhi) of the surface
        self._inside = 0  # the history's first rows, all inside the window (see _left_step)
        self._px = bq.LinearScale()
        if self.dims == 1:
            self._build_curve()
        else:
            self._build_surface()

    def _build_curve(self):
        name = self.names[0]
        # The loss axis is pinned to the curve (see _set_loss_range): the path's runaway
        # losses go off the top instead of squashing the curve flat.
        self._py, self._loss_range = bq.LinearScale(), None
        scales = {"x": self._px, "y": self._py}
        self.curve_line = bq.Lines(x=empty(), y=empty(), scales=scales, colors=["#888888"], stroke_width=2)
        self.trail = bq.Lines(x=empty(), y=empty(), scales=scales, colors=[COLORS[1]],
                              marker="circle", marker_size=12, stroke_width=1)
        self.point = bq.Scatter(x=empty(), y=empty(), scales=scales, colors=["#d62728"],
                                stroke="black", default_size=90)
        self.exit = _exit_mark(scales, "black")
        ax = axes(self._px, self._py, name, "loss")
        self._px_axis = ax[0]
        self.title = f"Loss as a function of {name}"
        self.fig = figure(self.title, "tfmagic-curve-chart", [self.curve_line, self.trail, self.point, self.exit], ax)
        self.box = W.VBox([self.fig], layout=W.Layout(min_width="0"))  # (a panel adds its lines under it)

    def _build_surface(self):
        a, b = self.names
        self._py = bq.LinearScale()
        colors = bq.ColorScale(scheme="viridis")
        self.heatmap = bq.HeatMap(
            x=np.arange(2, dtype=np.float32), y=np.arange(2, dtype=np.float32),
            color=np.zeros((2, 2), np.float32), scales={"x": self._px, "y": self._py, "color": colors},
        )
        scales = {"x": self._px, "y": self._py}
        self.path = bq.Lines(x=empty(), y=empty(), scales=scales, colors=["white"], stroke_width=2)
        self.point = bq.Scatter(x=empty(), y=empty(), scales=scales, colors=["#d62728"],
                                stroke="white", default_size=90)
        self.exit = _exit_mark(scales, "white")
        ax = axes(self._px, self._py, a, b)
        self._px_axis = ax[0]
        self.title = f"Loss over ({a}, {b})"
        self.fig = figure(self.title, "tfmagic-surface-chart", [self.heatmap, self.path, self.point, self.exit], ax,
                          padding_y=0.0)
        self.key = W.HTML(colour_key())
        self.key.add_class("tfmagic-colour-key")
        self.box = W.VBox([self.fig, self.key], layout=W.Layout(min_width="0"))

    def reset(self):
        """Clear the path; the next update redraws around its start."""
        self.window, self._inside = None, 0
        self.fig.title = self.title
        for mark in (self.trail if self.dims == 1 else self.path, self.point, self.exit):
            with mark.hold_sync():
                mark.x, mark.y = empty(), empty()
        if self.dims == 1:
            with self.curve_line.hold_sync():
                self.curve_line.x, self.curve_line.y = empty(), empty()
            self._loss_range = None

    def update(self, history, end):
        """Redraw the path from `history` and `end`: the point after its last row (drawn
        last), or before a run the variables' values only (name -> value), or None."""
        here = None
        if end is not None and all(n in end for n in self.names):
            here = [float(end[n]) for n in self.names]
        history = {c: history[c] for c in (*self.names, "loss", "step") if c in history}  # (what it draws)
        paths = [np.asarray(history[n]) for n in self.names]
        if self.window is None:
            start = [float(p[0]) for p in paths] if len(paths[0]) else here
            if start is None or not all(map(math.isfinite, start)):
                return
            first = [initial_range(v) for v in start]
            self._limits = [growth_limit(*r) for r in first]
            self._draw([v for r in first for v in r])
        elif self.resolution.finer():
            self._draw(self.window)
        ranges = self._ranges()
        seen = [[p] if here is None else [p, [v]] for p, v in zip(paths, here or paths)]
        grown = [grown_range(*r, p, lim) for r, p, lim in zip(ranges, seen, self._limits)]
        if any(g is not None for g in grown):
            self._draw([v for g, r in zip(grown, ranges) for v in (g or r)])
        drawn = path_points(history, end, TRAIL_POINTS if self.dims == 1 else self.max_points)
        if self.dims == 1:
            self._set_loss_range(drawn)
            self._update_trail(drawn, end, here)
        else:
            self._update_path(drawn, end, here)
        self._say_where_it_left(self._left_step(paths, history, end, here), drawn)

    def _ranges(self):
        return [self.window[2 * i:2 * i + 2] for i in range(self.dims)]

    def _plot_columns(self, points):
        """The columns drawn against the plot's two axes, and the plot's ranges."""
        if self.dims == 1:
            return [points[self.names[0]], points["loss"]], [self.window, self._loss_range]
        return [points[n] for n in self.names], self._ranges()

    @property
    def may_get_finer(self):
        """A drawing is shown (or due) and a finer one may come as the budget grows."""
        return self.window is not None and self.resolution.n < self.resolution.most

    def _left_step(self, paths, history, end, here):
        """The step at which the path first left the window (or was not finite), None while
        it has not. The window only grows, so rows once found inside are not looked at again
        (a 10^6-row history is not scanned at every push)."""
        n, ranges = len(paths[0]), self._ranges()
        since = self._inside if self._inside <= n else 0  # (fewer rows: a reset, or a thinned history)
        rows = [r for r in (left_at(p[since:], *rg) for p, rg in zip(paths, ranges)) if r is not None]
        if rows:
            row = since + min(rows)
            steps = history.get("step")
            return int(row if steps is None else steps[row])
        self._inside = n
        if here is not None and any(left_at(np.array([v]), *rg) is not None for v, rg in zip(here, ranges)):
            return int(end["step"]) if is_point(end) else n
        return None

    def _say_where_it_left(self, step, drawn):
        """The title names the step where the path left the window; a triangle marks where the
        drawn path crosses the plot's edge."""
        title = self.title
        at = where_it_left(*self._plot_columns(drawn)) if step is not None else None
        if step is not None:
            title += f" · path left this window at step {step}"
        with self.exit.hold_sync():
            self.exit.x, self.exit.y = (to_wire([at[1][0]]), to_wire([at[1][1]])) if at else (empty(), empty())
        if not self.resolution.n:
            title += " · not drawn yet: the loss is costly"
        if self.fig.title != title:
            self.fig.title = title

    def clamped(self, xy):
        """name -> a clicked point's value moved onto the drawn window (the curve's x only; its
        y is a loss), and whether it had to move; None before anything is drawn."""
        if self.window is None:
            return None
        values = {n: float(v) for n, v in zip(self.names, xy)}
        inside = {n: min(max(v, lo), hi) for (n, v), (lo, hi) in zip(values.items(), self._ranges())}
        return inside, inside != values

    def on_picture(self, values, height=math.nan):
        """(x, y) on the plot of a point (name -> value): on the curve, its loss read off the
        curve (`height` where the curve is not drawn yet)."""
        if self.dims == 2:
            return float(values[self.names[0]]), float(values[self.names[1]])
        x = float(values[self.names[0]])
        y = self._curve_at(x) if self.window is not None else math.nan
        return x, y if math.isfinite(y) else height

    def _curve_at(self, x):
        if not len(self._curve_x) or not self.window[0] <= x <= self.window[1]:
            return math.nan
        return float(np.interp(x, self._curve_x, self._curve_y))

    def _set_loss_range(self, drawn):
        """The loss axis: the curve's range in the window, and the path's points above the
        window's part of it (a mini-batch's loss is off the curve), by at most LOSS_OVERSHOOT
        times the curve's span: never the runaway part of the path."""
        ys = self._curve_y[np.isfinite(self._curve_y)] if len(self._curve_y) else empty()
        x, loss = np.asarray(drawn[self.names[0]]), np.asarray(drawn["loss"], np.float64)
        on = np.isfinite(loss) & (x >= self.window[0]) & (x <= self.window[1])
        lo, hi = (float(ys.min()), float(ys.max())) if ys.size else (
            (float(loss[on].min()), float(loss[on].max())) if on.any() else (0.0, 1.0))
        span = (hi - lo) or max(abs(hi), 1.0)
        if on.any():
            lo = max(min(lo, float(loss[on].min())), lo - LOSS_OVERSHOOT * span)
            hi = min(max(hi, float(loss[on].max())), hi + LOSS_OVERSHOOT * span)
        pad = 0.05 * ((hi - lo) or 1.0)
        new = (lo - pad, hi + pad)
        if new != self._loss_range:
            self._loss_range = new
            with self._py.hold_sync():
                self._py.min, self._py.max = new

    def _update_trail(self, drawn, end, here):
        xs, losses = drawn[self.names[0]], drawn["loss"]
        with self.trail.hold_sync():
            self.trail.x, self.trail.y = to_wire(xs), to_wire(losses)
        if is_point(end):  # where the run is: its reported loss (read off the curve if not finite)
            x, y = float(end[self.names[0]]), float(end["loss"])
        elif here is not None:  # before a run: where the variables are, on the curve
            x, y = here[0], math.nan
        elif len(xs):
            x, y = float(xs[-1]), float(losses[-1])
        else:
            return
        if not math.isfinite(y):
            y = self._curve_at(x)
        # (no curve there yet, or off it: no marker, rather than one at a NaN height, an SVG error in the page)
        at = (to_wire([x]), to_wire([y])) if math.isfinite(x) and math.isfinite(y) else (empty(), empty())
        with self.point.hold_sync():
            self.point.x, self.point.y = at

    def _update_path(self, drawn, end, here):
        px, py = to_wire(drawn[self.names[0]]), to_wire(drawn[self.names[1]])
        with self.path.hold_sync():
            self.path.x, self.path.y = px, py
        point = here if here is not None else ([px[-1], py[-1]] if len(px) else None)
        if point is not None:
            with self.point.hold_sync():
                self.point.x, self.point.y = to_wire(point[:1]), to_wire(point[1:])

    def _draw(self, window):
        self.window = tuple(window)
        n = self.resolution.n
        set_x_range(self._px, self._px_axis, *window[:2])
        if self.dims == 1:
            xs = np.linspace(*window, n, dtype=np.float32)
            ys = to_wire(np.reshape(self.resolution(xs), xs.shape)) if n else empty()
            self._curve_x, self._curve_y = xs, ys
            with self.curve_line.hold_sync():
                self.curve_line.x, self.curve_line.y = xs, ys
            return
        with self._py.hold_sync():
            self._py.min, self._py.max = float(window[2]), float(window[3])
        if not n:
            return  # too costly to draw yet: the path on empty axes
        xs = np.linspace(*window[:2], n, dtype=np.float32)
        ys = np.linspace(*window[2:], n, dtype=np.float32)
        z = np.reshape(np.asarray(self.resolution(xs, ys), dtype=np.float64), (n, n))
        show_heatmap(self.heatmap, self.key, xs, ys, z)


def show_heatmap(heatmap, key, xs, ys, z):
    """The loss `z` on the grid xs x ys, coloured by surface_colors, and its colour key."""
    z = np.asarray(z, np.float64)
    with heatmap.hold_sync():
        heatmap.x, heatmap.y = xs, ys
        heatmap.color = surface_colors(z)
    finite = z[np.isfinite(z)]
    if finite.size:
        key.value = colour_key(float(finite.min()), float(finite.max()))


def _exit_mark(scales, stroke):
    """A triangle on the window's edge where the path left it."""
    return bq.Scatter(x=empty(), y=empty(), scales=scales, colors=["#d62728"], marker="triangle-up",
                      default_size=70, stroke=stroke)
