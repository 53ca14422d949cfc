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
CHUNK_SECONDS = 0.02  # a chunk this long reaches >= 95 % of the in-graph rate
MAX_CHUNK_GROWTH = 4
XLA_PAYS_AFTER_SECONDS = 1.0  # XLA compiles in 0.1-0.3 s: worth it when clearly more work than that is left
XLA_CAPACITY = 1 << 16  # rows per XLA chunk; faster problems record every k-th step
HISTORY_MAX = 1 << 20  # rows kept; longer runs keep every other row
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
            self._chunk_fns = {}
        for var, init in zip(self.variables.values(), self._initial):
            var.assign(init)
        self._rows = np.zeros((1024, len(self.columns)), np.float32)  # grows by doubling
        self._row_steps = np.zeros(1024, np.int64)
        self._n_rows = 0
        self._history = None
        self.steps = 0
        self.status = "ready"
        self.message = ""
        self.final_loss = None
        self.steps_per_second = 0.0
        self._stop_request = None
        self._start_loss = None
        self._stride = 1
        self._exit_loss = math.nan
        self._xla_verdict = None  # auto: does XLA beat the plain rate here? (None: not tried)
        self._xla_ran = False
        self._plain_rate = 0.0
        self._run_steps, self._run_seconds = 0, 0.0
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
        """Per-step arrays; 'step' says which step each row is (see HISTORY_MAX, stride)."""
        if self._history is None:
            # Views, not copies: appends land past them and thinning builds new arrays,
            # so a history handed out earlier never changes under its holder.
            n = self._n_rows
            self._history = {c: self._rows[:n, i] for i, c in enumerate(self.columns)}
            self._history["step"] = self._row_steps[:n]
        return self._history

    # -- compiled pieces ---------------------------------------------------
    def _build_chunk(self, jit):
        """One tf.function that runs up to n steps in a graph while loop.

        The health checks (finite, not blown up, above tol) are the loop's
        condition, so the body has no branch: a branch costs ~4 ns/step under
        XLA, as much as a small problem's whole step.
        """
        tf = self.tf
        variables = list(self.variables.values())
        backup, snapshot, opt, loss_fn = self._backup, self._snapshot, self.optimizer, self.loss_fn
        width = len(self.columns)

        def summary(v):
            v = tf.cast(v, tf.float32)
            return tf.reshape(v, []) if v.shape.num_elements() == 1 else tf.norm(v)

        def evaluate():
            with tf.GradientTape() as tape:
                loss = tf.cast(loss_fn(), tf.float32)
            grads = tape.gradient(loss, variables)
            grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
            gnorm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(tf.cast(g, tf.float32))) for g in grads]))
            return loss, grads, gnorm

        def chunk(n, stride, tol, start_loss):
            for s, b, v in zip(snapshot, backup, variables):
                s.assign(v)
                b.assign(v)
            loss, grads, gnorm = evaluate()
            reference = tf.where(tf.math.is_nan(start_loss), loss, start_loss)
            limit = BLOWUP_FACTOR * tf.maximum(tf.abs(reference), 1.0)

            def healthy(loss, gnorm):
                return tf.math.is_finite(loss) & tf.math.is_finite(gnorm) & (tf.abs(loss) <= limit)

            # XLA needs a fixed-size buffer (rows land at i // stride, the last
            # step of each stride block stays); without XLA a growing one is cheaper.
            rows = tf.zeros([XLA_CAPACITY, width]) if jit else tf.TensorArray(
                tf.float32, size=0, dynamic_size=True, element_shape=[width])

            def cond(i, loss, grads, gnorm, rows):
                return (i < n) & healthy(loss, gnorm) & (gnorm >= tol)

            def body(i, loss, grads, gnorm, rows):
                row = tf.stack([loss, tf.cast(opt.learning_rate, tf.float32), gnorm] + [summary(v) for v in variables])
                if jit:
                    rows = tf.tensor_scatter_nd_update(rows, [[i // stride]], [row])
                else:
                    rows = rows.write(i, row)
                for b, v in zip(backup, variables):
                    b.assign(v)
                opt.apply_gradients(zip(grads, variables))
                loss, grads, gnorm = evaluate()
                return i + 1, loss, grads, gnorm, rows

            i, loss, grads, gnorm, rows = tf.while_loop(cond, body, [tf.constant(0), loss, grads, gnorm, rows])
            ok = healthy(loss, gnorm)
            for v, b in zip(variables, backup):
                v.assign(tf.where(ok, v, b))  # blew up: back to the values before that step
            code = tf.where(ok, tf.where(gnorm < tol, _CONVERGED, _RUNNING), _DIVERGED)
            return (rows if jit else rows.stack()), i, code, loss, reference

        return tf.function(chunk, jit_compile=jit, autograph=False)

    def _chunk_fn(self, xla):
        if xla not in self._chunk_fns:
            self._chunk_fns[xla] = self._build_chunk(xla)
        return self._chunk_fns[xla]

    def _call_chunk(self, xla, n, stride, tol):
        """Run one chunk; returns (rows, count, code, exit loss, whether it traced)."""
        tf = self.tf
        fn = self._chunk_fn(xla)
        start = np.nan if self._start_loss is None else self._start_loss
        args = (tf.constant(n), tf.constant(stride), tol, tf.constant(start, tf.float32))
        traced = fn.experimental_get_tracing_count() == 0
        if traced:
            # The first call traces (and compiles); XLA's compiler writes C++ log
            # lines we keep out of the notebook.
            with quiet_native_stderr(), tf.device(self.device):
                out = fn(*args)
        else:
            with tf.device(self.device):
                out = fn(*args)
        rows, count, code, loss, reference = out
        if self._start_loss is None:
            self._start_loss = float(reference)
        return rows.numpy(), int(count), int(code), float(loss), traced

    # -- running -----------------------------------------------------------
    def _use_xla_next(self, remaining, rate):
        """XLA for what is left when it is expected to pay for its compile time."""
        if self.jit != "auto":
            return self.jit == "on"
        if self._xla_verdict is not None:
            return self._xla_verdict
        return remaining / max(rate, 1e-9) > XLA_PAYS_AFTER_SECONDS

    def _record(self, rows, count, stride):
        slots = -(-count // stride)
        steps = self.steps + np.minimum(np.arange(slots) * stride + stride - 1, count - 1)
        n = self._n_rows
        if n + slots > len(self._rows):
            size = max(2 * len(self._rows), n + slots)
            self._rows = np.concatenate([self._rows[:n], np.zeros((size - n, self._rows.shape[1]), np.float32)])
            self._row_steps = np.concatenate([self._row_steps[:n], np.zeros(size - n, np.int64)])
        self._rows[n : n + slots] = rows[:slots]
        self._row_steps[n : n + slots] = steps
        self._n_rows = n = n + slots
        self._history = None
        if n > HISTORY_MAX:
            # Very long runs: keep every other row, and record half as often from now on.
            self._rows = np.concatenate([self._rows[1:n:2], np.zeros_like(self._rows[: n // 2 + 1])])
            self._row_steps = np.concatenate([self._row_steps[1:n:2], np.zeros_like(self._row_steps[: n // 2 + 1])])
            self._n_rows = n // 2
            self._stride *= 2

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
        tol = tf.constant(float(self.tol or 0.0), tf.float32)
        done, k, xla = 0, 16, self.jit == "on"
        self._run_steps, self._run_seconds = 0, 0.0
        while done < steps:
            n = min(k, steps - done)
            stride = max(self._stride, -(-n // XLA_CAPACITY)) if xla else 1
            t0 = time.perf_counter()
            try:
                rows, count, code, exit_loss, traced = self._call_chunk(xla, n, stride, tol)
            except Exception as err:
                if xla and self._chunk_fns[True].experimental_get_tracing_count() <= 1 and not self._xla_ran:
                    # XLA cannot compile every op (py_function, strings, ...): run without it.
                    self._restore_snapshot()
                    self.notes.append(f"XLA could not compile this cell ({type(err).__name__}); it runs without XLA.")
                    self.jit, self._xla_verdict, xla = "off", False, False
                    continue
                self._restore_snapshot()  # back to the start of this chunk: values match the history
                self.status, self.message = "error", f"stopped by an error after {self.steps} steps: {err}"
                raise
            except BaseException:
                self._restore_snapshot()
                raise
            elapsed = time.perf_counter() - t0
            self._xla_ran |= xla
            done += count
            self._exit_loss = exit_loss
            rate = None
            if not traced:
                self._run_steps += count
                self._run_seconds += elapsed
            if count:
                self._record(rows, count, stride if xla else 1)
                self.steps += count
                # A chunk that traced says nothing about the rate of the next ones.
                rate = None if traced else count / max(elapsed, 1e-9)
                self.steps_per_second = rate or self.steps_per_second
            if rate and xla and self.jit == "auto" and self._xla_verdict is None and elapsed > CHUNK_SECONDS / 2:
                # The first full XLA chunk: keep XLA only if it beats the plain rate.
                self._xla_verdict = rate >= self._plain_rate
                xla = self._xla_verdict
            elif rate and not xla:
                self._plain_rate = rate
            status = {_CONVERGED: "converged", _DIVERGED: "diverged"}.get(code, "running")
            if status == "running" and done >= steps:
                status = "max_steps"
            if status == "running" and self._stop_request:
                status = self._stop_request
            start = self.steps - count
            view = {c: rows[: -(-count // (stride if xla else 1)), i] for i, c in enumerate(self.columns)}
            chunk = Chunk(start, view, status, self.steps_per_second)
            if status != "running":
                self._finish(status)
            for callback in list(self._observers):
                callback(self, chunk)
            yield chunk
            if status != "running":
                return
            if rate:
                k = max(1, int(k * min(MAX_CHUNK_GROWTH, CHUNK_SECONDS / max(elapsed, 1e-6))))
            if not xla and rate and self._use_xla_next(steps - done, rate):
                xla, k = True, max(k, 16)

    def _restore_snapshot(self):
        for v, s in zip(self.variables.values(), self._snapshot):
            v.assign(s)

    def _finish(self, status):
        self.status = status
        if self._run_seconds > 0:  # the run's average, not its last (maybe partial) chunk's
            self.steps_per_second = self._run_steps / self._run_seconds
        loss = self._exit_loss
        if status == "diverged" and self.steps:
            loss = float(self.history["loss"][-1])  # the point the variables went back to
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

