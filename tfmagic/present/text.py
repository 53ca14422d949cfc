"""Text of results: what a terminal prints and a notebook shows without HTML (a result's repr)."""

import numpy as np

from tfmagic.descent.status import Status
from tfmagic.present.earlier import earlier_text
from tfmagic.present.messages import sharpness_said, steps_text
from tfmagic.present.multi import MULTI_HEAD, multi_rows, multi_summary


def value_text(t):
    if t is None:
        return "None"
    arr = np.asarray(t)
    if arr.ndim == 0:
        return f"{arr.item():.6g}" if arr.dtype.kind == "f" else str(arr.item())
    return np.array2string(arr, precision=5, suppress_small=True, threshold=20)


SHOWN_WHOLE = 10  # a variable with more elements is shown by its shape and norm (a model's weights)


def final_value_text(v):
    arr = np.asarray(v)
    if arr.size <= SHOWN_WHOLE:
        return value_text(arr)
    return f"shape {tuple(arr.shape)}, norm {np.linalg.norm(arr.astype(np.float64)):.6g}"


def describe(t):
    shape = tuple(t.shape)
    return f"shape={shape if shape else '()'} dtype={t.dtype.name}"


def constants_note(constants):
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


def grad_text(res):
    lines = [f"{res.target} = {value_text(res.value)}   ({describe(res.value)}, device {res.device})"]
    for name, g in res.gradients.items():
        if g is None:
            lines.append(f"d{res.target}/d{name} = None   ({res.reasons[name]})")
        else:
            lines.append(f"d{res.target}/d{name} = {value_text(g)}   ({describe(g)})")
    lines += ["tensors:", tensors_text(res.tensors)]
    lines += grad_notes(res)
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


def grad_notes(res):
    notes = list(res.notes)
    if res.bench:
        notes.append(_bench_text(res.bench))
    note = constants_note(res.constants)
    if note:
        notes.append(note)
    return notes


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
        lines.append(f"  {name} = {final_value_text(value)}")
    if res.epochs is not None and len(res.epochs["epoch"]):
        lines += ["epochs:", epochs_text(res.epochs)]
    if res.message:
        lines.append(res.message)
    said = sharpness_said(res.sharpness, res.optimizer, res.sharpness_error, res.sharpness_log and res.sharpness_log.samples)
    lines += [said] if said else []
    lines += res.notes
    note = constants_note(res.constants)
    if note:
        lines.append(note)
    if res.earlier:
        lines.append(earlier_text(res))
    return "\n".join(lines)


def epochs_text(table):
    """The per-epoch table of a --data run."""
    rows = [("epoch", "loss", "val_loss", "seconds")] + [
        (str(e), f"{lo:.4g}", "–" if np.isnan(v) else f"{v:.4g}", f"{t:.2f}")
        for e, lo, v, t in zip(table["epoch"], table["loss"], table["val_loss"], table["seconds"])
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


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


def multi_text(multi):
    rows = [MULTI_HEAD] + list(multi_rows(multi))
    widths = [max(len(r[i]) for r in rows) for i in range(len(MULTI_HEAD))]
    table = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(table + multi_summary(multi))
