"""The live panel's status line: the run's status word on a badge, where the run is and how
it runs, then a message (how it ended, a warning, an error). Redrawn at most STATUS_RATE
times a second, whatever the input rate."""

import html
import math
import time

import ipywidgets as W
import numpy as np

from tfmagic.descent.status import NO_END_YET, Status
from tfmagic.present.messages import outcome
from tfmagic.present.progress import rate_text
from tfmagic.runtime.devices import short as short_device

from .badges import BADGES, DETACHED

STATUS_RATE = 10  # status-line and eta-entry redraws per second, at most


def _fmt(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.4g}"


class StatusLine:
    """`widget` (an HTML widget, class tfmagic-status) shows the run of `runner`; `result`
    gives a --data run's epochs, `steps` (a widget) the steps a run takes, `eta_max` the
    2/λ bound (or None). `warning` is shown under it; `result_says_outcome` while the
    cell's result under the panel says how the run ended."""

    def __init__(self, runner, result, steps, eta_max):
        self.runner, self.result, self.steps, self.eta_max = runner, result, steps, eta_max
        self.warning = ""
        self.steering = ""  # while the cell runs: why the controls cannot reach it (steering.py)
        self.shown = None  # a step the timeline shows (a history row), instead of where the run is (timeline.py)
        # The cell's own run ends in the result printed under the panel, with its outcome in
        # words: the panel says it only for runs started from its buttons after that.
        self.result_says_outcome = True
        self._last = 0.0
        self._due = False  # a throttled redraw is scheduled
        self.widget = W.HTML(layout=W.Layout(margin="4px 0 4px 0"))
        self.widget.add_class("tfmagic-status")

    def show_soon(self, redraw):
        """Call redraw() (which calls update) soon: now, or once when STATUS_RATE allows."""
        wait = self._last + 1 / STATUS_RATE - time.perf_counter()
        if wait <= 0:
            redraw()
        elif not self._due:
            self._due = True
            self.runner.call_later(wait, redraw)

    def update(self):
        self._due = False
        self._last = time.perf_counter()
        status = DETACHED if self.runner.detached else (Status.RUNNING if self.runner.running else self.runner.engine.status)
        run, how = self._fields(status)
        color = BADGES[status]
        badge = (f"<span style='background:{color};color:white;border-radius:3px;padding:1px 6px;"
                 f"margin-right:10px'>{status}</span> ")
        extra = "".join(
            f"<div style='color:var(--jp-ui-font-color1,#444);max-width:880px'>{html.escape(m)}</div>"
            for m in (self.steering, self._message(status), self.warning) if m
        )
        # Separate boxes rather than " · " joins, so a wrapped line never starts with a dot; digits
        # of one width (tabular-nums), so the fields do not shift as the numbers change.
        row = lambda parts, first="": (
            "<div class='tfmagic-status-row' style='display:flex;flex-wrap:wrap;align-items:center;line-height:1.6'>"
            + first + " ".join(
                f"<span style='margin-right:16px;white-space:nowrap'>{p}</span>" for p in parts if p) + "</div>")
        self.widget.value = (
            "<div style='font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;"
            f"font-variant-numeric:tabular-nums'>{row(run, badge)} {row(how)}</div>{extra}"  # (a space: 'eta' a word of the text)
        )

    def _fields(self, status):
        """Two rows, each short enough for one line at 1280 px with the file browser open (one
        row wrapped the device alone onto a second line): where the run is, and how it runs."""
        e = self.runner.engine
        # Where the variables are, as the charts end there (a retired engine's point is the newer run's).
        point = self.shown or (None if e.retired else e.now)
        loss = point["loss"] if point else e.final_loss
        grad = point["grad_norm"] if point else e.final_grad_norm
        device = e.replicas.describe() if e.replicas else short_device(e.device) or "CPU:0"
        limit = ""
        if self.eta_max and e.optimizer_name == "sgd":
            limit = (f" <span title='2/λ, λ the largest curvature of the loss at the start: near the start plain "
                     f"gradient descent diverges above this eta (on a quadratic, everywhere)'>"
                     f"(sgd diverges above ≈ {self.eta_max:.3g} near the start)</span>")
        run = [f"iteration <b>{int(point['step']) if self.shown else e.steps}</b>", f"{'batch loss' if e.mini_batches else 'loss'} <b>{_fmt(loss)}</b>",
               f"|grad| {_fmt(grad)}"]
        how = [f"eta {e.eta:g}{limit}", self._rate_text(status), device]
        table = self.result.epochs
        if table is not None:  # a --data run: which epoch, its mean loss, and the last validation loss
            total = -(-self.steps.value // e.epoch_steps)
            run.insert(1, f"epoch <b>{min(e.steps // e.epoch_steps + 1, total)}</b>/{total}")
            if len(table["epoch"]):
                run.insert(3, f"epoch {table['epoch'][-1]} mean loss {_fmt(float(table['loss'][-1]))}")
                if not np.isnan(table["val_loss"][-1]):
                    run.insert(4, f"val_loss {_fmt(float(table['val_loss'][-1]))}")
        return run, how

    def _message(self, status):
        runner = self.runner
        message = outcome(runner.engine) if status not in NO_END_YET and not self.result_says_outcome else ""
        if runner.background and status == Status.RUNNING:  # (the kernel indicator says busy too)
            message = "running in the background (its cell has ended): Stop, %descend_runs stop or Kernel > Interrupt ends it."
        if runner.detached:
            message = "A newer run took over these variables; this panel no longer controls them."
        if runner.error is not None:
            message = str(runner.error)
        return message

    def _rate_text(self, status):
        if self.runner.pace:
            return f"paced at {self.runner.pace:g} steps/s"
        return rate_text(self.runner.engine, status == Status.RUNNING)  # (none after a single Step: too few to time)
