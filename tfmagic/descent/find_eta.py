"""The learning-rate range test (Smith 2017; fastai's lr_find): from the start, one
step at each eta of an exponential sweep from 1e-7 up, until the loss blows up; the
suggestion is halfway down the smoothed loss's longest fall, past the noisy start
(for sgd at most 1/λ, half the eta above which it diverges). The variables, the optimizer's
state (and a --data run's batches) are put back afterwards.
"""

import bisect
from dataclasses import dataclass

import numpy as np

from tfmagic.descent.status import Status

ETA_FROM, ETA_TO = 1e-7, 10.0
BLOWUP = 4.0  # stop once the smoothed loss is this many times its lowest (fastai's stop_div)
SMOOTHING = 0.98  # at most, of the exponential moving average (with bias correction): fastai's


@dataclass
class EtaSweep:
    etas: np.ndarray  # the eta of each step taken
    losses: np.ndarray  # the loss after each of those steps
    smoothed: np.ndarray
    suggested_eta: float | None  # halfway down the smoothed loss's longest fall (None: it never fell)
    bound: float | None  # 2/λ from the curvature at the start (plain gradient descent)
    stopped_early: bool  # the loss blew up before the sweep's last eta
    status: Status  # how the sweep ended: STOPPED (the loss blew up), MAX_STEPS, INTERRUPTED, ...
    capped: bool = False  # sgd: the valley's eta was above 1/λ (half the bound), so 1/λ is suggested


def smoothing(steps):
    """About ten steps of memory: 0.98's fifty lagged a 100-step sweep of a deterministic
    loss by most of its length (it fell ten decades while the average stayed near the start)."""
    return min(SMOOTHING, 1 - 10 / max(steps, 20))


class Ema:
    """An exponential moving average with bias correction: ema(x) adds x, returns the average."""

    def __init__(self, beta):
        self.beta, self.avg, self.n = beta, 0.0, 0

    def __call__(self, x):
        self.n += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * x
        return self.avg / (1 - self.beta ** self.n)


def suggestion(etas, smoothed):
    """Halfway down the sweep's longest valley (after fastai's `valley`), or None.

    The first tenth of the sweep is skipped: on mini-batches its loss falls and
    rises by batch noise alone, at etas too small to learn anything. The valley is
    the longest run of falling smoothed losses (a longest decreasing subsequence,
    spanning from its first to its last point); a valley whose fall is within the
    noise of the skipped start is none."""
    n = len(smoothed)
    skip = n // 10
    losses = np.asarray(smoothed[skip:], np.float64)
    if len(losses) < 3:
        return None
    tails, length = [], np.zeros(len(losses), int)  # patience sort on -loss: O(n log n)
    for i, loss in enumerate(-losses):
        p = bisect.bisect_left(tails, loss)
        tails[p:p + 1] = [loss]
        length[i] = p + 1
    end = int(np.argmax(length))
    start = end - length[end] + 1
    noise = np.ptp(smoothed[:skip]) if skip > 1 else 0.0
    if length[end] < 3 or losses[start] - losses[end] <= noise:
        return None
    # Where half the valley's fall is done: its middle by index (fastai's) lands at an eta
    # far too small on a deterministic loss, which falls a little at every tiny eta.
    halfway = losses[start] - 0.5 * (losses[start] - losses[end])
    return float(etas[skip + start + int(np.argmax(losses[start:end + 1] <= halfway))])


def sweep_chunks(engine, steps):
    """Run the sweep one step a chunk (eta set between them), yielding each chunk; returns
    the EtaSweep. The engine is reset before and after: the start and fresh state."""
    def eta_at(i):  # (one at a time: a sweep of 10^8 steps needs no 800 MB table)
        return ETA_FROM * (ETA_TO / ETA_FROM) ** (i / max(steps - 1, 1))

    eta0 = engine.eta
    engine.reset()
    state = {"lowest": np.inf, "blown": False}
    beta = smoothing(steps)
    ema = Ema(beta)

    def next_eta(eng, chunk):
        for loss in chunk.rows["loss"]:
            smoothed = ema(float(loss))
            state["lowest"] = min(state["lowest"], smoothed)
            if not np.isfinite(smoothed) or smoothed > BLOWUP * state["lowest"]:
                state["blown"] = True
        if state["blown"]:
            eng.request_stop(Status.STOPPED)
        elif eng.steps < steps:
            eng.eta = eta_at(eng.steps)

    engine.kept.enabled = False  # (the sweep's raises of eta are the test, not a run to go back on)
    engine.eta = eta_at(0)
    try:  # (an epoch log, a panel: the sweep's steps are not the run's)
        with engine.observers.suspended(next_eta):
            yield from engine.run_chunks(steps, max_chunk=1)
    finally:
        history, status = engine.history, engine.status
        losses = np.asarray(history["loss"], np.float64)
        taken = np.asarray(history["eta"], np.float64)
        engine.reset()
        engine.eta = eta0
        engine.kept.enabled = True
    # A row's loss is before its step: the loss after the step at taken[i] is row i + 1.
    taken, losses = taken[:-1], losses[1:]
    keep = np.isfinite(losses)
    losses, taken = losses[keep], taken[keep]
    ema = Ema(beta)
    smoothed = np.array([ema(loss) for loss in losses])
    # (2/λ costs a trace of second derivatives: not after an interrupt, which must end at once)
    bound = engine.suggested_eta() if engine.optimizer_name == "sgd" and status != Status.INTERRUPTED else None
    suggested = suggestion(taken, smoothed)
    capped = bool(suggested and bound and suggested > bound / 2)
    if capped:  # sgd: never past 1/λ, the largest step that does not overshoot along the sharpest direction
        suggested = bound / 2
    return EtaSweep(taken, losses, smoothed, suggested, bound, state["blown"], status, capped)
