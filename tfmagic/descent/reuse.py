"""Re-running a cell without tracing it again: the compiled steps of the last few cells.

A re-run of the same cell, with the same variable shapes, optimizer, device, jit
mode and data, whose names still hold what it was traced with (fingerprint.py),
runs on its last engine's compiled functions, optimizer and variables: only eta,
tol, the steps and the start values change. NAME=INIT variables are then the same
tf.Variable objects, started again from INIT; so a variable that another name in the
namespace holds (`x_first = x`, or in a list or dict there) makes the cell build afresh,
never changing what the user kept. (A result keeps its own values: results.DescentResult.values.)
"""

import re
from collections import OrderedDict
from dataclasses import dataclass

from tfmagic.cell.compiler import FUNC_NAME, KEEP_NAME
from tfmagic.cell.fingerprint import all_same, take_all

_DRAWS = re.compile(r"(?<!tf\.)\brandom\b")  # np.random, random.: not tf.random (an op: new each step)
MAX_CELLS = 8  # cells kept: each holds its engine (variables, optimizer, a row buffer of <= 64 Ki rows)


@dataclass
class _Kept:
    engine: object  # the cell's latest Descent
    build: object  # (eta, tol, reuse) -> Prepared on the same compiled pieces
    objects: dict  # NAME -> the variable, or the ids of a model's variables, it ran on
    created: dict  # NAME=INIT name -> its tf.Variable
    tokens: dict  # what the cell read from the namespace, as fingerprint tokens
    builtins: list  # names it read from builtins
    data: dict | None  # tokens of --data and --validate arrays
    options: tuple  # (optimizer, device, jit) it was built with


def _key(source, namespace, plan, data, options):
    shape = tuple((name, kind) for name, kind, _ in plan)
    data_key = None if data is None else (tuple(data.arrays), data.batch_size, data.dataset is not None,
                                          None if data.validate is None else tuple(data.validate))
    return id(namespace), source, shape, options, data_key


def _objects(plan):
    return {name: id(what) if kind == "variable" else tuple(id(v) for v in what.values())
            for name, kind, what in plan if kind != "init"}


def _data_values(data):
    if data is None:
        return None
    return {**{("data", n): v for n, v in data.arrays.items()},
            **{("validate", n): v for n, v in (data.validate or {}).items()},
            ("datasets",): (data.dataset, data.validate_dataset)}


def _other_names(name, var, namespace):
    """Does another name in the namespace hold `var` (`x_first = x`), or a list, tuple, set or
    dict there (`kept = {'first': x}`)? IPython's output history (Out[n], _n, _, __, ___) and
    other names starting with _ do not count."""
    for k, v in namespace.items():
        if k == name or k.startswith("_") or k in ("In", "Out"):  # (IPython's: _, _3, _oh, ...)
            continue
        if v is var:
            return True
        if isinstance(v, (list, tuple, set, dict)) and any(
                item is var for item in (v.values() if isinstance(v, dict) else v)):
            return True
    return False


class CompiledCells:
    """An LRU of the last MAX_CELLS cells' compiled engines."""

    def __init__(self, size=MAX_CELLS):
        self.size = size
        self._kept = OrderedDict()

    def __len__(self):
        return len(self._kept)

    def clear(self):
        """Forget every kept cell (their next runs build afresh)."""
        self._kept.clear()

    def keep(self, source, namespace, plan, data, options, prepared, build):
        """Remember a cell that was just built (if what it read can be judged later)."""
        cell = prepared.cell
        skip = {FUNC_NAME, KEEP_NAME, "__builtins__", *prepared.created, *(data.arrays if data else ())}
        tokens = take_all({n: v for n, v in cell.function.__globals__.items() if n not in skip})
        data_tokens = take_all(_data_values(data)) if data is not None else None
        key = _key(source, namespace, plan, data, options)
        self._kept.pop(key, None)
        if tokens is None or (data is not None and data_tokens is None) or _DRAWS.search(source):
            return  # (what it read cannot be judged; or it draws random numbers in Python, baked into its trace)
        self._kept[key] = _Kept(prepared.engine, build, _objects(plan), dict(prepared.created), tokens,
                                list(cell.builtin_reads), data_tokens, options)
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)

    def rerun(self, source, namespace, plan, data, options, *, eta, tol):
        """A Prepared on the compiled steps of this cell's last run, the variables at their
        start values; None when the cell must be built afresh."""
        key = _key(source, namespace, plan, data, options)
        kept = self._kept.get(key)
        if kept is None or not self._still_valid(kept, namespace, plan, data):
            return None
        for name, kind, start in plan:
            if kind == "init":
                kept.created[name].assign(start)
        done = kept.build(eta, tol, reuse=kept.engine, seed=data.seed if data else None)
        kept.engine = done.engine
        self._kept.move_to_end(key)
        return done

    def _still_valid(self, kept, namespace, plan, data):
        engine = kept.engine
        if engine.status == "running":
            return False  # (from its panel's buttons)
        if (engine.optimizer_name, engine.device) != kept.options[:2]:
            return False  # switched in its panel, or by --compare optimizer=...
        if _objects(plan) != kept.objects or any(n in namespace for n in kept.builtins):
            return False
        for name, kind, start in plan:
            if kind == "init":
                if tuple(start.shape) != tuple(kept.created[name].shape):
                    return False
                if _other_names(name, kept.created[name], namespace):
                    return False
        current = {n: namespace[n] if n in namespace else kept.tokens[n][1] for n in kept.tokens
                   if n in namespace or n == "tf"}
        if not all_same(kept.tokens, current):
            return False
        return data is None or all_same(kept.data, _data_values(data))


CELLS = CompiledCells()
