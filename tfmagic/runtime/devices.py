"""Device names: accept what people type (cpu, GPU:0, /device:CPU:1), check they exist."""

import re


def available(tf):
    return [d.name for d in tf.config.list_logical_devices()]


def short(name):
    """'/job:localhost/replica:0/task:0/device:CPU:0' -> 'CPU:0' ('' for none)."""
    return name.rsplit("device:", 1)[-1] if name else ""


FORM = re.compile(r"\s*(?:/?(?:job:\w+/)?(?:replica:\d+/)?(?:task:\d+/)?device:|/)?([A-Za-z_]+)(?::(\d+))?\s*")


def well_formed(spec):
    """`spec` is written as a device is (cpu, GPU:1, /device:CPU:0), whether or not it exists."""
    return isinstance(spec, str) and FORM.fullmatch(spec) is not None


def resolve(tf, spec):
    """The full logical device name for `spec`, or ValueError listing the choices."""
    if spec is None:
        return None
    names = available(tf)
    m = FORM.fullmatch(spec)
    if m:
        wanted = f"{m.group(1).upper()}:{m.group(2) or 0}"
        for name in names:
            if short(name).upper() == wanted:
                return name
    choices = ", ".join(short(n) for n in names)
    raise ValueError(f"unknown device {spec!r}; TensorFlow sees: {choices}")
