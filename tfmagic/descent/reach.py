"""What the user's namespace reaches: whether anything but its own name holds a variable, and
the Python random generators in it.

A re-run may move a NAME=INIT variable again only if nothing of the user's but that name holds
it, and may skip the fresh build's traces only if they would draw no Python random numbers
(reuse.py). Both are found by one bounded walk over what the namespace's values refer to
(gc.get_referents): containers, attributes and slots, your classes, functions and modules,
closures, defaults, bound methods, IPython's Out history and `_` names. Not walked into: library modules, classes and functions (they hold no value of
the notebook's, and walking them would walk the libraries), tfmagic's own objects (a result's
.values are copies), the shell and the kernel. A walk past BUDGET objects proves nothing.
"""

import builtins
import gc
import pickle
import random
import site
import sys
import sysconfig
import types
from dataclasses import dataclass, field

import numpy as np

BUDGET = 300_000  # objects visited (~0.1-0.2 s); a namespace that reaches more is not judged
_ENVIRONMENT = {"tfmagic", "IPython", "ipykernel", "jupyter_client", "comm", "zmq", "tornado", "asyncio", "threading",
                "logging", "socket", "selectors", "concurrent", "subprocess", "multiprocessing"}
_GENERATORS = (np.random.Generator, np.random.BitGenerator, np.random.RandomState, random.Random)
_LEAF, _SKIP, _WALK, _ARRAY, _RANDOM, _BY_MODULE = range(6)


@dataclass
class Reach:
    held: set = field(default_factory=set)  # names whose variable something else holds
    generators: list = field(default_factory=list)  # Python random generators reached
    complete: bool = True  # False: the walk ran out of its budget


def walk(namespace, own, leaves=(), budget=None):
    """Walk what `namespace` reaches. `own`: name -> the objects standing for the variable
    that name holds (the variable and its resource handles); `leaves`: types that hold no
    reference worth following (tensors, other variables). An object that cannot be looked
    at ends the walk as not complete."""
    try:
        return _walk(namespace, own, leaves, budget or BUDGET)
    except Exception:
        return Reach(complete=False)


def _walk(namespace, own, leaves, budget):
    targets = {id(o): name for name, objs in own.items() for o in objs}
    seen = {id(namespace), id(builtins.__dict__)}
    found = Reach()
    stack = [v for k, v in namespace.items() if not (k in own and v is own[k][0])]
    rules = {}
    while stack:
        obj = stack.pop()
        key = id(obj)
        if key in targets:
            found.held.add(targets[key])
            continue
        if key in seen:
            continue
        kind = rules.get(type(obj))
        if kind is None:
            kind = rules[type(obj)] = _rule(type(obj), leaves)
        if kind == _WALK and not gc.is_tracked(obj):
            continue  # (an object the collector does not track refers to no container)
        seen.add(key)
        if len(seen) > budget:
            found.complete = False
            return found
        if kind == _BY_MODULE:  # (read from __dict__: a lazily loaded module is not loaded by a look)
            name = vars(obj).get("__name__") if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
            kind = _WALK if _yours(name) else _SKIP
        if kind in (_LEAF, _SKIP):
            continue
        if kind == _RANDOM:
            found.generators.append(obj)
        if kind == _ARRAY:
            if obj.dtype == object:
                stack.extend(obj.ravel().tolist())
            continue
        stack.extend(gc.get_referents(obj))
    return found


def _rule(kind, leaves):
    if issubclass(kind, (type, types.FunctionType, types.ModuleType)):
        return _BY_MODULE  # (walked when they are yours)
    if issubclass(kind, np.ndarray):
        return _ARRAY
    if issubclass(kind, _GENERATORS):
        return _RANDOM
    if leaves and issubclass(kind, leaves):
        return _LEAF
    return _SKIP if (kind.__module__ or "").split(".")[0] in _ENVIRONMENT else _WALK


_LIBRARY_DIRS = tuple({p for k, p in sysconfig.get_paths().items() if k in ("stdlib", "platstdlib", "purelib", "platlib")}
                      | set(site.getsitepackages() if hasattr(site, "getsitepackages") else ())
                      | {site.getusersitepackages()})
_yours_cache = {}


def _yours(module_name):
    """A module of the notebook's (its cells are '__main__'), not a library's nor tfmagic's."""
    if module_name not in _yours_cache:
        module = sys.modules.get(module_name) if isinstance(module_name, str) else None
        path = (vars(module).get("__file__") if isinstance(module, types.ModuleType) else None) or ""
        _yours_cache[module_name] = module_name == "__main__" or bool(
            path and module_name.split(".")[0] != "tfmagic" and not path.startswith(_LIBRARY_DIRS))
    return _yours_cache[module_name]


class Draws:
    """The states of Python's random generators (numpy's and the random module's global ones,
    and those given) now, to tell later whether anything drew from them."""

    def __init__(self, generators=()):
        self._generators = [g for g in {id(g): g for g in generators}.values()]
        self._states = self._now()

    def _now(self):
        states = [pickle.dumps(np.random.get_state()), pickle.dumps(random.getstate())]
        for g in self._generators:
            try:
                states.append(pickle.dumps(_state(g)))
            except Exception:  # (random.SystemRandom: no state to draw from twice)
                states.append(None)
        return states

    def drawn(self):
        """Has any of them moved since?"""
        return self._now() != self._states


def _state(generator):
    if isinstance(generator, np.random.Generator):
        return generator.bit_generator.state
    if isinstance(generator, np.random.BitGenerator):
        return generator.state
    if isinstance(generator, np.random.RandomState):
        return generator.get_state(legacy=False)
    return generator.getstate()
