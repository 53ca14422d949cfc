"""The live panel's controls: eta (a log slider and its exact entry), optimizer, device,
steps and the buttons, with the CSS classes tests and users find them by.

Traffic (a mouse drag sends dozens of changes): changes are coalesced, so only the latest
value of each control is applied, once, between chunks; a value the panel sets itself
(the other view of eta) does not come back as a change.
"""

import math
import threading
import time

import ipywidgets as W

from tfmagic.descent.optimizers import OPTIMIZERS

ETA_STEP = 0.01  # of the eta slider, in decades
# The slider spans ETA_SPAN decades over ~440 px of track, ~170 px a decade (main: 5 over ~160, 32 px):
# a 10-px tremor moves eta by ~14 %. Its range is the start eta's neighbourhood and, for the
# optimizers it applies to, the 2/λ bound with room above it to see a run diverge.
ETA_SPAN, ETA_BELOW, ETA_ABOVE_BOUND = 2.5, 1.5, 0.5
BOUNDED = ("sgd", "momentum", "nesterov")  # (2/λ says nothing of the adaptive ones' steps)
CHANGING = ("eta_slider", "eta_text", "optimizer")  # the controls whose changes are coalesced
# A browser may send back a value the panel put on the slider (snapped to its grid) after eta
# has moved on (code setting etas in a loop): a position the panel showed this recently is its own.
ECHO_S = 2.0
# Names a screen reader says for the controls that show no words of their own (widgets/a11y.py).
ARIA_NAMES = {".tfmagic-eta .noUi-handle": "eta, log scale", ".tfmagic-eta-text input": "eta, exact value"}


def entry(eta):
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


class Controls:
    """The controls' widgets (`rows`: the two rows the panel shows) and their changes.

    `listen(post, apply)`: a change of eta or the optimizer, from any thread, is kept as
    that control's latest value; `post(fn)` runs fn on the main loop (the runner's call),
    where `apply(inbox)` gets {control: latest value}, in the order of the last changes.
    """

    def __init__(self, engine, steps, devices, eta_max):
        self._inbox = {}  # control -> its latest value from the browser, not yet applied
        self._inbox_lock = threading.Lock()  # observers run on a subshell's thread too
        self._setting = None  # (thread, control) while the panel sets that control itself
        self._shown = {}  # slider position -> when the panel put the handle there (see ECHO_S)
        self._device_names = devices  # short name -> full TensorFlow name
        self._build_eta(engine.eta, eta_max, engine.optimizer_name)
        self.steps = W.BoundedIntText(value=steps, min=1, max=10**9, description="steps",
                                      layout=W.Layout(width="210px"))
        short_now = next((s for s, full in devices.items() if full == engine.device), next(iter(devices)))
        self.device = W.Dropdown(options=list(devices), value=short_now, description="device",
                                 tooltip="takes effect on Reset",
                                 layout=W.Layout(width="290px" if engine.replicas else "170px"))
        self._build_buttons()
        for widget, css in [
            (self.eta_slider, "tfmagic-eta"), (self.eta_text, "tfmagic-eta-text"),
            (self.optimizer, "tfmagic-optimizer"), (self.play, "tfmagic-play"), (self.step, "tfmagic-step"),
            (self.stop, "tfmagic-stop"), (self.reset, "tfmagic-reset"), (self.find_eta, "tfmagic-find-eta"),
            (self.device, "tfmagic-device"),
            (self.steps, "tfmagic-steps"),
        ]:
            widget.add_class(css)
        self.rows = [
            W.HBox([self.eta_slider, self.eta_text, self.optimizer, self.device],
                   layout=W.Layout(flex_flow="row wrap", align_items="center")),
            W.HBox([self.play, self.step, self.stop, self.reset, self.find_eta, self.steps],
                   layout=W.Layout(flex_flow="row wrap", align_items="center")),
        ]

    def _build_eta(self, eta, eta_max, optimizer):
        lo, hi = eta_window(eta, eta_max, optimizer)
        self.eta_slider = W.FloatLogSlider(
            value=eta, base=10, min=lo, max=hi, step=ETA_STEP,
            description="eta", readout=False, continuous_update=True,
            tooltip="eta on a log scale: arrow keys step 0.01 of a decade, Page Up/Down 0.05",
            style={"description_width": "28px"}, layout=W.Layout(width="480px"),
        )
        self.eta_text = W.FloatText(value=eta, layout=W.Layout(width="120px"), step=None,
                                    tooltip="eta, exact value (Enter sets it)")
        self.optimizer = W.Dropdown(options=list(OPTIMIZERS), value=optimizer,
                                    description="optimizer", layout=W.Layout(width="200px"))

    def _build_buttons(self):
        button = dict(layout=W.Layout(width="86px"))
        self.play = W.Button(description="Pause", icon="pause", tooltip="Pause the run (Play goes on from there)", **button)
        self.step = W.Button(description="Step", icon="step-forward", tooltip="One step, then pause", **button)
        self.stop = W.Button(description="Stop", icon="stop", tooltip="Stop the run", **button)
        self.reset = W.Button(description="Reset", icon="undo", tooltip="Back to the start values", **button)
        self.find_eta = W.Button(description="Find eta", icon="search", layout=W.Layout(width="100px"),
                                 tooltip="the learning-rate range test, from the start (as Reset): "
                                         "puts the eta it suggests into the eta control")

    @property
    def device_name(self):
        """The full TensorFlow name of the device chosen."""
        return self._device_names[self.device.value]

    def update_buttons(self, running, locked):
        """Play or Pause as a run goes or not; everything off when `locked`."""
        self.play.description, self.play.icon = ("Pause", "pause") if running else ("Play", "play")
        self.play.tooltip = "Pause the run (Play goes on from there)" if running else "Run on from here"
        for b in (self.play, self.step, self.stop, self.reset, self.optimizer, self.eta_slider, self.eta_text, self.device):
            b.disabled = locked
        self.stop.disabled = locked or not running
        self.find_eta.disabled = locked or running

    def steer_cluster(self, cluster, running):
        """A multi-worker run (descent/cluster_controls.py): the chief's eta, Pause, Play and Stop
        reach every worker; Step, Reset, the optimizer and find eta would act on it alone. A paused
        cluster waits for Play or Stop; after any other end the other workers have gone on."""
        for b in (self.step, self.reset, self.optimizer, self.device, self.find_eta):
            b.disabled = True
        steering = cluster.is_chief and (running or cluster.paused)
        for b in (self.play, self.eta_slider, self.eta_text):
            b.disabled = not steering
        self.stop.disabled = not steering

    # -- changes from the browser -----------------------------------------------
    def listen(self, post, apply):
        self._post, self._apply = post, apply
        for control in CHANGING:
            getattr(self, control).observe(lambda ch, c=control: self._receive(c, ch["new"]), names="value")

    def _receive(self, control, value):
        """A control changed (any thread): keep its latest value; apply once, between chunks."""
        if self._setting == (threading.get_ident(), control):
            return  # the panel showing a value, not the user choosing one
        with self._inbox_lock:
            first = not self._inbox
            self._inbox.pop(control, None)  # re-inserted last: the latest change is applied last
            self._inbox[control] = value
        if first:
            self._post(self._apply_inbox)

    def _apply_inbox(self):
        """On the main loop: apply the latest value of each control that changed."""
        with self._inbox_lock:
            inbox, self._inbox = self._inbox, {}
        self._apply(inbox)

    def pending(self, control):
        """A change of `control` arrived that is not applied yet."""
        with self._inbox_lock:
            return control in self._inbox

    def show(self, control, value):
        """Set a control's value without it counting as the user's change."""
        self._setting = (threading.get_ident(), control)
        try:
            getattr(self, control).value = value
        finally:
            self._setting = None

    def _position(self, eta):
        """The slider's grid position nearest `eta` (whole steps from its min)."""
        return round((math.log10(eta) - self.eta_slider.min) / ETA_STEP)

    def show_eta(self, eta):
        """The slider's handle at `eta` (typed, or set from code, a schedule, a rewind), its range
        widened to hold it; the grid position nearest eta is remembered as the panel's own."""
        slider = self.eta_slider
        if not 10 ** slider.min <= eta <= 10 ** slider.max:
            with slider.hold_sync():
                slider.min = min(slider.min, math.floor(math.log10(eta)))
                slider.max = max(slider.max, math.ceil(math.log10(eta)))
        if self.pending("eta_slider"):  # (the user moved the slider since: that value comes next)
            return
        now = time.monotonic()
        self._shown = {k: t for k, t in self._shown.items() if now - t < ECHO_S}  # (bounded: only what can still echo)
        self._shown[self._position(eta)] = now
        self.show("eta_slider", eta)  # (the browser puts the handle on its grid, and may say so back)

    def echo(self, value):
        """A slider value from the browser is the panel's own showing coming back, not a move."""
        shown = self._shown.pop(self._position(value), None)
        return shown is not None and time.monotonic() - shown < ECHO_S

    def follow_eta(self, eta):
        """The entry, and the slider's handle, show the eta the engine uses (after a slider move,
        a range test, an eta set from code)."""
        if not math.isclose(self.eta_text.value, eta, rel_tol=1e-6):
            self.show("eta_text", entry(eta))
        if abs(math.log10(self.eta_slider.value) - math.log10(eta)) > ETA_STEP / 2:
            self.show_eta(eta)  # (a slider move leaves the handle within half a step of its eta)
