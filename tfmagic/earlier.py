"""A single %%descend run joins its cell's series of earlier runs (descent/earlier.py): its
result gets the earlier runs (`run.earlier`, newest first) and its own place in the series,
which keeps its points each time it ends (present/earlier.py's Recorder).

Its settings are what a re-run changes: eta, optimizer, steps, each NAME=INIT's start, the
other options that change a run, and the Python numbers the cell read from the namespace.
"""

import numpy as np

from tfmagic.descent.earlier import EARLIER, cell_key
from tfmagic.present.earlier import EarlierResult, Recorder


def settings(args, result):
    """setting -> value of a run (its DescendOptions, its DescentResult), in the order a label names them."""
    s = {"eta": float(args.eta), "optimizer": args.optimizer, "steps": int(args.steps)}
    for spec in args.names:
        name, sep, init = spec.partition("=")
        s[f"start:{name.strip()}"] = init.strip() if sep else None
    s.update(tol=args.tol, device=result.device, jit=args.jit, pace=args.pace)
    if args.data is not None:
        s.update(data=",".join(args.data.arrays), batch_size=args.data.batch_size, seed=args.data.seed)
    if args.eta_plan is not None:
        s["eta_schedule"] = "on"
    if args.strategy is not None:
        s["strategy"] = type(args.strategy).__name__
    for name, value in sorted(result.cell.constants.items()):
        if isinstance(value, (bool, int, float, np.number)) and np.ndim(value) == 0:
            s[f"value:{name}"] = value
    return s


SESSION = "_tfmagic_session"  # a hidden name: %reset (or a namespace emptied by hand) drops it, and the series go


class Session:
    """The mark of a namespace whose series are kept (shown as a name, it says what it is for)."""

    def __repr__(self):
        return "<tfmagic: this namespace's earlier %%descend runs are kept while this name is>"


def session(shell):
    ns = shell.user_ns
    if not isinstance(ns.get(SESSION), Session):
        ns[SESSION] = Session()
        getattr(shell, "user_ns_hidden", {})[SESSION] = ns[SESSION]  # (not in %who)
    return ns[SESSION]


def join(shell, args, result):
    """Put this run (its DescentResult) in its cell's series: result.earlier and result.this_run."""
    series = EARLIER.series(id(shell.user_ns), session(shell), cell_key(result.cell.source, args.names))
    this, earlier = series.begin(settings(args, result))
    result.this_run, result.earlier = this, tuple(EarlierResult(r) for r in earlier)
    result.engine.observe(Recorder(this, result))


def forget(shell):
    """%unload_ext: the kernel's series go."""
    EARLIER.clear(id(shell.user_ns))
