"""The panel's timeline: a slider that scrubs through a finished or paused run, and "Go on from here".

Scrubbing only shows: the point on the loss chart and on the curve or surface, the status line
and the values under the slider follow the step chosen, read from the history; the variables
stay where the run is. "Go on from here" asks the runner to rewind the engine to that step
(descent/rewind.py: exactly as it was there), and Play then goes on from it as a new branch;
the loss chart marks where each branch began.
"""

import html
import math

import bqplot as bq
import ipywidgets as W
import numpy as np

from .figures import empty, to_wire

# Names a screen reader says (widgets/a11y.py): the slider's handle shows no words of its own.
ARIA_NAMES = {".tfmagic-timeline .noUi-handle": "timeline: the step shown"}
SCRUB = "#d62728"  # the point shown (as the picture's current point)
BRANCH = "#9467bd"  # where a branch began


def _value(v):
    return "–" if not math.isfinite(v) else f"{v:.4g}"


class Timeline:
    """`widget`: the slider, "Go on from here" and what the step shown holds. `shown`: the
    history row on show (column -> value, 'step'), or None at the run's end."""

    def __init__(self, runner, charts, status_line, refresh, show_status):
        self.runner, self.charts, self.status_line = runner, charts, status_line
        self._refresh, self._show_status = refresh, show_status  # the whole panel; its status line
        self.shown = None
        self._setting = False
        # Not continuous: a drag is sent once let go (a key press at once). A continuous slider sends its value
        # back when the panel changes its range mid-run, which arrived after the run as a step chosen.
        self.slider = W.IntSlider(value=0, min=0, max=0, description="step", continuous_update=False,
                                  disabled=True, layout=W.Layout(width="440px"),
                                  tooltip="scrub through the run; the variables stay where the run is")
        self.go_on = W.Button(description="Go on from here", icon="code-fork", disabled=True,
                              tooltip="rewind the run to this step (variables and optimizer state as they were "
                                      "there); Play then goes on from it as a new branch",
                              layout=W.Layout(width="auto"))
        self.label = W.HTML()
        self.slider.add_class("tfmagic-timeline")
        self.go_on.add_class("tfmagic-go-on")
        self.label.add_class("tfmagic-timeline-shown")
        self.widget = W.HBox([self.slider, self.go_on, self.label],
                             layout=W.Layout(flex_flow="row wrap", align_items="center"))
        self._marks = {}  # log scale? -> (the point shown, the branch points) on the loss chart
        for log, line in charts.loss_lines.items():
            scales = line.scales
            self._marks[log] = (
                bq.Scatter(x=empty(), y=empty(), scales=scales, colors=[SCRUB], stroke="black", default_size=64),
                bq.Scatter(x=empty(), y=empty(), scales=scales, colors=[BRANCH], marker="diamond",
                           default_size=90, stroke="black"))
        charts.loss_fig.marks = list(charts.loss_fig.marks) + [m for pair in self._marks.values() for m in pair]
        charts.log_toggle.observe(lambda _: self.follow(), "value")
        self.slider.observe(self._moved, "value")
        self.go_on.on_click(lambda _: runner.call(self._go_on))

    # -- from the browser ------------------------------------------------------
    def _moved(self, change):
        if not self._setting:
            self.runner.call(self._show, change["new"])

    def _show(self, step):
        """Show the history's row of `step` (the run's end: where the variables are)."""
        engine = self.runner.engine
        if self.runner.running or self.runner.detached:
            return
        steps = np.asarray(engine.history["step"])
        self.shown = None
        if step < engine.steps and len(steps):
            at = min(int(np.searchsorted(steps, step, side="right")) - 1, len(steps) - 1)
            self.shown = {c: float(v[max(at, 0)]) for c, v in engine.history.items()}
        self.status_line.shown = self.shown
        if self.shown is None:
            self._refresh()  # (the picture's point back where the run is)
        else:
            self._show_status()
            self.follow()

    def _go_on(self):
        step = None if self.shown is None else int(self.shown["step"])
        if step is None:
            return

        def back():
            self.shown = self.status_line.shown = None
            self._refresh()

        self.status_line.result_says_outcome = False
        self.runner.rewind(step, back)

    # -- from the panel (after each refresh) -------------------------------------
    def follow(self):
        """The slider spans the run; the marks show the step shown and the branches' starts."""
        engine, running = self.runner.engine, self.runner.running
        if running or self.runner.detached:
            self.shown = self.status_line.shown = None
        self._setting = True
        try:
            with self.slider.hold_sync():
                self.slider.max = max(engine.steps, 0)
                if self.shown is None:
                    self.slider.value = engine.steps
                self.slider.disabled = running or self.runner.detached or not engine.steps
        finally:
            self._setting = False
        self.go_on.disabled = running or self.runner.detached or self.shown is None
        self._draw(engine)

    def _draw(self, engine):
        history = engine.history
        log = self.charts.log_toggle.value
        for which, (point, branches) in self._marks.items():
            point.visible = branches.visible = which == log
        point, branches = self._marks[log]
        steps, losses = np.asarray(history["step"]), np.asarray(history["loss"])
        at = [(b, np.searchsorted(steps, b)) for b, _ in engine.branches[1:]]
        xy = [(steps[i], losses[i]) for b, i in at if i < len(steps)]
        now = engine.now
        if now and any(b == engine.steps for b, _ in at):  # (a branch that took no step yet: where the run is)
            xy.append((now["step"], now["loss"]))
        with branches.hold_sync():
            branches.x, branches.y = (to_wire([p[0] for p in xy]), to_wire([p[1] for p in xy])) if xy else (empty(), empty())
        shown = self.shown
        with point.hold_sync():
            point.x, point.y = (to_wire([shown["step"]]), to_wire([shown["loss"]])) if shown else (empty(), empty())
        self.label.value = self._words(engine, shown)
        picture = self.charts.picture
        if shown and picture is not None:
            names = picture.names
            x, y = (shown[names[0]], shown["loss"]) if len(names) == 1 else (shown[names[0]], shown[names[1]])
            with picture.point.hold_sync():
                picture.point.x, picture.point.y = to_wire([x]), to_wire([y])

    @staticmethod
    def _words(engine, shown):
        if shown is None:
            began = [b for b, _ in engine.branches[1:]]
            return f"<span>branched at step {began[-1]}</span>" if began else ""
        names = [n for n in engine.variables if n in shown]
        by_value = {n: engine.variables[n].shape.num_elements() == 1 for n in names}  # (else the history has its norm)
        values = ", ".join(f"{html.escape(n if by_value[n] else f'‖{n}‖')} = {_value(shown[n])}" for n in names[:4])
        return (f"<span style='font-variant-numeric:tabular-nums'>showing step <b>{int(shown['step'])}</b> of "
                f"{engine.steps}: {values}</span>")
