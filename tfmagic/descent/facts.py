"""The end of a run: what it leaves (and hands to a re-run of its cell) (status, final loss and values) and what it says
about the loss (where it blew up, whether the step made something undefined, the
curvature at the start and the eta it allows)."""

import math

import numpy as np

from tfmagic.descent.history import shown_by_value
from tfmagic.descent.status import NOT_FINAL, Note, Status

CHEAP_CURVATURE_VARIABLES = 10  # (λ took 0.3-0.6 s at 4-18 variables, 1.3 s at 34, 2.9-4.9 s at 66, on 2 loaded cores)


class Retired(RuntimeError):
    """A newer run of the same cell has this engine's variables and compiled steps."""


class RunFacts:
    """Mixed into the engine (descent/engine.py): read from its state after a run, and
    its hand-over to a re-run of its cell."""

    def _take_over(self, old):
        """Run on the compiled steps, optimizer and facts of `old`, an engine of the same
        cell on the same variables (a re-run whose trace was the same): its steps are not
        traced again. `old` keeps its history and values and never steps again."""
        old.retire()
        # (it runs as a fresh build would: the policy learns only what a fresh build would find out; policy.py)
        self._compiled = old.hand_over(self._compiled.policy)
        # (the facts about the compiled steps, not those about how the last run was built)
        self.notes[:] = [n for n in old.notes if n.code not in (Note.REUSED, Note.TRACED_AGAIN)]
        self._calls.notes = self.notes
        self.optimizer.learning_rate = self._eta  # (assigns: no retrace)
        self.tol = self._tol

    def hand_over(self, policy):
        """These compiled steps for a re-run's engine, which brings its own chunk `policy`."""
        return self._compiled.handed_over(policy)

    def _made_nan_in_place(self):
        """The step made the loss NaN while it was not growing: the cell computed something
        undefined there (sqrt or log of a negative, 0/0), not an eta too large."""
        losses = self.history["loss"][-4:]
        growing = len(losses) >= 3 and np.all(np.diff(np.abs(losses)) > 0)
        return self._bad_point is not None and math.isnan(self.blowup_loss) and not growing

    def curvature(self, only_if_cheap=False):
        """λ, the largest curvature of the loss at the initial values (None if not positive).
        only_if_cheap: None unless known or the model has few variables (on a deep model the
        power iteration's graph takes TensorFlow seconds of C++ that no interrupt reaches)."""
        if not hasattr(self, "_curvature"):
            if only_if_cheap and len(self.variables) > CHEAP_CURVATURE_VARIABLES:
                return None
            from tfmagic.descent.curvature import at_initial_values

            self._curvature = at_initial_values(self)
        return self._curvature

    @property
    def now(self):
        """Where the variables are (after the last step), as the history would record it next:
        column -> float and 'step'; None before a run evaluated it. After a run: its final loss
        and values (the pictures end there)."""
        raw = None if self._calls is None else self._calls.point
        if raw is None:
            return None
        raw = np.asarray(raw, np.float64)
        row = {"step": self.steps, "loss": float(raw[0]), "eta": self._eta,
               "grad_norm": math.sqrt(max(raw[1], 0.0))}
        for (name, var), value in zip(self.variables.items(), raw[2:]):
            row[name] = float(value) if shown_by_value(var) else math.sqrt(max(value, 0.0))
        return row

    @property
    def rate_basis(self):
        """(steps, seconds) the last run's step rate is measured on (chunks that traced left out)."""
        return self._run_steps, self._run_seconds

    @property
    def mini_batches(self):
        """Each step's loss is on a mini-batch (--data), not on all the data."""
        return self._stream is not None

    @property
    def unhealthy_start(self):
        """The last run could not start: the loss or its gradient was not finite (or huge) at the start."""
        return self._unhealthy_start

    @property
    def blowup_loss(self):
        """The loss the step that diverged reached (not kept; NaN when it was NaN or none did)."""
        return math.nan if self._bad_point is None else float(self._bad_point[0])

    def suggested_eta(self) -> float | None:
        """2/λ: plain gradient descent diverges above it (for a quadratic, exactly)."""
        lam = self.curvature()
        return 2.0 / lam if lam else None

    def _finish(self, status):
        if status == Status.DIVERGED:
            self.kept.rewind(self, self._calls, self._history)  # after a raise of eta: back to the best point
        self.status = status
        if self._run_seconds > 0:  # the run's average, not its last (maybe partial) chunk's
            self.steps_per_second = self._run_steps / self._run_seconds
        loss = math.nan if self._calls.point is None else float(self._calls.point[0])  # where the variables are
        self.final_loss = loss if math.isfinite(loss) else None
        self.final_grad_norm = None if self._calls.point is None else math.sqrt(max(float(self._calls.point[1]), 0))
        # A copy: a later run on the same variables (another cell) must not change this run's result.
        self.final_values = {n: v.numpy().copy() for n, v in self.variables.items()}

    def _stopped_by(self, err, redone=False):
        self._finish(Status.ERROR)  # (the variables are at the last good step)
        self.error, self.error_redone = err, redone

    def interrupted(self):
        """Mark the run interrupted (Ctrl-C / kernel interrupt between or in a chunk)."""
        self._finish(Status.INTERRUPTED)

    def retire(self) -> None:
        """A newer run of the cell has taken these compiled steps and variables: this run's
        values are kept as they are now (before anything moves them), and it never steps again."""
        if self.retired:
            return
        if self.final_values is None or self.status in NOT_FINAL:
            self.final_values = {n: v.numpy().copy() for n, v in self.variables.items()}
        self.kept.best = None  # (its snapshot: it never steps again)
        self.retired = True
