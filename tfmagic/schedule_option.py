"""--eta-schedule RUN: the eta of each step of an earlier run, checked before anything changes."""

import numpy as np
from IPython.core.error import UsageError

from tfmagic.descent.schedule import per_step_etas


def eta_plan(args, namespace):
    """The per-step etas to replay (numpy), or None without --eta-schedule. Sets args.eta to
    the first and, without --steps, args.steps to the plan's length."""
    name = args.eta_schedule
    if not name:
        return None
    if args.compare or args.restarts or args.find_eta:
        raise UsageError("--eta-schedule replays one run's eta: it cannot be combined with --compare, "
                         "--restarts or --find-eta")
    if args.eta_given:
        raise UsageError(f"give --eta or --eta-schedule {name}, not both: the schedule sets each step's eta")
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
    args.eta = float(etas[0])
    if not args.steps_given:
        args.steps = len(etas)
    return etas
