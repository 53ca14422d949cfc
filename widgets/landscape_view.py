"""The loss landscape of a model with many parameters (tfmagic/descent/landscape.py): a
heatmap of the loss on the slice through the start along two filter-normalised random
directions, with each run's path projected onto it. No TensorFlow here: the landscape is
handed in and does the computing.

Drawn progressively: the 11x11 preview when the view is made, then the 41x41 grid a block
of points at a time on the kernel's loop (between a run's chunks, or while idle), so eta,
Stop and Kernel > Interrupt act within one block; the finer picture replaces the preview
once complete. The colours are the 2-D surface's (picture.surface_colors, colour_key).
"""

from __future__ import annotations

import bqplot as bq
import ipywidgets as W
import numpy as np

from .figures import COLORS, axes, colour_key, empty, figure, nice_ticks, to_wire
from .picture import show_heatmap


class LandscapeView:
    """`box` shows the landscape `land` (a descent.landscape.Landscape) and its paths; `update()`
    redraws the paths; `fill(call_later)` draws the fine grid in blocks scheduled so."""

    def __init__(self, land, fine, many_paths=False, call=lambda fn: fn()):
        self.land, self.fine, self.many_paths = land, fine, many_paths
        self.whole, self._zoomed = land, {}  # the slice at its own span; span -> the same slice zoomed
        self.drawn_n = 0  # points per axis of the grid drawn
        self._filling = None  # (call_later, alive) of fill
        self._scales = sx, sy = bq.LinearScale(min=-land.span, max=land.span), bq.LinearScale(min=-land.span, max=land.span)
        self.heatmap = bq.HeatMap(x=np.arange(2, dtype=np.float32), y=np.arange(2, dtype=np.float32),
                                  color=np.zeros((2, 2), np.float32),
                                  scales={"x": sx, "y": sy, "color": bq.ColorScale(scheme="viridis")})
        scales = {"x": sx, "y": sy}
        self.paths = bq.Lines(x=empty(), y=empty(), scales=scales, colors=["white"], stroke_width=2)
        self.start = bq.Scatter(x=to_wire([0]), y=to_wire([0]), scales=scales, colors=["white"], stroke="black",
                                default_size=50, marker="square")
        self.point = bq.Scatter(x=empty(), y=empty(), scales=scales, colors=["#d62728"], stroke="white",
                                default_size=90)
        self.title = f"Loss on a random slice through the start ({land.parameters:,} parameters)"
        self._axes = axes(sx, sy, "a · direction 1", "b · direction 2")
        self.fig = figure(self.title, "tfmagic-landscape-chart", [self.heatmap, self.paths, self.start, self.point],
                          self._axes, padding_y=0.0)
        self._set_ticks()
        self.key = W.HTML(colour_key())
        self.key.add_class("tfmagic-colour-key")
        self.note = W.HTML()
        self.note.add_class("tfmagic-landscape-note")
        # Random directions hold little of a path (see the note): zoomed, it shows.
        self.zoom = W.ToggleButton(value=False, description="zoom to the path", icon="search-plus",
                                   layout=W.Layout(width="auto", align_self="flex-start", margin="0 0 0 62px"))
        self.zoom.add_class("tfmagic-landscape-zoom")
        self.zoom.observe(lambda change: call(lambda: self._zoom(change["new"])), "value")
        self.box = W.VBox([self.fig, self.key, self.zoom, self.note], layout=W.Layout(min_width="0"))
        self.box.add_class("tfmagic-landscape")

    def draw(self, n):
        """Show the complete n x n grid (computing what is missing)."""
        self._show(n, self.land.grid(n))

    def _show(self, n, z):
        ax = self.land.axis(n)
        show_heatmap(self.heatmap, self.key, ax, ax, z)
        self.drawn_n = n
        self._say()

    def fill(self, call_later, alive=lambda: True):
        """Compute the fine grid a block at a time, each block a call scheduled by `call_later(0, fn)`,
        while `alive()`; shown when complete."""
        self._filling = call_later, alive
        land = self.land

        def block():
            if not alive() or land is not self.land or self.drawn_n >= self.fine:
                return  # (closed, zoomed in or out meanwhile, or done)
            if land.fill(self.fine):
                self._show(self.fine, land.grids[self.fine])
            else:
                call_later(0, block)

        call_later(0, block)

    def _zoom(self, on):
        """The same slice zoomed to the paths (on), or whole; the preview now, the fine grid after."""
        span = self.whole.path_span() if on else None
        self.land = self.whole if span is None else self._zoomed.setdefault(span, self.whole.zoomed(span))
        for scale in self._scales:
            with scale.hold_sync():
                scale.min, scale.max = -self.land.span, self.land.span
        self._set_ticks()
        if self.fine in self.land.grids:
            self._show(self.fine, self.land.grids[self.fine])
        else:
            from tfmagic.descent.landscape import PREVIEW

            self.draw(PREVIEW)
            if self._filling:
                self.fill(*self._filling)
        self.update()

    def _set_ticks(self):
        for axis in self._axes:  # (five round ticks, not d3's eleven crowded ones)
            axis.tick_values = nice_ticks(-self.land.span, self.land.span)

    def update(self):
        """Redraw the paths: the last run's (a --compare view: every run's, one line each)."""
        paths = [p for p in self.land.paths if p.steps]
        shown = paths if self.many_paths else paths[-1:]
        if not shown:
            return
        longest = max(len(p.a) for p in shown)  # (bqplot's lines of one mark have one length: NaN after the end)
        xs = [to_wire(np.pad(p.a, (0, longest - len(p.a)), constant_values=np.nan)) for p in shown]
        ys = [to_wire(np.pad(p.b, (0, longest - len(p.b)), constant_values=np.nan)) for p in shown]
        with self.paths.hold_sync():
            if self.many_paths:
                self.paths.colors = [COLORS[i % len(COLORS)] for i in range(len(shown))]
                self.paths.x, self.paths.y = xs, ys
            else:
                self.paths.x, self.paths.y = xs[0], ys[0]
        with self.point.hold_sync():
            self.point.x = to_wire([p.a[-1] for p in shown])
            self.point.y = to_wire([p.b[-1] for p in shown])
        self._say()

    def _say(self):
        """The note under the key: what the slice is, and how much of the path lies in it."""
        paths = [p for p in self.land.paths if p.steps]
        grid = f"{self.drawn_n}x{self.drawn_n}" + ("" if self.drawn_n >= self.fine else f", {self.fine}x{self.fine} coming")
        zoomed = "" if self.land is self.whole else f", zoomed to a, b in ±{self.land.span:g}"
        if self.zoom.value and self.land is self.whole:
            zoomed = " (the path already fills a fifth of it, or has not moved: not zoomed)"
        on = "" if self.land.samples is None else " on {:,} of the {:,} samples (fixed)".format(*self.land.samples)
        text = (f"start + a·d1 + b·d2, d1 and d2 random, filter-normalised (Li et al. 2018); grid {grid}{zoomed}{on}. "
                "The path is projected onto the slice")
        if paths:
            text += "; " + ", ".join(f"{p.label + ': ' if p.label else ''}{100 * p.captured:.1f}%"
                                     for p in (paths if self.many_paths else paths[-1:]))
            text += " of the distance from the start lies in it"
        self.note.value = (f"<div style='font-size:12px;line-height:1.3;margin-left:62px;"
                           f"color:var(--jp-ui-font-color2,#666)'>{text}.</div>")


def landscape_view(runner, land, many_paths=False):
    """The view of `land` for a panel driven by `runner` (None without a landscape): the preview
    drawn now, the fine grid in blocks on the runner's loop while its panel lives (the run
    attached the landscape's PathRecorder before the panel's observer: a push shows the
    chunk's point)."""
    if land is None:
        return None
    from tfmagic.descent.landscape import FINE, PREVIEW

    view = LandscapeView(land, FINE, many_paths, call=runner.call if runner is not None else lambda fn: fn())
    view.draw(PREVIEW)
    view.fill(runner.call_later if runner is not None else _on_loop, alive=lambda: runner is None or not runner.detached)
    view.update()
    return view


def _on_loop(delay, fn):
    """fn() after `delay` on the kernel's loop (now, where none runs)."""
    import asyncio

    try:
        asyncio.get_running_loop().call_later(delay, fn)
    except RuntimeError:
        fn()


def with_landscape(widget, land):
    """`widget` (a --compare view) with the landscape and every run's path under it."""
    view = landscape_view(None, land, many_paths=True)
    if view is None:
        return widget
    view.box.layout.max_width = "480px"  # (a square-ish picture, as beside the panel's loss chart)
    return W.VBox([widget, view.box])
