"""A single %%descend run joins its cell's series of earlier runs (descent/earlier.py): its
result gets the earlier runs (`run.earlier`, newest first) and its own place in the series,
which keeps its points each time it ends (present/earlier.py's Recorder).

Its settings are what a re-run changes: eta, optimizer, steps, each variable's start value, the
other options that change a run, and the numbers, bools and arrays the cell read from the namespace.
"""

import hashlib

import numpy as np

from tfmagic.descent.earlier import EARLIER, cell_key
from tfmagic.present.earlier import EarlierResult, Recorder


def settings(args, result, namespace=None):
    """setting -> value of a run (its DescendOptions, its DescentResult, before its first step), in the
    order a label names them. A start is the variable's value there, however it was written; a value
    the cell read is a number, or a digest of an array's or tensor's values."""
    s = {"eta": float(args.eta), "optimizer": args.optimizer, "steps": int(args.steps)}
    variables = result.engine.variables
    for name, variable in variables.items():
        s[f"start:{name}"] = values_of(variable)
    s.update(tol=args.tol, device=result.device, jit=args.jit, pace=args.pace)
    if args.data is not None:
        s.update(data=",".join(args.data.arrays), batch_size=args.data.batch_size, seed=args.data.seed)
    if args.eta_plan is not None:
        s["eta_schedule"] = "on"
    if args.strategy is not None:
        s["strategy"] = type(args.strategy).__name__
    read = {**{n: (namespace or {})[n] for n in result.cell.reads if n in (namespace or {})}, **result.cell.constants}
    stepped = {id(v) for v in variables.values()}
    for name, value in sorted(read.items()):
        if name in variables:
            continue
        if isinstance(value, (bool, int, float, np.number)) and np.ndim(value) == 0:
            s[f"value:{name}"] = value
        elif isinstance(value, np.ndarray) or _is_tensor(value) and id(value) not in stepped:
            s[f"value:{name}"] = values_of(value)
    return s


def _is_tensor(value):
    return hasattr(value, "numpy") and hasattr(value, "dtype") and hasattr(value, "shape")


DIGEST_BYTES = 1 << 22  # past this an array's digest reads 2^20 of its elements, evenly spread, and its sum


def values_of(value):
    """A value as a setting: a number's shortest text ('0.1' for float32 0.1); an array's shape, dtype
    and a digest of its values, '<12 float32 3fa2b1c0>' (descent/earlier.is_digest)."""
    array = np.asarray(value.numpy() if _is_tensor(value) else value)
    if array.size == 1 and array.dtype.kind in "biuf":
        return str(array.reshape(())[()])
    flat = array.reshape(-1)
    if array.nbytes > DIGEST_BYTES:
        flat = np.concatenate([flat[:: max(1, flat.size // (1 << 20))], [flat.sum(dtype=np.float64)]])
    digest = hashlib.blake2b(np.ascontiguousarray(flat).tobytes(), digest_size=4).hexdigest()
    return f"<{'x'.join(map(str, array.shape))} {array.dtype} {digest}>"


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
    this, earlier = series.begin(settings(args, result, shell.user_ns))
    result.this_run, result.earlier = this, tuple(EarlierResult(r) for r in earlier)
    result.engine.observe(Recorder(this, result))


def forget(shell):
    """%unload_ext: the kernel's series go."""
    EARLIER.clear(id(shell.user_ns))
