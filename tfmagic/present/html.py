"""HTML of results: what a notebook shows (a result's _repr_html_), styled by STYLE."""

import html

import numpy as np

from tfmagic.descent.status import NO_END_YET
from tfmagic.present.messages import sharpness_said, steps_text
from tfmagic.present.earlier import earlier_html, earlier_lines, legend_label
from tfmagic.present.multi import MULTI_HEAD, multi_rows, multi_summary
from tfmagic.present.points import final_point
from tfmagic.present.landscape_svg import landscape_svg
from tfmagic.present.sharpness import sharpness_svg
from tfmagic.present.svg import loss_svg, runs_svg, sweep_svg
from tfmagic.present.text import constants_note, describe, final_loss_text, final_value_text, grad_notes, sweep_text, value_text


# Scoped to tfmagic's own classes; JupyterLab's theme variables keep it readable in dark themes.
STYLE = """<style>
.tfmagic-html table {border-collapse: collapse; margin: 4px 0; font-size: 13px;}
.tfmagic-html th, .tfmagic-html td {padding: 2px 10px; text-align: left !important; vertical-align: top;
  border-bottom: 1px solid var(--jp-border-color2, #ddd);}
.tfmagic-html thead th {border-bottom: 2px solid var(--jp-border-color1, #bbb);}
.tfmagic-html pre {margin: 0; background: none; padding: 0; white-space: pre !important; word-break: normal !important;}
.tfmagic-html .tfmagic-reason, .tfmagic-html .tfmagic-note {color: var(--jp-warn-color0, #8a5a00);}
.tfmagic-html svg text {fill: currentColor;}
</style>"""


def tensors_html(tensors):
    head = "".join(f"<th>{h}</th>" for h in ("name", "kind", "shape", "dtype", "device"))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (r.name, r.kind, r.shape_text, r.dtype, r.device)) + "</tr>"
        for r in tensors.values()
    )
    return f"<table class='tfmagic-tensors'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def grad_html(res):
    e = html.escape
    rows = [
        f"<tr><th>{e(res.target)}</th><td><pre>{e(value_text(res.value))}</pre></td><td>{e(describe(res.value))}</td></tr>"
    ]
    for name, g in res.gradients.items():
        label = f"∂{res.target}/∂{name}"
        if g is None:
            rows.append(f"<tr><th>{e(label)}</th><td>None</td><td class='tfmagic-reason'>{e(res.reasons[name])}</td></tr>")
        else:
            rows.append(f"<tr><th>{e(label)}</th><td><pre>{e(value_text(g))}</pre></td><td>{e(describe(g))}</td></tr>")
    notes = "".join(f"<p class='tfmagic-note'>{e(n)}</p>" for n in grad_notes(res))
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
    values = "".join(f"<tr><th>{e(n)}</th><td><pre>{e(final_value_text(v))}</pre></td></tr>" for n, v in res.values.items())
    said = sharpness_said(res.sharpness, res.optimizer, res.sharpness_error, res.sharpness_log and res.sharpness_log.samples)
    extra = [res.message, said] + res.notes + [constants_note(res.constants)]
    return (
        f"{STYLE}<div class='tfmagic-descent tfmagic-html'><b class='tfmagic-status-{e(res.status)}'>{e(res.status)}</b>: "
        f"{steps_text(res.steps)} of {e(res.optimizer)} (eta={res.eta:g}) on {e(res.device)}, {e(final_loss_text(res))}"
        f"<table>{values}</table>" + _epochs_html(res.epochs) + "".join(f"<p>{e(x)}</p>" for x in extra if x)
        + loss_svg(res.history, run_end(res), res.epoch_points(), earlier_lines(res),
                   legend_label(res.this_run, now=True) if res.earlier else "loss") + earlier_html(res)
        + landscape_svg(getattr(res, "landscape", None))
        + sharpness_svg(res.sharpness, res.history) + "</div>"
    )


def sweep_html(sweep):
    e = html.escape
    return (f"{STYLE}<div class='tfmagic-html tfmagic-find-eta'>"
            + "".join(f"<p>{e(line)}</p>" for line in sweep_text(sweep).splitlines()) + sweep_svg(sweep) + "</div>")


def multi_html(multi):
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in MULTI_HEAD)
    body = "".join(
        "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in multi_rows(multi)
    )
    notes = "".join(f"<p>{e(s)}</p>" for s in multi_summary(multi))
    return f"{STYLE}<div class='tfmagic-html tfmagic-compare'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}{runs_svg(multi)}{landscape_svg(getattr(multi, 'landscape', None))}</div>"
