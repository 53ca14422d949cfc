"""The view of several runs (--compare, --restarts): one loss chart with a legend,
and every run's path on the 1-D curve or the 2-D loss surface."""

import math

import bqplot as bq
import ipywidgets as W
import numpy as np

from .charts import COLORS, decimate, to_wire

FIG = dict(animation_duration=0, fig_margin=dict(top=40, bottom=50, left=70, right=20),
           layout=W.Layout(width="440px", height="320px"))


def _color(i):
    return COLORS[i % len(COLORS)]


class CompareView:
    def __init__(self, multi, curve=None, surface=None, max_points=1000):
        self.multi = multi
        runs = list(multi.runs.values())
        figures = [self._loss_figure(runs, max_points)]
        names = list(multi.engine.variables)
        if curve is not None and len(names) == 1:
            figures.append(self._curve_figure(runs, names[0], curve, max_points))
        elif surface is not None and len(names) == 2:
            figures.append(self._surface_figure(runs, names, surface, max_points))
        self.widget = W.GridBox(figures, layout=W.Layout(grid_template_columns="repeat(2, 450px)", max_width="920px"))
        self.widget.add_class("tfmagic-compare-view")

    def _loss_figure(self, runs, max_points):
        positive = all(r.history["loss"].size == 0 or r.history["loss"].min() > 0 for r in runs)
        sx, sy = bq.LinearScale(), bq.LogScale() if positive else bq.LinearScale()
        marks = []
        for i, run in enumerate(runs):
            idx = decimate(len(run.history["loss"]), max_points)
            marks.append(bq.Lines(
                x=to_wire(run.history["step"][idx]), y=to_wire(run.history["loss"][idx]), scales={"x": sx, "y": sy},
                colors=[_color(i)], labels=[f"{run.label} ({run.status})"], display_legend=True,
            ))
        axes = [bq.Axis(scale=sx, label="iteration"),
                bq.Axis(scale=sy, orientation="vertical", label="loss" + (" (log)" if positive else ""),
                        tick_format=".2g")]
        fig = bq.Figure(marks=marks, axes=axes, title="Loss of each run", legend_location="top-right", **FIG)
        fig.add_class("tfmagic-compare-loss")
        return fig

    def _curve_figure(self, runs, name, curve, max_points):
        xs_all = np.concatenate([r.history[name] for r in runs if r.steps] or [np.zeros(1)])
        lo, hi = float(np.min(xs_all)), float(np.max(xs_all))
        pad = max(0.2 * (hi - lo), 1.0)
        grid = np.linspace(lo - pad, hi + pad, min(300, getattr(curve, "points", 300)), dtype=np.float32)
        sx, sy = bq.LinearScale(), bq.LinearScale()
        marks = [bq.Lines(x=grid, y=to_wire(curve(grid)), scales={"x": sx, "y": sy}, colors=["#999999"])]
        for i, run in enumerate(runs):
            idx = decimate(len(run.history["loss"]), max_points)
            marks.append(bq.Lines(x=to_wire(run.history[name][idx]), y=to_wire(run.history["loss"][idx]),
                                  scales={"x": sx, "y": sy}, colors=[_color(i)], marker="circle", marker_size=12))
        axes = [bq.Axis(scale=sx, label=name), bq.Axis(scale=sy, orientation="vertical", label="loss", tick_format=".2g")]
        fig = bq.Figure(marks=marks, axes=axes, title=f"Paths on the loss curve of {name}", **FIG)
        fig.add_class("tfmagic-compare-paths")
        return fig

    def _surface_figure(self, runs, names, surface, max_points):
        a, b = names
        xa = np.concatenate([r.history[a] for r in runs if r.steps] or [np.zeros(1)])
        xb = np.concatenate([r.history[b] for r in runs if r.steps] or [np.zeros(1)])
        pad_a = max(0.15 * (xa.max() - xa.min()), 0.5)
        pad_b = max(0.15 * (xb.max() - xb.min()), 0.5)
        n = min(60, math.isqrt(getattr(surface, "points", 3600)))
        gx = np.linspace(xa.min() - pad_a, xa.max() + pad_a, n, dtype=np.float32)
        gy = np.linspace(xb.min() - pad_b, xb.max() + pad_b, n, dtype=np.float32)
        z = surface(gx, gy)
        finite = np.isfinite(z)
        zmin = z[finite].min() if finite.any() else 0.0
        color = np.log10(np.where(finite, z - zmin, np.nan) + 1e-3)  # log so valleys show
        sx, sy, sc = bq.LinearScale(), bq.LinearScale(), bq.ColorScale(scheme="viridis")
        marks = [bq.HeatMap(x=gx, y=gy, color=to_wire(color), scales={"x": sx, "y": sy, "color": sc})]
        for i, run in enumerate(runs):
            idx = decimate(len(run.history["loss"]), max_points)
            marks.append(bq.Lines(x=to_wire(run.history[a][idx]), y=to_wire(run.history[b][idx]),
                                  scales={"x": sx, "y": sy}, colors=[_color(i)], stroke_width=2))
        axes = [bq.Axis(scale=sx, label=a), bq.Axis(scale=sy, orientation="vertical", label=b)]
        fig = bq.Figure(marks=marks, axes=axes, title="Paths on the loss surface (colour: log loss)", **FIG)
        fig.add_class("tfmagic-compare-paths")
        return fig
