"""Click to start: a click on the 1-D loss curve or the 2-D loss surface picks where the next
run starts (Reset, or Play/Step once no run is going), through the runner to the engine
(start_point.StartPoint); a marker shows it and the status line says it.

bqplot 0.13 gives a click's place in data coordinates through a Scatter's "add" interaction:
a click on the plot area appends the point (the scales inverted) to the mark's x and y, which
the front end syncs back. The marks drawn over the plot area would take the click instead, so
they let it through (CLICK_CSS). The marker is that Scatter, set back to the one start here.
"""

import math

import bqplot as bq
import ipywidgets as W
import numpy as np

from tfmagic.descent.start_point import BadStart
from tfmagic.present.messages import next_start, picked_start, start_refused

from .figures import empty, to_wire

CLICK_CLASS = "tfmagic-click-start"
# The plot area's click rectangle lies under the marks (the heatmap's image covers all of it):
# everything drawn lets the click through to it.
CLICK_CSS = (f"<style>.{CLICK_CLASS} svg.svg-figure * {{pointer-events:none}} "
             f".{CLICK_CLASS} svg.svg-figure .plotarea_events {{pointer-events:all !important;cursor:crosshair}}</style>")
HINT = "Click the picture: the next run starts there (Reset, or Play)."


class StartClicks:
    """The start marker and its click on `picture` (picture.Picture); requests go through
    `runner`; `status_line.warning` says the start; `redraw()` redraws the status line."""

    def __init__(self, picture, runner, status_line, redraw):
        self.picture, self.runner, self.status_line, self.redraw = picture, runner, status_line, redraw
        self.marker = bq.Scatter(x=empty(), y=empty(), scales=picture.point.scales, marker="diamond",
                                 colors=["#2ca02c"], stroke="white", stroke_width=1.5, default_size=110,
                                 interactions={"click": "add"})
        picture.fig.marks = [*picture.fig.marks, self.marker]
        picture.fig.add_class(CLICK_CLASS)
        self.hint = W.HTML(f"{CLICK_CSS}<div style='font-size:12px;margin-left:62px;"
                           f"color:var(--jp-ui-font-color2,#666)'>{HINT}</div>")
        self.hint.add_class("tfmagic-click-hint")
        picture.box.children = (*picture.box.children, self.hint)
        self._shown = None  # the start the marker shows (name -> value), or None
        self._points = 0  # points the marker was given here: a click adds one
        self._height = math.nan  # where the click was on the plot (the curve's marker, before it is drawn)
        self._said = None  # the line this put on the status line, while it is still there
        self.marker.observe(self._on_click, names="y")

    def _on_click(self, change):
        """The front end appended a clicked point (maybe on a subshell's thread: handed to the loop)."""
        x, y = np.asarray(self.marker.x), np.asarray(change["new"])
        if len(y) != len(x) or len(y) != self._points + 1:
            return  # (the marker set back here, not a click)
        self.runner.call(self._clicked, float(x[-1]), float(y[-1]))

    def _clicked(self, x, y):
        picked = self.picture.clamped([x, y])
        if picked is None:
            return
        values, clamped = picked
        self._height = y
        try:
            start = self.runner.set_start(values)
        except BadStart as err:
            self._say(start_refused(err))
        else:
            self._say(next_start(start, self.runner.running, clamped))
        self._show(self.runner.engine.start_request)
        self.redraw()

    def _say(self, line):
        self.status_line.warning = self._said = line

    def refresh(self):
        """After the panel redrew: the marker shows the pending start; once a run took it up,
        the status line says where that run started."""
        pending = self.runner.engine.start_request
        if not pending and self._shown and self.status_line.warning == self._said:
            self._say(picked_start(self._shown))
        self._show(pending)

    def _show(self, start):
        if start is None and self._shown is None and not len(self.marker.x):
            return
        at = self.picture.on_picture(start, self._height) if start else None
        self._shown = dict(start) if start else None
        xy = (to_wire([at[0]]), to_wire([at[1]])) if at and all(map(math.isfinite, at)) else (empty(), empty())
        self._points = len(xy[0])
        if np.array_equal(xy[0], self.marker.x) and np.array_equal(xy[1], self.marker.y):
            return  # (pushes while a start waits: nothing new to send)
        with self.marker.hold_sync():
            self.marker.x, self.marker.y = xy
