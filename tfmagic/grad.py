"""%%tfgrad's computation: the cell as one tf.function under a GradientTape."""

from dataclasses import dataclass, field

from .compiler import compile_cell
from .errors import TfmagicError
from .explain import explain
from .tensors import record, short_device


@dataclass
class GradResult:
    value: object  # tf.Tensor: the cell's target
    target: str  # its name, or 'value' for a bare expression
    gradients: dict  # name -> tf.Tensor or None
    reasons: dict  # name -> why its gradient is None
    tensors: dict  # name -> TensorRecord
    device: str
    constants: dict = field(default_factory=dict)  # globals baked in as constants
    notes: list = field(default_factory=list)
    bench: dict | None = None  # --bench: compiled vs eager timing

    def __repr__(self):
        from .present import grad_text

        return grad_text(self)

    def _repr_html_(self):
        from .present import grad_html

        return grad_html(self)


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


def differentiate(tf, source, namespace, names=(), device=None, bench=False):
    """Run `source` once under a tape; return a GradResult. Publishes nothing."""
    if names:
        for name in names:
            if name not in namespace:
                raise TfmagicError(
                    f"name '{name}' is not defined, so there is nothing to differentiate with respect to.",
                    hint="define it in an earlier cell, e.g. `x = tf.Variable(4.0)`.",
                )
    variables, watched, notes = {}, {}, []
    for name in names:
        value = namespace[name]
        if isinstance(value, tf.Variable):
            variables[name] = value
        else:
            watched[name] = _watchable(tf, name, value)

    cell = compile_cell(source, namespace, params=list(watched), default_globals={"tf": tf})
    if not names:
        variables = {n: namespace[n] for n in cell.reads if isinstance(namespace.get(n), tf.Variable)}
        if not variables:
            notes.append(
                "The cell reads no tf.Variable, so there are no gradients: shown are its value and tensors. "
                "Name what to differentiate with respect to, e.g. `%%tfgrad x` (constants and numbers are watched for you)."
            )
    extra = {n: namespace[n] for n in cell.params if n not in watched}
    sources = list(variables.values()) + list(watched.values())

    def run(*watched_values):
        with tf.GradientTape() as tape:
            for v in list(variables.values()) + list(watched_values):
                tape.watch(v)
            target, assigned = cell.function(**dict(zip(watched, watched_values)), **extra)
        if not tf.is_tensor(target):
            target = tf.convert_to_tensor(target)
        grads = tape.gradient(target, list(variables.values()) + list(watched_values))
        return target, grads, assigned

    compiled = tf.function(run)
    try:
        with tf.device(device):
            target, grads, assigned = compiled(*watched.values())
    except Exception as err:  # the user's code failed: keep TF's message, add ours
        raise explain(err, cell) from err
    timing = None
    if bench:
        with tf.device(device):
            timing = _bench(compiled, run, list(watched.values()))

    grad_names = list(variables) + list(watched)
    gradients = dict(zip(grad_names, grads))
    reasons = {
        n: _none_reason(tf, n, s, target, cell)
        for n, s, g in zip(grad_names, sources, grads)
        if g is None
    }
    tensors = {}
    for name in cell.reads:
        rec = record(tf, name, namespace.get(name))
        if rec:
            tensors[name] = rec
    for name, value in assigned.items():
        rec = record(tf, name, value)
        if rec:
            tensors[name] = rec
    if cell.target_name is None:
        tensors["value"] = record(tf, "value", target)
    result = GradResult(
        value=target,
        target=cell.target_label,
        gradients=gradients,
        reasons=reasons,
        tensors=tensors,
        device=short_device(target.device) or (device or ""),
        constants=cell.constants,
        notes=notes,
        bench=timing,
    )
    return result, assigned
