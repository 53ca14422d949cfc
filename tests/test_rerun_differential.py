"""A re-run gives exactly what a fresh build gives: a seeded generator of cells and of changes
to what they read, each re-run's history and values compared bit for bit with a fresh build's
(the same cells replayed from the same state, the compiled cells forgotten before the re-run).

The changes are the classes a stale graph hides behind: numbers (signed zeros, NaN, numpy
scalars, ints), dtypes, arrays changed in place, class and instance attributes, containers
changed in place, closures, defaults and function globals, Keras layers (activation, an added
layer, a Lambda's global), patched module attributes, Keras settings, numpy Generators and the
global numpy/tf.random seeds, tf.random.Generator, --data arrays changed in place, and plain
re-runs with no change (another start, eta or number of steps), which must be reused. Runs are
`--jit off` (under auto, XLA is chosen by measured speed, by neither build deterministically).
CASES cases a family (TFMAGIC_DIFF_CASES).
"""

import contextlib
import io
import math
import os
import random
from dataclasses import dataclass

import numpy as np
import pytest

from tfmagic.descent.reuse import CELLS
from tfmagic.runtime.tfimport import tensorflow

CASES = int(os.environ.get("TFMAGIC_DIFF_CASES", "10"))  # a family: 110 cases in all (the CI's time limit)


@dataclass
class Case:
    setup: str  # run in a new namespace after the seeds are set
    cell: str
    first: str  # the %%descend line of the first run (without --no-widgets)
    change: str  # run between the two
    second: str  # the %%descend line of the re-run


NUMBERS = ["0.0", "-0.0", "1.0", "-2.5", "float('nan')", "np.float32(1.5)", "np.float64(1.5)", "3", "np.float32(-0.0)",
           "1.5", "float('inf')"]
SIGNED = "tf.math.atan2(tf.cast({}, tf.float32), -1.0)"  # pi or -pi: tells -0.0 from 0.0
_BUCKETS = ((3, 8), (9, 40), (201, 210))  # one compiled step a call up to 200 steps, then the graph loop


def _case(r, setup, cell, changes, unchanged, spec="w=0.5", extra=""):
    """A Case: mostly a change, sometimes none (then the re-run must be reused where it can). The
    re-run's steps are often in the first run's range, whose compiled mode a stale graph would be."""
    first = r.choices(range(3), (5, 3, 2))[0]
    second = first if r.random() < 0.6 else r.choices(range(3), (5, 3, 2))[0]
    specs = spec if isinstance(spec, tuple) else (spec, spec)

    def line(bucket, spec):
        steps = r.randint(*_BUCKETS[bucket])
        return f"{spec} --eta {r.choice(['0.05', '0.1', '0.02'])} --steps {steps} --jit off {extra}".strip()

    change = r.choice(changes) if r.random() < 0.75 else r.choice(unchanged)
    return Case(setup, cell, line(first, specs[0]), change, line(second, specs[1]))


def _scalar_starts(r):
    return tuple(f"w={r.choice(['0.5', '-1.0', '2.0'])}" for _ in range(2))


def _vector_starts(r, n=2):
    return tuple(f"w=tf.constant({r.choice([[0.5, -1.0, 1.0][:n], [0.0] * n, [2.0, 1.0, 0.0][:n]])})" for _ in range(2))


def scalars(r):
    cell = f"loss = (w - a) ** 2 + 0.5 * w * tf.constant(a, tf.float32) + {SIGNED.format('a')} * w"
    zeros = ["0.0", "-0.0", "np.float32(-0.0)", "np.float32(0.0)", "np.float64(-0.0)"]
    setup = f"a = {r.choice(zeros * 3 + NUMBERS)}"
    return _case(r, setup, cell, ["a = -a", "a = -a", f"a = {r.choice(NUMBERS)}"], ["pass", "a = a"], _scalar_starts(r))


def dtypes(r):
    dtype = r.choice(["float32", "float64", "float16"])
    cell = f"loss = tf.reduce_sum((w - tf.cast(A, tf.float32)) ** 2) + tf.reduce_sum({SIGNED.format('A')}) * w[0]"
    changes = [f"A = A.astype(np.{r.choice(['float32', 'float64', 'float16', 'int32'])})", "A[1] = 0.0", "A[1] = 0.0",
               "A[1] = 0.0", "A[0] = 7", "A += 1"]
    return _case(r, f"A = np.array([1.5, -0.0, 2.0], dtype=np.{dtype})", cell, changes,
                 ["pass", "A = A.copy()", "A = np.array(A.tolist(), dtype=A.dtype)"], ("w=tf.zeros([3])", "w=tf.ones([3])"))


def attributes(r):
    setup = (f"class Cfg:\n    lam = {r.choice(NUMBERS[:4])}\n    shift = 1.0\ncfg = Cfg()\ncfg.scale = 2.0\n"
             "def helper():\n    return 0.0\nhelper.k = 1.0\n"
             "class M:\n    def __init__(self):\n        self.c = 1.0\n    def f(self, t):\n        return (t - self.c) ** 2\n"
             "m = M()\nfm = m.f")
    cell, changes, unchanged = r.choice([
        (f"loss = (w - Cfg.shift) ** 2 + Cfg.lam * w ** 2 + {SIGNED.format('Cfg.shift')} * w",
         ["Cfg.lam = 5.0", "Cfg.shift = -0.0", "class Cfg:\n    lam = 1.0\n    shift = 2.0"], ["pass", "Cfg.lam = Cfg.lam"]),
        ("loss = (w - cfg.shift) ** 2 + cfg.scale * w ** 2 + cfg.lam * w", ["cfg.scale = -1.0", "cfg.lam = 5.0"], ["pass"]),
        ("loss = (w - helper.k) ** 2 + helper()", ["helper.k = -3.0", "helper.k = 2.0"], ["pass", "helper.k = 1.0"]),
        ("loss = fm(w)", ["m.c = 3.0", "m.c = -0.5"], ["pass", "fm = m.f"]),
    ])
    return _case(r, setup, cell, changes, unchanged, _scalar_starts(r))


def containers(r):
    setup = "L = [1.0, 2.0]\nD = {'k': 0.5, 'n': [1.0]}\nS = {1.0, 2.0}\nT = (1.0, [2.0])\nN = [[1.0], [2.0]]"
    cell, changes = r.choice([
        ("loss = tf.reduce_sum(w ** 2) * float(len(S)) + sum(sorted(S)) * w[0]", ["S.add(5.0)", "S.discard(1.0)"]),
        ("loss = tf.reduce_sum((w - tf.constant(L[:2], tf.float32)) ** 2) + len(L) * w[0]"
         " + (w[0] - D['k']) ** 2 + (w[1] - D['n'][0]) ** 2 + " + SIGNED.format("D['n'][0]") + " * w[1]"
         " + (w[0] - T[1][0]) ** 2 + (w[1] - N[1][0]) ** 2",
         ["L[0] = 4.0", "L.append(3.0)", "D['k'] = -1.0", "D['n'][0] = -0.0", "T[1][0] = 4.0", "N[1][0] = 8.0"]),
    ])
    return _case(r, setup, cell, changes, ["pass", "S.add(1.0)", "L = list(L)", "N[1] = [2.0]"], _vector_starts(r))


def functions(r):
    setup = ("k = 1.0\ndef make(c):\n    return lambda t: (t - c) ** 2\nf = make(1.0)\n"
             "def g(t, d=1.0):\n    return (t - d) ** 2 + k * t\n"
             "def h(t):\n    return g(t) + f(t)\n"
             "box = [1.0]\nclosed = (lambda b: lambda t: (t - b[0]) ** 2)(box)")
    cell, changes = r.choice([
        ("loss = f(w)", ["f = make(2.0)", "f.__closure__[0].cell_contents = 3.0"]),
        ("loss = h(w) + g(w, d=k)", ["k = -1.0", "g.__defaults__ = (-2.0,)", "def g(t, d=1.0):\n    return (t + d) ** 2",
                                     "def h(t):\n    return g(t) - f(t)"]),
        ("loss = closed(w)", ["box[0] = 5.0", "box[0] = -0.0"]),
    ])
    return _case(r, setup, cell, changes, ["pass", "k = k", "f = make(1.0)", "box[0] = 1.0"], _scalar_starts(r))


def keras_layers(r):
    setup = ("X = np.linspace(-1, 1, 16, dtype=np.float32).reshape(8, 2)\nY = np.sin(X[:, :1] * 3)\n"
             "model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation='tanh'), keras.layers.Dense(1)])\n"
             "scale = 1.0\n"
             "lam = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1), keras.layers.Lambda(lambda t: t * scale)])")
    name, changes, unchanged = r.choice([
        ("model", ["model.layers[0].activation = keras.activations.get('relu')",
                   "model.add(keras.layers.Activation('sigmoid'))"],
         ["pass", "model.layers[0].activation = keras.activations.get('tanh')"]),
        ("lam", ["scale = -2.0", "lam.layers[-1].function = lambda t: t * 2.0"], ["pass", "scale = 1.0"]),
    ])
    return _case(r, setup, f"loss = tf.reduce_mean(({name}(X) - Y) ** 2)", changes, unchanged, name)


def keras_settings(r):
    setup = "keras.config.set_epsilon(1e-7)\nkeras.config.set_floatx('float32')"
    cell = ("loss = (w - 1.0) ** 2 + tf.cast(tf.constant(1e-8, keras.config.floatx()) + 1.0 - 1.0, tf.float32) * 1e8 * w"
            " + keras.config.epsilon() * 1e6 * w")
    return _case(r, setup, cell, ["keras.config.set_epsilon(1e-3)", "keras.config.set_floatx('float64')"],
                 ["pass", "keras.config.set_epsilon(1e-7)"], _scalar_starts(r))


def module_attributes(r):
    cell = r.choice(["loss = (w - np.pi) ** 2",
                     f"loss = (w - np.e * math.pi) ** 2 + math.e * w + np.pi * w + {SIGNED.format('math.pi')} * w"])
    return _case(r, "import math", cell, ["np.pi = 3.0", "math.e = 2.0", "math.pi = -0.0", "np.e = 1.0"],
                 ["pass", "np.pi = 3.141592653589793", "np.e = np.float32(np.e)"], _scalar_starts(r))


def numpy_random(r):
    seed = r.randint(0, 3)
    cell = r.choice(["loss = (w - float(rng.normal())) ** 2",
                     "loss = (w - np.random.uniform()) ** 2",
                     "loss = (w - float(np.random.default_rng(3).normal())) ** 2",
                     "loss = (w - float(rng.bit_generator.state['state']['state'] % 7)) ** 2"])
    return _case(r, f"rng = np.random.default_rng({seed})\nnp.random.seed({seed})", cell,
                 [f"rng = np.random.default_rng({seed})", f"np.random.seed({seed})", "rng.normal()", "np.random.uniform()"],
                 ["pass"], _scalar_starts(r))


def tf_random(r):
    seed = r.randint(0, 3)
    setup = (f"tf.random.set_seed({seed})\ngen = tf.random.Generator.from_seed({seed})\nsd = {seed}\n"
             f"sg = keras.random.SeedGenerator({seed})")
    cell = r.choice(["loss = tf.reduce_sum((w - tf.random.normal([2])) ** 2)",
                     "loss = tf.reduce_sum((w - gen.normal([2])) ** 2)",
                     "loss = tf.reduce_sum((w - tf.random.stateless_normal([2], seed=[sd, 0])) ** 2)",
                     "loss = tf.reduce_sum((w - tf.random.uniform([2], seed=7)) ** 2)",
                     "loss = tf.reduce_sum((w - keras.random.normal((2,), seed=sg)) ** 2)"])
    changes = [f"tf.random.set_seed({seed})", f"gen.reset_from_seed({seed})", f"sd = {seed + 1}", "tf.random.normal([1])",
               f"tf.random.set_seed({seed + 1})"]
    return _case(r, setup, cell, changes, ["pass"], _vector_starts(r))


def data_arrays(r):
    setup = ("Xd = np.linspace(0, 1, 24, dtype=np.float32).reshape(12, 2)\nYd = Xd @ np.array([1.0, -2.0], np.float32)\n"
             "Xv = Xd[:4].copy(); Yv = Yd[:4].copy()")
    cell = "loss = tf.reduce_mean((tf.linalg.matvec(Xd, w) - Yd) ** 2)"
    data = f"--data Xd,Yd --batch-size {r.choice([4, 5])} --seed 1" + r.choice(["", " --validate Xv,Yv"])
    return _case(r, setup, cell, ["Xd[0, 0] = 9.0", "Yd *= 2", "Xv[0, 0] = -0.0", "Yv += 1", "Xd[1] = -0.0"],
                 ["pass", "Xd = Xd.copy()", "Xd = Xd.astype(np.float64)"], "w=tf.zeros([2])", data)


FAMILIES = [scalars, dtypes, attributes, containers, functions, keras_layers, keras_settings, module_attributes,
            numpy_random, tf_random, data_arrays]
_LIBRARY_STATE = {(np, "pi"), (np, "e"), (math, "e"), (math, "pi")}


@contextlib.contextmanager
def library_state_kept():
    """Module attributes and Keras settings the cases patch, put back after each replay."""
    import keras

    saved = {(m, a): getattr(m, a) for m, a in _LIBRARY_STATE}
    eps, floatx = keras.config.epsilon(), keras.config.floatx()
    try:
        yield
    finally:
        for (m, a), v in saved.items():
            setattr(m, a, v)
        keras.config.set_epsilon(eps)
        keras.config.set_floatx(floatx)


def _ok(ip, code):
    result = ip.run_cell(code, store_history=False, silent=True)
    if not result.success:
        raise AssertionError(f"{code!r}: {result.error_in_exec or result.error_before_exec!r}")


def _outcome(ip, line, cell):
    """What a run leaves: its history, values and status, or the error it raised."""
    try:
        res = ip.run_cell_magic("descend", line + " --no-widgets", cell)
    except Exception as err:
        return {"error": f"{type(err).__name__}: {err}"}, None
    return {"status": res.status, "steps": res.steps, **{f"history.{k}": v.copy() for k, v in res.history.items()},
            **{f"values.{k}": np.asarray(v).copy() for k, v in res.values.items()}}, res


def replay(ip, case, seed, reuse, base):
    """The case from a new namespace (the names in `base` kept: IPython's); the second run with
    the kept cells, or after forgetting them."""
    with library_state_kept(), contextlib.redirect_stdout(io.StringIO()):
        for name in [n for n in ip.user_ns if n not in base]:  # (not ip.reset: its gc.collect takes ~0.2 s)
            del ip.user_ns[name]
        ip.user_ns["tf"] = tensorflow()
        CELLS.clear()
        _ok(ip, f"import numpy as np, keras\nkeras.backend.clear_session(free_memory=False)\nkeras.utils.set_random_seed({seed})\n"
                f"{case.setup}")
        _outcome(ip, case.first, case.cell)
        _ok(ip, case.change)
        if not reuse:
            CELLS.clear()
        outcome, res = _outcome(ip, case.second, case.cell)
        return outcome, res is not None and res.engine.reused


def _bits(value):
    value = np.asarray(value)
    return value.dtype.str, value.shape, value.tobytes()  # (bit for bit: -0.0 is not 0.0, NaN payloads count)


def _same(a, b):
    return a.keys() == b.keys() and all(
        _bits(a[k]) == _bits(b[k]) if k not in ("status", "error") else a[k] == b[k] for k in a)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.__name__)
def test_a_rerun_gives_what_a_fresh_build_gives(ip, family):
    r = random.Random(f"{family.__name__}-22")
    wrong, reused, base = [], 0, set(ip.user_ns)
    for i in range(CASES):
        case = family(r)
        again, was_reused = replay(ip, case, i, True, base)
        fresh, _ = replay(ip, case, i, False, base)
        reused += was_reused
        if not _same(again, fresh):
            differs = sorted(k for k in again.keys() | fresh.keys() if k not in again or k not in fresh
                             or not _same({k: again[k]}, {k: fresh[k]}))
            wrong.append(f"{case} (reused: {was_reused}) differs in {differs}")
    assert wrong == []
    if family not in (numpy_random, tf_random):
        assert reused, "nothing was reused: these cases would not tell a stale graph from a new one"
