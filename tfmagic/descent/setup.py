"""%%descend's set-up: from the cell and its NAME[=INIT] list to a ready Descent engine.

Nothing in the user's namespace changes until the cell has compiled and its loss
has been checked, so a typo never costs the user a variable.
"""

import contextlib
import keyword
from dataclasses import dataclass

import numpy as np

from tfmagic.cell import autograph
from tfmagic.cell.compiler import compile_cell
from tfmagic.descent.data import Batches, EpochLog, as_data
from tfmagic.descent.dataset_stream import DatasetStream
from tfmagic.descent.engine import Descent
from tfmagic.descent.replica_split import choose_form
from tfmagic.descent.replicas import Replicas
from tfmagic.errors import LossError, TfmagicError
from tfmagic.cell.explain import explain
from tfmagic.cell.tensors import table
from tfmagic.cell.variables import is_model, module_variables, require_float
from tfmagic.runtime.devices import short as short_device


@dataclass
class Prepared:
    """A %%descend cell, compiled and checked, with its engine built."""

    engine: object  # Descent
    created: dict  # NAME=INIT variables to put into the namespace
    tensors: dict  # name -> TensorRecord of what the cell reads, optimises and assigns
    constants: dict  # globals baked into the compiled cell
    device: str  # where it runs, short ('CPU:0')
    cell: object  # the compiled cell
    assigned_now: object  # () -> the names the cell assigns, at the current values
    epochs: object = None  # data.EpochLog of a --data run (observing the engine), else None


def _init_value(tf, name, expr, namespace, device):
    try:
        value = eval(expr, {"tf": tf, **namespace})
    except Exception as err:
        raise TfmagicError(
            f"could not evaluate the initial value of {name}: {expr}",
            detail=f"{type(err).__name__}: {err}",
        ) from None
    try:
        tensor = tf.convert_to_tensor(value)
    except Exception:
        raise TfmagicError(f"the initial value of {name} ({expr}) is a {type(value).__name__}, not a number or tensor.") from None
    if tensor.dtype == tf.bool or tensor.dtype == tf.string or tensor.dtype.is_complex:
        raise TfmagicError(f"the initial value of {name} ({expr}) has dtype {tensor.dtype.name}; give a real number.")
    with tf.device(device):
        return tf.cast(tensor, tf.float32)


def _range(tf, name, expr, namespace):
    """(lo, hi) for INIT written as LO:HI (a range for --restarts), else None."""
    if ":" not in expr or any(c in expr for c in "[({"):
        return None
    lo, hi = expr.split(":", 1)
    try:
        lo, hi = (float(eval(part, {"tf": tf, **namespace})) for part in (lo, hi))
    except Exception:
        raise TfmagicError(f"{name}={expr}: a range is LO:HI with two numbers, e.g. {name}=-5:5") from None
    if not lo < hi:
        raise TfmagicError(f"{name}={expr}: the range needs LO < HI")
    return lo, hi


def read_specs(tf, specs, namespace, device, ranges=None):
    """The NAME[=INIT] specs, checked, as (name, kind, what) with kind "init" (what: the
    float32 start value), "variable" (the tf.Variable) or "model" (name -> its variables).
    Nothing is created yet. A NAME=LO:HI spec starts NAME at the middle and records
    (LO, HI) in `ranges`."""
    plan = []
    seen = set()
    for spec in specs:
        name, sep, expr = spec.partition("=")
        name = name.strip()
        if not name.isidentifier() or keyword.iskeyword(name):
            raise TfmagicError(f"{spec!r} is not NAME or NAME=INIT{' (' + name + ' is a Python keyword)' if keyword.iskeyword(name) else ''}.",
                               hint="e.g. %%descend x=10.0 or %%descend W=tf.zeros([2, 2])")
        if name in seen:
            raise TfmagicError(f"{name} is named twice; name each variable once.")
        seen.add(name)
        if sep:
            span = _range(tf, name, expr.strip(), namespace)
            if span is not None:
                if ranges is None:
                    raise TfmagicError(f"{name}={expr} is a range, which only --restarts N uses.",
                                       hint=f"add --restarts 10, or give one start value: {name}={span[0]}")
                ranges[name] = span
                expr = repr((span[0] + span[1]) / 2)
            plan.append((name, "init", _init_value(tf, name, expr.strip(), namespace, device)))
            continue
        if name not in namespace:
            raise TfmagicError(
                f"name '{name}' is not defined.",
                hint=f"give it a starting value: %%descend {name}=10.0",
            )
        obj = namespace[name]
        if isinstance(obj, tf.Variable):
            require_float(tf, name, obj, f"make it float: {name} = tf.Variable({name}.numpy().astype('float32')) or %%descend {name}=10.0")
            plan.append((name, "variable", obj))
        elif is_model(tf, obj):
            plan.append((name, "model", module_variables(tf, name, obj)))
        else:
            raise TfmagicError(
                f"{name} is a {type(obj).__name__}, not a tf.Variable, so descent cannot change it.",
                hint=f"write {name}=INIT to make it a variable, e.g. %%descend {name}={_example(obj)}",
            )
    return plan


def make_variables(tf, plan, device):
    """(variables to optimise, variables to create in the namespace) for a read_specs plan."""
    variables, created = {}, {}
    for name, kind, what in plan:
        if kind == "init":
            with tf.device(device):
                variables[name] = created[name] = tf.Variable(what, name=name)
        elif kind == "variable":
            variables[name] = what
        else:
            variables.update(what)
    twice = _same_variable_twice(variables)
    if twice:
        raise TfmagicError(f"{twice[0]} and {twice[1]} are the same tf.Variable; it would be stepped twice a step. Name it once.")
    return variables, created


def _same_variable_twice(variables):
    first = {}
    for name, var in variables.items():
        if id(var) in first:
            return first[id(var)], name
        first[id(var)] = name
    return None


def _example(obj):
    try:
        return repr(float(np.asarray(obj))) if np.asarray(obj).size == 1 else "tf.zeros(...)"
    except Exception:
        return "10.0"


def prepare(tf, source, namespace, specs, *, eta, optimizer, device, tol, jit, ranges=None, data=None, cells=None,
            strategy=None):
    """Compile and check the cell, build its engine; changes nothing in the namespace.
    `data`: a data.DataSpec, whose names are the current mini-batch in the cell.
    `cells`: a reuse.CompiledCells: a re-run of a cell it kept takes this same path up to the
    cell's trace and trial, then runs on the kept compiled steps if that gives what this build
    would (reuse.py). `strategy`: a tf.distribute.Strategy the steps run under (replicas.py)."""
    plan = read_specs(tf, specs, namespace, device, ranges)
    options = (optimizer, device, jit, id(strategy) if strategy else None)
    rerun = cells.rerun(tf, source, namespace, plan, data, options) if cells is not None else None
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        variables, created = make_variables(tf, plan, device)
    overlay = {**namespace, **created}
    cell = compile_cell(source, overlay, params=list(data.arrays) if data else (), default_globals={"tf": tf}, tf=tf)
    if not specs:
        variables = {n: overlay[n] for n in cell.reads if isinstance(overlay.get(n), tf.Variable)}
        if not variables:
            raise TfmagicError(
                "The cell reads no tf.Variable, so there is nothing to minimise over.",
                hint="name the variables and their starting values, e.g. %%descend x=10.0",
            )
        for name, var in variables.items():
            require_float(tf, name, var, f"make it float, e.g. %%descend {name}=10.0")
    if strategy is not None:
        _require_in_scope(strategy, plan, variables)
        jit = "off"  # (XLA and a strategy's collectives: not supported here)
    extra = {n: overlay[n] for n in cell.params if not data or n not in data.arrays}
    batches = None
    if data and data.dataset is not None:
        batches = DatasetStream(tf, data.dataset, data.arrays, data.epoch_steps, device)
    elif data:
        batches = Batches(tf, data.arrays, data.batch_size, data.seed, device)
    build = Build(tf, cell, variables, created, extra, batches, strategy, device, optimizer)
    try:
        with tf.device(device):
            loss, grads, assigned, trace = _tried(tf, build.trial, build.run_cell)
    except Exception as err:
        raise explain(err, cell) from err
    label = cell.target_label
    if not loss.dtype.is_floating:
        raise LossError(
            f"the loss {label} is {loss.dtype.name}; gradient descent needs a float loss.",
            hint="use float constants (3.0, not 3) or tf.cast(..., tf.float32).",
        )
    if loss.shape.rank != 0:
        raise LossError(
            f"the loss {label} has shape {tuple(loss.shape)}, not a single number, so there is no single value to minimise.",
            hint="reduce it to a scalar, e.g. tf.reduce_sum(...) or tf.reduce_mean(...).",
        )
    if all(g is None for g in grads):
        raise LossError(
            f"the loss {label} does not depend on {', '.join(variables)}, so their gradients are None.",
            hint="check that the cell uses the variables you named (and not a copy made with .numpy()).",
        )
    if build.replicas is not None:  # (a loss that does not split over the replicas is refused)
        choose_form(tf, build.replicas, batches.first() if batches else {}, list(variables.values()), label)
    if batches and not batches.static_shapes and jit == "auto":
        jit = "off"  # a smaller last batch: a shape that changes, which XLA cannot compile
    build.finish(jit, data, table(tf, cell.reads, overlay, variables, assigned),
                 build.replicas.describe() if build.replicas else short_device(device) if device
                 else short_device(loss.device) or "CPU:0")
    if rerun is not None:
        done = rerun.decide(build, trace, data, eta=eta, tol=tol)
        if done is not None:
            return done
    done = build.prepared(eta, tol)
    if cells is not None:
        cells.keep(source, namespace, plan, data, options, build, trace, done.engine, rerun)
    return done


class Build:
    """The pieces of a %%descend run bound to its variables: the compiled cell, its batches,
    the loss and what runs it. A re-run that reuses them rebinds them to the namespace as it
    is now (reuse.py)."""

    def __init__(self, tf, cell, variables, created, extra, batches, strategy, device, optimizer):
        self.tf, self.cell, self.variables, self.created, self.extra = tf, cell, variables, created, extra
        self.batches, self.device, self.optimizer = batches, device, optimizer
        # The cell converted by AutoGraph, the wrappers around it not (cell/autograph.py).
        cell_function = autograph.converted(tf, cell.function)

        def loss_fn():
            return cell_function(**extra, **(batches.take() if batches else {}))[0]

        def batch_loss(batch):
            return cell_function(**extra, **batch)[0]

        self.batch_loss = autograph.calls_converted(batch_loss)
        if isinstance(batches, DatasetStream):  # (a NaN once it ends; each batch read after the step before)
            loss_fn = lambda: batches.loss(self.batch_loss)  # noqa: E731
        self.loss_fn = autograph.calls_converted(loss_fn)
        self.replicas = None if strategy is None else Replicas(tf, strategy, batches.take if batches else dict,
                                                                self.batch_loss)

        def run_cell():  # the loss and what the cell assigns, on the first batch
            return cell_function(**extra, **(batches.first() if batches else {}))

        self.run_cell = run_cell

    def trial(self):
        """One run of the cell under a tape: its checks, and what it assigns."""
        tf = self.tf
        with tf.GradientTape() as tape:
            loss, assigned = self.run_cell()
            loss = tf.convert_to_tensor(loss)  # (read under the tape: a loss that is a variable itself, `y = x`)
        grads = tape.gradient(loss, list(self.variables.values())) if loss.dtype.is_floating else None
        return loss, grads, assigned

    def finish(self, jit, data, tensors, where):
        """What the checked cell adds: its jit mode, validation, tensor table and device."""
        self.jit, self.tensors, self.where = jit, tensors, where
        self.constants = dict.fromkeys(self.cell.constants)  # (names: the values stay the user's)
        self.validate = None
        if self.batches:
            self.validate = _validation(self.tf, self.batch_loss, data.validate, self.device, data.validate_dataset)

    def rebind(self, new, data):
        """Read the namespace as `new`, a build of the same cell made just now, read it, on these
        variables: its globals, arguments, validation data, tensor table and device."""
        from tfmagic.cell.compiler import FUNC_NAME, KEEP_NAME

        own = set(self.created) | {FUNC_NAME, KEEP_NAME}
        now, then = new.cell.function.__globals__, self.cell.function.__globals__
        for name in [n for n in then if n not in own and n not in now]:
            del then[name]
        then.update({n: v for n, v in now.items() if n not in own})
        self.extra.update({n: v for n, v in new.extra.items() if n not in self.created})
        self.cell.constants.clear()
        self.cell.constants.update(new.cell.constants)
        self.finish(self.jit, data, new.tensors, new.where)

    def assigned_now(self):
        """The names the cell assigns, at the current values."""
        return self.cell.published(self.run_cell()[1])

    def prepared(self, eta, tol, reuse=None, seed=None):
        """The engine (on the compiled steps of `reuse`, an engine of this build) and the rest."""
        tf, batches = self.tf, self.batches
        if seed is not None:
            batches.reseed(seed)
        stream = {}
        if batches:
            stream = dict(stream=batches, epoch_steps=batches.epoch_steps,
                          full_loss_fn=lambda: self.batch_loss(batches.data))  # (traced without AutoGraph)
        engine = Descent(tf, self.loss_fn, self.variables, eta=eta, optimizer=self.optimizer, device=self.device,
                         tol=tol, jit=self.jit, loss_label=self.cell.target_name, reuse=reuse,
                         replicas=self.replicas, **stream)
        epochs = EpochLog(batches.epoch_steps, self.validate) if batches and batches.epoch_steps else None
        return Prepared(engine, self.created, self.tensors, self.constants, self.where, self.cell,
                        self.assigned_now, epochs)


def _tried(tf, trial, run_cell):
    """The trial, run eagerly (~1 ms), after the cell is traced without running it (~2.5 ms), so
    what only a graph refuses (a .numpy(), a tf.Variable made in the cell, a tensor used as a
    Python bool) is found before anything is published; a traced trial run took ~10 ms. When
    either fails, or the loss cannot be minimised, the trial runs traced, as the steps will:
    graph-mode errors say more (the node, the shapes). Returns the trial's loss, gradients and
    assigned names, and the cell's trace (None when it was not what the trial ran)."""
    try:
        trace = autograph.function(tf, run_cell).get_concrete_function()
        loss, grads, assigned = trial()
        if loss.dtype.is_floating and loss.shape.rank == 0 and any(g is not None for g in grads):
            return loss, grads, assigned, trace
    except Exception:  # (reported by the traced run, or gone there: then it is not an error)
        pass
    return *autograph.function(tf, trial)(), None


def _require_in_scope(strategy, plan, variables):
    """Variables made outside the strategy's scope live on one device: refuse them, saying how."""
    from tfmagic.descent.replicas import created_in, strategy_name

    outside = [n for n, v in variables.items() if not created_in(strategy, v)]
    if not outside:
        return
    owner = next((name for name, kind, what in plan if kind == "model" and set(what) & set(outside)), None)
    what = owner or outside[0].split(".")[0]
    kind = "model" if owner else "variable"
    raise TfmagicError(
        f"the {kind} {what} was made outside the strategy's scope, so it lives on one device, not on its replicas.",
        hint=f"make it inside the scope, then name that strategy:\n"
             f"    strategy = tf.distribute.{strategy_name(strategy)}()\n"
             f"    with strategy.scope(): {what} = ...   # as before\n"
             f"and run %%descend {what} --strategy strategy ...",
    )


def _validation(tf, batch_loss, arrays, device, dataset=None):
    """() -> the cell's loss on the validation arrays, or the mean over a dataset's batches
    weighted by their sizes (no variable changes); None without --validate."""
    if dataset is not None:
        names = list(arrays)
        batch_loss = autograph.function(tf, batch_loss)

        def over_dataset():
            total = count = 0.0
            with tf.device(device):
                for element in dataset:
                    parts = element if isinstance(element, (tuple, list)) else (element,)
                    batch = {n: element[n] for n in names} if isinstance(element, dict) else dict(zip(names, parts))
                    batch = {n: as_data(tf, t) for n, t in batch.items()}  # (float64 -> float32, as training's)
                    size = float(tf.shape(next(iter(batch.values())))[0])
                    total, count = total + float(batch_loss(batch)) * size, count + size
            return total / count if count else float("nan")

        return over_dataset
    if not arrays:
        return None
    with tf.device(device):
        data = {n: as_data(tf, v) for n, v in arrays.items()}
    loss = autograph.function(tf, lambda: batch_loss(data))

    def validate():
        with tf.device(device):
            return float(loss())

    return validate
