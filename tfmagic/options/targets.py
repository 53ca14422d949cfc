"""What a line names outside itself: the device of --device, the variable -o OUT stores into."""

import builtins
import keyword

from IPython.core.error import UsageError

from tfmagic.cell.variables import is_model


def resolve_device(tf, spec):
    """The full logical device name of `spec` (None: TensorFlow's choice), or a UsageError listing them."""
    from tfmagic.runtime import devices

    try:
        return devices.resolve(tf, spec)
    except ValueError as err:
        raise UsageError(str(err)) from None


def check_out(namespace, tf, out, names):
    """-o OUT must not replace what the cell works on (a variable, or a model's)."""
    if not out:
        return
    if not out.isidentifier() or keyword.iskeyword(out) or hasattr(builtins, out) or out.startswith("__"):
        raise UsageError(f"-o {out}: give a plain variable name that is not a Python keyword or builtin, e.g. -o run")
    named = {spec.split("=", 1)[0].strip() for spec in names}
    current = namespace.get(out)
    if out in named or isinstance(current, tf.Variable) or is_model(tf, current):
        raise UsageError(
            f"-o {out} would replace the {'variable' if out in named else type(current).__name__} {out}; "
            f"store the result under another name, e.g. -o run"
        )
