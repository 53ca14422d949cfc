"""The descent engine: gradient descent in compiled, time-boxed chunks.

TensorFlow only: no IPython, no widgets. A UI drives it (run, pause, stop,
step, reset, eta, optimizer) and observes it through `observe(callback)`.

Why chunks: one tf.function call that runs K steps in-graph is 10-600x faster
than calling a compiled step from Python (FACTS.md). K grows until a chunk takes
about 20 ms, so a live change (eta, pause) waits at most one chunk. eta lives
in the Keras optimizer's learning-rate variable, read inside the graph: changing
it never retraces and the next step uses it.
"""

import math
import time
from dataclasses import dataclass

import numpy as np

from .tfimport import quiet_native_stderr

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad")
FINAL_STATUSES = ("converged", "diverged", "max_steps", "stopped", "paused", "interrupted", "error")
CHUNK_SECONDS = 0.02  # a chunk this long reaches >= 95 % of the in-graph rate
MAX_CHUNK_GROWTH = 4
XLA_MIN_STEPS = 5000  # XLA costs 0.1-0.3 s to compile; below this it does not pay
BLOWUP_FACTOR = 1e6  # |loss| above this times the starting loss counts as divergence
_RUNNING, _CONVERGED, _DIVERGED = 0, 1, 2


def make_optimizer(name, eta):
    import keras

    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    return {
        "sgd": lambda: keras.optimizers.SGD(eta),
        "momentum": lambda: keras.optimizers.SGD(eta, momentum=0.9),
        "nesterov": lambda: keras.optimizers.SGD(eta, momentum=0.9, nesterov=True),
        "adam": lambda: keras.optimizers.Adam(eta),
        "rmsprop": lambda: keras.optimizers.RMSprop(eta),
        "adagrad": lambda: keras.optimizers.Adagrad(eta),
    }[name]()


def check_eta(eta):
    try:
        value = float(eta)
    except (TypeError, ValueError):
        raise ValueError(f"eta must be a number, got {eta!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"eta must be a positive finite number, got {eta!r}")
    return value


@dataclass
class Chunk:
    """What one chunk did, handed to observers."""

    start: int  # index of its first step in the history
    rows: dict  # column -> numpy array of this chunk's steps
    status: str
    steps_per_second: float


class Descent:
    """Minimise `loss_fn()` over `variables` (name -> tf.Variable)."""

    def __init__(self, tf, loss_fn, variables, *, eta=0.1, optimizer="sgd", device=None, tol=None, jit="auto"):
        self.tf = tf
        self.loss_fn = loss_fn
        self.variables = dict(variables)
        self.device = device
        self.tol = tol
        self.jit = jit
        self.optimizer_name = optimizer
        self._eta = check_eta(eta)
        self.columns = ["loss", "eta", "grad_norm"] + list(self.variables)
        with tf.device(device):
            self._initial = [tf.identity(v) for v in self.variables.values()]
            self._backup = [tf.Variable(v, trainable=False) for v in self.variables.values()]
            self._snapshot = [tf.Variable(v, trainable=False) for v in self.variables.values()]
        self._loss = tf.function(loss_fn)
        self._observers = []
        self._chunk_fns = {}
        self.optimizer = None
        self.notes = []
        self.reset()

    # -- state -------------------------------------------------------------
    def reset(self, device=None, start=None):
        """Back to the initial values, history cleared, optimizer state fresh.

        `device` (a full TensorFlow device name) moves the computation there;
        `start` (name -> value) makes those the new initial values (restarts).
        """
        if start is not None:
            self._initial = [
                self.tf.cast(self.tf.reshape(start[n], v.shape), v.dtype) if n in start else init
                for (n, v), init in zip(self.variables.items(), self._initial)
            ]
            self.__dict__.pop("_curvature", None)
        if device is not None and device != self.device:
            self.device = device
            self._loss = self.tf.function(self.loss_fn)
            self._chunk_fns = {}
        for var, init in zip(self.variables.values(), self._initial):
            var.assign(init)
        self._rows = []
        self._history = None
        self.steps = 0
        self.status = "ready"
        self.message = ""
        self.final_loss = None
        self.steps_per_second = 0.0
        self._stop_request = None
        self._start_loss = None
        if getattr(self, "optimizer", None) is None:
            self._set_optimizer(self.optimizer_name)
        else:
            # Zero the optimizer's state in place: a new optimizer would retrace the chunk.
            for v in self.optimizer.variables:
                if v is not self.optimizer._learning_rate:
                    v.assign(self.tf.zeros_like(v))

    def _set_optimizer(self, name):
        tf = self.tf
        with tf.device(self.device):
            opt = make_optimizer(name, self._eta)
            opt.build(list(self.variables.values()))
        self.optimizer_name, self.optimizer = name, opt
        self._chunk_fns = {}

    def set_optimizer(self, name):
        """Switch optimizer; takes effect at the next chunk (fresh optimizer state)."""
        if name != self.optimizer_name:
            self._set_optimizer(name)

    @property
    def eta(self):
        return self._eta

    @eta.setter
    def eta(self, value):
        self._eta = check_eta(value)
        self.optimizer.learning_rate = self._eta  # an assign: no retrace

    def observe(self, callback):
        """Call `callback(engine, chunk)` after every chunk."""
        self._observers.append(callback)

    def unobserve(self, callback):
        if callback in self._observers:
            self._observers.remove(callback)

    def request_stop(self, status="stopped"):
        """Stop after the chunk that is running ('stopped' or 'paused')."""
        self._stop_request = status

    @property
    def history(self):
        if self._history is None:
            rows = np.concatenate(self._rows) if self._rows else np.zeros((0, len(self.columns)), np.float32)
            self._history = {c: rows[:, i] for i, c in enumerate(self.columns)}
        return self._history

    # -- compiled pieces ---------------------------------------------------
    def _build_chunk(self, jit):
        tf = self.tf
        variables = list(self.variables.values())
        backup, snapshot, opt, loss_fn = self._backup, self._snapshot, self.optimizer, self.loss_fn
        width = len(self.columns)
        capacity = 1 << 16 if jit else 0

        def summary(v):
            v = tf.cast(v, tf.float32)
            return tf.reshape(v, []) if v.shape.num_elements() == 1 else tf.norm(v)

        def chunk(n, tol, limit):
            for s, v in zip(snapshot, variables):
                s.assign(v)
            # XLA needs a fixed-size buffer; without XLA a growing one is cheaper.
            rows = tf.TensorArray(tf.float32, size=capacity, dynamic_size=not jit, element_shape=[width])
            i = tf.constant(0)
            code = tf.constant(_RUNNING)
            while i < n and code == _RUNNING:
                with tf.GradientTape() as tape:
                    loss = tf.cast(loss_fn(), tf.float32)
                grads = tape.gradient(loss, variables)
                grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
                gnorm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(tf.cast(g, tf.float32))) for g in grads]))
                finite = tf.math.is_finite(loss) and tf.math.is_finite(gnorm) and tf.abs(loss) <= limit
                # Written unconditionally: under XLA a write inside a cond copies the whole buffer.
                row = [loss, tf.cast(opt.learning_rate, tf.float32), gnorm] + [summary(v) for v in variables]
                rows = rows.write(i, tf.stack(row))
                if not finite:
                    code = tf.constant(_DIVERGED)
                    for v, b in zip(variables, backup):
                        v.assign(b)  # the values before the step that blew up
                elif gnorm < tol:
                    code = tf.constant(_CONVERGED)
                else:
                    for b, v in zip(backup, variables):
                        b.assign(v)
                    opt.apply_gradients(zip(grads, variables))
                    i += 1
            return rows.stack(), i, code

        return tf.function(chunk, jit_compile=jit, autograph=True)

    def _chunk_fn(self, steps_wanted):
        use_xla = self.jit == "on" or (self.jit == "auto" and steps_wanted >= XLA_MIN_STEPS)
        key = use_xla
        if key not in self._chunk_fns:
            fn = self._build_chunk(use_xla)
            try:
                # A call that runs no step traces (and compiles) up front; XLA's
                # first compile writes C++ log lines we keep out of the notebook.
                with quiet_native_stderr(), self.tf.device(self.device):
                    fn(self.tf.constant(0), self.tf.constant(0.0), self.tf.constant(np.inf, self.tf.float32))
            except Exception as err:
                if not use_xla:
                    raise
                # XLA cannot compile every op (py_function, strings, ...): run without it.
                self.notes.append(f"XLA could not compile this cell ({type(err).__name__}); running without XLA.")
                self.jit = "off"
                return self._chunk_fn(steps_wanted)
            self._chunk_fns[key] = fn
        return self._chunk_fns[key], (1 << 16 if use_xla else 1 << 20)

    # -- running -----------------------------------------------------------
    def _limit(self):
        if self._start_loss is None:
            with self.tf.device(self.device):
                self._start_loss = float(self._loss())
        if not math.isfinite(self._start_loss):
            return 0.0  # the very first check fails: report divergence at the start
        return BLOWUP_FACTOR * max(abs(self._start_loss), 1.0)

    def steps_iter(self, steps):
        """Run up to `steps` steps, yielding each Chunk; sets .status at the end.

        A generator so a blocking loop and an awaiting loop (the live UI) share
        one implementation: the caller decides what happens between chunks.
        """
        tf = self.tf
        if steps <= 0:
            raise ValueError(f"steps must be a positive whole number, got {steps}")
        self._stop_request = None
        self.status = "running"
        self.message = ""
        for b, v in zip(self._backup, self.variables.values()):
            b.assign(v)
        tol = tf.constant(float(self.tol or 0.0), tf.float32)
        limit = tf.constant(self._limit(), tf.float32)
        done, k = 0, 16
        while done < steps:
            # Looked up every chunk: the optimizer may have been switched between chunks.
            fn, capacity = self._chunk_fn(steps)
            n = min(k, steps - done, capacity)
            t0 = time.perf_counter()
            try:
                with tf.device(self.device):
                    rows, count, code = fn(tf.constant(n), tol, limit)
                count, code = int(count), int(code)
                rows = rows.numpy()[:count]
            except BaseException as err:
                # Back to the start of this chunk: the values match the history.
                self._restore_snapshot()
                if not isinstance(err, KeyboardInterrupt):
                    self.status, self.message = "error", f"stopped by an error after {self.steps} steps: {err}"
                raise
            elapsed = time.perf_counter() - t0
            done += count
            if count:
                self._rows.append(rows)
                self._history = None
                self.steps += count
                self.steps_per_second = count / max(elapsed, 1e-9)
            status = {_CONVERGED: "converged", _DIVERGED: "diverged"}.get(code, "running")
            if status == "running" and done >= steps:
                status = "max_steps"
            if status == "running" and self._stop_request:
                status = self._stop_request
            chunk = Chunk(self.steps - count, {c: rows[:, i] for i, c in enumerate(self.columns)}, status, self.steps_per_second)
            if status != "running":
                self._finish(status)
            for callback in list(self._observers):
                callback(self, chunk)
            yield chunk
            if status != "running":
                return
            k = int(min(capacity, k * min(MAX_CHUNK_GROWTH, CHUNK_SECONDS / max(elapsed, 1e-6)))) or 1

    def _restore_snapshot(self):
        for v, s in zip(self.variables.values(), self._snapshot):
            v.assign(s)

    def _finish(self, status):
        self.status = status
        try:
            with self.tf.device(self.device):
                loss = float(self._loss())
        except Exception:  # reported by the run itself; the status must still be set
            loss = math.nan
        self.final_loss = loss if math.isfinite(loss) else None
        if status == "diverged":
            self.message = self.divergence_message()
        elif status == "converged":
            self.message = f"converged: gradient norm below tol={self.tol} after {self.steps} steps"

    def interrupted(self):
        """Mark the run interrupted (Ctrl-C / kernel interrupt between or in a chunk)."""
        self._finish("interrupted")
        self.message = f"interrupted after {self.steps} steps; the variables hold the last good values"

    def curvature(self):
        """λ, the largest curvature of the loss at the initial values (None if not positive)."""
        if not hasattr(self, "_curvature"):
            from .curvature import largest_curvature

            now = [self.tf.identity(v) for v in self.variables.values()]
            try:
                for var, init in zip(self.variables.values(), self._initial):
                    var.assign(init)
                with quiet_native_stderr(), self.tf.device(self.device):
                    self._curvature = largest_curvature(self.tf, self.loss_fn, self.variables.values())
            except Exception:  # a loss without second derivatives: no suggestion
                self._curvature = None
            finally:
                for var, value in zip(self.variables.values(), now):
                    var.assign(value)
        return self._curvature

    def suggested_eta(self):
        """2/λ: plain gradient descent diverges above it (for a quadratic, exactly)."""
        lam = self.curvature()
        return 2.0 / lam if lam else None

    def eta_advice(self):
        lam = self.curvature()
        if not lam:
            return ""
        return (
            f"The largest curvature at the start is λ ≈ {lam:.4g}, so plain gradient descent "
            f"diverges above eta ≈ 2/λ = {2.0 / lam:.4g}."
        )

    def divergence_message(self):
        eta = self.history["eta"][-1] if self.steps else self._eta
        names = ", ".join(self.variables)
        where = f"after {self.steps} steps" if self.steps else "at the starting point"
        if not self.steps:
            return (
                f"diverged {where}: the loss is not finite (or huge) at the start, before any step. "
                f"Check the initial values of {names}."
            )
        suggestion = self.suggested_eta()
        advice = self.eta_advice()
        smaller = 0.5 * suggestion if suggestion and suggestion < eta else eta / 10
        return (
            f"diverged {where}: the loss blew up (it became infinite, NaN or over "
            f"{BLOWUP_FACTOR:g}x its starting value). eta={eta:g} is too large for this function: each "
            f"step overshoots the minimum by more than it gains. {advice + ' ' if advice else ''}"
            f"Try a smaller eta (e.g. {smaller:.3g}) or an adaptive optimizer such as adam. "
            f"The variables ({names}) were put back to the last finite values."
        )

    def run(self, steps):
        """Blocking run; returns the final status. Ctrl-C leaves a consistent state."""
        try:
            for _ in self.steps_iter(steps):
                pass
        except KeyboardInterrupt:
            self.interrupted()
        return self.status

    def evaluate(self):
        with self.tf.device(self.device):
            return float(self._loss())
