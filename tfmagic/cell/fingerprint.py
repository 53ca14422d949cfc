"""What a compiled cell took from the namespace, in a form that can be compared later.

A traced cell bakes in the values of the names it reads (numbers, arrays,
tensors, the code of a function it calls) and holds variables and models by
reference. `take(value)` records one such value; `same(token, value)` says
whether tracing again with `value` would give the same graph. What cannot be
judged (a list a function could mutate, an object of the user's own class)
raises Unjudgeable: such a cell is never reused.
"""

import numbers
import types

import numpy as np

MAX_BYTES = 64 << 20  # arrays kept for comparison, per value: larger ones are not judged
_DEPTH = 4  # functions calling functions: deeper than this is not judged


class Unjudgeable(Exception):
    """A value whose effect on the trace cannot be compared."""


_LIBRARIES = ("tensorflow", "keras", "tf_keras", "numpy", "math", "builtins", "scipy", "sklearn", "operator")
_ABSENT = ("absent",)  # a name a function reads that is not a global (a builtin, or an attribute's name)


def _library(obj):
    """Made by one of the libraries, which do not change under a notebook: an instance of one
    of their classes, or one of their functions (not an instance of a subclass of yours)."""
    module = getattr(type(obj), "__module__", "") if not isinstance(obj, types.FunctionType) else obj.__module__
    return (module or "").split(".")[0] in _LIBRARIES


def take(value, depth=0):
    """A token for `value`: what `same` compares a later value against."""
    if value is None or isinstance(value, (bool, str, bytes)):
        return ("value", type(value), value)
    if isinstance(value, (numbers.Number, np.generic)):
        return ("value", type(value), value)
    if isinstance(value, np.ndarray):
        if value.nbytes > MAX_BYTES or value.dtype == object:
            raise Unjudgeable
        return ("array", value.copy())
    if isinstance(value, types.ModuleType):  # (a module of yours may be reloaded, its functions replaced)
        if value.__name__.split(".")[0] not in _LIBRARIES:
            raise Unjudgeable
        return ("is", value)
    if isinstance(value, (type, types.BuiltinFunctionType)):
        return ("is", value)
    kind = type(value).__name__
    if kind == "EagerTensor":
        if value.shape.num_elements() * value.dtype.size > MAX_BYTES:
            raise Unjudgeable
        return ("tensor", value, value.numpy().copy())
    if kind in ("DType", "TensorShape"):
        return ("value", type(value), value)
    if isinstance(value, types.FunctionType):
        if _library(value):
            return ("is", value)
        if depth >= _DEPTH or "random" in _names_in(value.__code__):  # (a draw is baked into the trace)
            raise Unjudgeable
        return ("function", value, value.__code__, _function_reads(value, depth))
    if isinstance(value, (tuple, list)):
        return ("sequence", type(value), tuple(take(v, depth + 1) for v in value))
    if isinstance(value, dict):
        return ("dict", {k: take(v, depth + 1) for k, v in value.items()})
    if _library(value):
        # a variable or model (read where it is, at run time), a tf op, a Keras loss, a Dataset;
        # not an object of a class of yours (a tf.Module subclass: its code reads your globals)
        return ("is", value)
    raise Unjudgeable


def _names_in(code):
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_in(const)
    return names


def _function_reads(fn, depth):
    """Tokens of what a function of the user's reads: its globals, closure and defaults."""
    found = {n: take(fn.__globals__[n], depth + 1) if n in fn.__globals__ else _ABSENT
             for n in sorted(_names_in(fn.__code__))}
    cells = tuple(take(c.cell_contents, depth + 1) for c in fn.__closure__ or ())
    return found, cells, take(fn.__defaults__, depth + 1), take(fn.__kwdefaults__, depth + 1)


def same(token, value):
    """Would tracing with `value` give what tracing with the token's value gave?"""
    kind = token[0]
    if kind == "value":
        return type(value) is token[1] and _equal(value, token[2])
    if kind == "is":
        return value is token[1]
    if kind == "array":
        return isinstance(value, np.ndarray) and _equal_arrays(value, token[1])
    if kind == "tensor":
        return value is token[1] or (type(value).__name__ == "EagerTensor" and value.dtype == token[1].dtype
                                     and _equal_arrays(value.numpy(), token[2]))
    if kind == "function":
        if value is not token[1] or value.__code__ is not token[2]:
            return False
        found, cells, defaults, kwdefaults = token[3]
        g = value.__globals__
        return (all(n not in g if t is _ABSENT else n in g and same(t, g[n]) for n, t in found.items())
                and len(cells) == len(value.__closure__ or ())
                and all(_cell_same(t, c) for t, c in zip(cells, value.__closure__ or ()))
                and same(defaults, value.__defaults__) and same(kwdefaults, value.__kwdefaults__))
    if kind == "sequence":
        return (type(value) is token[1] and len(value) == len(token[2])
                and all(same(t, v) for t, v in zip(token[2], value)))
    if kind == "dict":
        return (isinstance(value, dict) and value.keys() == token[1].keys()
                and all(same(t, value[k]) for k, t in token[1].items()))
    return False


def _cell_same(token, cell):
    try:
        return same(token, cell.cell_contents)
    except ValueError:  # emptied since
        return False


def _equal(a, b):
    try:
        return bool(a == b) or (a != a and b != b)  # (NaN: the same constant)
    except Exception:
        return False


def _equal_arrays(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


def take_all(values):
    """name -> token, or None when one of them cannot be judged."""
    try:
        return {n: take(v) for n, v in values.items()}
    except (Unjudgeable, RecursionError):
        return None


def all_same(tokens, values):
    """Every name still there with a value that traces the same."""
    return tokens.keys() == values.keys() and all(same(t, values[n]) for n, t in tokens.items())
