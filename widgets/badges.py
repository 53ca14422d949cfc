"""The panel's badge: the run's status word (the one `run.status` and the result show) on its
colour, and the states only the panel shows, built from the engine's vocabulary (descent/status.py)."""

from tfmagic.descent.status import Status

DETACHED = "detached"  # display only: a newer run took over this panel's variables

_GOOD, _BAD, _PLAIN, _HELD, _GOING, _GONE = "#1b7f3b", "#b3261e", "#3c4b64", "#8a5a00", "#0b57d0", "#6b6b6b"
BADGES = {
    Status.CONVERGED: _GOOD, Status.DIVERGED: _BAD, Status.UNDEFINED: _BAD, Status.ERROR: _BAD,
    Status.MAX_STEPS: _PLAIN, Status.READY: _PLAIN, Status.OUT_OF_DATA: _PLAIN, Status.BAD_DATA: _PLAIN,
    Status.STOPPED: _HELD, Status.PAUSED: _HELD, Status.INTERRUPTED: _HELD,
    Status.RUNNING: _GOING, DETACHED: _GONE,
}
