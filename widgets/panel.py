"""The live %%descend panel: its controls (controls.py), its status line (status_line.py),
its charts (charts.py) and the tensor table, composed.

The panel observes the engine (one callback per chunk, throttled) and sends every
request, Step included, through the LiveRunner; it never runs steps itself.

Traffic (the Jupyter server drops output above 1000 messages/s or 1 MB/s, and
a mouse drag sends dozens of changes): control changes are coalesced (controls.py);
the status line and the eta entry are redrawn at most STATUS_RATE times a second
and the charts at most 1/PUSH_INTERVAL times a second, whatever the input rate.
"""

import math
import time

import ipywidgets as W
import numpy as np

from tfmagic.descent.optimizers import check_eta
from tfmagic.descent.status import Status
from tfmagic.present.html import STYLE, tensors_html

from .a11y import AriaNames
from .arrows import Arrows
from .charts import HistoryCharts
from .sharpness_chart import SharpnessChart
from .controls import ARIA_NAMES, ETA_STEP, Controls, entry
from .start_click import StartClicks
from .earlier import EarlierView
from .landscape_view import landscape_view
from .status_line import StatusLine
from .steering import SteeringCheck
from .timeline import ARIA_NAMES as TIMELINE_NAMES, Timeline

PUSH_INTERVAL = 0.2  # seconds between chart pushes while running: the browser redraws ~2000 SVG nodes each time
# Seconds after a run: the picture drawn finer while idle (doubling: the last ~64 s after, so a
# loaded machine, whose budget buys fewer points, still gets the full picture).
IDLE_REFINE_FIRST, IDLE_REFINE_LAST = 0.25, 32.0
FIND_ETA_STEPS = 100  # the range test's steps (as --find-eta's default)
# The controls' widgets, as the panel's own attributes (tests and users reach them so).
CONTROLS = ("eta_slider", "eta_text", "optimizer", "steps", "device", "play", "step", "stop", "reset", "find_eta")


class DescentPanel:
    """One run's panel (`widget`): its `controls`, `status_line` and `charts`, composed; the
    controls' widgets are its attributes too (`panel.play`, `panel.eta_slider`, ...)."""

    def __init__(self, runner, result, steps, devices, curve=None, surface=None, landscape=None):
        self.runner = runner
        self.engine = engine = runner.engine
        self.result = result
        self._last_push = 0.0

        self._eta_max = engine.suggested_eta()  # sgd diverges above it: worth showing next to eta
        self.controls = Controls(engine, steps, devices, self._eta_max)
        for name in CONTROLS:
            setattr(self, name, getattr(self.controls, name))
        self.status_line = StatusLine(runner, result, self.steps, self._eta_max)
        self.status = self.status_line.widget
        self.landscape = landscape_view(runner, landscape)  # (--landscape: None without it)
        self.charts = HistoryCharts({n: tuple(v.shape) for n, v in engine.variables.items()},
                                    curve=curve, surface=surface, epochs=result.epochs is not None,
                                    validation=result.validated, extra=[self.landscape.box] if self.landscape else [])
        picture = self.charts.picture  # (a click on it picks the next start; on a surface, the arrows)
        self.start_clicks = picture and StartClicks(picture, runner, self.status_line, self._update_status)
        self.arrows = picture and picture.dims == 2 and Arrows(picture, engine, runner.call)
        self.earlier = EarlierView(self.charts, result)  # the cell's earlier runs: faint lines and their table
        self.sharpness_chart = SharpnessChart(result.sharpness_log.every) if result.sharpness_log else None
        self.table = W.HTML(f"{STYLE}<div class='tfmagic-html'>{tensors_html(result.tensors)}</div>")
        self.table.add_class("tfmagic-tensors")
        self.table.layout.display = "none"
        # A button, not an Accordion: ipywidgets 8's accordion title takes no keyboard focus.
        self.tensors_toggle = W.ToggleButton(value=False, description="show tensors in the cell", icon="table",
                                             layout=W.Layout(width="auto", align_self="flex-start"))
        self.tensors_toggle.add_class("tfmagic-tensors-toggle")
        self.tensors_toggle.observe(self._show_tensors, "value")
        tensors = W.VBox([self.tensors_toggle, self.table])
        self.timeline = Timeline(runner, self.charts, self.status_line, self.refresh, self._update_status)
        sharpness = [self.sharpness_chart.widget] if self.sharpness_chart else []
        self.widget = W.VBox([*self.controls.rows, self.status, self.timeline.widget, self.charts.widget,
                              self.earlier.widget, *sharpness, tensors, AriaNames(names={**ARIA_NAMES, **TIMELINE_NAMES})],
                             layout=W.Layout(max_width="920px"))
        self.widget.add_class("tfmagic-panel")

        self.controls.listen(runner.call, self._apply)
        self.play.on_click(lambda _: runner.call(self._play_pause))
        self.step.on_click(lambda _: runner.call(self._step))
        self.stop.on_click(lambda _: runner.call(self._stop))
        self.reset.on_click(lambda _: runner.call(self._reset))
        self.find_eta.on_click(lambda _: runner.call(self._find_eta))
        engine.observe(self._on_chunk)
        runner.on_end.append(self.refresh)
        runner.on_end.append(self.earlier.refresh)
        self.steering = SteeringCheck(self.widget, runner, self._steering_changed)
        self.status_line.steering = self.steering.blocked
        self._refining = 0  # counts run ends: only the latest run's idle redraws go on
        runner.on_end.append(lambda: self._refine_picture(IDLE_REFINE_FIRST, new=True))
        runner.on_detach = self._show_detached  # (last: a panel whose making was cut short has none; main loop)
        self.refresh()

    def _show_tensors(self, change):
        self.table.layout.display = None if change["new"] else "none"
        self.tensors_toggle.description = f"{'hide' if change['new'] else 'show'} tensors in the cell"

    # -- from the engine (main thread, between chunks) ----------------------
    def _on_chunk(self, engine, chunk):
        now = time.perf_counter()
        if chunk.status == Status.RUNNING and now - self._last_push < PUSH_INTERVAL:
            return
        self._last_push = now
        self.refresh()

    def _epochs(self):
        """(end step, mean training loss, validation loss) of each epoch of a --data run, else None."""
        return self.result.epoch_points()

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
        for extra in (self.start_clicks, self.arrows):
            extra and extra.refresh()
        if self.landscape:
            self.landscape.update()
        self._update_status()
        self._update_buttons()
        self.timeline.follow()

    def _show_status(self):
        """Redraw the status line (and the eta entry) soon: now, or once when STATUS_RATE allows."""
        self.status_line.show_soon(self._update_status)

    def _update_status(self):
        self.controls.follow_eta(self.engine.eta)
        if self.sharpness_chart:  # (here: its line 2/eta follows a drag of eta while paused)
            engine = self.engine
            self.sharpness_chart.update(self.result.sharpness, engine.history, engine.steps, engine.eta)
        self.status_line.update()

    def _steering_changed(self):
        self.status_line.steering = self.steering.blocked
        self._update_status()
        self._update_buttons()

    def _update_buttons(self):
        # A front end whose messages wait for the cell's end: nothing would act before it.
        locked = self.runner.detached or bool(self.status_line.steering)
        self.controls.update_buttons(self.runner.running, locked)
        if self.engine.cluster and not locked:  # several workers: what the chief can steer them all with
            self.controls.steer_cluster(self.engine.cluster, self.runner.running)

    # -- from the widgets (on the main loop, through the runner) ---------------
    def _apply(self, inbox):
        """The latest value of each control that changed."""
        for control, value in inbox.items():
            if control == "optimizer":
                self.runner.set_optimizer(value)
            else:
                self._set_eta(value, control)
        self._show_status()

    def _set_eta(self, value, control):
        try:
            eta = check_eta(value)
        except ValueError as err:
            self.status_line.warning = f"{err}; eta stays {self.engine.eta:g}."
            self.controls.show("eta_text", entry(self.engine.eta))
            return
        if control == "eta_slider" and (self.controls.echo(eta)
                                        or abs(math.log10(eta) - math.log10(self.engine.eta)) < ETA_STEP / 2):
            return  # the slider snapping a shown eta to its grid, not a move
        if control == "eta_slider":
            eta = entry(eta)  # what the entry and the status show is what the engine uses
        self.status_line.warning = ""
        self.runner.set_eta(eta)
        if control == "eta_text":
            self.controls.show_eta(eta)
        # (the entry follows a slider move in the throttled status redraw)

    def _play_pause(self):
        self.status_line.result_says_outcome = False
        if self.runner.running:
            self.runner.stop(Status.PAUSED)
        else:
            self.runner.start(self.steps.value)
        self._update_buttons()

    def _step(self):
        self.status_line.result_says_outcome = False
        self.runner.step(self.refresh)

    def _stop(self):
        self.runner.stop(Status.STOPPED)

    def _reset(self):
        self.status_line.result_says_outcome = False

        def reset():
            self.charts.reset()
            self.refresh()

        self.runner.reset(self.controls.device_name, reset)

    def _find_eta(self):
        self.status_line.result_says_outcome = False

        def sweep():
            self.status_line.warning = "finding eta: one step at each eta from 1e-7 up, until the loss blows up…"
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
            self.controls.show("eta_text", entry(self.engine.eta))
            bound = f"; sgd diverges above ≈ {sweep.bound:.3g}" if sweep.bound else ""
            where = "1/λ (the loss fell on above it)" if sweep.capped else "halfway down the loss's longest fall"
            self.status_line.warning = (f"find eta: eta ≈ {sweep.suggested_eta:.3g}, {where}, now in the eta "
                                        f"control{bound}. Press Play to train from the start.")
        else:
            why = f" ({self.runner.error})" if self.runner.error else ": the loss did not fall at any eta it tried"
            self.status_line.warning = f"find eta: no suggestion{why}; eta stays {self.engine.eta:g}."
        self.refresh()

    def _show_detached(self):
        self.engine.unobserve(self._on_chunk)
        self._update_status()
        self._update_buttons()
