"""Small static SVG charts for a result's HTML: they survive where the live widgets do not
(a reopened notebook, GitHub, nbviewer, an exported HTML). Every line ends at the point the
result's text reports (points.path_points); non-finite points are left out (no NaN in a file)."""

import html

import numpy as np

from tfmagic.descent.status import ESCAPED
from tfmagic.present.points import decimate, final_point, path_points


SVG_W, SVG_H, SVG_POINTS = 360, 110, 300
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 16, 20  # the plot area's margins
FAINT = " class='tfmagic-earlier' stroke-opacity='0.45' fill-opacity='0.45'"  # an earlier run's line
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]  # (the live charts')


def _finite(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def _fmt(v):
    return f"{v:.3g}"


def chart_svg(css, title, lines, x_label="iteration", log=None, log_x=False, marks="", width=SVG_W, floor=None,
              faint=frozenset()):
    """An SVG of `lines` ((label, x, y, colour, dots) each; dots: markers, not a line) on shared
    axes; '' if no line has 2 finite points. log=None: a log loss axis where all is > 0 and spans
    more than two decades; `floor`: where a value <= 0 is drawn on a log axis (the title says so).
    Each line says where it ends (data-last-x, data-last-y: its value, not the floor). The lines
    labelled in `faint` (earlier runs) are drawn first, faint, behind the others."""
    lines = [(label, *_finite(x, y), colour, dots) for label, x, y, colour, dots in lines]
    drawn = [ln for ln in lines if len(ln[1])]
    if not any(len(ln[1]) >= 2 for ln in drawn):
        return ""
    at = (lambda y: np.maximum(y, floor)) if floor else (lambda y: y)  # noqa: E731
    xs, ys = np.concatenate([ln[1] for ln in drawn]), at(np.concatenate([ln[2] for ln in drawn]))
    if log is None:
        log = bool(ys.min() > 0 and ys.max() / ys.min() > 100)
    log = log and ys.min() > 0
    fy = np.log10 if log else (lambda a: a)
    fx = np.log10 if log_x else (lambda a: a)
    (x0, x1), (y0, y1) = (fx(xs).min(), fx(xs).max()), (fy(ys).min(), fy(ys).max())
    px = lambda a: LEFT + (fx(a) - x0) / ((x1 - x0) or 1.0) * (width - LEFT - RIGHT)  # noqa: E731
    py = lambda a: TOP + (1 - (fy(at(a)) - y0) / ((y1 - y0) or 1.0)) * (SVG_H - TOP - BOTTOM)  # noqa: E731
    keyed = len(lines) > 1
    height = SVG_H + (14 * len(lines) if keyed else 0)
    body = [marks(px, py) if callable(marks) else marks]
    for label, x, y, colour, dots in sorted(drawn, key=lambda ln: ln[0] not in faint):
        if len(x) > SVG_POINTS:
            keep = decimate(len(x), SVG_POINTS)
            x, y = x[keep], y[keep]
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px(x), py(y)))
        end = f"data-label='{html.escape(label, quote=True)}' data-last-x='{float(x[-1])!r}' data-last-y='{float(y[-1])!r}'"
        if dots or len(x) == 1:
            circles = "".join(f"<circle cx='{a:.1f}' cy='{b:.1f}' r='2.5'/>" for a, b in zip(px(x), py(y)))
            body.append(f"<g class='tfmagic-svg-dots' fill='{colour}' {end} data-points='{pts}'>{circles}</g>")
        else:
            look = FAINT if label in faint else ""
            body.append(f"<polyline fill='none' stroke='{colour}' stroke-width='1.5'{look} {end} points='{pts}'/>")
    for i, (label, x, _, colour, _) in enumerate(lines if keyed else ()):
        y = SVG_H + 14 * i + 4
        body.append(f"<rect x='{LEFT}' y='{y}' width='14' height='3' fill='{colour}'{FAINT if label in faint else ''}/>"
                    f"<text x='{LEFT + 20}' y='{y + 5}'>{html.escape(label)}{'' if len(x) else ' (no finite loss)'}</text>")
    lo, hi = (10 ** y0, 10 ** y1) if log else (y0, y1)
    first, last = (10 ** x0, 10 ** x1) if log_x else (x0, x1)
    xfmt = (lambda v: f"{v:.0e}") if log_x else (lambda v: f"{int(v)}")
    scale = (f" (log scale; 0 drawn at {_fmt(floor)})" if floor and (np.concatenate([ln[2] for ln in drawn]) <= 0).any()
             else " (log scale)") if log else ""
    return (
        f"<svg class='{css}' width='{width}' height='{height}' role='img' aria-label='{html.escape(title, quote=True)}' "
        f"data-log='{int(log)}' data-x-range='{float(first)!r},{float(last)!r}' data-y-range='{float(lo)!r},{float(hi)!r}' style='font:10px sans-serif'>"
        + "".join(body)
        + f"<text x='2' y='20'>{_fmt(hi)}</text><text x='2' y='{SVG_H - BOTTOM}'>{_fmt(lo)}</text>"
        f"<text x='{LEFT}' y='{SVG_H - 4}'>{xfmt(first)}</text>"
        f"<text x='{width - RIGHT}' y='{SVG_H - 4}' text-anchor='end'>{x_label} {xfmt(last)}</text>"
        f"<text x='{width / 2}' y='10' text-anchor='middle' fill='#555'>{html.escape(title)}{scale}</text>"
        "</svg>"
    )


def loss_svg(history, end=None, epochs=None, earlier=(), label="loss"):
    """The loss of a run to `end`, the point it ended at; `epochs` = (end steps, mean training
    losses, validation losses) of a --data run, drawn as dots, as the live chart draws them;
    `earlier` = (label, steps, losses) of the cell's earlier runs, drawn faint behind it."""
    points = path_points(history, end)
    loss, steps = _finite(points["step"], points["loss"])[::-1]
    lines = [(label, steps, loss, COLORS[0], False)]
    if epochs is not None and len(epochs[0]):
        lines.append(("epoch mean", epochs[0], epochs[1], COLORS[1], True))
        if np.isfinite(epochs[2]).any():
            lines.append(("validation", epochs[0], epochs[2], COLORS[3], True))
    faint = [(name, x, y, COLORS[1 + i % (len(COLORS) - 1)], False) for i, (name, x, y) in enumerate(earlier)]
    svg = chart_svg("tfmagic-loss-svg", "loss", lines + faint, faint={ln[0] for ln in faint})
    if not svg or len(loss) < 2:
        return ""
    return svg.replace(" role='img'", f" data-last-step='{int(steps[-1])}' data-last-loss='{float(loss[-1])!r}' role='img'", 1)


def runs_svg(multi, budget=3 * SVG_POINTS):
    """--compare/--restarts: each run's loss to the point it ended at (the table's final loss);
    `budget` points in all, so a notebook of many runs stays small."""
    lines, escaped = [], False
    max_points = min(SVG_POINTS, max(40, budget // max(len(multi.runs), 1)))
    for i, run in enumerate(multi.runs.values()):
        p = path_points(run.history, final_point(run.steps, run.final_loss, run.values), max_points)
        lines.append((f"{run.label}: {run.status}", p["step"], p["loss"], COLORS[i % len(COLORS)], False))
        escaped = escaped or run.status in ESCAPED
    loss = np.concatenate([np.asarray(ln[2], np.float64) for ln in lines])
    loss = loss[np.isfinite(loss)]
    floor = None
    if escaped and loss.size and loss.min() >= 0 and (loss > 0).any():  # (a log axis shows a divergence and the rest)
        floor = float(loss[loss > 0].min() / 10) if (loss <= 0).any() else None
        return chart_svg("tfmagic-runs-svg", "loss of each run", lines, log=True, floor=floor)
    return chart_svg("tfmagic-runs-svg", "loss of each run", lines)


def sweep_svg(sweep):
    """The smoothed loss against eta (log axis), the suggestion marked."""
    if len(sweep.etas) < 2:
        return ""
    suggested = sweep.suggested_eta

    def mark(px, py):
        if not suggested:
            return ""
        x = px(np.float64(suggested))
        return (f"<line class='tfmagic-suggested' data-eta='{float(suggested)!r}' x1='{x:.1f}' x2='{x:.1f}' y1='14' "
                f"y2='{SVG_H - BOTTOM}' stroke='#d62728' stroke-dasharray='4,3'/>")

    lines = [("smoothed loss", sweep.etas, sweep.smoothed, COLORS[0], False)]
    return chart_svg("tfmagic-sweep-svg", "smoothed loss by eta (eta on a log scale)", lines, x_label="eta", log=False, log_x=True, marks=mark)
