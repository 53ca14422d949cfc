"""Text and HTML presentation of results (what a terminal or a plain notebook shows)."""

import html

import numpy as np

from tfmagic.present.messages import steps_text
from tfmagic.descent.history import shown_by_value
from tfmagic.descent.observers import Observer
from tfmagic.descent.status import NO_END_YET, Status
from tfmagic.present.points import decimate, final_point, path_points


def _value_text(t):
    if t is None:
        return "None"
    arr = np.asarray(t)
    if arr.ndim == 0:
        return f"{arr.item():.6g}" if arr.dtype.kind == "f" else str(arr.item())
    return np.array2string(arr, precision=5, suppress_small=True, threshold=20)


SHOWN_WHOLE = 10  # a variable with more elements is shown by its shape and norm (a model's weights)


def _final_value_text(v):
    arr = np.asarray(v)
    if arr.size <= SHOWN_WHOLE:
        return _value_text(arr)
    return f"shape {tuple(arr.shape)}, norm {np.linalg.norm(arr.astype(np.float64)):.6g}"


def _describe(t):
    shape = tuple(t.shape)
    return f"shape={shape if shape else '()'} dtype={t.dtype.name}"


def _constants_note(constants):
    if not constants:
        return ""
    names = ", ".join(sorted(constants))
    return (
        f"Note: {names} {'is a Python/numpy value' if len(constants) == 1 else 'are Python/numpy values'} "
        "read from a global and compiled in as a constant; a later change is seen only when the cell runs again."
    )


def tensors_text(tensors):
    rows = [("name", "kind", "shape", "dtype", "device")] + [
        (r.name, r.kind, str(r.shape), r.dtype, r.device) for r in tensors.values()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


# Scoped to tfmagic's own classes; JupyterLab's theme variables keep it readable in dark themes.
STYLE = """<style>
.tfmagic-html table {border-collapse: collapse; margin: 4px 0; font-size: 13px;}
.tfmagic-html th, .tfmagic-html td {padding: 2px 10px; text-align: left !important; vertical-align: top;
  border-bottom: 1px solid var(--jp-border-color2, #ddd);}
.tfmagic-html thead th {border-bottom: 2px solid var(--jp-border-color1, #bbb);}
.tfmagic-html pre {margin: 0; background: none; padding: 0; white-space: pre !important; word-break: normal !important;}
.tfmagic-html .tfmagic-reason, .tfmagic-html .tfmagic-note {color: var(--jp-warn-color0, #8a5a00);}
</style>"""


def tensors_html(tensors):
    head = "".join(f"<th>{h}</th>" for h in ("name", "kind", "shape", "dtype", "device"))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (r.name, r.kind, r.shape_text, r.dtype, r.device)) + "</tr>"
        for r in tensors.values()
    )
    return f"<table class='tfmagic-tensors'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def grad_text(res):
    lines = [f"{res.target} = {_value_text(res.value)}   ({_describe(res.value)}, device {res.device})"]
    for name, g in res.gradients.items():
        if g is None:
            lines.append(f"d{res.target}/d{name} = None   ({res.reasons[name]})")
        else:
            lines.append(f"d{res.target}/d{name} = {_value_text(g)}   ({_describe(g)})")
    lines += ["tensors:", tensors_text(res.tensors)]
    lines += _grad_notes(res)
    return "\n".join(lines)


def _bench_text(b):
    retrace = (
        "traced once: later calls reuse the graph"
        if b["traces"] == 1
        else f"traced {b['traces']} times (a new Python value or tensor shape/dtype as argument makes a new graph)"
    )
    return (
        f"compiled (tf.function): {b['compiled_s'] * 1e6:,.0f} µs per call, eager: {b['eager_s'] * 1e6:,.0f} µs "
        f"per call: {b['speedup']:.1f}x faster compiled; {retrace}."
    )


def _grad_notes(res):
    notes = list(res.notes)
    if res.bench:
        notes.append(_bench_text(res.bench))
    note = _constants_note(res.constants)
    if note:
        notes.append(note)
    return notes


def grad_html(res):
    e = html.escape
    rows = [
        f"<tr><th>{e(res.target)}</th><td><pre>{e(_value_text(res.value))}</pre></td><td>{e(_describe(res.value))}</td></tr>"
    ]
    for name, g in res.gradients.items():
        label = f"∂{res.target}/∂{name}"
        if g is None:
            rows.append(f"<tr><th>{e(label)}</th><td>None</td><td class='tfmagic-reason'>{e(res.reasons[name])}</td></tr>")
        else:
            rows.append(f"<tr><th>{e(label)}</th><td><pre>{e(_value_text(g))}</pre></td><td>{e(_describe(g))}</td></tr>")
    notes = "".join(f"<p class='tfmagic-note'>{e(n)}</p>" for n in _grad_notes(res))
    return (
        f"{STYLE}<div class='tfmagic-grad tfmagic-html'><table>{''.join(rows)}</table>"
        f"<div>device: {e(res.device)}</div>{tensors_html(res.tensors)}{notes}</div>"
    )


def run_end(res):
    """The point a DescentResult's run is at: where it ended (its final loss and values), or
    while it runs, its latest point."""
    engine = res.engine
    if engine.status in NO_END_YET and not engine.retired:
        return engine.now
    return final_point(res.steps, res.final_loss, res.values, engine.final_grad_norm)


def final_loss_text(res):
    """'final loss 0.25'; a mini-batch run's says it is one batch's and gives the last epoch's mean."""
    loss = res.final_loss
    text = f"final loss {'None' if loss is None else format(loss, '.6g')}"
    if not res.engine.mini_batches:
        return text
    text += " on one mini-batch"
    table = res.epochs
    if table is not None and len(table["epoch"]):
        text += f" (mean over epoch {table['epoch'][-1]}: {table['loss'][-1]:.6g})"
    return text


def descent_text(res):
    lines = [
        f"{res.status}: {steps_text(res.steps)} of {res.optimizer} (eta={res.eta:g}) on {res.device}, "
        f"{final_loss_text(res)}"
    ]
    for name, value in res.values.items():
        lines.append(f"  {name} = {_final_value_text(value)}")
    if res.epochs is not None and len(res.epochs["epoch"]):
        lines += ["epochs:", epochs_text(res.epochs)]
    if res.message:
        lines.append(res.message)
    lines += res.notes
    note = _constants_note(res.constants)
    if note:
        lines.append(note)
    return "\n".join(lines)


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


def _epochs_html(table):
    if table is None or not len(table["epoch"]):
        return ""
    head = "".join(f"<th>{h}</th>" for h in ("epoch", "loss", "val_loss", "seconds"))
    body = "".join(
        f"<tr><td>{ep}</td><td>{lo:.4g}</td><td>{'–' if np.isnan(v) else format(v, '.4g')}</td><td>{t:.2f}</td></tr>"
        for ep, lo, v, t in zip(table["epoch"], table["loss"], table["val_loss"], table["seconds"]))
    return f"<table class='tfmagic-epochs'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def descent_html(res):
    e = html.escape
    values = "".join(f"<tr><th>{e(n)}</th><td><pre>{e(_final_value_text(v))}</pre></td></tr>" for n, v in res.values.items())
    extra = [res.message] + res.notes + [_constants_note(res.constants)]
    return (
        f"{STYLE}<div class='tfmagic-descent tfmagic-html'><b class='tfmagic-status-{e(res.status)}'>{e(res.status)}</b>: "
        f"{steps_text(res.steps)} of {e(res.optimizer)} (eta={res.eta:g}) on {e(res.device)}, {e(final_loss_text(res))}"
        f"<table>{values}</table>" + _epochs_html(res.epochs) + "".join(f"<p>{e(x)}</p>" for x in extra if x)
        + loss_svg(res.history, run_end(res)) + "</div>"
    )


def epoch_line(row, epochs):
    """'epoch 2/5: loss 0.4312, val_loss 0.5104 (1.2 s)', as Keras's fit prints it."""
    epoch, loss, val, seconds = row
    val_text = "" if np.isnan(val) else f", val_loss {val:.4g}"
    return f"epoch {epoch}/{epochs}: loss {loss:.4g}{val_text} ({seconds:.1f} s)"


def epochs_text(table):
    """The per-epoch table of a --data run."""
    rows = [("epoch", "loss", "val_loss", "seconds")] + [
        (str(e), f"{l:.4g}", "–" if np.isnan(v) else f"{v:.4g}", f"{t:.2f}")
        for e, l, v, t in zip(table["epoch"], table["loss"], table["val_loss"], table["seconds"])
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


RATE_STEPS = 20  # a step rate is shown once measured on this many steps (one gave "299 steps/s") ...
RATE_SECONDS = 0.002  # ... and this long: well above a call's jitter (~0.2 ms)


def rate_text(engine, running):
    """'12,345 steps/s' once the run's rate is measured on enough steps and time; 'compiling'
    while a run has not got that far; '' otherwise (a single step, a short run)."""
    steps, seconds = engine.rate_basis
    if steps >= RATE_STEPS and seconds >= RATE_SECONDS and engine.steps_per_second:
        return f"{engine.steps_per_second:,.0f} steps/s"
    return "compiling" if running and not steps else ""


class TextProgress(Observer):
    """A one-line progress bar, redrawn at most ~5 times a second."""

    def __init__(self, total, stream, interval=0.2):
        import time

        self.total, self.stream, self.interval = total, stream, interval
        self._clock = time.perf_counter
        self._open = False  # a bar line not ended yet
        self._last = 0.0
        self._start = None

    def chunk(self, engine, chunk):
        now = self._clock()
        if self._start is None:
            self._start = now
        if chunk.epochs:  # a --data run: a line per epoch the chunk closed
            self.close()
            for row in chunk.epochs:
                self.stream.write(epoch_line(row, -(-self.total // engine.epoch_steps)) + "\n")
        elif chunk.status == Status.RUNNING and now - self._last < self.interval:
            return
        self._last = now
        done = min(engine.steps, self.total)
        width = 30
        filled = int(width * done / max(self.total, 1))
        if chunk.status != Status.RUNNING and engine.final_loss is not None:
            loss = engine.final_loss  # where the run ended (also when it took no step)
        else:
            loss = chunk.rows["loss"][-1] if len(chunk.rows["loss"]) else float("nan")
        rate = rate_text(engine, chunk.status == Status.RUNNING)
        rate = f" {rate}" if rate else ""
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} loss {loss:.6g} eta {engine.eta:g}{rate}"
        )
        self._open = chunk.status == Status.RUNNING
        if not self._open:
            self.stream.write("\n")
        self.stream.flush()

    def close(self):
        """End the bar's line, so a message after a failed run starts on its own line."""
        if self._open:
            self.stream.write("\n")
            self._open = False


class IterationPrinter(Observer):
    """Prints 'iteration: i x: ... y: ...' every K steps, as the course's loop does.

    The course prints x after its update and y before it; so do we.
    """

    needs_every_step = True  # rows one step apart, so i and "x after" are right

    def __init__(self, every, stream):
        self.every, self.stream = every, stream

    def chunk(self, engine, chunk):
        names = [c for c in engine.columns[3:]]
        after = {n: np.append(chunk.rows[n][1:], _summary(engine.variables[n])) for n in names}
        # a larger variable is shown by its norm, and says so
        shown = {n: n if shown_by_value(engine.variables[n]) else f"|{n}|" for n in names}
        loss_name = engine.loss_label or "y"  # (unnamed: the course's y)
        for j, loss in enumerate(chunk.rows["loss"]):
            i = chunk.start + j
            if i % self.every == 0:
                xs = " ".join(f"{shown[n]}: {after[n][j]:.6g}" for n in names)
                self.stream.write(f"iteration: {i} {xs} {loss_name}: {loss:.6g}\n")


def _summary(var):
    arr = np.asarray(var)
    return float(arr.reshape(())) if shown_by_value(var) else float(np.linalg.norm(arr))


# -- --find-eta ----------------------------------------------------------------

def sweep_text(sweep):
    if not len(sweep.etas):
        return "find-eta: the loss was not finite after the first step; check the cell and the starting values."
    lines = [f"find-eta: {len(sweep.etas) + 1} steps, eta from {sweep.etas[0]:.1e} to {sweep.etas[-1]:.1e}"
             + ("; stopped when the loss blew up" if sweep.stopped_early else "")
             + ("; interrupted" if sweep.status == Status.INTERRUPTED else "")]
    if sweep.suggested_eta:
        where = ("1/λ, half the eta where plain gradient descent diverges: the loss's longest fall went on "
                 "above it" if sweep.capped else "halfway down the smoothed loss's longest fall")
        lines.append(f"suggested eta ≈ {sweep.suggested_eta:.3g}: {where} (use --eta {sweep.suggested_eta:.2g})")
    else:
        lines.append("no suggestion: the loss did not fall anywhere in the sweep")
    if sweep.bound:
        lines.append(f"plain gradient descent diverges above eta ≈ 2/λ = {sweep.bound:.3g} (the curvature at the start)")
    lines.append("The variables and the optimizer's state are back where they started.")
    return "\n".join(lines)


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


def sweep_html(sweep):
    e = html.escape
    return (f"{STYLE}<div class='tfmagic-html tfmagic-find-eta'>"
            + "".join(f"<p>{e(line)}</p>" for line in sweep_text(sweep).splitlines()) + sweep_svg(sweep) + "</div>")
