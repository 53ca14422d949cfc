"""The live %%descend panel: controls, status line, charts and the tensor table.

The panel observes the engine (one callback per chunk, throttled) and sends
control requests through the LiveRunner; it never runs steps itself.

Traffic (the Jupyter server drops output above 1000 messages/s or 1 MB/s, and
a mouse drag sends dozens of changes): control changes are coalesced, so only
the latest value of each control is applied, once, between chunks; a control
the panel sets itself (the other view of eta) does not come back as a change;
the status line and the eta entry are redrawn at most STATUS_RATE times a
second and the charts at most 1/PUSH_INTERVAL times a second, whatever the
input rate.
"""

import html
import math
import threading
import time

import ipywidgets as W
import numpy as np

from tfmagic.descent.optimizers import OPTIMIZERS, check_eta
from tfmagic.descent.status import NO_END_YET, Status
from tfmagic.present.messages import outcome
from tfmagic.runtime.devices import short as short_device
from tfmagic.present.text import STYLE, rate_text, tensors_html

from .badges import BADGES, DETACHED
from .charts import HistoryCharts

PUSH_INTERVAL = 0.2  # seconds between chart pushes while running: the browser redraws ~2000 SVG nodes each time
STATUS_RATE = 10  # status-line and eta-entry redraws per second, at most
ETA_STEP = 0.01  # of the eta slider, in decades
# The slider spans ETA_SPAN decades over ~440 px of track, ~170 px a decade (main: 5 over ~160, 32 px):
# a 10-px tremor moves eta by ~14 %. Its range is the start eta's neighbourhood and, for the
# optimizers it applies to, the 2/λ bound with room above it to see a run diverge.
ETA_SPAN, ETA_BELOW, ETA_ABOVE_BOUND = 2.5, 1.5, 0.5
BOUNDED = ("sgd", "momentum", "nesterov")  # (2/λ says nothing of the adaptive ones' steps)


IDLE_REFINE_FIRST, IDLE_REFINE_LAST = 0.25, 8.0  # seconds after a run: the picture drawn finer while idle
FIND_ETA_STEPS = 100  # the range test's steps (as --find-eta's default)


def _entry(eta):
    """eta as the exact entry shows it (6 significant digits, as the status line)."""
    return float(f"{eta:.6g}")


def eta_window(eta, bound, optimizer):
    """(min, max) of the eta slider, in decades: ETA_SPAN decades from ETA_BELOW under eta,
    or, with a 2/λ bound, ETA_SPAN decades up to ETA_ABOVE_BOUND over it, widened only to
    hold eta. min is log10(eta) less whole steps, so eta sits on a slider position (a
    snapped value would come back from the browser as a change)."""
    decade = math.log10(eta)
    lo = decade - ETA_BELOW
    if bound and optimizer in BOUNDED:
        top = math.log10(bound) + ETA_ABOVE_BOUND
        lo = min(decade - 0.25, top - ETA_SPAN)
        hi = max(top, lo + ETA_SPAN)
    else:
        hi = lo + ETA_SPAN
    lo = decade - math.ceil(round((decade - lo) / ETA_STEP, 6)) * ETA_STEP
    return lo, max(hi, decade + 0.25)


def _fmt(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.4g}"


class DescentPanel:
    def __init__(self, runner, result, steps, devices, curve=None, surface=None):
        self.runner = runner
        self.engine = engine = runner.engine
        self.result = result
        self._last_push = 0.0
        self._last_status = 0.0
        self._status_due = False  # a throttled status redraw is scheduled
        self._inbox = {}  # control -> its latest value from the browser, not yet applied
        self._inbox_lock = threading.Lock()  # observers run on a subshell's thread too
        self._setting = None  # (thread, control) while the panel sets that control itself
        self._device_names = devices  # short name -> full TensorFlow name
        runner.on_detach = self._show_detached  # (called on the main loop, between chunks)

        eta = engine.eta
        self._eta_max = engine.suggested_eta()  # sgd diverges above it: worth showing next to eta
        lo, hi = eta_window(eta, self._eta_max, engine.optimizer_name)
        self.eta_slider = W.FloatLogSlider(
            value=eta, base=10, min=lo, max=hi, step=ETA_STEP,
            description="eta", readout=False, continuous_update=True,
            style={"description_width": "28px"}, layout=W.Layout(width="480px"),
        )
        self.eta_text = W.FloatText(value=eta, layout=W.Layout(width="120px"), step=None)
        self.optimizer = W.Dropdown(options=list(OPTIMIZERS), value=engine.optimizer_name,
                                    description="optimizer", layout=W.Layout(width="200px"))
        self.steps = W.BoundedIntText(value=steps, min=1, max=10**9, description="steps",
                                      layout=W.Layout(width="210px"))
        short_now = next((s for s, full in devices.items() if full == engine.device), next(iter(devices)))
        self.device = W.Dropdown(options=list(devices), value=short_now, description="device",
                                 tooltip="takes effect on Reset",
                                 layout=W.Layout(width="290px" if engine.replicas else "170px"))
        button = dict(layout=W.Layout(width="86px"))
        self.play = W.Button(description="Pause", icon="pause", **button)
        self.step = W.Button(description="Step", icon="step-forward", **button)
        self.stop = W.Button(description="Stop", icon="stop", **button)
        self.reset = W.Button(description="Reset", icon="undo", **button)
        self.find_eta = W.Button(description="Find eta", icon="search", layout=W.Layout(width="100px"),
                                 tooltip="the learning-rate range test, from the start (as Reset): "
                                         "puts the eta it suggests into the eta control")
        for widget, css in [
            (self.eta_slider, "tfmagic-eta"), (self.eta_text, "tfmagic-eta-text"),
            (self.optimizer, "tfmagic-optimizer"), (self.play, "tfmagic-play"), (self.step, "tfmagic-step"),
            (self.stop, "tfmagic-stop"), (self.reset, "tfmagic-reset"), (self.find_eta, "tfmagic-find-eta"),
            (self.device, "tfmagic-device"),
            (self.steps, "tfmagic-steps"),
        ]:
            widget.add_class(css)
        self.status = W.HTML(layout=W.Layout(margin="4px 0 4px 0"))
        self.status.add_class("tfmagic-status")
        self.charts = HistoryCharts({n: tuple(v.shape) for n, v in engine.variables.items()},
                                    curve=curve, surface=surface, epochs=result.epochs is not None)
        self.table = W.HTML(f"{STYLE}<div class='tfmagic-html'>{tensors_html(result.tensors)}</div>")
        self.table.add_class("tfmagic-tensors")
        tensors = W.Accordion(children=[self.table], titles=("tensors in the cell",), selected_index=None)

        row1 = W.HBox([self.eta_slider, self.eta_text, self.optimizer, self.device],
                      layout=W.Layout(flex_flow="row wrap", align_items="center"))
        row2 = W.HBox([self.play, self.step, self.stop, self.reset, self.find_eta, self.steps],
                      layout=W.Layout(flex_flow="row wrap", align_items="center"))
        self.widget = W.VBox([row1, row2, self.status, self.charts.widget, tensors],
                             layout=W.Layout(max_width="920px"))
        self.widget.add_class("tfmagic-panel")

        for control in ("eta_slider", "eta_text", "optimizer"):
            getattr(self, control).observe(lambda ch, c=control: self._receive(c, ch["new"]), names="value")
        self.play.on_click(lambda _: runner.call(self._play_pause))
        self.step.on_click(lambda _: runner.call(self._step))
        self.stop.on_click(lambda _: runner.call(self._stop))
        self.reset.on_click(lambda _: runner.call(self._reset))
        self.find_eta.on_click(lambda _: runner.call(self._find_eta))
        engine.observe(self._on_chunk)
        runner.on_end.append(self.refresh)
        self._refining = 0  # counts run ends: only the latest run's idle redraws go on
        runner.on_end.append(lambda: self._refine_picture(IDLE_REFINE_FIRST, new=True))
        self._warning = ""
        # The cell's own run ends in the result printed under the panel, with its outcome in
        # words: the panel says it only for runs started from its buttons after that.
        self._result_says_outcome = True
        self.refresh()

    # -- from the engine (main thread, between chunks) ----------------------
    def _on_chunk(self, engine, chunk):
        now = time.perf_counter()
        if chunk.status == Status.RUNNING and now - self._last_push < PUSH_INTERVAL:
            return
        self._last_push = now
        self.refresh()

    def _epochs(self):
        """(end step, mean training loss, validation loss) of each epoch of a --data run, else None."""
        table = self.result.epochs
        if table is None:
            return None
        return table["epoch"] * self.engine.epoch_steps - 1, table["loss"], table["val_loss"]

    def _refine_picture(self, delay, new=False):
        """While the kernel is idle after a run, draw the loss picture finer as its budget
        (a share of the panel's time on screen) grows: a short run draws coarse, not slowly."""
        picture = self.charts.picture
        if new:
            self._refining += 1
        if picture is None or delay > IDLE_REFINE_LAST:
            return
        mine = self._refining

        def later():
            if mine != self._refining or self.runner.running or self.runner.detached or not picture.may_get_finer:
                return  # (a run's own chunks refine it, and its end starts this again)
            if not type(self.runner).any_running():
                self.refresh()  # draws finer when the budget allows it now
            self._refine_picture(2 * delay)  # (another panel's run: not between its chunks)

        self.runner.call_later(delay, later)

    def refresh(self):
        engine = self.engine
        # The charts end where the variables are: the point the status line reports (before a run: their values).
        end = engine.now or {n: float(np.asarray(v).reshape(-1)[0]) for n, v in engine.variables.items()
                             if v.shape.num_elements() == 1}
        self.charts.update(engine.history, end, self._epochs())
        self._update_status()
        self._update_buttons()

    def _show_status(self):
        """Redraw the status line soon: now, or once when STATUS_RATE allows."""
        wait = self._last_status + 1 / STATUS_RATE - time.perf_counter()
        if wait <= 0:
            self._update_status()
        elif not self._status_due:
            self._status_due = True
            self.runner.call_later(wait, self._update_status)

    def _update_status(self):
        self._status_due = False
        self._last_status = time.perf_counter()
        e = self.engine
        if not math.isclose(self.eta_text.value, e.eta, rel_tol=1e-6):
            self._show("eta_text", _entry(e.eta))
        status = DETACHED if self.runner.detached else (Status.RUNNING if self.runner.running else e.status)
        color = BADGES[status]
        # Where the variables are, as the charts end there (a retired engine's point is the newer run's).
        point = None if e.retired else e.now
        loss = point["loss"] if point else e.final_loss
        grad = point["grad_norm"] if point else e.final_grad_norm
        device = e.replicas.describe() if e.replicas else short_device(e.device) or "CPU:0"
        limit = ""
        if self._eta_max and e.optimizer_name == "sgd":
            limit = (f" <span title='2/λ, λ the largest curvature of the loss at the start: near the start plain "
                     f"gradient descent diverges above this eta (on a quadratic, everywhere)'>"
                     f"(sgd diverges above ≈ {self._eta_max:.3g} near the start)</span>")
        # Two rows, each short enough for one line at 1280 px with the file browser open (one
        # row wrapped the device alone onto a second line): where the run is, and how it runs.
        run = [f"iteration <b>{e.steps}</b>", f"{'batch loss' if e.mini_batches else 'loss'} <b>{_fmt(loss)}</b>",
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
        badge = (f"<span style='background:{color};color:white;border-radius:3px;padding:1px 6px;"
                 f"margin-right:10px'>{status}</span> ")
        message = outcome(e) if status not in NO_END_YET and not self._result_says_outcome else ""
        if self.runner.background and status == Status.RUNNING:  # (the kernel indicator says busy too)
            message = "running in the background (its cell has ended): Stop, %descend_runs stop or Kernel > Interrupt ends it."
        if self.runner.detached:
            message = "A newer run took over these variables; this panel no longer controls them."
        if self.runner.error is not None:
            message = str(self.runner.error)
        extra = "".join(
            f"<div style='color:#444;max-width:880px'>{html.escape(m)}</div>" for m in (message, self._warning) if m
        )
        # Separate boxes rather than " · " joins, so a wrapped line never starts with a dot; digits
        # of one width (tabular-nums), so the fields do not shift as the numbers change.
        row = lambda parts, first="": (
            "<div class='tfmagic-status-row' style='display:flex;flex-wrap:wrap;align-items:center;line-height:1.6'>"
            + first + " ".join(
                f"<span style='margin-right:16px;white-space:nowrap'>{p}</span>" for p in parts if p) + "</div>")
        self.status.value = (
            "<div style='font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;"
            f"font-variant-numeric:tabular-nums'>{row(run, badge)} {row(how)}</div>{extra}"  # (a space: 'eta' a word of the text)
        )

    def _rate_text(self, status):
        if self.runner.pace:
            return f"paced at {self.runner.pace:g} steps/s"
        return rate_text(self.engine, status == Status.RUNNING)  # (none after a single Step: too few to time)

    def _update_buttons(self):
        running = self.runner.running
        self.play.description, self.play.icon = ("Pause", "pause") if running else ("Play", "play")
        # A multi-worker run's controls would act on this worker only, leaving the others waiting.
        locked = self.runner.detached or bool(self.engine.replicas and self.engine.replicas.multi_worker)
        for b in (self.play, self.step, self.stop, self.reset, self.optimizer, self.eta_slider, self.eta_text, self.device):
            b.disabled = locked
        self.stop.disabled = locked or not running
        self.find_eta.disabled = locked or running

    # -- from the widgets ---------------------------------------------------
    def _receive(self, control, value):
        """A control changed (any thread): keep its latest value; apply once, between chunks."""
        if self._setting == (threading.get_ident(), control):
            return  # the panel showing a value, not the user choosing one
        with self._inbox_lock:
            first = not self._inbox
            self._inbox.pop(control, None)  # re-inserted last: the latest change is applied last
            self._inbox[control] = value
        if first:
            self.runner.call(self._apply_inbox)

    def _apply_inbox(self):
        """On the main loop: apply the latest value of each control that changed."""
        with self._inbox_lock:
            inbox, self._inbox = self._inbox, {}
        for control, value in inbox.items():
            if control == "optimizer":
                self.engine.set_optimizer(value)  # between chunks: the next chunk uses it
            else:
                self._set_eta(value, control)
        self._show_status()

    def _show(self, control, value):
        """Set a control's value without it counting as the user's change."""
        self._setting = (threading.get_ident(), control)
        try:
            setattr(getattr(self, control), "value", value)
        finally:
            self._setting = None

    def _set_eta(self, value, control):
        try:
            eta = check_eta(value)
        except ValueError as err:
            self._warning = f"{err}; eta stays {self.engine.eta:g}."
            self._show("eta_text", _entry(self.engine.eta))
            return
        if control == "eta_slider" and abs(math.log10(eta) - math.log10(self.engine.eta)) < ETA_STEP / 2:
            return  # the slider snapping a typed eta to its grid, not a move
        if control == "eta_slider":
            eta = _entry(eta)  # what the entry and the status show is what the engine uses
        self._warning = ""
        self.engine.eta = eta  # a variable assign: the next step uses it
        if control == "eta_text":
            slider = self.eta_slider
            if not 10 ** slider.min <= eta <= 10 ** slider.max:
                with slider.hold_sync():
                    slider.min = min(slider.min, math.floor(math.log10(eta)))
                    slider.max = max(slider.max, math.ceil(math.log10(eta)))
            with self._inbox_lock:
                moved = "eta_slider" in self._inbox
            if not moved:  # (else the user moved the slider since: that value comes next)
                self._show("eta_slider", eta)
        # (the entry follows a slider move in the throttled status redraw)

    def _play_pause(self):
        self._result_says_outcome = False
        if self.runner.running:
            self.runner.stop(Status.PAUSED)
        else:
            self.runner.start(self.steps.value)
        self._update_buttons()

    def _step(self):
        self._result_says_outcome = False
        def one_step():
            self.engine.run(1)
            self.engine.pause()
            self.refresh()

        self.runner.stop(Status.PAUSED)
        self.runner.when_idle(one_step)

    def _stop(self):
        self.runner.stop(Status.STOPPED)

    def _reset(self):
        self._result_says_outcome = False
        def reset():
            self.engine.reset(device=self._device_names[self.device.value])
            self.charts.reset()
            self.refresh()

        self.runner.stop(Status.STOPPED)
        self.runner.when_idle(reset)

    def _find_eta(self):
        self._result_says_outcome = False

        def sweep():
            self._warning = "finding eta: one step at each eta from 1e-7 up, until the loss blows up…"
            self.runner.sweep(FIND_ETA_STEPS, self._swept)
            self._update_status()
            self._update_buttons()

        self.runner.stop(Status.STOPPED)
        self.runner.when_idle(sweep)

    def _swept(self, sweep):
        """After the range test (which put the start back): its suggestion into the eta control."""
        self.charts.reset()
        if sweep is not None and sweep.suggested_eta:
            self._set_eta(sweep.suggested_eta, "eta_text")
            self._show("eta_text", _entry(self.engine.eta))
            bound = f"; sgd diverges above ≈ {sweep.bound:.3g}" if sweep.bound else ""
            where = "1/λ (the loss fell on above it)" if sweep.capped else "halfway down the loss's longest fall"
            self._warning = (f"find eta: eta ≈ {sweep.suggested_eta:.3g}, {where}, now in the eta "
                             f"control{bound}. Press Play to train from the start.")
        else:
            why = f" ({self.runner.error})" if self.runner.error else ": the loss did not fall at any eta it tried"
            self._warning = f"find eta: no suggestion{why}; eta stays {self.engine.eta:g}."
        self.refresh()

    def _show_detached(self):
        self.engine.unobserve(self._on_chunk)
        self._update_status()
        self._update_buttons()
