"""--eta-schedule RUN: the eta of each step of an earlier run, checked before anything changes.
(What it excludes: exclusions.py; the first eta and the steps it gives: descend.py.)"""

import numpy as np
from IPython.core.error import UsageError

from tfmagic.descent.schedule import per_step_etas


def eta_plan(name, namespace):
    """The per-step etas to replay (numpy), or None without --eta-schedule."""
    if not name:
        return None
    if name not in namespace:
        raise UsageError(f"--eta-schedule {name}: name '{name}' is not defined; store a run with "
                         f"%%descend ... -o {name} first")
    run = namespace[name]
    if hasattr(run, "history") and "eta" in getattr(run, "history", {}):
        etas = per_step_etas(run.history)
    elif isinstance(getattr(run, "etas", None), list):  # its .eta_schedule()
        etas = np.asarray(run.etas, np.float64)
    else:
        raise UsageError(f"--eta-schedule {name}: {name} is a {type(run).__name__}; give a %%descend result "
                         f"(-o {name}) or its .eta_schedule()")
    if not len(etas):
        raise UsageError(f"--eta-schedule {name}: that run took no step, so it has no eta to repeat")
    return etas
