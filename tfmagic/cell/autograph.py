"""AutoGraph for the cell's code only; tfmagic's own code around it is traced as plain Python.

AutoGraph converts a function by parsing and rewriting its source, ~20-100 ms the first time
in a process for each function it meets. The cell needs it (its Python `if`/`for` on tensors);
the wrappers and bookkeeping tfmagic calls around it do not.
"""


def _autograph(tf):
    """TensorFlow's AutoGraph entry for library code (None if this TensorFlow lacks it)."""
    ag = getattr(getattr(tf, "__internal__", None), "autograph", None)
    return ag if hasattr(ag, "tf_convert") and hasattr(ag, "control_status_ctx") else None


def function(tf, fn, **options):
    """tf.function for tfmagic's own code: not converted, except what it wraps with `converted`."""
    return tf.function(fn, autograph=_autograph(tf) is None, **options)


def converted(tf, fn):
    """`fn` converted by AutoGraph when called, also inside a tf.function(autograph=False);
    as it is when it only calls converted code (see calls_converted)."""
    ag = _autograph(tf)
    if ag is None or getattr(fn, CALLS_CONVERTED, False):
        return fn
    return ag.tf_convert(fn, ag.control_status_ctx(), user_requested=True)


CALLS_CONVERTED = "tfmagic_calls_converted"


def calls_converted(fn):
    """Mark `fn`, a wrapper that calls only converted code, so `converted` leaves it as it is
    (not_converted would also switch AutoGraph off for what `fn` calls)."""
    setattr(fn, CALLS_CONVERTED, True)
    return fn


def not_converted(tf, fn):
    """`fn` called as it is from converted code (AutoGraph would otherwise convert it too);
    for a wrapper around converted code, see calls_converted."""
    return tf.autograph.experimental.do_not_convert(fn)
