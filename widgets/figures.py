"""What every tfmagic chart shares: data for the wire, round ticks, and bqplot
figures and axes laid out the same way."""

from __future__ import annotations

import math

import bqplot as bq
import ipywidgets as W
import numpy as np

FIG_HEIGHT = "300px"
FIG_MARGIN = dict(top=40, bottom=42, left=62, right=36)  # room for the last x tick label
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def decimate(n, max_points=2000):
    """Indices of at most `max_points` evenly spread steps of a length-n history,
    always including the first and the last."""
    if n <= max_points:
        return np.arange(n)
    # The step exceeds 1, so rounding keeps the indices strictly increasing.
    return np.linspace(0, n - 1, max_points).round().astype(np.int64)


def to_wire(a):
    """float32 for the wire; ±inf becomes NaN, which bqplot leaves out of the
    line and out of the axis range instead of stretching the axis to infinity."""
    a = np.asarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        a = np.where(np.isinf(a), np.float32(np.nan), a)
    return a


def empty():
    return np.zeros(0, np.float32)


def nice_ticks(lo, hi, count=5, integer=False):
    """At most about `count` round tick values in [lo, hi]: a horizontal axis of
    ~360 px has room for about five labels, more than d3's default of ten.
    `integer`: no ticks between whole numbers (an iteration axis)."""
    span = hi - lo
    if not span > 0:
        return np.array([lo], np.float64)
    base = 10 ** math.floor(math.log10(span / count))
    step = next(m * base for m in (1, 2, 5, 10) if span / (m * base) <= count)
    if integer:
        step = max(step, 1)
    return np.arange(math.ceil(lo / step), math.floor(hi / step) + 1) * step


def log_ticks(y):
    """Whole decades inside the positive range of y, at most about six; empty
    (bqplot's own ticks) under two. bqplot's own log ticks crowd the axis
    with 2s and 5s when the data spans 2 to 7 decades."""
    v = y[np.isfinite(y) & (y > 0)]
    if not v.size:
        return np.zeros(0)
    lo, hi = math.ceil(math.log10(v.min())), math.floor(math.log10(v.max()))
    step = max(1, math.ceil((hi - lo) / 6))
    ticks = 10.0 ** np.arange(lo, hi + 1, step)
    return ticks if len(ticks) >= 2 else np.zeros(0)


def figure(title, css_class, marks, axes, **kwargs):
    fig = bq.Figure(
        title=title, marks=marks, axes=axes, animation_duration=0,
        fig_margin=dict(FIG_MARGIN),
        layout=W.Layout(width="100%", height=FIG_HEIGHT, min_width="0", margin="0"),
        title_style={"font-size": "14px"}, **{"padding_y": 0.05, **kwargs},
    )
    fig.add_class(css_class)
    return fig


VIRIDIS = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"]  # bqplot's "viridis", low to high


def colour_key(lowest=None, highest=None):
    """The key of a heatmap coloured by log10 of the loss above its lowest point: a
    gradient bar as HTML under the figure (bqplot's colour axis drew a squashed box)."""
    from html import escape

    ends = ("lowest", "highest") if lowest is None else (f"{lowest:.3g}", f"{highest:.3g}")
    return (f"<div style='display:flex;align-items:center;gap:6px;font-size:12px;margin-left:62px'>"
            f"<span>loss {escape(ends[0])}</span>"
            f"<span style='width:140px;height:10px;background:linear-gradient(to right,{','.join(VIRIDIS)})'></span>"
            f"<span>{escape(ends[1])}</span><span style='color:#666'>(colour: log scale)</span></div>")


def y_axis(scale, label, **kwargs):
    return bq.Axis(scale=scale, label=label, side="left", label_offset="46px", **kwargs)


def axes(sx, sy, xlabel, ylabel):
    return [bq.Axis(scale=sx, label=xlabel, side="bottom"), y_axis(sy, ylabel)]


def set_x_range(scale, axis, lo, hi, integer=False):
    """Pin a horizontal axis to [lo, hi] with round ticks."""
    with scale.hold_sync():
        scale.min, scale.max = float(lo), float(hi)
    axis.tick_values = nice_ticks(lo, hi, integer=integer)


DASHES = {"solid": "", "dashed": "6,3", "dotted": "2,3", "dash_dotted": "6,3,2,3"}  # as bqplot draws them


def legend(labels, colors, line_styles=None):
    """A legend as HTML beside the figures, never over the data nor clipped: a
    swatch of each line's colour and style and its label, wrapping in the width it is given."""
    from html import escape

    styles = line_styles or ["solid"] * len(labels)
    items = "".join(
        f"<span style='display:inline-flex;align-items:center;margin:0 12px 2px 0;white-space:nowrap'>"
        f"<svg width='24' height='8' style='margin-right:5px'><line x1='0' y1='4' x2='24' y2='4' stroke='{c}' "
        f"stroke-width='2.5' stroke-dasharray='{DASHES[st]}'/></svg>{escape(label)}</span>"
        for label, c, st in zip(labels, colors, styles)
    )
    box = W.HTML(f"<div style='display:flex;flex-wrap:wrap;font-size:12px;line-height:1.5'>{items}</div>",
                 layout=W.Layout(margin="0 0 0 62px"))
    box.add_class("tfmagic-legend")
    return box
