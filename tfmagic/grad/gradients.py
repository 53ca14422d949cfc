"""%%tfgrad's computation: the cell as one tf.function under a GradientTape."""

from dataclasses import dataclass, field

from tfmagic.cell import autograph
from tfmagic.cell.compiler import compile_cell
from tfmagic.cell.variables import add_distinct, is_model, model_variables, read_variables
from tfmagic.errors import TfmagicError
from tfmagic.cell.explain import explain
from tfmagic.cell.tensors import record, table
from tfmagic.runtime.devices import short as short_device


@dataclass
class Gradients:
    """What %%tfgrad found (present/results.GradResult shows it)."""

    value: object  # tf.Tensor: the cell's target
    target: str  # its name, or 'value' for a bare expression
    gradients: dict  # name -> tf.Tensor or None
    reasons: dict  # name -> why its gradient is None
    tensors: dict  # name -> TensorRecord
    device: str
    constants: dict = field(default_factory=dict)  # globals baked in as constants
    notes: list = field(default_factory=list)
    bench: dict | None = None  # --bench: compiled vs eager timing


def _watchable(tf, name, value):
    """A float tensor to watch for a NAME that is not a variable."""
    if tf.is_tensor(value) or hasattr(value, "__array__") or isinstance(value, (int, float)):
        if isinstance(value, bool):
            raise TfmagicError(f"{name} is a bool; there is no gradient with respect to True/False.")
        t = tf.convert_to_tensor(value)
        if not t.dtype.is_floating:
            if not (t.dtype.is_integer or t.dtype.is_bool):
                raise TfmagicError(f"{name} has dtype {t.dtype.name}; only numbers can be differentiated.")
            t = tf.cast(t, tf.float32)  # the course's x=4 means the float 4.0 here
        return t
    raise TfmagicError(
        f"{name} is a {type(value).__name__}, not a tensor, variable or number, so it cannot be differentiated."
    )


def _none_reason(tf, name, source, target, cell):
    if name in cell.assigned:
        return (
            f"the cell assigns {name} itself, so the target depends on that new {name}, "
            f"not on the one differentiated; move the assignment to an earlier cell"
        )
    dtype = source.dtype
    if not dtype.is_floating:
        return (
            f"{name} is an integer tensor ({dtype.name}); gradients only flow through floats. "
            f"Make it float: tf.Variable(3.0) instead of tf.Variable(3), or tf.cast({name}, tf.float32)"
        )
    if not target.dtype.is_floating:
        return f"the target is {target.dtype.name}, not a float; cast it with tf.cast(..., tf.float32)"
    return (
        f"the target does not depend on {name} (or only through a step with no gradient, "
        "such as tf.argmax, tf.round, a cast to an integer, or .numpy())"
    )


def _time_per_call(fn, args, budget=0.25):
    """Median seconds per call over ~budget seconds of calls (after one warm-up call)."""
    import statistics
    import time

    fn(*args)
    times, spent = [], 0.0
    while spent < budget or len(times) < 5:
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
        spent += times[-1]
        if len(times) >= 2000:
            break
    return statistics.median(times), len(times)


def _bench(compiled, eager, args):
    """The course's "@tf.function sped things up by around 4 times", measured on this cell."""
    compiled_s, n_compiled = _time_per_call(compiled, args)
    eager_s, n_eager = _time_per_call(eager, args)
    return {
        "compiled_s": compiled_s,
        "eager_s": eager_s,
        "speedup": eager_s / compiled_s,
        "calls": n_compiled + n_eager,
        "traces": compiled.experimental_get_tracing_count(),
    }


def _snapshot(tf, variables):
    # tf.identity copies, so a later in-place assign_add cannot change the saved value
    distinct = {v.ref(): v for v in variables}.values()
    return [(v, tf.identity(v.read_value())) for v in distinct]


def _restore(snapshot):
    for v, value in snapshot:
        v.assign(value)


def _changed(snapshot):
    """Variables whose value differs from the snapshot."""
    import numpy as np

    out = []
    for v, value in snapshot:
        try:
            same = np.array_equal(np.asarray(v.numpy()), np.asarray(value.numpy()), equal_nan=True)
        except TypeError:  # strings and the like
            same = np.array_equal(np.asarray(v.numpy()), np.asarray(value.numpy()))
        if not same:
            out.append(v)
    return out


def differentiate(tf, source, namespace, names=(), device=None, bench=False):
    """Run `source` once under a tape; return (Gradients, what the cell assigns). Publishes nothing."""
    variables, watched, notes = _named(tf, namespace, names)
    cell = compile_cell(source, namespace, params=list(watched), default_globals={"tf": tf}, tf=tf)
    if not names:
        _read_variables(tf, cell, namespace, variables, notes)
    extra = {n: namespace[n] for n in cell.params if n not in watched}
    # Traced: the cell converted by AutoGraph. Eagerly (--bench's other side): the cell as
    # written, as the course runs it; converted, each eager call would pay AutoGraph's overhead.
    compiled = autograph.function(tf, _under_tape(tf, autograph.converted(tf, cell.function), variables, watched, extra))
    run = _under_tape(tf, cell.function, variables, watched, extra)
    args = list(watched.values())
    before = None
    try:
        with tf.device(device):
            if bench:
                # Every variable the graph captures, read or written: the timing repeats must not keep
                # their side effects (assign_add would count thousands of calls).
                touched = compiled.get_concrete_function(*args).variables
                before = _snapshot(tf, list(touched) + list(variables.values()))
            target, grads, assigned = compiled(*args)
    except Exception as err:  # the user's code failed: keep TF's message, add ours
        raise explain(err, cell) from err
    timing = _timed(tf, compiled, run, args, before, cell, namespace, variables, device, notes) if bench else None
    if cell.not_kept_note:
        notes.append(cell.not_kept_note)
    grad_names = list(variables) + list(watched)
    sources = list(variables.values()) + list(watched.values())
    reasons = {n: _none_reason(tf, n, s, target, cell) for n, s, g in zip(grad_names, sources, grads) if g is None}
    if grad_names and target.shape.rank:
        notes.append(
            f"The target {cell.target_label} has shape {tuple(target.shape)}, so the gradients are of its sum, "
            f"tf.reduce_sum({cell.target_label}), as tape.gradient does; for the Jacobian use tape.jacobian."
        )
    tensors = table(tf, cell.reads, namespace, variables, assigned)
    if cell.target_name is None:
        tensors["value"] = record(tf, "value", target)
    result = Gradients(
        value=target,
        target=cell.target_label,
        gradients=dict(zip(grad_names, grads)),
        reasons=reasons,
        tensors=tensors,
        device=short_device(target.device) or (device or ""),
        constants=cell.constants,
        notes=notes,
        bench=timing,
    )
    return result, cell.published(assigned)


def _named(tf, namespace, names):
    """(variables, watched values, notes) for the names given on the magic line."""
    for name in names:
        if name not in namespace:
            raise TfmagicError(
                f"name '{name}' is not defined, so there is nothing to differentiate with respect to.",
                hint="define it in an earlier cell, e.g. `x = tf.Variable(4.0)`.",
            )
    variables, watched = {}, {}
    for name in names:
        value = namespace[name]
        if isinstance(value, tf.Variable):
            add_distinct(variables, {name: value})
        elif is_model(tf, value):
            add_distinct(variables, model_variables(tf, name, value))
        else:
            watched[name] = _watchable(tf, name, value)
    return variables, watched, []


def _read_variables(tf, cell, namespace, variables, notes):
    """No names given: the variables, models and modules the cell reads (into `variables`)."""
    found, unbuilt = read_variables(tf, cell.reads, namespace)
    add_distinct(variables, found)
    notes.extend(f"{n} has no weights yet; call it once on data in an earlier cell to get their gradients." for n in unbuilt)
    if not variables:
        notes.append(
            "The cell reads no tf.Variable, Keras model or tf.Module with trainable variables, so there are "
            "no gradients: shown are its value and tensors. Name what to differentiate with respect to, "
            "e.g. `%%tfgrad x` (constants and numbers are watched for you)."
        )


def _under_tape(tf, cell_function, variables, watched, extra):
    """(*watched values) -> (target, gradients, assigned): the cell run once under a tape."""
    def run(*watched_values):
        with tf.GradientTape() as tape:
            for v in list(variables.values()) + list(watched_values):
                if v.dtype.is_floating or v.dtype.is_complex:  # (else TensorFlow logs a warning; the reason is ours)
                    tape.watch(v)
            target, assigned = cell_function(**dict(zip(watched, watched_values)), **extra)
        if not tf.is_tensor(target):
            target = tf.convert_to_tensor(target)
        grads = tape.gradient(target, list(variables.values()) + list(watched_values))
        return target, grads, assigned

    return run


def _timed(tf, compiled, run, args, before, cell, namespace, variables, device, notes):
    """--bench's timing, its side effects on the variables undone (and said)."""
    after = _snapshot(tf, [v for v, _ in before])
    try:
        with tf.device(device):
            timing = _bench(compiled, run, args)
    except BaseException as err:  # incl. Ctrl-C: the cell did not finish, so leave things as before it
        _restore(before)
        if not isinstance(err, Exception):
            raise
        raised = explain(err, cell)
        raised.hint = " ".join(filter(None, [raised.hint, (
            "This failed in --bench's repeated timing calls (one run alone succeeds); their changes were "
            "undone, so the variables are as before the cell."
        )]))
        raise raised from err
    undone = _changed(after)
    _restore(after)
    if undone:
        by_ref = {v.ref(): n for n, v in namespace.items() if isinstance(v, tf.Variable)}
        by_ref.update((v.ref(), n) for n, v in variables.items())
        labels = ", ".join(by_ref.get(v.ref(), v.name.split(":")[0]) for v in undone)
        notes.append(
            f"--bench: the timing calls changed {labels}; that was undone, so the variables are as one run "
            "of the cell leaves them."
        )
    return timing
