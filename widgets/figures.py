"""What every tfmagic chart shares: data for the wire, round ticks, and bqplot
figures and axes laid out the same way."""

from __future__ import annotations

import math

import bqplot as bq
import ipywidgets as W
import numpy as np

from tfmagic.present.points import decimate  # noqa: F401 (the charts' import)

FIG_HEIGHT = "300px"
FIG_MARGIN = dict(top=40, bottom=42, left=62, right=36)  # room for the last x tick label
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


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
    """The key of a heatmap coloured by log10 of the loss above its lowest point (see
    picture.surface_colors): a gradient bar as HTML under the figure (bqplot's colour axis
    drew a squashed box), the lowest and highest loss at its ends and, under it, the loss at
    whole decades above the lowest, where those colours are."""
    from html import escape

    bar = f"background:linear-gradient(to right,{','.join(VIRIDIS)})"
    ends, ticks = ("lowest", "highest"), []
    if lowest is not None:
        ends = (f"{lowest:.3g}", f"{highest:.3g}")
    if lowest is not None and highest > lowest:
        eps = max((highest - lowest) * 1e-4, 1e-12)  # (as surface_colors)
        at = lambda height: (math.log10(height + eps) - math.log10(eps)) / (math.log10(highest - lowest + eps) - math.log10(eps))
        for k in range(math.floor(math.log10(eps)), math.ceil(math.log10(highest - lowest)) + 1):
            where = at(10.0 ** k)
            if 0.15 <= where <= 0.85 and all(abs(where - t) >= 0.3 for t, _ in ticks):
                # (digits enough to tell it from the lowest: 0.001001, not 0.001)
                digits = 3 + max(0, min(5, math.floor(math.log10(abs(lowest) or 1.0)) - k))
                ticks.append((where, f"{lowest + 10.0 ** k:.{digits}g}"))
    marks = "".join(
        f"<span style='position:absolute;left:{100 * x:.1f}%;top:10px;height:4px;border-left:1px solid var(--jp-ui-font-color2,#555)'></span>"
        f"<span style='position:absolute;left:{100 * x:.1f}%;top:13px;transform:translateX(-50%);white-space:nowrap'>"
        f"{escape(v)}</span>" for x, v in ticks)
    return (f"<div style='font-size:12px;margin-left:62px;line-height:1.2'>"
            f"<div style='display:flex;align-items:center;gap:6px;padding-bottom:{16 if ticks else 2}px'>"
            f"<span>loss</span><span>{escape(ends[0])}</span>"
            f"<span style='position:relative;width:200px;height:10px;flex:none;{bar}'>{marks}</span>"
            f"<span>{escape(ends[1])}</span></div>"
            f"<div style='color:var(--jp-ui-font-color2,#666)'>colour: the loss above its lowest, on a log scale</div></div>")


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


MARKER_SHAPES = {  # the legend's swatch of a marker, as bqplot draws it (12 px box)
    "circle": "<circle cx='12' cy='5' r='3.5'/>",
    "square": "<rect x='8.5' y='1.5' width='7' height='7'/>",
    "diamond": "<polygon points='12,0.5 16.5,5 12,9.5 7.5,5'/>",
    "triangle-down": "<polygon points='8,1.5 16,1.5 12,9'/>",
    "cross": "<polygon points='10.5,1 13.5,1 13.5,3.5 16,3.5 16,6.5 13.5,6.5 13.5,9 10.5,9 10.5,6.5 8,6.5 8,3.5 10.5,3.5'/>",
}


def legend(labels, colors, line_styles=None, markers=None):
    """A legend as HTML beside the figures, never over the data nor clipped: a swatch of
    each line's colour, style and marker and its label, wrapping in the width it is given."""
    from html import escape

    styles = line_styles or ["solid"] * len(labels)
    markers = markers or [None] * len(labels)
    shape = lambda m, c: f"<g fill='{c}'>{MARKER_SHAPES[m]}</g>" if m else ""
    items = "".join(
        f"<span style='display:inline-flex;align-items:center;margin:0 12px 2px 0;white-space:nowrap'>"
        f"<svg width='24' height='10' style='margin-right:5px'><line x1='0' y1='5' x2='24' y2='5' stroke='{c}' "
        f"stroke-width='2.5' stroke-dasharray='{DASHES[st]}'/>{shape(m, c)}</svg>{escape(label)}</span>"
        for label, c, st, m in zip(labels, colors, styles, markers)
    )
    box = W.HTML(f"<div style='display:flex;flex-wrap:wrap;font-size:12px;line-height:1.5'>{items}</div>",
                 layout=W.Layout(margin="0 0 0 62px"))
    box.add_class("tfmagic-legend")
    return box
