"""%%descend's set-up: from the cell and its NAME[=INIT] list to a ready Descent engine.

Nothing in the user's namespace changes until the cell has compiled and its loss
has been checked, so a typo never costs the user a variable.
"""

import contextlib
import keyword

import numpy as np

from tfmagic.cell import autograph
from tfmagic.cell.compiler import compile_cell
from tfmagic.descent.data import Batches
from tfmagic.descent.dataset_stream import DatasetStream
from tfmagic.descent.program import LossProgram, Prepared  # noqa: F401 (Prepared: what prepare returns)
from tfmagic.descent.replica_split import choose_form
from tfmagic.errors import LossError, TfmagicError
from tfmagic.cell.explain import explain
from tfmagic.cell.tensors import table
from tfmagic.cell.variables import constraints, is_model, model_variables, read_variables, require_float
from tfmagic.runtime.devices import short as short_device


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
            plan.append((name, "model", model_variables(tf, name, obj)))
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
    models, unbuilt = [namespace[name] for name, kind, _ in plan if kind == "model"], ()
    if not specs:
        variables, models, unbuilt = _read_variables(tf, cell, overlay)
    if strategy is not None:
        _require_in_scope(strategy, plan, variables)
        jit = "off"  # (XLA and a strategy's collectives: not supported here)
    extra = {n: overlay[n] for n in cell.params if not data or n not in data.arrays}
    batches = None
    if data and data.dataset is not None:
        batches = DatasetStream(tf, data.dataset, data.arrays, data.epoch_steps, device)
    elif data:
        batches = Batches(tf, data.arrays, data.batch_size, data.seed, device)
    program = LossProgram(tf, cell, variables, created, extra, batches, strategy, device, optimizer,
                          constraints(tf, variables, models))
    try:
        with tf.device(device):
            loss, grads, assigned, trace = _tried(tf, program.trial, program.run_cell)
    except Exception as err:
        raise explain(err, cell) from err
    label = cell.target_label
    _refuse_built_now(unbuilt, overlay)
    _check_loss(loss, grads, label, variables)
    if program.replicas is not None:  # (a loss that does not split over the replicas is refused)
        choose_form(tf, program.replicas, batches.first() if batches else {}, list(variables.values()), label)
    if batches and not batches.static_shapes and not hasattr(batches, "sized") and jit == "auto":
        jit = "off"  # (a dataset's batches: XLA cannot compile an iterator's reads)
    program.finish(jit, data, table(tf, cell.reads, overlay, variables, assigned),
                   program.replicas.describe() if program.replicas else short_device(device) if device
                   else short_device(loss.device) or "CPU:0")
    if rerun is not None:
        done = rerun.decide(program, trace, data, eta=eta, tol=tol)
        if done is not None:
            return done
    done = program.prepared(eta, tol)
    if cells is not None:
        cells.keep(source, namespace, plan, data, options, program, trace, done.engine, rerun)
    return done


def _read_variables(tf, cell, overlay):
    """No NAME list: the float tf.Variables, Keras models/layers and tf.Modules the cell reads
    (as %%tfgrad takes them), and the models among them."""
    variables, unbuilt = read_variables(tf, cell.reads, overlay)
    if unbuilt and not variables:
        raise TfmagicError(f"{unbuilt[0]} has no weights yet, so there is nothing to minimise over.",
                           hint=f"call it once on data in an earlier cell so it builds them, e.g. {unbuilt[0]}(X[:1])")
    if not variables:
        frozen = [n for n in cell.reads if is_model(tf, overlay.get(n)) and getattr(overlay[n], "variables", None)]
        raise TfmagicError(
            f"The cell reads no tf.Variable{', and ' + frozen[0] + ' is frozen (trainable=False)' if frozen else ''}, "
            "so there is nothing to minimise over.",
            hint=f"unfreeze it: {frozen[0]}.trainable = True" if frozen else
            "name the variables and their starting values, e.g. %%descend x=10.0",
        )
    for name, var in variables.items():
        require_float(tf, name, var, f"make it float, e.g. %%descend {name}=10.0")
    return variables, [overlay[n] for n in cell.reads if is_model(tf, overlay.get(n))], unbuilt


def _refuse_built_now(unbuilt, overlay):
    """A model the cell read without weights that its trial run built (a layer without weights,
    Flatten, stays unbuilt harmlessly): its weights were not among the variables to minimise."""
    for name in unbuilt:
        if overlay[name].trainable_variables:
            raise TfmagicError(f"{name} had no weights yet: the cell's first run built them just now, so they "
                               "were not among the variables to minimise over.",
                               hint="run the cell again to train them too (or call it once on data in an earlier cell)")


def _check_loss(loss, grads, label, variables):
    """A loss gradient descent can minimise: a float scalar with a gradient."""
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
    what = owner or outside[0].split("/")[0]  # (a model the cell read: its variables are model/...)
    kind = "model" if owner or "/" in outside[0] else "variable"
    raise TfmagicError(
        f"the {kind} {what} was made outside the strategy's scope, so it lives on one device, not on its replicas.",
        hint=f"make it inside the scope, then name that strategy:\n"
             f"    strategy = tf.distribute.{strategy_name(strategy)}()\n"
             f"    with strategy.scope(): {what} = ...   # as before\n"
             f"and run %%descend {what} --strategy strategy ...",
    )
