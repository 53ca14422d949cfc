"""The view of several runs (--compare, --restarts): the loss of each run, and
every run's path on the 1-D curve or the 2-D loss surface, with one legend.

A run that diverged must not take the axes from the others: the ranges come
from the runs that did not, a diverged run's line leaves the plot at its edge
(bqplot clips marks to the plot area), and a triangle marks where it left.
"""

import bqplot as bq
import ipywidgets as W
import numpy as np

from .figures import COLORS, axes, colour_key, decimate, figure, legend, log_ticks, nice_ticks, to_wire
from .picture import DRAW_SECONDS, affordable, left_at, on_window, surface_colors

ESCAPED = ("diverged", "undefined")
LOG_DECADES = 2  # the loss axis starts on a log scale when the kept runs span more than this


def _color(i):
    return COLORS[i % len(COLORS)]


LINE_STYLES = ["solid", "dashed", "dotted", "dash_dotted"]  # runs that overlap stay told apart


def _style(i):
    return LINE_STYLES[i % len(LINE_STYLES)]


def _exit_mark(i, x, y, scales):
    """A triangle where run i left the plot."""
    return bq.Scatter(x=to_wire([x]), y=to_wire([y]), scales=scales, colors=[_color(i)],
                      marker="triangle-up", default_size=80, stroke="black")


def _cut_at_exit(columns, ranges):
    """An escaped run's columns up to the row where they left `ranges` (that row moved onto
    the edge), and the row; (columns, None) when they never left. Sending the points far
    outside made the browser draw a dashed line solid and cross the plot again."""
    rows = [r for r in (left_at(c, *rg) for c, rg in zip(columns, ranges)) if r is not None]
    if not rows:
        return columns, None
    row = min(rows)
    cut = [np.append(c[:row], on_window(c[row], *rg)) for c, rg in zip(columns, ranges)]
    return cut, row


def _padded(values, fraction, least):
    v = values[np.isfinite(values)]
    lo, hi = (float(v.min()), float(v.max())) if v.size else (-1.0, 1.0)
    pad = max(fraction * (hi - lo), least)
    return lo - pad, hi + pad


class CompareView:
    def __init__(self, multi, curve=None, surface=None, max_points=1000):
        self.multi = multi
        runs = list(multi.runs.values())
        self.max_points = max_points
        # The runs that set the ranges: those that did not escape (all, if every one did).
        self.kept = [r for r in runs if r.status not in ESCAPED and r.steps] or [r for r in runs if r.steps] or runs
        figures = self._loss_figures(runs)
        names = list(multi.engine.variables)
        if curve is not None and len(names) == 1:
            figures.append(self._curve_figure(runs, names[0], curve))
        elif surface is not None and len(names) == 2:
            figures.append(self._surface_figure(runs, names, surface))
        grid = W.GridBox(figures, layout=W.Layout(
            width="100%", grid_template_columns="repeat(auto-fit, minmax(360px, 1fr))", grid_gap="4px 8px"))
        labels = [self._legend_label(r) for r in runs]
        self.legend = legend(labels, [_color(i) for i in range(len(runs))], [_style(i) for i in range(len(runs))])
        self.widget = W.VBox([self.log_toggle, grid, self.legend],
                             layout=W.Layout(width="100%", max_width="1000px"))
        self.widget.add_class("tfmagic-compare-view")

    @staticmethod
    def _legend_label(run):
        where = f" at step {run.steps}" if run.status in ESCAPED + ("converged",) else ""
        return f"{run.label}: {run.status}{where}"

    # -- loss of each run ---------------------------------------------------
    def _loss_figures(self, runs):
        """The loss chart, linear or log; the other scale is built when first asked for."""
        kept = np.concatenate([r.history["loss"] for r in self.kept]).astype(np.float64)
        self._kept_loss = kept[np.isfinite(kept)]
        self._runs = runs
        positive = bool(self._kept_loss.size and self._kept_loss.min() > 0)
        pos = self._kept_loss
        log = bool(positive and pos.max() / pos.min() > 10 ** LOG_DECADES)
        self.loss_figs = {log: self._loss_figure(log)}
        self.log_toggle = W.ToggleButton(
            value=log, description="log scale", icon="line-chart", disabled=not positive,
            tooltip="Loss axis on a log scale" if positive else "The loss is not always positive: no log scale",
            layout=W.Layout(width="auto", align_self="flex-start"))
        self.log_toggle.add_class("tfmagic-logscale")
        self.log_toggle.observe(self._on_log_toggle, "value")
        self._loss_box = W.Box([self.loss_figs[log]], layout=W.Layout(min_width="0"))
        return [self._loss_box]

    def _loss_figure(self, log):
        kept, runs = self._kept_loss, self._runs
        lo, hi = (float(kept.min()), float(kept.max())) if kept.size else (0.0, 1.0)
        last = max((int(r.history["step"][-1]) for r in runs if len(r.history["step"])), default=1)
        sx = bq.LinearScale(min=0.0, max=float(max(last, 1)))
        if log:
            top = hi
            sy = bq.LogScale(min=lo, max=top)
        else:
            top = hi + 0.05 * (hi - lo or 1.0)
            sy = bq.LinearScale(min=min(lo, 0.0), max=top)
        scales = {"x": sx, "y": sy}
        marks = []
        for i, run in enumerate(runs):
            idx = decimate(len(run.history["loss"]), self.max_points)
            (steps, loss), row = (run.history["step"][idx], run.history["loss"][idx]), None
            if run.status in ESCAPED:
                (steps, loss), row = _cut_at_exit([steps, loss], [(-np.inf, np.inf), (-np.inf, top)])
            marks.append(bq.Lines(x=to_wire(steps), y=to_wire(loss), scales=scales, colors=[_color(i)],
                                  line_style=_style(i), stroke_width=1.5))
            if row is not None:
                marks.append(_exit_mark(i, steps[-1], loss[-1], scales))
        ax = axes(sx, sy, "iteration", "loss")
        ax[0].tick_values = nice_ticks(0, max(last, 1), integer=True)
        if log:
            ax[1].tick_format, ax[1].tick_values = ".0e", log_ticks(kept)
        # (no padding: the top of the scale is the plot's edge, where an escaped run's triangle sits)
        return figure("Loss of each run" + (" (log scale)" if log else ""), "tfmagic-compare-loss", marks, ax,
                      padding_y=0.0)

    def _on_log_toggle(self, change):
        log = change["new"]
        if log not in self.loss_figs:
            self.loss_figs[log] = self._loss_figure(log)
        self._loss_box.children = [self.loss_figs[log]]

    # -- paths --------------------------------------------------------------
    def _window(self, name, fraction, least):
        return _padded(np.concatenate([r.history[name] for r in self.kept] + [np.atleast_1d(r.start[name]).ravel()
                                                                             for r in self.kept]), fraction, least)

    def _curve_figure(self, runs, name, curve):
        lo, hi = self._window(name, 0.2, 1.0)
        n = affordable(curve, DRAW_SECONDS, 300, 1, 21)
        grid = np.linspace(lo, hi, n, dtype=np.float32)
        ys = to_wire(curve(grid)) if n else np.zeros(0, np.float32)
        finite = ys[np.isfinite(ys)]
        bottom, top = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        pad = 0.05 * (top - bottom or 1.0)
        sx, sy = bq.LinearScale(min=lo, max=hi), bq.LinearScale(min=bottom - pad, max=top + pad)
        scales = {"x": sx, "y": sy}
        marks = [bq.Lines(x=grid, y=ys, scales=scales, colors=["#999999"])]
        for i, run in enumerate(runs):
            idx = decimate(len(run.history["loss"]), self.max_points)
            (xs, loss), row = (run.history[name][idx], run.history["loss"][idx]), None
            if run.status in ESCAPED:
                (xs, loss), row = _cut_at_exit([xs, loss], [(lo, hi), (-np.inf, np.inf)])
                if row is not None:  # the loss where the path meets the window's edge
                    loss[-1] = np.interp(xs[-1], grid, ys) if n else top
            marks.append(bq.Lines(x=to_wire(xs), y=to_wire(loss), scales=scales, colors=[_color(i)],
                                  line_style=_style(i), marker="circle", marker_size=12))
            if row is not None:
                marks.append(_exit_mark(i, xs[-1], loss[-1], scales))
        ax = axes(sx, sy, name, "loss")
        ax[0].tick_values = nice_ticks(lo, hi)
        return figure(f"Paths on the loss curve of {name}", "tfmagic-compare-paths", marks, ax)

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
        for i, run in enumerate(runs):
            idx = decimate(len(run.history["loss"]), self.max_points)
            (pa, pb), row = (run.history[a][idx], run.history[b][idx]), None
            if run.status in ESCAPED:
                (pa, pb), row = _cut_at_exit([pa, pb], [(alo, ahi), (blo, bhi)])
            marks.append(bq.Lines(x=to_wire(pa), y=to_wire(pb), scales=scales, colors=[_color(i)],
                                  line_style=_style(i), stroke_width=2))
            if run.status not in ESCAPED and len(pa):  # where the run ended
                marks.append(bq.Scatter(x=to_wire(pa[-1:]), y=to_wire(pb[-1:]), scales=scales,
                                        colors=[_color(i)], stroke="white", default_size=40))
            if row is not None:
                marks.append(_exit_mark(i, pa[-1], pb[-1], scales))
        ax = axes(sx, sy, a, b)
        ax[0].tick_values = nice_ticks(alo, ahi)
        fig = figure("Paths on the loss surface", "tfmagic-compare-paths", marks, ax, padding_y=0.0)
        return W.VBox([fig, W.HTML(key)], layout=W.Layout(min_width="0")) if key else fig
