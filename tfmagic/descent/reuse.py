"""Re-running a cell on the compiled steps of its last run, only where that gives exactly what
a fresh build gives.

A re-run takes the fresh build's own path up to and including its first trace (setup.py: the
cell compiled on the namespace as it is now, its NAME=INIT variables made, the cell traced
alone, its eager trial), so it reads, draws, refuses and fails as a first run does. Then the
trace's fingerprint (cell/fingerprint.py) is compared with the kept one: if they are equal and
nothing else tells the two apart, the run takes over the kept compiled steps, optimizer and
variables, their pieces rebound to the namespace as it is now (program.LossProgram.rebind). Otherwise it
goes on as the fresh build it already is, and a note says why.

Never reused: a trace with an op that keeps state in its kernel (TensorFlow's stateful random
ops), a cell that drew Python random numbers while traced or tried (a fresh build draws again
at each of its traces), a tf.data.Dataset run (an iterator cannot go back), a variable with a
constraint (its function is not in the trace), a NAME=INIT variable that anything but its name
holds (reach.py: a re-run never moves what the user kept), a run still going from its panel,
an optimizer or device switched there. The kept entries hold digests, not what the cell read;
a name deleted from the namespace (`del A`, `%reset -f`) is let go (forget_missing).
"""

import types
import weakref
from collections import OrderedDict
from dataclasses import dataclass

from tfmagic.cell import fingerprint
from tfmagic.descent.reach import Draws, walk
from tfmagic.descent.status import Note, Retrace, Status, Whose

MAX_CELLS = 8  # cells kept: each holds its engine (variables, optimizer, a row buffer of <= 64 Ki rows)


@dataclass
class _Kept:
    program: object  # the program.LossProgram its engine runs on
    engine: object  # the cell's latest Descent
    fingerprint: object  # of its cell's trace (None: not judgeable); no copy of what the cell read
    objects: dict  # NAME -> the id of the variable, or the ids of a model's variables, it ran on
    shapes: dict  # NAME=INIT name -> its variable's shape
    origin: object  # the notebook cell that ran it (its id), when the front end says


def _key(source, namespace, plan, data, options):
    shape = tuple((name, kind) for name, kind, _ in plan)
    data_key = None if data is None else (tuple(data.arrays), data.batch_size, data.dataset is not None,
                                          None if data.validate is None else tuple(data.validate))
    return id(namespace), source, shape, options, data_key


def _objects(plan):
    return {name: id(what) if kind == "variable" else tuple(id(v) for v in what.values())
            for name, kind, what in plan if kind != "init"}


def _shapes(plan):
    return {name: tuple(start.shape) for name, kind, start in plan if kind == "init"}


class CompiledCells:
    """An LRU of the last MAX_CELLS cells' builds and engines."""

    def __init__(self, size=MAX_CELLS):
        self.size = size
        self._kept = OrderedDict()
        # every built cell's function -> (its namespace's id, its constants, the ids of its run's variables)
        self._globals = weakref.WeakKeyDictionary()
        self.current_cell = None  # the id of the notebook cell running now (None: not known)

    def __len__(self):
        return len(self._kept)

    def clear(self, namespace=None):
        """Forget every kept cell, or those of one namespace (their next runs build afresh)."""
        for key in [k for k in self._kept if namespace is None or k[0] == id(namespace)]:
            del self._kept[key]

    def cell_started(self, cell_id):
        """The front end runs this notebook cell now (IPython's pre_run_cell; None: unknown)."""
        self.current_cell = cell_id

    def forget_missing(self, namespace):
        """After a cell: names gone from `namespace` (`del A`, `%reset -f`) are let go. A kept
        cell that read one is forgotten, and no compiled cell keeps the value alive (its
        function then reads it as a notebook's function would: not defined; its run's own
        variables stay, its engine holds them anyway)."""
        ns = id(namespace)
        for key in [k for k, kept in self._kept.items() if k[0] == ns and _gone(kept.program.cell.function, namespace)]:
            del self._kept[key]
        for function, (where, constants, variables) in list(self._globals.items()):
            if where == ns:
                for name in _gone(function, namespace, variables):
                    del function.__globals__[name]
                    constants.pop(name, None)

    def rerun(self, tf, source, namespace, plan, data, options):
        """Judge what can be before the cell is built again: None for a first run, else a
        Rerun that decides once the cell is traced and tried (Rerun.decide)."""
        key = _key(source, namespace, plan, data, options)
        kept = self._kept.get(key)
        if kept is None:
            return None  # (a first run, or other options: their own compiled steps)
        reason = _not_reusable(kept, plan, data)
        if reason:
            return Rerun(self, key, kept, reason)
        own = {name: [var, *fingerprint.handles(var)] for name, var in kept.program.created.items()}
        reach = walk(namespace, own, leaves=(tf.Variable, tf.Tensor))
        if reach.held or not reach.complete:
            name = sorted(reach.held)[0] if reach.held else ", ".join(own)
            return Rerun(self, key, kept, (Retrace.HELD if reach.held else Retrace.UNCHECKED, name))
        return Rerun(self, key, kept, None, Draws(reach.generators))

    def keep(self, source, namespace, plan, data, options, program, trace, engine, rerun=None):
        """Remember a cell just built (a first run, or a re-run that was not reused: its note
        says why)."""
        if rerun is not None and rerun.reason:
            engine.notes.append(Note.TRACED_AGAIN.with_detail(*rerun.reason))
        key = _key(source, namespace, plan, data, options)
        if rerun is not None and rerun.fingerprint is not None:
            taken = rerun.fingerprint
        else:  # (~0.3 ms on the course's cell; a baked-in 4096x256 array ~5 ms)
            taken = fingerprint.of_trace(program.tf, trace, list(program.variables.values())) if trace is not None else None
        self._kept.pop(key, None)
        self._kept[key] = _Kept(program, engine, taken, _objects(plan), _shapes(plan), self.current_cell)
        self._globals[program.cell.function] = (id(namespace), program.cell.constants,
                                                frozenset(id(v) for v in program.variables.values()))
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)

    def take(self, key, kept, program, data, eta, tol):
        """Run on the kept build: its engine retired first (its result keeps its values), its
        variables given this build's start values, its pieces rebound to the namespace."""
        kept.engine.retire()
        for name, var in kept.program.created.items():
            var.assign(program.created[name])
        kept.program.rebind(program, data)
        done = kept.program.prepared(eta, tol, reuse=kept.engine, seed=data.seed if data else None)
        same = kept.origin is not None and kept.origin == self.current_cell
        other = kept.origin is not None and self.current_cell is not None and not same
        done.engine.notes.append(Note.REUSED.with_detail(Whose.THIS_CELL if same else Whose.ANOTHER_CELL if other else Whose.SAME_CODE))
        kept.engine, kept.origin = done.engine, self.current_cell
        self._kept.move_to_end(key)
        return done


class Rerun:
    """A re-run of a kept cell being judged: why it is not reused (a Retrace and its detail,
    for Note.TRACED_AGAIN), or, once traced, whether it is."""

    def __init__(self, cells, key, kept, reason, draws=None):
        self.cells, self.key, self.kept, self.reason, self.draws = cells, key, kept, reason, draws
        self.fingerprint = None

    def decide(self, program, trace, data, *, eta, tol):
        """A Prepared on the kept compiled steps, or None (then `reason` says why)."""
        if self.reason is None:
            self.reason = self._why_not(program, trace)
        if self.reason:
            return None
        return self.cells.take(self.key, self.kept, program, data, eta, tol)

    def _why_not(self, program, trace):
        if self.draws.drawn():
            return (Retrace.PYTHON_RANDOM,)
        if trace is None:
            return (Retrace.UNJUDGEABLE,)
        self.fingerprint = fingerprint.of_trace(program.tf, trace, list(program.variables.values()))
        if self.fingerprint is None or self.kept.fingerprint is None:
            return (Retrace.UNJUDGEABLE,)
        if self.fingerprint.kernel_state:
            return Retrace.RANDOM_OPS, self.fingerprint.kernel_state[0]
        if not _same_variables(self.kept.program, program):
            return (Retrace.VARIABLES,)  # (a cell without NAMEs: the variables it reads)
        if program.constraints or self.kept.program.constraints:  # (either way: the kept steps have the old ones)
            return (Retrace.CONSTRAINT,)
        if not self.fingerprint.same_as(self.kept.fingerprint):
            return (Retrace.GRAPH,)
        return None


def _not_reusable(kept, plan, data):
    """What rules the kept run out before anything is traced ((a Retrace,)), or None."""
    engine = kept.engine
    if engine.status == Status.RUNNING:
        return (Retrace.RUNNING,)  # (from its panel's buttons)
    if (engine.optimizer_name, engine.device) != (kept.program.optimizer, kept.program.device):
        return (Retrace.SWITCHED,)  # in its panel, or by --compare optimizer=...
    if _objects(plan) != kept.objects or _shapes(plan) != kept.shapes:
        return (Retrace.VARIABLES,)
    if data is not None and data.dataset is not None:
        return (Retrace.DATASET,)
    return None


def _same_variables(kept, program):
    """The same variables by name: a NAME=INIT one made in both, any other the same object."""
    return kept.variables.keys() == program.variables.keys() and all(
        (n in kept.created and n in program.created) or kept.variables[n] is v for n, v in program.variables.items())


def _gone(function, namespace, keep=frozenset()):
    """The names a compiled cell reads that are no longer in the namespace (not a module it
    was given by default, such as tf, nor an object whose id is in `keep`)."""
    g = function.__globals__
    return [n for n in g if not n.startswith("__tfmagic") and n not in namespace
            and not isinstance(g[n], types.ModuleType) and id(g[n]) not in keep]


CELLS = CompiledCells()
