"""What a run that diverges after eta was raised goes back to.

Every chunk of steps starts from a snapshot of the point (the variables, the
optimizer's state, what is carried: Calls.save). From the point where eta was
last raised on (a raise lands between chunks, so that point is one of them), the
one with the lowest loss is kept, at no cost but the reference. If the run then
diverges, the engine goes back to it: variables, optimizer state and batches as
they were there, the history cut at its step, and eta what it was before the
raise, so the next run goes on from there. A second raise made while the loss
is BLOWING_UP times that point's or more (the first raise is blowing it up)
keeps it: it is no fresh start.
"""

import math
from dataclasses import dataclass

BLOWING_UP = 4.0  # (as the range test's stop: mini-batch losses vary by less, a blow-up by far more)


@dataclass
class Point:
    step: int  # steps taken to reach it
    loss: float
    eta: float  # the eta in force there
    saved: tuple  # Calls.save()'s snapshot
    calls: object  # the Calls it was saved by (another optimizer's cannot be restored)


@dataclass
class Rewound:
    """A divergence after a raise of eta, and where the run went back to."""

    diverged_after: int  # steps taken when a step blew up
    blowup_eta: float  # the eta it blew up at
    raised_at: int  # the step at which eta was last raised
    raised_from: float
    raised_to: float
    step: int  # where the variables are now: the point after this many steps
    loss: float  # its loss
    eta: float  # eta from now on: its value before the raise
    moved: bool  # the variables went back (else the last finite point was already the best)


class BestPoint:
    def __init__(self):
        self.enabled = True  # (off during a range test, whose raises are the test)
        self.clear()

    def clear(self):
        self.best = None
        self.raise_ = None  # (step, eta before, eta after) of the last raise
        self.rewound = None  # the last run's Rewound, if it went back

    def eta_set(self, steps, point, old, new):
        """Note a change of eta (made between chunks, at `point` after `steps` steps); returns the new eta."""
        if new > old and self.enabled and steps:  # (at step 0 it is the run's first eta)
            best = self.best
            growing = (self.raise_ and best and point is not None
                       and float(point[0]) > best.loss + (BLOWING_UP - 1) * abs(best.loss))
            if not growing:
                self.best = None  # (the next chunk starts at this point: it is the first candidate)
                self.raise_ = (steps, old, new)
        return new

    def offer(self, engine, calls, saved):
        """A chunk starts from the point just saved (Calls.save's snapshot): keep it if it is the best so far."""
        loss = float(calls.point[0])
        if self.enabled and math.isfinite(loss) and (self.best is None or loss <= self.best.loss):
            self.best = Point(engine.steps, loss, engine.eta, saved, calls)

    def rewind(self, engine, calls, history):
        """The run diverged: go back to the best point if eta was raised and it is better
        than where the run stopped. Returns whether it went back."""
        best = self.best
        if not (self.enabled and self.raise_ and best and best.calls is calls) or engine.unhealthy_start:
            return False
        now = float(calls.point[0])
        if engine.blowup_loss < 0:  # (a loss without bound below: not eta's doing)
            return False
        at, before, after = self.raise_
        eta = min(best.eta, before)
        stay = math.isfinite(now) and now <= best.loss  # (the last finite point is the best: e.g. the raise's first step blew up)
        self.rewound = Rewound(engine.steps, engine.eta, at, before, after, engine.steps if stay else best.step,
                               now if stay else best.loss, eta, not stay)
        if not stay:
            values, calls.state, calls.point = best.saved
            for v, s in zip(calls.live, values):
                v.assign(s)
            history.cut(best.step)
            engine.steps = best.step
        engine.eta = eta  # (a lowering: no raise noted)
        self.raise_ = None  # (a later raise is a new one)
        return True
