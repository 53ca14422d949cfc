"""The view of several runs (--compare, --restarts): the loss of each run, and
every run's path on the 1-D curve or the 2-D loss surface, with one legend.

A run that diverged must not take the axes from the others: the ranges come
from the runs that did not, a diverged run's line leaves the plot at its edge
(bqplot clips marks to the plot area), and a triangle marks where it left.
"""

import bqplot as bq
import ipywidgets as W
import numpy as np

from .figures import COLORS, axes, decimate, figure, legend, log_ticks, nice_ticks, to_wire
from .picture import DRAW_SECONDS, affordable, left_at, on_window

ESCAPED = ("diverged", "undefined")
LOG_DECADES = 2  # the loss axis starts on a log scale when the kept runs span more than this


def _color(i):
    return COLORS[i % len(COLORS)]


def _exit_mark(i, x, y, scales):
    """A triangle where run i left the plot."""
    return bq.Scatter(x=to_wire([x]), y=to_wire([y]), scales=scales, colors=[_color(i)],
                      marker="triangle-up", default_size=80, stroke="black")


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
        self.legend = legend(labels, [_color(i) for i in range(len(runs))])
        self.widget = W.VBox([self.log_toggle, grid, self.legend],
                             layout=W.Layout(width="100%", max_width="1000px"))
        self.widget.add_class("tfmagic-compare-view")

    @staticmethod
    def _legend_label(run):
        where = f" at step {run.steps}" if run.status in ESCAPED + ("converged",) else ""
        return f"{run.label}: {run.status}{where}"

    # -- loss of each run ---------------------------------------------------
    def _loss_figures(self, runs):
        """A linear and a log figure of the losses; the toggle shows one."""
        kept = np.concatenate([r.history["loss"] for r in self.kept]).astype(np.float64)
        kept = kept[np.isfinite(kept)]
        lo, hi = (float(kept.min()), float(kept.max())) if kept.size else (0.0, 1.0)
        last = max((int(r.history["step"][-1]) for r in runs if len(r.history["step"])), default=1)
        self.loss_figs = {}
        for log in (False, True):
            sx = bq.LinearScale(min=0.0, max=float(max(last, 1)))
            if log:
                pos = kept[kept > 0]
                top = float(pos.max()) if pos.size else 1.0
                sy = bq.LogScale(min=float(pos.min()) if pos.size else top / 1e6, max=top)
            else:
                top = hi + 0.05 * (hi - lo or 1.0)
                sy = bq.LinearScale(min=min(lo, 0.0) if lo >= 0 else lo, max=top)
            marks = []
            for i, run in enumerate(runs):
                idx = decimate(len(run.history["loss"]), self.max_points)
                steps, loss = run.history["step"][idx], run.history["loss"][idx]
                marks.append(bq.Lines(x=to_wire(steps), y=to_wire(loss), scales={"x": sx, "y": sy},
                                      colors=[_color(i)], stroke_width=1.5))
                row = left_at(loss, -np.inf, top) if run.status in ESCAPED else None
                if row is not None:
                    marks.append(_exit_mark(i, steps[row], top, {"x": sx, "y": sy}))
            ax = axes(sx, sy, "iteration", "loss")
            ax[0].tick_values = nice_ticks(0, max(last, 1), integer=True)
            if log:
                ax[1].tick_format, ax[1].tick_values = ".0e", log_ticks(kept)
            fig = figure("Loss of each run" + (" (log scale)" if log else ""), "tfmagic-compare-loss", marks, ax)
            fig.layout.display = None if log == self._starts_log(kept) else "none"
            self.loss_figs[log] = fig
        self.log_toggle = W.ToggleButton(value=self._starts_log(kept), description="log scale", icon="line-chart",
                                         tooltip="Loss axis on a log scale",
                                         layout=W.Layout(width="auto", align_self="flex-start"))
        self.log_toggle.add_class("tfmagic-logscale")
        self.log_toggle.observe(self._on_log_toggle, "value")
        return [W.Box(list(self.loss_figs.values()), layout=W.Layout(min_width="0"))]

    @staticmethod
    def _starts_log(kept):
        pos = kept[kept > 0]
        return bool(pos.size == kept.size and pos.size and pos.max() / pos.min() > 10 ** LOG_DECADES)

    def _on_log_toggle(self, change):
        for log, fig in self.loss_figs.items():
            fig.layout.display = None if log == change["new"] else "none"

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
        top = float(finite.max()) if finite.size else 1.0
        sx, sy = bq.LinearScale(min=lo, max=hi), bq.LinearScale(max=top)
        scales = {"x": sx, "y": sy}
        marks = [bq.Lines(x=grid, y=ys, scales=scales, colors=["#999999"])]
        for i, run in enumerate(runs):
            idx = decimate(len(run.history["loss"]), self.max_points)
            xs, loss = run.history[name][idx], run.history["loss"][idx]
            marks.append(bq.Lines(x=to_wire(xs), y=to_wire(loss), scales=scales, colors=[_color(i)],
                                  marker="circle", marker_size=12))
            row = left_at(xs, lo, hi) if run.status in ESCAPED else None
            if row is not None:
                edge = on_window(xs[row], lo, hi)
                marks.append(_exit_mark(i, edge, np.interp(edge, grid, ys) if n else top, scales))
        ax = axes(sx, sy, name, "loss")
        ax[0].tick_values = nice_ticks(lo, hi)
        return figure(f"Paths on the loss curve of {name}", "tfmagic-compare-paths", marks, ax)

    def _surface_figure(self, runs, names, surface):
        a, b = names
        (alo, ahi), (blo, bhi) = self._window(a, 0.15, 0.5), self._window(b, 0.15, 0.5)
        n = affordable(surface, DRAW_SECONDS, 60, 2, 8)
        sx, sy = bq.LinearScale(min=alo, max=ahi), bq.LinearScale(min=blo, max=bhi)
        scales = {"x": sx, "y": sy}
        marks = []
        if n:
            gx = np.linspace(alo, ahi, n, dtype=np.float32)
            gy = np.linspace(blo, bhi, n, dtype=np.float32)
            z = np.asarray(surface(gx, gy), np.float64)
            finite = np.isfinite(z)
            zmin = z[finite].min() if finite.any() else 0.0
            color = np.log10(np.where(finite, z - zmin, np.nan) + 1e-3)  # log so valleys show
            marks.append(bq.HeatMap(x=gx, y=gy, color=to_wire(color),
                                    scales={**scales, "color": bq.ColorScale(scheme="viridis")}))
        for i, run in enumerate(runs):
            idx = decimate(len(run.history["loss"]), self.max_points)
            pa, pb = run.history[a][idx], run.history[b][idx]
            marks.append(bq.Lines(x=to_wire(pa), y=to_wire(pb), scales=scales, colors=[_color(i)], stroke_width=2))
            rows = [r for r in (left_at(pa, alo, ahi), left_at(pb, blo, bhi)) if r is not None]
            if run.status in ESCAPED and rows:
                marks.append(_exit_mark(i, on_window(pa[min(rows)], alo, ahi), on_window(pb[min(rows)], blo, bhi), scales))
        ax = axes(sx, sy, a, b)
        ax[0].tick_values = nice_ticks(alo, ahi)
        return figure("Paths on the loss surface (colour: log loss)", "tfmagic-compare-paths", marks, ax,
                      padding_y=0.0)
