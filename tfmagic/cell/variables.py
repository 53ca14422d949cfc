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
        raise TfmagicError(f"{name} has no trainable variables yet; call it once on data so it builds its weights.")
    return found
