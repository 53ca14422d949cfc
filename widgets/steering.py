"""Whether the front end's widget messages reach the kernel while the panel's cell runs.

Two checks, honest about what they know: the kernel's own capability (awaiting.py: a kernel that
hands widget messages over only between cells), and a round trip the front end answers when it
shows the panel: ipywidgets' `_view_count` (set to 0 here, each view the front end displays sends
it +1; JupyterLab, Notebook 7 and Voila do). No answer ANSWER_SECONDS after the run starts, or an
unable kernel, and the status line says so and the controls are off until the cell ends (they
would do nothing meanwhile); a late answer turns them back on. Without a kernel (a plain
IPython shell, tests) nothing is checked.
"""

from IPython import get_ipython

from tfmagic.kernel.awaiting import comms_reach_a_running_cell
from tfmagic.present.messages import cannot_steer

ANSWER_SECONDS = 0.75  # (said within 1 s of the run starting, a chunk in flight included)
SETTLE_SECONDS = 0.1  # ... after the loop has taken what arrived meanwhile (a first trace holds it)


class SteeringCheck:
    """`blocked`: the line to show while the cell runs and cannot be steered, else ''.
    `on_change()` is called (on the main loop) when it changes."""

    def __init__(self, widget, runner, on_change):
        self.runner, self.on_change = runner, on_change
        self.blocked, self.answered = "", False
        self._in_cell = False
        kernel = getattr(get_ipython(), "kernel", None)
        if kernel is None:
            return
        able, kernel_name = comms_reach_a_running_cell(kernel)
        self._unable = "" if able else cannot_steer(kernel_name)
        self._in_cell = True  # (made for the cell's own run, which starts now)
        runner.on_end.append(self._cell_ended)
        if self._unable:
            self.blocked = self._unable  # (the panel reads it when it first draws)
        elif widget.has_trait("_view_count"):  # (tfmagic/private_apis.py)
            widget._view_count = 0  # (the front end counts the views it shows: its first update is the answer)
            widget.observe(lambda _: runner.call(self._answer), names="_view_count")
            runner.call_later(ANSWER_SECONDS, self._no_answer)

    def _set(self, line):
        if line != self.blocked:
            self.blocked = line
            self.on_change()

    def _no_answer(self, settled=False):
        if self._in_cell and not self.answered and self.runner.running:
            if settled:
                self._set(cannot_steer())
            else:  # (an answer that waited behind a long first chunk is taken first)
                self.runner.call_later(SETTLE_SECONDS, lambda: self._no_answer(settled=True))

    def _answer(self):
        self.answered = True
        if self._in_cell and not self._unable:
            self._set("")

    def _cell_ended(self):
        """The cell's run ended: the kernel takes widget messages again."""
        if self._in_cell:
            self._in_cell = False
            self.runner.on_end.remove(self._cell_ended)
            self._set("")
