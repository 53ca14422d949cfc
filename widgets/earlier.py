"""The earlier runs of a panel's cell (its result's `.earlier`): faint lines behind its loss
and on its 1-D curve or 2-D surface, a legend naming each by what changed, and the table
(what changed, steps, final loss, status) under the charts.

Drawn once, when the panel is made: an earlier run does not change. One bqplot Lines mark
per scale holds every earlier run, each a row padded with NaN (which bqplot leaves out).
"""

from __future__ import annotations

import bqplot as bq
import ipywidgets as W
import numpy as np

from tfmagic.present.earlier import earlier_html, legend_label
from tfmagic.present.html import STYLE

from .figures import COLORS, legend, to_wire

OPACITY = 0.45  # an earlier run's line: faint, its colour still told apart in light and dark themes


def colours(n):
    """The colours of n earlier runs (the current run's loss keeps COLORS[0]); the static chart's for the first 7."""
    return [COLORS[1 + i % (len(COLORS) - 1)] for i in range(n)]


def padded(rows):
    """Rows of different lengths as one (k, n) float32 array, NaN after each row's end."""
    n = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), max(n, 1)), np.nan, np.float32)
    for i, r in enumerate(rows):
        out[i, :len(r)] = to_wire(r)
    return out


def _faint(x, y, scales, colors, labels):
    return bq.Lines(x=x, y=y, scales=scales, colors=colors, opacities=[OPACITY] * len(colors), stroke_width=1.5,
                    labels=labels)


class EarlierView:
    """What a panel shows of its cell's earlier runs (nothing when there are none): `widget`
    is the table; the faint lines and their legend go into `charts`' figures."""

    def __init__(self, charts, result):
        self.result = result
        self.widget = W.HTML()
        self.widget.add_class("tfmagic-earlier")
        self.marks = {}  # log (False/True) -> the faint loss lines on that scale
        runs = result.earlier
        if not runs:
            self.widget.layout.display = "none"
            return
        self.colors = colours(len(runs))
        names = [legend_label(r) for r in runs]
        steps = padded([r.history["step"] for r in runs])
        loss = padded([r.history["loss"] for r in runs])
        positive = np.where(loss > 0, loss, np.float32(np.nan))  # (a log axis cannot show the rest)
        for log, scales in charts.loss_scales.items():
            self.marks[log] = _faint(steps, positive if log else loss, scales, self.colors, names)
            self.marks[log].visible = log == charts.log_toggle.value
        self.last_step = int(np.nanmax(steps, initial=0))  # (the iteration axis reaches it)
        self.losses = loss[np.isfinite(loss)]  # (they count in choosing a log loss axis)
        charts.loss_fig.marks = [*self.marks.values(), *charts.loss_fig.marks]  # (behind the loss)
        charts.behind = self
        labels = [legend_label(result.this_run, now=True)] + names
        self.legend = legend(labels, [COLORS[0]] + [_rgba(c) for c in self.colors])
        self.legend.add_class("tfmagic-earlier-legend")
        charts.loss_box.children = (*charts.loss_box.children, self.legend)
        self.path = self._on_picture(charts.picture, runs)
        self.refresh()

    def _on_picture(self, picture, runs):
        """The earlier runs' paths, faint, on the 1-D curve (x, loss) or the 2-D surface (x, y)."""
        if picture is None:
            return None
        names = picture.names
        columns = (names[0], "loss") if len(names) == 1 else tuple(names)
        kept = [r for r in runs if all(c in r.history for c in columns)]
        if not kept:
            return None
        first = picture.fig.marks[0]  # (the curve's line or the surface's heatmap: the picture's scales)
        scales = {"x": first.scales["x"], "y": first.scales["y"]}
        colors = [c for r, c in zip(runs, self.colors) if r in kept]
        mark = _faint(padded([r.history[columns[0]] for r in kept]), padded([r.history[columns[1]] for r in kept]),
                      scales, colors, [legend_label(r) for r in kept])
        picture.fig.marks = [first, mark, *picture.fig.marks[1:]]
        return mark

    def refresh(self):
        """The table, with this run's row as it is now (after each of its runs ends)."""
        if self.result.earlier:
            self.widget.value = f"{STYLE}<div class='tfmagic-html'>{earlier_html(self.result)}</div>"


def _rgba(hex_colour):
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{OPACITY})"
