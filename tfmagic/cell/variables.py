"""What in the user's namespace can be optimised or differentiated: a float tf.Variable,
or a Keras model/layer/tf.Module standing for its trainable variables."""

from tfmagic.errors import TfmagicError


def is_model(tf, value):
    """A Keras model/layer or tf.Module: something whose trainable variables stand for it."""
    return (
        not isinstance(value, (tf.Variable, type))
        and not tf.is_tensor(value)
        and hasattr(value, "trainable_variables")
    )


def require_float(tf, name, var, hint):
    """Refuse a variable gradient descent cannot move, saying what it is instead."""
    dtype = tf.as_dtype(var.dtype)
    if not getattr(var, "trainable", True):
        raise TfmagicError(f"{name} is a non-trainable variable (trainable=False); gradient descent leaves those alone.",
                           hint=f"make a trainable one: {name} = tf.Variable({name}.numpy())")
    if dtype.is_floating:
        return
    kind = "an integer" if dtype.is_integer else "a complex" if dtype.is_complex else f"a {dtype.name}"
    raise TfmagicError(f"{name} is {kind} variable ({dtype.name}); gradient descent needs a real float.", hint=hint)


def module_variables(tf, name, obj):
    """Trainable variables of a Keras model/layer or tf.Module, as name -> tf.Variable."""
    found = {}
    for v in obj.trainable_variables:
        raw = v if isinstance(v, tf.Variable) else getattr(v, "_value", None)
        if not isinstance(raw, tf.Variable):
            raise TfmagicError(f"{name} has a trainable variable of unsupported type {type(v).__name__}.")
        base = label = f"{name}.{getattr(v, 'path', None) or raw.name.split(':')[0]}"
        i = 1
        while label in found:  # (two unnamed tf.Variables are both "Variable": a column each)
            label, i = f"{base}_{i}", i + 1
        found[label] = raw
    if not found:
        if getattr(obj, "variables", None):  # (built, and frozen: layer.trainable = False)
            raise TfmagicError(f"{name} has no trainable variables (it is frozen: trainable=False); gradient descent "
                               "leaves those alone.", hint=f"unfreeze it first: {name}.trainable = True")
        raise TfmagicError(f"{name} has no trainable variables yet; call it once on data so it builds its weights.")
    return found


def model_variables(tf, name, obj):
    """name/path -> tf.Variable for each trainable variable of obj, e.g. model/dense/kernel."""
    found = {}
    own = getattr(obj, "name", None)
    for key, var in module_variables(tf, name, obj).items():
        label = key[len(name) + 1 :]
        if own and label.startswith(f"{own}/"):  # Keras paths start with the model's own name
            label = label[len(own) + 1 :]
        found[f"{name}/{label}" if f"{name}/{label}" not in found else key] = var
    return found


def add_distinct(variables, more):
    """Add variables not already present (the same variable may be named directly and in a model)."""
    have = {v.ref() for v in variables.values()}
    for name, var in more.items():
        if var.ref() not in have:
            variables[name] = var
            have.add(var.ref())


def read_variables(tf, reads, namespace):
    """No names given: name -> tf.Variable for every tf.Variable, Keras model/layer and tf.Module
    among the names a cell `reads` (a model by its trainable variables, model/dense/kernel), each
    variable once; and the names of the models read that have no weights yet (not built)."""
    variables, unbuilt = {}, []
    for n in reads:
        value = namespace.get(n)
        if isinstance(value, tf.Variable):
            add_distinct(variables, {n: value})
        elif is_model(tf, value):
            if value.trainable_variables:
                add_distinct(variables, model_variables(tf, n, value))
            elif getattr(value, "built", True) is False:
                unbuilt.append(n)
    return variables, unbuilt


def constraints(tf, variables, models=()):
    """name -> the projection Keras's optimizer.apply makes after each step, for those of
    `variables` (name -> tf.Variable) that have one: the tf.Variable's own (constraint=), or that
    of the Keras variable of one of `models` that holds it (tfmagic steps the tf.Variable under it)."""
    keras_own = {}
    for model in models:
        for v in model.trainable_variables:
            raw = getattr(v, "_value", None)
            if isinstance(raw, tf.Variable) and getattr(v, "constraint", None) is not None:
                keras_own[raw.ref()] = v.constraint
    found = {n: keras_own.get(v.ref()) or getattr(v, "constraint", None) for n, v in variables.items()}
    return {n: c for n, c in found.items() if c is not None}
