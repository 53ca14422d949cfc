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
    """One arrow's label, colour and scale k (a row of the Arrows' one Lines mark)."""

    def __init__(self, colour, label):
        self.label, self.colour, self.k, self.shown = label, colour, None, False

    def points(self, start, vector, spans):
        """x, y of k * vector drawn from start (k chosen or kept); None when there is no arrow."""
        length = 0.0 if vector is None else math.hypot(vector[0] / spans[0], vector[1] / spans[1])
        self.shown = length > 0 and math.isfinite(length)
        if not self.shown:
            return None
        if self.k is None or not FEW <= self.k * length <= MANY:
            self.k = one_two_five(AIM / length)
        return arrow_lines(start, (self.k * vector[0], self.k * vector[1]), spans)


class Arrows:
    """The arrows on `picture` (a 2-D picture.Picture) from `engine`'s facts; `refresh()` after
    each redraw of the picture. Both are rows of one Lines mark: one message a push."""

    def __init__(self, picture, engine, call):
        self.picture, self.engine, self.call = picture, engine, call  # call(fn): fn on the kernel's loop
        self.gradient = Arrow(GRADIENT, "−gradient")
        self.step = Arrow(STEP, "step taken")
        # (a Lines of several rows went blank in the browser when its rows were empty: never empty)
        self.mark = bq.Lines(x=np.zeros((2, 5), np.float32), y=np.zeros((2, 5), np.float32),
                             scales=picture.point.scales, colors=[GRADIENT, STEP], stroke_width=2.5, visible=False)
        marks = list(picture.fig.marks)
        at = marks.index(picture.point)  # (under the current point)
        picture.fig.marks = marks[:at] + [self.mark] + marks[at:]
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
        self.legend.layout.visibility = None if change["new"] else "hidden"
        if change["new"]:
            self.call(self.refresh)  # (hidden, they were not pushed)
        else:
            self.mark.visible = False

    def refresh(self):
        engine, window, names = self.engine, self.picture.window, self.picture.names
        if not self.toggle.value:
            return
        if engine.steps < self._steps:  # (a new run: its own scales)
            self.gradient.k = self.step.k = None
        self._steps = engine.steps
        now = engine.now
        rows = [None, None]
        if window is not None and now is not None:
            grad = engine.gradient_now()
            step = engine.last_step() if engine.optimizer_name != "sgd" else None
            start, spans = (now[names[0]], now[names[1]]), (window[1] - window[0], window[3] - window[2])
            rows = [arrow.points(start, None if d is None else (sign * d[names[0]], sign * d[names[1]]), spans)
                    for arrow, d, sign in ((self.gradient, grad, -1.0), (self.step, step, 1.0))]
        else:
            self.gradient.shown = self.step.shown = False
        self._push(rows)
        self._say()

    def _push(self, rows):
        drawn = [r for r in rows if r is not None]
        if not drawn:
            if self.mark.visible:
                self.mark.visible = False
            return
        tail = drawn[0][0][0], drawn[0][1][0]  # (an arrow not drawn: all its points at the tail, no length)
        xs = np.array([r[0] if r is not None else np.full(5, tail[0]) for r in rows], np.float32)
        ys = np.array([r[1] if r is not None else np.full(5, tail[1]) for r in rows], np.float32)
        if self.mark.visible and np.array_equal(xs, self.mark.x) and np.array_equal(ys, self.mark.y):
            return  # (a paused run's pushes: nothing to send)
        with self.mark.hold_sync():
            self.mark.x, self.mark.y, self.mark.visible = xs, ys, True

    def _say(self):
        shown = [a for a in (self.gradient, self.step) if a.shown]
        legend = "".join(
            f"<span style='white-space:nowrap;margin-right:12px'><svg width='22' height='10'><line x1='0' y1='5' "
            f"x2='20' y2='5' stroke='{a.colour}' stroke-width='3'/></svg> {html.escape(a.label)} ×{a.k:g}</span>"
            for a in shown)
        if legend != self._legend:
            self._legend = legend
            self.legend.value = (f"<div style='font-size:12px' title='each arrow is drawn k times its length (×k) "
                                 f"so that it shows in the window'>{legend or 'no arrows at this point yet'}</div>")
