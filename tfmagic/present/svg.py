"""Small static SVG charts for a result's HTML: they survive where the live widgets do not
(a reopened notebook, GitHub, nbviewer, an exported HTML)."""

import numpy as np

from tfmagic.present.points import decimate, path_points


SVG_W, SVG_H, SVG_POINTS = 360, 110, 300


def loss_svg(history, end=None):
    """A small static chart of the loss, for the result's HTML: it survives where the live
    widgets do not (a reopened notebook, GitHub, nbviewer, an exported HTML). It ends at
    `end`, the point the run ended at (see points.path_points); '' if < 2 finite points."""
    points = path_points(history, end)
    loss, steps = np.asarray(points["loss"], np.float64), points["step"]
    keep = np.isfinite(loss)
    loss, steps = loss[keep], steps[keep]
    if len(loss) < 2:
        return ""
    idx = decimate(len(loss), SVG_POINTS)
    loss, steps = loss[idx], steps[idx]
    log = loss.min() > 0 and loss.max() / loss.min() > 100
    y = np.log10(loss) if log else loss
    span = lambda a: (a - a.min()) / ((a.max() - a.min()) or 1.0)
    px = 40 + span(steps) * (SVG_W - 50)
    py = 16 + (1 - span(y)) * (SVG_H - 36)
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py))
    label = lambda v: f"{v:.3g}"
    return (
        f"<svg class='tfmagic-loss-svg' width='{SVG_W}' height='{SVG_H}' role='img' "
        f"aria-label='loss by iteration, from {label(loss[0])} at {int(steps[0])} to {label(loss[-1])} at {int(steps[-1])}' "
        f"data-last-step='{int(steps[-1])}' data-last-loss='{float(loss[-1])!r}' style='font:10px sans-serif'>"
        f"<polyline fill='none' stroke='#1f77b4' stroke-width='1.5' points='{points}'/>"
        f"<text x='2' y='20'>{label(loss.max())}</text><text x='2' y='{SVG_H - 20}'>{label(loss.min())}</text>"
        f"<text x='40' y='{SVG_H - 4}'>{int(steps[0])}</text>"
        f"<text x='{SVG_W - 10}' y='{SVG_H - 4}' text-anchor='end'>iteration {int(steps[-1])}</text>"
        f"<text x='{SVG_W / 2}' y='10' text-anchor='middle' fill='#555'>loss{' (log scale)' if log else ''}</text>"
        "</svg>"
    )


def sweep_svg(sweep):
    """The smoothed loss against eta (log axis), the suggestion marked."""
    if len(sweep.etas) < 2:
        return ""
    x, y = np.log10(sweep.etas), sweep.smoothed
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    span = lambda a: (a - a.min()) / ((a.max() - a.min()) or 1.0)
    px, py = 40 + span(x) * (SVG_W - 50), 16 + (1 - span(y)) * (SVG_H - 36)
    mark = ""
    if sweep.suggested_eta:
        mx = 40 + (np.log10(sweep.suggested_eta) - x.min()) / ((x.max() - x.min()) or 1.0) * (SVG_W - 50)
        mark = f"<line x1='{mx:.1f}' x2='{mx:.1f}' y1='14' y2='{SVG_H - 20}' stroke='#d62728' stroke-dasharray='4,3'/>"
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py))
    return (
        f"<svg class='tfmagic-sweep-svg' width='{SVG_W}' height='{SVG_H}' role='img' aria-label='loss by eta' "
        f"style='font:10px sans-serif'>{mark}<polyline fill='none' stroke='#1f77b4' stroke-width='1.5' points='{points}'/>"
        f"<text x='{SVG_W / 2}' y='10' text-anchor='middle' fill='#555'>smoothed loss by eta (log scale)</text>"
        f"<text x='40' y='{SVG_H - 4}'>{10 ** x.min():.0e}</text>"
        f"<text x='{SVG_W - 10}' y='{SVG_H - 4}' text-anchor='end'>eta {10 ** x.max():.0e}</text></svg>"
    )
