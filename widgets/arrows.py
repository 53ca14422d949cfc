"""The optimizer's own arrows on the 2-D loss surface, at the current point: the negative
gradient there, and (for an optimizer other than plain sgd, whose step is the gradient's) the
step it last took, x_t - x_(t-1): momentum's velocity, Adam's scaled step, exactly. Both are
engine facts (descent/motion.py). Each arrow is drawn k times its length, k a 1-2-5 number that
keeps it visible in the window (kept while the arrow stays between FEW and MANY of the window,
so it does not jump at every push); the legend says k. A checkbox hides them."""

import html
import math

import bqplot as bq
import ipywidgets as W
import numpy as np

from .figures import empty

GRADIENT, STEP = "#ff7f0e", "#e377c2"  # on the viridis surface (the path is white, the point red)
AIM, FEW, MANY = 0.2, 0.05, 0.45  # an arrow's length, in window spans: chosen, kept above, kept below
HEAD = 0.25, 0.04, math.radians(25)  # the head: this share of the arrow, at most this many spans, this angle


def one_two_five(k):
    """The largest 1, 2 or 5 times a power of ten not above k (> 0)."""
    base = 10.0 ** math.floor(math.log10(k))
    return max(m * base for m in (1, 2, 5) if m * base <= k * (1 + 1e-12))


def arrow_lines(start, vector, spans):
    """x and y of the arrow as one polyline of five points: tail, tip, one side of the head,
    the tip again, the other side (bqplot draws one path; a Lines of several went blank when
    empty). The head is sized and angled in window spans (the axes' units differ)."""
    (x0, y0), (dx, dy), (sx, sy) = start, vector, spans
    u, v = dx / sx, dy / sy  # (in spans)
    head = min(HEAD[0] * math.hypot(u, v), HEAD[1])
    tip = x0 + dx, y0 + dy
    back = math.atan2(-v, -u)
    sides = [(tip[0] + head * math.cos(back + a) * sx, tip[1] + head * math.sin(back + a) * sy)
             for a in (HEAD[2], -HEAD[2])]
    points = [(x0, y0), tip, sides[0], tip, sides[1]]
    return np.array([p[0] for p in points], np.float64), np.array([p[1] for p in points], np.float64)


class Arrow:
    """One arrow (a bqplot Lines) and its scale k."""

    def __init__(self, scales, colour, label):
        self.label, self.colour, self.k = label, colour, None
        self.mark = bq.Lines(x=empty(), y=empty(), scales=scales,
                             colors=[colour], stroke_width=2.5)

    def draw(self, start, vector, spans):
        """Draw k * vector from start; returns whether it shows."""
        length = 0.0 if vector is None else math.hypot(vector[0] / spans[0], vector[1] / spans[1])
        if not (length > 0 and math.isfinite(length)):
            self._set(empty(), empty())
            return False
        if self.k is None or not FEW <= self.k * length <= MANY:
            self.k = one_two_five(AIM / length)
        xs, ys = arrow_lines(start, (self.k * vector[0], self.k * vector[1]), spans)
        self._set(xs, ys)
        return True

    def _set(self, xs, ys):
        xs, ys = xs.astype(np.float32), ys.astype(np.float32)
        if np.array_equal(xs, self.mark.x) and np.array_equal(ys, self.mark.y):
            return  # (a paused run's pushes: nothing to send)
        with self.mark.hold_sync():
            self.mark.x, self.mark.y = xs, ys


class Arrows:
    """The arrows on `picture` (a 2-D picture.Picture) from `engine`'s facts; `refresh()` after
    each redraw of the picture."""

    def __init__(self, picture, engine, call):
        self.picture, self.engine, self.call = picture, engine, call  # call(fn): fn on the kernel's loop
        scales = picture.point.scales
        self.gradient = Arrow(scales, GRADIENT, "−gradient")
        self.step = Arrow(scales, STEP, "step taken")
        marks = list(picture.fig.marks)
        at = marks.index(picture.point)  # (under the current point)
        picture.fig.marks = marks[:at] + [self.gradient.mark, self.step.mark] + marks[at:]
        self.toggle = W.Checkbox(value=True, description="arrows", indent=False,
                                 tooltip="Show the optimizer's arrows at the current point",
                                 layout=W.Layout(width="auto"))
        self.toggle.add_class("tfmagic-arrows-toggle")
        self.toggle.observe(self._toggled, names="value")
        self.legend = W.HTML()
        self.legend.add_class("tfmagic-arrows-legend")
        self._legend = None
        self._steps = 0  # the engine's steps at the last refresh: fewer means a new run
        self.widget = W.HBox([self.toggle, self.legend], layout=W.Layout(margin="0 0 0 58px", align_items="center"))
        picture.box.children = (*picture.box.children, self.widget)

    def _toggled(self, change):
        for arrow in (self.gradient, self.step):
            arrow.mark.visible = change["new"]
        self.legend.layout.visibility = None if change["new"] else "hidden"
        if change["new"]:
            self.call(self.refresh)  # (hidden, they were not pushed)

    def refresh(self):
        engine, window, names = self.engine, self.picture.window, self.picture.names
        if not self.toggle.value:
            return
        if engine.steps < self._steps:  # (a new run: its own scales)
            self.gradient.k = self.step.k = None
        self._steps = engine.steps
        now = engine.now
        if window is None or now is None:
            vectors, start, spans = (None, None), None, None
        else:
            grad = engine.gradient_now()
            step = engine.last_step() if engine.optimizer_name != "sgd" else None
            vectors = [None if d is None else (sign * d[names[0]], sign * d[names[1]])
                       for d, sign in ((grad, -1.0), (step, 1.0))]
            start, spans = (now[names[0]], now[names[1]]), (window[1] - window[0], window[3] - window[2])
        shown = [a for a, v in zip((self.gradient, self.step), vectors) if a.draw(start, v, spans)]
        legend = "".join(
            f"<span style='white-space:nowrap;margin-right:12px'><svg width='22' height='10'><line x1='0' y1='5' "
            f"x2='20' y2='5' stroke='{a.colour}' stroke-width='3'/></svg> {html.escape(a.label)} ×{a.k:g}</span>"
            for a in shown)
        if legend != self._legend:
            self._legend = legend
            self.legend.value = (f"<div style='font-size:12px' title='each arrow is drawn k times its length (×k) "
                                 f"so that it shows in the window'>{legend or 'no arrows at this point yet'}</div>")
