"""The view of several runs (--compare, --restarts): the loss of each run, and
every run's path on the 1-D curve or the 2-D loss surface, with one legend.

Each run is drawn to the point it ended at (path_points). Every run in the legend
stays visible: a short run gets markers (a line of one or two points is nearly
nothing), and a run that lies on an earlier one is drawn thinner on top of it,
which is drawn wider. A run that diverged must not take the axes from the others:
the ranges come from the runs that did not, widened to show a few of the escaped
run's steps (its growing oscillation); past that its line leaves the plot at a
triangle. On the log scale the loss of every run fits (a divergence stops at 1e6
times the starting loss), so each line is drawn whole.
"""

import bqplot as bq
import ipywidgets as W
import numpy as np

from tfmagic.descent.status import ESCAPED, Status
from tfmagic.present.points import final_point, path_points

from .figures import COLORS, axes, colour_key, figure, legend, log_ticks, nice_ticks, to_wire
from .picture import DRAW_SECONDS, affordable, grown_range, surface_colors, where_it_left

LOG_DECADES = 2  # the loss axis starts on a log scale when the kept runs span more than this
ESCAPED_STEPS = 3  # the ranges widen to show an escaped run's first steps (its growing oscillation) ...
ESCAPED_GROWTH = 2  # ... by at most this many times the kept runs' span on either side
MARKED_POINTS = 40  # a run with at most this many points to draw gets markers
OVERLAP = 0.02  # two runs closer than this fraction of the plot overlap
LINE_STYLES = ["solid", "dashed", "dotted", "dash_dotted"]  # runs that overlap stay told apart
MARKERS = ["circle", "square", "diamond", "triangle-down", "cross"]  # (triangle-up marks an exit)


def _color(i):
    return COLORS[i % len(COLORS)]


def _style(i):
    return LINE_STYLES[i % len(LINE_STYLES)]


def _marker(i):
    return MARKERS[i % len(MARKERS)]


def _exit_mark(i, x, y, scales, label):
    """A triangle where run i left the plot."""
    return bq.Scatter(x=to_wire([x]), y=to_wire([y]), scales=scales, colors=[_color(i)], labels=[label],
                      marker="triangle-up", default_size=80, stroke="black")


def _cut_at_exit(columns, ranges):
    """An escaped run's columns up to where they left `ranges` (that point on the edge), and
    the row; (columns, None) when they never left. Sending the points far outside made the
    browser draw a dashed line solid and cross the plot again."""
    left = where_it_left(columns, ranges)
    if left is None:
        return columns, None
    row, edge = left
    return [np.append(c[:row], e) for c, e in zip(columns, edge)], row


def _padded(values, fraction, least):
    v = values[np.isfinite(values)]
    lo, hi = (float(v.min()), float(v.max())) if v.size else (-1.0, 1.0)
    pad = max(fraction * (hi - lo), least)
    return lo - pad, hi + pad


def _widened(lo, hi, columns):
    """(lo, hi) widened to take in the first ESCAPED_STEPS steps of each of `columns` (the
    escaped runs'), by at most ESCAPED_GROWTH times its span on either side."""
    first = np.concatenate([np.asarray(c[:ESCAPED_STEPS + 1], np.float64) for c in columns] + [np.zeros(0)])
    grow = ESCAPED_GROWTH * (hi - lo)
    wider = grown_range(lo, hi, first, (lo - grow, hi + grow))
    if wider is None:
        return lo, hi
    seen = first[np.isfinite(first)]  # (only the side the escaped steps went to grows)
    return (wider[0] if (seen < lo).any() else lo), (wider[1] if (seen > hi).any() else hi)


def _overlaps(series, ranges, order):
    """For each run, how many runs drawn after it (`order`: the drawing order) lie on it:
    `series` is each run's (steps, columns) as drawn, compared in fractions of `ranges` at
    the steps both have."""
    def normal(cols):
        return [(np.asarray(c, np.float64) - lo) / ((hi - lo) or 1.0) for c, (lo, hi) in zip(cols, ranges)]

    under = [0] * len(series)
    for at, i in enumerate(order):
        ti, ci = series[i]
        for tj, cj in (series[j] for j in order[at + 1:]):
            if not len(ti) or not len(tj) or min(ti[-1], tj[-1]) < max(ti[0], tj[0]):
                continue
            # (the steps both have; one, where a run of one point sits on the other run)
            t = np.linspace(max(ti[0], tj[0]), min(ti[-1], tj[-1]), 50 if min(len(ti), len(tj)) > 1 else 1)
            a = np.stack([np.interp(t, ti, c) for c in normal(ci)])
            b = np.stack([np.interp(t, tj, c) for c in normal(cj)])
            close = np.abs(a - b).max(axis=0) < OVERLAP
            # (on each other from the start: two runs that only end at the same minimum are told apart)
            under[i] += bool(close.mean() >= 0.8 and close[:10].mean() >= 0.8)
    return under


class CompareView:
    def __init__(self, multi, curve=None, surface=None, max_points=1000):
        self.multi = multi
        runs = list(multi.runs.values())
        self.labels = list(multi.runs)
        self.max_points = max_points
        # What each run draws: its rows and, last, the point it ended at (its final loss and values).
        self.points = [path_points(r.history, final_point(r.steps, r.final_loss, r.values), max_points) for r in runs]
        # The runs that set the ranges: those that did not escape (all, if every one did).
        kept = [i for i, r in enumerate(runs) if r.status not in ESCAPED] or list(range(len(runs)))
        self.kept = [runs[i] for i in kept]
        self._kept_idx = kept
        # Drawn longest first: a short run's few markers on top, where a long run cannot hide them.
        self.order = sorted(range(len(runs)), key=lambda i: -len(self.points[i]["step"]))
        figures = self._loss_figures(runs)
        names = list(multi.engine.variables)
        if curve is not None and len(names) == 1:
            figures.append(self._curve_figure(runs, names[0], curve))
        elif surface is not None and len(names) == 2:
            figures.append(self._surface_figure(runs, names, surface))
        grid = W.GridBox(figures, layout=W.Layout(
            width="100%", grid_template_columns="repeat(auto-fit, minmax(360px, 1fr))", grid_gap="4px 8px"))
        labels = [self._legend_label(r) for r in runs]
        self.legend = legend(labels, [_color(i) for i in range(len(runs))], [_style(i) for i in range(len(runs))],
                             [_marker(i) if self._marked(i) else None for i in range(len(runs))])
        self.widget = W.VBox([self.log_toggle, grid, self.legend],
                             layout=W.Layout(width="100%", max_width="1000px"))
        self.widget.add_class("tfmagic-compare-view")

    @staticmethod
    def _legend_label(run):
        where = f" at step {run.steps}" if run.status in ESCAPED | {Status.CONVERGED} else ""
        return f"{run.label}: {run.status}{where}"

    def _marked(self, i):
        return len(self.points[i]["step"]) <= MARKED_POINTS

    def _line(self, i, x, y, scales, under, **kwargs):
        """Run i's line: wider and with markers when it is short, wider under each run drawn
        after it that lies on it."""
        wider = min(under, 3)
        style = dict(colors=[_color(i)], line_style=_style(i), labels=[self.labels[i]],
                     stroke_width=(2.5 if self._marked(i) else 1.5) + 2.0 * wider)
        if self._marked(i) or "marker" in kwargs:
            style.update(marker=kwargs.pop("marker", _marker(i)), marker_size=kwargs.pop("marker_size", 24) + 24 * wider)
        return bq.Lines(x=to_wire(x), y=to_wire(y), scales=scales, **{**style, **kwargs})

    # -- loss of each run ---------------------------------------------------
    def _loss_figures(self, runs):
        """The loss chart, linear or log; the other scale is built when first asked for."""
        self._runs = runs
        every = np.concatenate([p["loss"] for p in self.points]).astype(np.float64)
        kept = np.concatenate([self.points[i]["loss"] for i in self._kept_idx]).astype(np.float64)
        self._kept_loss, self._every_loss = kept[np.isfinite(kept)], every[np.isfinite(every)]
        every = self._every_loss
        # (a loss of exactly 0, a quadratic's minimum in float32, is drawn at a floor, and the title says so)
        positive = bool(every.size and every.min() >= 0 and every.max() > 0)
        pos = every[every > 0]
        escaped = len(self._kept_idx) < len(runs)
        # Log: where the runs span decades, or to show an escaped run's growth whole. (Not by
        # itself where a loss is <= 0: it would be drawn at a floor, not where it is.)
        log = bool(every.size and every.min() > 0 and (escaped or pos.max() / pos.min() > 10 ** LOG_DECADES))
        self.loss_figs = {log: self._loss_figure(log)}
        self.log_toggle = W.ToggleButton(
            value=log, description="log scale", icon="line-chart", disabled=not positive,
            tooltip="Loss axis on a log scale" if positive else "The loss is not always positive: no log scale",
            layout=W.Layout(width="auto", align_self="flex-start"))
        self.log_toggle.add_class("tfmagic-logscale")
        self.log_toggle.observe(self._on_log_toggle, "value")
        self._loss_box = W.Box([self.loss_figs[log]], layout=W.Layout(min_width="0"))
        return [self._loss_box]

    def _loss_range(self, log):
        """(lo, hi, floor): the loss axis, and where a loss <= 0 is drawn on a log axis (None: none is)."""
        kept, every = self._kept_loss, self._every_loss
        if log:
            pos = every[every > 0]
            floor = float(pos.min() / 10) if (every <= 0).any() else None
            lo, hi = (floor or float(pos.min())), float(pos.max())
            return lo / 2, hi * 2, floor  # (room for a marker at either end)
        lo, hi = (float(kept.min()), float(kept.max())) if kept.size else (0.0, 1.0)
        lo = min(lo, 0.0)
        lo, hi = _widened(lo, hi, [p["loss"] for p in self._escaped_points()])  # an escaped run's first steps
        pad = 0.05 * (hi - lo or 1.0)
        return lo - pad, hi + pad, None

    def _loss_figure(self, log):
        runs = self._runs
        lo, top, floor = self._loss_range(log)
        last = max((float(p["step"][-1]) for p in self.points if len(p["step"])), default=1.0)
        span = max(last, 1.0)
        sx = bq.LinearScale(min=-0.02 * span, max=1.02 * span)  # (a marker at step 0 or the last is whole)
        sy = bq.LogScale(min=lo, max=top) if log else bq.LinearScale(min=lo, max=top)
        scales = {"x": sx, "y": sy}
        drawn = []
        for run, p in zip(runs, self.points):
            steps, loss, row = p["step"], np.asarray(p["loss"], np.float64), None
            if floor is not None:
                loss = np.where(loss <= 0, floor, loss)
            if run.status in ESCAPED:  # (on the log scale, only a loss not finite leaves it)
                (steps, loss), row = _cut_at_exit([steps, loss], [(-np.inf, np.inf), (lo, top)])
            drawn.append((steps, loss, row))
        yr = (np.log10(lo), np.log10(top)) if log else (lo, top)
        under = _overlaps([(s, [s, np.log10(np.maximum(y, 1e-300)) if log else y]) for s, y, _ in drawn],
                          [(sx.min, sx.max), yr], self.order)
        marks = []
        for i in self.order:
            steps, loss, row = drawn[i]
            marks.append(self._line(i, steps, loss, scales, under[i]))
            if row is not None:
                marks.append(_exit_mark(i, steps[-1], loss[-1], scales, self.labels[i]))
        ax = axes(sx, sy, "iteration", "loss")
        ax[0].tick_values = nice_ticks(0, span, integer=True)
        if log:
            ax[1].tick_format, ax[1].tick_values = ".0e", log_ticks(np.array([lo * 2, top / 2]))
        title = "Loss of each run" + (" (log scale)" if log else "")
        if floor is not None:
            title = f"Loss of each run (log scale; values ≤ 0 drawn at {floor:.2g})"
        # (no padding: the scale's ends are the plot's edges, where an escaped run's triangle sits)
        return figure(title, "tfmagic-compare-loss", marks, ax, padding_y=0.0)

    def _on_log_toggle(self, change):
        log = change["new"]
        if log not in self.loss_figs:
            self.loss_figs[log] = self._loss_figure(log)
        self._loss_box.children = [self.loss_figs[log]]

    # -- paths --------------------------------------------------------------
    def _window(self, name, fraction, least):
        """The kept runs' range of `name` (and their starts), padded, widened for an escaped run's first steps."""
        kept = [self.points[i][name] for i in self._kept_idx] + [np.atleast_1d(r.start[name]).ravel() for r in self.kept]
        lo, hi = _padded(np.concatenate(kept).astype(np.float64), fraction, least)
        return _widened(lo, hi, [p[name] for p in self._escaped_points()])

    def _escaped_points(self):
        return [p for i, p in enumerate(self.points) if i not in self._kept_idx]

    def _curve_figure(self, runs, name, curve):
        lo, hi = self._window(name, 0.2, 1.0)
        n = affordable(curve, DRAW_SECONDS, 300, 1, 21)
        grid = np.linspace(lo, hi, n, dtype=np.float32)
        ys = to_wire(curve(grid)) if n else np.zeros(0, np.float32)
        # The loss axis: the kept runs' losses and the curve's lowest point, widened for an
        # escaped run's first steps (the curve's arms beyond go off the top).
        kept = np.concatenate([self.points[i]["loss"] for i in self._kept_idx]).astype(np.float64)
        kept, curve_ys = kept[np.isfinite(kept)], ys[np.isfinite(ys)].astype(np.float64)
        both = np.concatenate([kept, curve_ys])
        bottom = float(both.min()) if both.size else 0.0
        top = float(kept.max()) if kept.size else float(both.max()) if both.size else 1.0  # (none kept: the curve's)
        pad = 0.05 * (top - bottom or 1.0)
        bottom, top = _widened(bottom - pad, top + pad, [p["loss"] for p in self._escaped_points()])
        sx, sy = bq.LinearScale(min=lo, max=hi), bq.LinearScale(min=bottom, max=top)
        scales = {"x": sx, "y": sy}
        drawn = []
        for run, p in zip(runs, self.points):
            xs, loss, row = p[name], np.asarray(p["loss"], np.float64), None
            if run.status in ESCAPED:
                (xs, loss), row = _cut_at_exit([xs, loss], [(lo, hi), (bottom, top)])
            drawn.append((p["step"][:len(xs)], xs, loss, row))
        under = _overlaps([(s, [x, y]) for s, x, y, _ in drawn], [(lo, hi), (bottom, top)], self.order)
        marks = [bq.Lines(x=grid, y=ys, scales=scales, colors=["#999999"])]
        for i in self.order:
            _, xs, loss, row = drawn[i]
            marks.append(self._line(i, xs, loss, scales, under[i], marker=_marker(i),
                                    marker_size=32 if self._marked(i) else 16))
            if row is not None:
                marks.append(_exit_mark(i, xs[-1], loss[-1], scales, self.labels[i]))
        ax = axes(sx, sy, name, "loss")
        ax[0].tick_values = nice_ticks(lo, hi)
        return figure(f"Paths on the loss curve of {name}", "tfmagic-compare-paths", marks, ax, padding_y=0.0)

    def _surface_figure(self, runs, names, surface):
        a, b = names
        (alo, ahi), (blo, bhi) = self._window(a, 0.15, 0.5), self._window(b, 0.15, 0.5)
        n = affordable(surface, DRAW_SECONDS, 60, 2, 8)
        sx, sy = bq.LinearScale(min=alo, max=ahi), bq.LinearScale(min=blo, max=bhi)
        scales = {"x": sx, "y": sy}
        marks, key = [], None
        if n:
            gx = np.linspace(alo, ahi, n, dtype=np.float32)
            gy = np.linspace(blo, bhi, n, dtype=np.float32)
            z = np.asarray(surface(gx, gy), np.float64)
            marks.append(bq.HeatMap(x=gx, y=gy, color=surface_colors(z),
                                    scales={**scales, "color": bq.ColorScale(scheme="viridis")}))
            finite = z[np.isfinite(z)]
            key = colour_key(float(finite.min()), float(finite.max())) if finite.size else colour_key()
        drawn = []
        for run, p in zip(runs, self.points):
            (pa, pb), row = [p[a], p[b]], None
            if run.status in ESCAPED:
                (pa, pb), row = _cut_at_exit([pa, pb], [(alo, ahi), (blo, bhi)])
            drawn.append((p["step"][:len(pa)], pa, pb, row))
        under = _overlaps([(s, [x, y]) for s, x, y, _ in drawn], [(alo, ahi), (blo, bhi)], self.order)
        for i in self.order:
            _, pa, pb, row = drawn[i]
            marks.append(self._line(i, pa, pb, scales, under[i], stroke_width=2.0 + 2.0 * min(under[i], 3)))
            if row is None and len(pa):  # where the run ended
                marks.append(bq.Scatter(x=to_wire(pa[-1:]), y=to_wire(pb[-1:]), scales=scales, labels=[self.labels[i]],
                                        colors=[_color(i)], stroke="white", default_size=40 + 40 * min(under[i], 3)))
            if row is not None:
                marks.append(_exit_mark(i, pa[-1], pb[-1], scales, self.labels[i]))
        ax = axes(sx, sy, a, b)
        ax[0].tick_values = nice_ticks(alo, ahi)
        fig = figure("Paths on the loss surface", "tfmagic-compare-paths", marks, ax, padding_y=0.0)
        return W.VBox([fig, W.HTML(key)], layout=W.Layout(min_width="0")) if key else fig
