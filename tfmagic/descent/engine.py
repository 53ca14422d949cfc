"""The descent engine: gradient descent in compiled, time-boxed chunks.

TensorFlow only: no IPython, no widgets. A UI drives it (run, pause, stop,
step, reset, eta, optimizer) and observes it through `observe(callback)`.

How a run is executed depends on its length, as a person writing it by hand
would choose (measured in benchmarks/bench_descent.py):
- "step": a compiled single step called from Python (the course's way). Its
  trace is the cheapest, so it wins for short runs (<= STEP_MODE_STEPS).
- "plain": one tf.function call runs K steps in a graph while loop.
- "xla": the same loop compiled by XLA, up to ROW_CAPACITY steps a call.
- "blocks": for problems so fast that rows cap an XLA chunk: history rows every
  `stride` steps, the steps between them in an inner loop, so a step costs what
  a hand-written XLA loop costs (the inner loop takes ~15 ms more to compile).
K grows until a chunk takes about CHUNK_SECONDS, so a live change (eta, pause)
waits at most one chunk. eta is the Keras optimizer's learning-rate variable,
read inside the graph: changing it never retraces and the next step uses it.

Between calls the engine carries the loss and gradients at the current point,
so each compiled function evaluates the loss once per step and never twice.
"""

import math
import time
from dataclasses import dataclass

import numpy as np

from tfmagic.descent.callopts import calling_with, graph_nodes, lean_options, on_one_cpu
from tfmagic.present.explain import tf_message
from tfmagic.runtime.tfimport import quiet_native_stderr

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad")
CHUNK_SECONDS = 0.02  # a chunk this long reaches >= 95 % of the in-graph rate
MAX_CHUNK_GROWTH = 16
FIRST_CHUNK = 16
STEP_MODE_STEPS = 200  # runs this short: one compiled step per call (cheapest to trace)
XLA_FROM_START_STEPS = 2000  # runs this long start with XLA: its 0.1-0.3 s compile pays back on most problems
XLA_PAYS_AFTER_SECONDS = 0.25  # a plain run switches to XLA when more than this is left
BLOCKS_PAY_AFTER_SECONDS = 0.1  # an XLA run switches to blocks when more than this is left: their ~0.1 s
# of tracing and compiling (P1) is then repaid, as a capped XLA chunk runs ~12x slower than a block chunk
ROW_CAPACITY = 1 << 16  # rows per chunk: plain and XLA chunks stop there (a call costs ~0.5 ms)
BLOCK_ROWS = 1 << 13  # rows per "blocks" chunk: writing more costs its steady rate (242 vs 185 M steps/s on P1)
HISTORY_MAX = 1 << 20  # rows kept; longer runs keep every other row
BLOWUP_FACTOR = 1e6  # |loss| above this times the starting loss counts as divergence
_RUNNING, _CONVERGED, _DIVERGED = 0, 1, 2
_XLA_MODES = ("xla", "blocks")
_CHECK_OPS = {"Assert", "CheckNumerics"}  # XLA compiles these to nothing: the check silently never runs


class _XlaSkipsChecks(Exception):
    pass


def steps_text(n):
    """'1 step', '2 steps'."""
    return f"{n} step{'' if n == 1 else 's'}"


def shown_by_value(variable):
    """A variable with one element is shown (history, printouts) by its value, a larger one by its norm."""
    return variable.shape.num_elements() == 1


def _autograph(tf):
    """TensorFlow's AutoGraph entry for library code (None if this TensorFlow lacks it)."""
    ag = getattr(getattr(tf, "__internal__", None), "autograph", None)
    return ag if hasattr(ag, "tf_convert") and hasattr(ag, "control_status_ctx") else None


def _autographed(tf, fn):
    """`fn` converted by AutoGraph when called, also inside a tf.function(autograph=False):
    the cell's Python `if`/`for` on tensors work while the engine's own code, which
    needs no conversion, is traced without AutoGraph's per-call overhead."""
    ag = _autograph(tf)
    return fn if ag is None else ag.tf_convert(fn, ag.control_status_ctx(), user_requested=True)


def _check_ops(concrete):
    return {n.op for n in graph_nodes(concrete)} & _CHECK_OPS


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
    rows: dict  # column -> numpy array of this chunk's recorded steps
    status: str
    steps_per_second: float


class Descent:
    """Minimise `loss_fn()` over `variables` (name -> tf.Variable)."""

    def __init__(self, tf, loss_fn, variables, *, eta=0.1, optimizer="sgd", device=None, tol=None, jit="auto",
                 loss_label=None):
        self.tf = tf
        self.loss_label = loss_label  # the loss's name in the cell, for printouts (None: unnamed)
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
        self._observers = []
        self._chunk_fns = {}  # mode ("step", "plain", "xla", "blocks") -> tf.function
        self._concrete = {}  # mode -> its traced ConcreteFunction
        # History columns the graphs carry squared: |grad| and the norms of larger variables.
        self._rooted = [2] + [3 + i for i, v in enumerate(self.variables.values()) if not shown_by_value(v)]
        self._default_runtime = set()  # modes the lean runtime (callopts) could not run
        self._chunk_steps = {}  # mode -> the last chunk size: the next run starts there
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
            self.optimizer = None  # rebuilt there, with its state
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
        self.final_values = None  # name -> numpy value when a run ended
        self._bad_point = None  # what the step that blew up reached
        self.steps_per_second = 0.0
        self._stop_request = None
        self._start_loss = None
        self._stride = 1
        self._point = None  # [loss, |grad|, summaries] at the current point, once evaluated
        self._unhealthy_start = False
        self._xla_verdict = None  # auto: does XLA beat the plain rate here? (None: not tried)
        self._xla_ran = False
        self._plain_rate = 0.0
        self._run_steps, self._run_seconds = 0, 0.0
        if self.optimizer is None:
            self._set_optimizer(self.optimizer_name)
        else:
            # The optimizer's state back to its start, in place: a new optimizer would
            # retrace. (Not zeros: Adagrad's accumulators start at 0.1.)
            for v, init in zip(self._opt_state, self._opt_initial):
                v.assign(init)

    def initial_values(self):
        """name -> the value a reset puts back (numpy)."""
        return {n: init.numpy() for n, init in zip(self.variables, self._initial)}

    def _set_optimizer(self, name):
        tf = self.tf
        with tf.device(self.device):
            opt = make_optimizer(name, self._eta)
            opt.build(list(self.variables.values()))
            self._opt_state = [v.value for v in opt.variables if v is not opt._learning_rate]
            self._opt_initial = [tf.identity(v) for v in self._opt_state]
            # Everything a step changes: the variables and the optimizer's state.
            self._live = list(self.variables.values()) + self._opt_state
        self._row_buffer = None  # made when a loop needs it (see _buffer)
        self.optimizer_name, self.optimizer = name, opt
        self._chunk_fns = {}
        self._concrete = {}  # mode -> its traced ConcreteFunction

    def set_optimizer(self, name):
        """Switch optimizer; takes effect at the next chunk (fresh optimizer state)."""
        if name != self.optimizer_name:
            self._set_optimizer(name)

    @property
    def tol(self):
        return self._tol

    @tol.setter
    def tol(self, value):
        # The loops test |grad| against tol only in a run with one (an op less a step):
        # going from none to some, or back, needs them built again.
        if bool(value) != bool(self.__dict__.get("_tol")):
            for cache in (self.__dict__.get("_chunk_fns", {}), self.__dict__.get("_concrete", {})):
                for mode in ("plain", *_XLA_MODES):
                    cache.pop(mode, None)
        self._tol = value

    @property
    def eta(self):
        return self._eta

    @eta.setter
    def eta(self, value):
        self._eta = check_eta(value)
        self.optimizer.learning_rate = self._eta  # an assign: no retrace

    def observe(self, callback):
        """Call `callback(engine, chunk)` after every chunk.

        A callback with `needs_every_step = True` gets a row for every step (else
        long XLA chunks record every k-th step)."""
        self._observers.append(callback)

    def unobserve(self, callback):
        if callback in self._observers:
            self._observers.remove(callback)

    def request_stop(self, status="stopped"):
        """Stop after the chunk that is running ('stopped' or 'paused')."""
        self._stop_request = status

    @property
    def stop_requested(self):
        return self._stop_request is not None

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
    # Every op costs ~0.2 ms of tracing and more of XLA compiling, which is most of
    # a short run: the graphs hold the step and the history row, nothing else.
    # Health checks, eta and divergence restores happen in Python between calls.
    # Norms are carried squared and rooted in Python (_record): XLA:CPU takes ~10 ms
    # longer to compile a graph with a sqrt, and about as long for abs or is_finite.
    def _pieces(self, traced=True):
        """evaluate() -> (loss, grads) at the current point; advance(grads) takes one step
        and evaluates the new point; squared(grads) is |grad|²; ends(loss, gn2) is a
        history row without eta, as scalars: loss, |grad|², one summary per variable
        (its value, or the sum of its squares: see shown_by_value); healthy(...) is the
        loops' health check.

        `traced`: for a tf.function made by _compiled (AutoGraph converts the loss only)."""
        tf = self.tf
        variables = list(self.variables.values())
        opt = self.optimizer
        iterations = opt.iterations.value  # the tf.Variable: Keras's own assign_add traces ~1 ms more
        loss_fn = _autographed(tf, self.loss_fn) if traced else self.loss_fn

        def sum_of_squares(t):
            t = tf.cast(t, tf.float32)
            return t * t if t.shape.rank == 0 else tf.reduce_sum(t * t, axis=list(range(t.shape.rank)))

        def squared(grads):
            total = sum_of_squares(grads[0])
            for g in grads[1:]:
                total += sum_of_squares(g)
            return total

        def evaluate():
            with tf.GradientTape() as tape:
                loss = tf.cast(loss_fn(), tf.float32)
            grads = tape.gradient(loss, variables)
            grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]
            # Loop variables keep their shapes (a py_function's output has none).
            loss = loss if loss.shape.rank == 0 else tf.reshape(loss, [])
            grads = [g if g.shape == v.shape else tf.reshape(g, v.shape) for g, v in zip(grads, variables)]
            return loss, grads

        def advance(grads):
            # What apply_gradients runs for an optimizer without clipping, weight decay,
            # EMA, loss scaling or accumulation (make_optimizer's), in ~1.2 ms less tracing.
            learning_rate = opt.learning_rate
            for g, v in zip(grads, variables):
                opt.update_step(g, v, learning_rate)
            for v in variables:
                if getattr(v, "constraint", None) is not None:  # as apply() does after the update
                    v.assign(v.constraint(v))
            iterations.assign_add(1)
            return evaluate()

        def summary(v):
            if shown_by_value(v):
                v = tf.cast(v, tf.float32)
                return v if v.shape.rank == 0 else tf.reshape(v, [])
            return sum_of_squares(v)

        def ends(loss, gn2):
            return [loss, gn2] + [summary(v) for v in variables]

        def healthy(loss, gn2, limit, xla):
            # (comparisons are False for NaN, and inf fails one of them; each op costs
            # every step outside XLA, and abs ~10 ms of compiling under it)
            bounded = (loss <= limit) & (loss >= -limit) if xla else tf.abs(loss) <= limit
            return bounded & (gn2 < math.inf)

        return evaluate, advance, squared, ends, healthy

    def _compiled(self, fn, **options):
        """tf.function for the engine's own code (see _autographed: ~2-5 ms less tracing)."""
        return self.tf.function(fn, autograph=_autograph(self.tf) is None, **options)

    def _buffer(self):
        """The chunks' history rows (a variable: cheaper to compile than a TensorArray)."""
        if self._row_buffer is None:
            with self.tf.device(self.device):
                self._row_buffer = self.tf.Variable(
                    self.tf.zeros([ROW_CAPACITY, len(self.columns) - 1]), trainable=False)
        return self._row_buffer

    def _take_snapshot(self):
        """Remember the current point: the variables, the optimizer's state and what is carried.
        (Tensors: a variable's later update writes a new buffer while a read of it is held.)"""
        with self.tf.device(self.device):
            self._snapshot = [self.tf.identity(v) for v in self._live], self._state, self._point

    def _back_to_snapshot(self):
        values, self._state, self._point = self._snapshot
        for v, s in zip(self._live, values):
            v.assign(s)

    def _build_step(self):
        """One compiled step (the course's shape), called from Python per step."""
        _, advance, squared, ends, _ = self._pieces()

        def step(grads):
            loss, grads = advance(grads)
            gn2 = squared(grads)
            return self.tf.stack(ends(loss, gn2)), loss, gn2, grads

        return self._compiled(step)

    def _build_plain(self, jit=False):
        """Up to n steps in a graph while loop, a history row per step.

        Without XLA every op and loop variable costs ~1 us per step, so the loop
        carries only what the next step needs. Its condition holds the health
        checks: the body has no branch.
        """
        tf = self.tf
        _, advance, squared, ends, healthy = self._pieces()
        buffer = self._buffer()
        track = bool(self.tol)

        def loop(n, stride, tol2, limit, loss, gn2, grads):  # (stride unused: one signature for both loops)
            def going(i, loss, gn2, grads):
                ok = (i < n) & healthy(loss, gn2, limit, jit)
                return ok & (gn2 >= tol2) if track else ok

            def body(i, loss, gn2, grads):
                buffer.scatter_update(tf.IndexedSlices(tf.stack(ends(loss, gn2)), i))
                loss, grads = advance(grads)
                return i + 1, loss, squared(grads), grads

            i, loss, gn2, grads = tf.while_loop(going, body, [tf.constant(0), loss, gn2, grads])
            # No more computed after the loop than the row needs: under XLA every extra
            # kernel, even a stack of the scalars or an i - 1, costs ~14 ms of compiling.
            return (i, gn2, grads, *ends(loss, gn2))

        return self._compiled(loop, jit_compile=jit)

    def _build_blocks(self):
        """Up to n steps under XLA; a history row every `stride` steps.

        The steps between rows run in an inner loop that does only the step, so
        a step costs what a hand-written XLA loop's does; the health checks are
        the outer loop's condition. `lowest` (the smallest |grad|² seen, only with
        a tol) makes convergence inside a block visible.
        """
        tf = self.tf
        _, advance, squared, ends, healthy = self._pieces()
        buffer = self._buffer()
        track = bool(self.tol)

        def loop(n, stride, tol2, limit, loss, gn2, grads):
            def going(i, r, block, loss, gn2, lowest, grads):
                ok = (i < n) & healthy(loss, gn2, limit, True)
                return ok & (lowest >= tol2) if track else ok

            def body(i, r, block, loss, gn2, lowest, grads):
                buffer.scatter_update(tf.IndexedSlices(tf.stack(ends(loss, gn2)), r))

                def inner(j, loss, lowest, grads):
                    loss, grads = advance(grads)
                    if track:
                        gn2 = squared(grads)
                        lowest = tf.where(gn2 < lowest, gn2, lowest)
                    return j + 1, loss, lowest, grads

                # (no tf.minimum/maximum here: each costs XLA:CPU ~15 ms more compiling)
                m, loss, lowest, grads = tf.while_loop(
                    lambda j, *_: (j < stride) & (i + j < n), inner, [tf.constant(0), loss, lowest, grads])
                return i + m, r + 1, i, loss, squared(grads), lowest, grads

            zero = tf.constant(0)
            i, r, block, loss, gn2, lowest, grads = tf.while_loop(going, body, [zero, zero, zero, loss, gn2, gn2, grads])
            return (i, r, block, lowest if track else gn2, grads, *ends(loss, gn2))

        return self._compiled(loop, jit_compile=True)

    def _fn(self, mode):
        if mode not in self._chunk_fns:
            build = {"step": self._build_step, "plain": self._build_plain, "blocks": self._build_blocks,
                     "xla": lambda: self._build_plain(jit=True)}[mode]
            self._chunk_fns[mode] = build()
        return self._chunk_fns[mode]

    def _prime(self):
        """Evaluate the current point eagerly (no trace): the next step needs its gradients."""
        tf = self.tf
        evaluate, _, squared, ends, _ = self._pieces(traced=False)
        with tf.device(self.device):
            loss, grads = evaluate()
            gn2 = squared(grads)
            self._point = tf.stack(ends(loss, gn2)).numpy()
        self._state = (loss, gn2, grads)
        if self._start_loss is None and math.isfinite(self._point[0]):
            self._start_loss = float(self._point[0])

    def _limit(self):
        start = self._start_loss if self._start_loss is not None else 1.0
        return BLOWUP_FACTOR * max(abs(start), 1.0)

    def _tol2(self):
        """tol², in float32 as the graphs compare it with |grad|². At least the smallest
        normal float32: TensorFlow's CPU kernels read a subnormal as 0, which would make a
        tol below ~1e-19 never converge in a graph while Python saw it converge."""
        if not self.tol:
            return np.float32(0.0)
        return max(np.float32(self.tol) ** 2, np.finfo(np.float32).tiny)

    def _code(self, point, lowest):
        """`point`: a raw row (|grad|² second); `lowest`: the smallest |grad|² seen."""
        loss, gn2 = float(point[0]), float(point[1])
        if not (math.isfinite(loss) and math.isfinite(gn2) and abs(loss) <= self._limit()):
            return _DIVERGED
        return _CONVERGED if np.float32(lowest) < self._tol2() else _RUNNING

    def _call(self, mode, n, stride):
        """Up to n steps from the current point (just snapshotted).

        Returns (raw rows, steps taken, first step of the last block, lowest |grad|², traced);
        a row is the point before its step, without eta, |grad| squared (see _record).
        """
        tf = self.tf
        traced = mode not in self._concrete
        if mode in self._default_runtime:
            return self._call_with(False, mode, n, stride, traced)
        try:
            return self._call_with(True, mode, n, stride, traced)
        except tf.errors.OpError as err:
            # The lean runtime is only faster: TensorFlow's default one runs what it
            # cannot, and a real error then comes with the node's place in the cell.
            # (A fresh trace: a second instantiation loses the nodes' stack traces.)
            self._back_to_snapshot()
            out = self._call_on_defaults(mode, n, stride)
            if not isinstance(err, (tf.errors.FailedPreconditionError, tf.errors.UnimplementedError)):
                raise err  # the cell's own error, gone on the second try: still an error
            return out

    def _call_on_defaults(self, mode, n, stride):
        """The call on TensorFlow's default runtime from now on, freshly traced for it."""
        self._default_runtime.add(mode)
        self._chunk_fns.pop(mode, None)
        self._concrete.pop(mode, None)
        return self._call_with(False, mode, n, stride, True)

    def _call_with(self, lean, mode, n, stride, traced):
        tf = self.tf
        # Traced under the options it runs with: a While traced for the default
        # executor is lowered to a form the single-threaded one cannot run.
        options = lean_options(tf, single_threaded=mode not in _XLA_MODES) if lean else None
        loss, gn2, grads = self._state
        if mode == "step":
            args = (grads,)
        else:
            limit = tf.constant(self._limit(), tf.float32)
            args = (tf.constant(n), tf.constant(stride), tf.constant(self._tol2()), limit, loss, gn2, grads)
        with tf.device(self.device), quiet_native_stderr(traced):
            if traced:
                with calling_with(options):
                    # Kept: calling the concrete function skips matching the arguments
                    # to a trace (~0.1 ms a call).
                    fn = self._fn(mode).get_concrete_function(*args)
                if mode in _XLA_MODES and _check_ops(fn):
                    if self.jit == "auto":
                        raise _XlaSkipsChecks()
                    note = "XLA skips the cell's checks (tf.debugging asserts, check_numerics): with --jit on they are not run."
                    self.notes += [note] if note not in self.notes else []
                if lean and not on_one_cpu(tf, fn, self.device):  # (checked once, at its trace)
                    return self._call_on_defaults(mode, n, stride)  # across devices (see on_one_cpu)
                self._concrete[mode] = fn
            fn = self._concrete[mode]
            with calling_with(options):
                if mode == "step":
                    return self._step_calls(fn, n, traced)
                out = fn(*args)
                if mode == "blocks":
                    count, used, block, lowest, grads, *ends = out
                else:  # a row per step: the last block is the last step
                    count, lowest, grads, *ends = out
                    used, block = count, max(int(count) - 1, 0)
                rows = self._row_buffer[: int(used)].numpy()
        self._state = ends[0], ends[1], grads
        self._point = np.array([t.numpy() for t in ends], np.float32)
        return rows, int(count), int(block), float(lowest), traced

    def _step_calls(self, fn, n, traced):
        """Up to n calls of the compiled single step, checked after each."""
        rows = np.empty((n, len(self.columns) - 1), np.float32)
        loss, gn2, grads = self._state
        now, count, code = self._point, 0, _RUNNING
        while count < n and code == _RUNNING:  # checked every step: no block to redo
            rows[count] = now
            row, loss, gn2, grads = fn(grads)
            now, count = row.numpy(), count + 1
            code = self._code(now, now[1])
        self._state, self._point = (loss, gn2, grads), now
        return rows[:count], count, count - 1, now[1], traced

    def _run_chunk(self, mode, n, stride):
        """One chunk, recorded; returns (rows recorded, steps, code, traced).

        A chunk that ends unhealthy, or converged inside a block of several steps,
        is redone from its start (the same compiled steps give the same numbers)
        up to its last block, and that block in finer blocks, down to one row per
        step: the history then ends exactly where it happened, and a divergence
        leaves the last finite values.
        """
        self._take_snapshot()  # for a redo, an error or an interrupt
        rows, count, block, lowest, traced = self._call(mode, n, stride)
        code = self._code(self._point, lowest)
        if code == _DIVERGED:
            self._bad_point = self._point  # what the step that blew up reached (for the message)
        if code == _RUNNING or (code == _CONVERGED and count - block == 1):
            return self._record(rows, count, stride), count, code, traced
        self._back_to_snapshot()
        head = np.zeros((0, len(self.columns)), np.float32)
        if block:
            # (a loss with randomness in it may not repeat: then this ends early, and is the result)
            head, steps, code, _ = self._run_chunk(mode, block, stride)
            if code != _RUNNING or steps < block:
                return head, steps, code, traced
        if count - block > 1:
            last = count - block  # finer blocks, down to one step, within the rows' capacity
            rows, steps, code, _ = self._run_chunk(mode, last, -(-last // ROW_CAPACITY))
            return np.concatenate([head, rows]), block + steps, code, traced
        # The step after `block` blew up: not taken; the variables hold the point after `block` steps.
        return head, block, _DIVERGED, traced

    # -- running -----------------------------------------------------------
    def _first_mode(self, steps):
        if self.jit == "on":
            return "xla"
        if steps <= STEP_MODE_STEPS:
            return "step"
        if self.jit == "auto" and steps >= XLA_FROM_START_STEPS and self._xla_verdict is not False:
            return "xla"
        return "plain"

    def _record(self, points, count, stride):
        """Append raw rows (one per `stride` of `count` steps) as history rows: eta added,
        the squared columns rooted; returns them.

        Once a long run has thinned the history (self._stride > 1), rows closer
        than that are stored every k-th only; observers still get them all.
        """
        rows = np.empty((len(points), len(self.columns)), np.float32)
        rows[:, 0] = points[:, 0]
        rows[:, 1] = self._eta  # eta only changes between chunks
        rows[:, 2:] = points[:, 1:]
        rows[:, self._rooted] = np.sqrt(rows[:, self._rooted])
        every = max(1, self._stride // stride)
        kept = rows[::every]
        slots = len(kept)
        n = self._n_rows
        if n + slots > len(self._rows):
            size = max(2 * len(self._rows), n + slots)
            self._rows = np.concatenate([self._rows[:n], np.zeros((size - n, self._rows.shape[1]), np.float32)])
            self._row_steps = np.concatenate([self._row_steps[:n], np.zeros(size - n, np.int64)])
        self._rows[n : n + slots] = kept
        self._row_steps[n : n + slots] = self.steps + np.arange(slots) * stride * every
        self._n_rows = n = n + slots
        self.steps += count
        self._history = None
        while n > HISTORY_MAX:
            # Very long runs: keep every other row (and the newest), and record half as often from now on.
            keep = np.arange(0, n, 2) if n % 2 else np.append(np.arange(0, n, 2), n - 1)
            self._rows = np.concatenate([self._rows[keep], np.zeros_like(self._rows[: n // 2 + 1])])
            self._row_steps = np.concatenate([self._row_steps[keep], np.zeros_like(self._row_steps[: n // 2 + 1])])
            self._n_rows = n = len(keep)
            self._stride *= 2
        return rows

    def steps_iter(self, steps, max_chunk=None):
        """Run up to `steps` steps, yielding each Chunk; sets .status at the end.

        A generator so a blocking loop and an awaiting loop (the live UI) share
        one implementation: the caller decides what happens between chunks.
        `max_chunk` caps the steps of a chunk (a paced run shows every few steps).
        A stop requested between chunks ends the run before the next one.
        """
        if steps <= 0:
            raise ValueError(f"steps must be a positive whole number, got {steps}")
        self._stop_request = None
        self.status = "running"
        self.message = ""
        self._run_steps, self._run_seconds = 0, 0.0
        self._prime()
        code = self._code(self._point, float(self._point[1]))
        self._unhealthy_start = code == _DIVERGED
        mode = self._first_mode(min(steps, max_chunk or steps))  # (a paced run's chunks are short)
        done, k = 0, self._chunk_steps.get(mode, FIRST_CHUNK)
        exact_until, exact_error = 0, None  # after an error: one step per chunk up to here, to find its step
        while code == _RUNNING and done < steps:
            if self._stop_request and done:
                yield self._chunk_done(self.steps, np.zeros((0, len(self.columns)), np.float32), code, False)
                return
            n = min(k, steps - done, max_chunk or steps)
            if mode in ("plain", "xla"):
                n = min(n, ROW_CAPACITY)  # one row per step in the row buffer
            stride = max(self._stride, -(-n // BLOCK_ROWS)) if mode == "blocks" else 1
            chunk_mode = mode
            if self.steps < exact_until:
                chunk_mode, n, stride = "step", 1, 1
            start = self.steps
            t0 = time.perf_counter()
            try:
                rows, count, code, traced = self._run_chunk(chunk_mode, n, stride)
            except _XlaSkipsChecks:
                self.notes.append("The cell has checks (tf.debugging asserts, check_numerics) that XLA would skip, so it runs without XLA.")
                self.jit, self._xla_verdict, mode = "off", False, "plain"
                continue
            except Exception as err:
                self._back_to_snapshot()  # the start of this chunk: values match the history
                if chunk_mode in _XLA_MODES and not self._xla_ran:
                    # XLA cannot compile every op (py_function, strings, ...): run without it.
                    self.notes.append(f"XLA could not compile this cell ({type(err).__name__}); it runs without XLA.")
                    self.jit, self._xla_verdict, mode = "off", False, "plain"
                    continue
                if n > 1:
                    # Redo the chunk a step at a time: the error then names its step, and
                    # the variables and the history end at the last good step.
                    exact_until, exact_error = self.steps + n, err
                    continue
                self._stopped_by(f"stopped by an error after {steps_text(self.steps)}: {tf_message(err)}")
                raise
            except BaseException:
                self._back_to_snapshot()
                raise
            elapsed = time.perf_counter() - t0
            if exact_error is not None and self.steps >= exact_until and code == _RUNNING:
                # (a cell with randomness: redone, its steps all passed; still, the cell raised)
                self._stopped_by(f"stopped after {steps_text(self.steps)} by an error that did not come back when its "
                                 f"steps were redone one at a time (randomness in the cell?): {tf_message(exact_error)}")
                raise exact_error
            self._xla_ran |= chunk_mode in _XLA_MODES
            done += count
            # A chunk that traced (or a single step after an error) says nothing about the rate of the next ones.
            rate = count / max(elapsed, 1e-9) if count and not traced and chunk_mode == mode else None
            if rate:
                self._run_steps += count
                self._run_seconds += elapsed
                self.steps_per_second = rate
            if rate and mode == "xla" and self.jit == "auto" and self._xla_verdict is None and elapsed > CHUNK_SECONDS / 2:
                # The first full XLA chunk: keep XLA only if it beats the plain rate.
                self._xla_verdict = rate >= self._plain_rate
                mode = "xla" if self._xla_verdict else "plain"
            elif rate and mode == "plain":
                self._plain_rate = rate
            yield self._chunk_done(start, rows, code, done >= steps)
            if self.status != "running":
                return
            if rate and count == n == k:  # a full chunk: size the next by its time
                k = self._chunk_steps[mode] = max(1, int(k * min(MAX_CHUNK_GROWTH, CHUNK_SECONDS / max(elapsed, 1e-6))))
            if mode == "plain" and rate and self._use_xla_next(steps - done, rate):
                mode, k = "xla", self._chunk_steps.get("xla", max(k, FIRST_CHUNK))
            elif mode == "xla" and rate and k > ROW_CAPACITY and self._use_blocks_next(steps - done, rate):
                mode, k = "blocks", self._chunk_steps.get("blocks", k)
        if code != _RUNNING:  # unhealthy or converged at the start: no step taken
            yield self._chunk_done(self.steps, np.zeros((0, len(self.columns)), np.float32), code, False)

    def _chunk_done(self, start, rows, code, complete):
        """Set the status after a chunk, tell the observers; returns the Chunk."""
        status = {_CONVERGED: "converged", _DIVERGED: "diverged"}.get(code, "running")
        if status == "running" and complete:
            status = "max_steps"
        if status == "running" and self._stop_request:
            status = self._stop_request
        if status != "running":
            self._finish(status)
        chunk = Chunk(start, {c: rows[:, i] for i, c in enumerate(self.columns)}, status, self.steps_per_second)
        for callback in list(self._observers):
            callback(self, chunk)
        return chunk

    def _use_xla_next(self, remaining, rate):
        """XLA for what is left when it is expected to pay for its compile time."""
        if self.jit != "auto" or self._xla_verdict is False:
            return False
        return self._xla_verdict or remaining / max(rate, 1e-9) > XLA_PAYS_AFTER_SECONDS

    def _use_blocks_next(self, remaining, rate):
        """Blocks when the row buffer caps XLA chunks and what is left pays for compiling them."""
        if any(getattr(cb, "needs_every_step", False) for cb in self._observers):
            return False  # e.g. the course's per-iteration printout
        return remaining / max(rate, 1e-9) > BLOCKS_PAY_AFTER_SECONDS

    def _finish(self, status):
        self.status = status
        if self._run_seconds > 0:  # the run's average, not its last (maybe partial) chunk's
            self.steps_per_second = self._run_steps / self._run_seconds
        loss = math.nan if self._point is None else float(self._point[0])  # where the variables are
        self.final_loss = loss if math.isfinite(loss) else None
        # A copy: a later run on the same variables (another cell) must not change this run's result.
        self.final_values = {n: v.numpy().copy() for n, v in self.variables.items()}
        if status == "diverged":
            self.message = self.divergence_message()
        elif status == "converged":
            self.message = f"converged: gradient norm below tol={self.tol} after {steps_text(self.steps)}"

    def _stopped_by(self, message):
        self._finish("error")  # (the variables are at the last good step)
        self.message = message

    def interrupted(self):
        """Mark the run interrupted (Ctrl-C / kernel interrupt between or in a chunk)."""
        self._finish("interrupted")
        self.message = f"interrupted after {steps_text(self.steps)}; the variables hold the last good values"

    def curvature(self):
        """λ, the largest curvature of the loss at the initial values (None if not positive)."""
        if not hasattr(self, "_curvature"):
            from tfmagic.descent.curvature import largest_curvature

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
        eta = self._eta
        names = ", ".join(self.variables)
        if self._unhealthy_start:
            return (
                f"diverged at the starting point: the loss or its gradient is not finite (or huge) "
                f"at the start, before any step. Check the initial values of {names}."
            )
        bad = math.nan if self._bad_point is None else float(self._bad_point[0])
        losses = self.history["loss"][-4:]
        growing = len(losses) >= 3 and np.all(np.diff(np.abs(losses)) > 0)
        if bad < 0 and not math.isnan(bad):  # -inf or far below the start
            return (
                f"diverged after {steps_text(self.steps)}: the loss keeps decreasing without bound (step "
                f"{self.steps + 1} took it to {bad:.3g}), so this function has no minimum in that direction; "
                f"a smaller eta only takes longer. Check the sign of the loss (minimising -f maximises f) or "
                f"add a term that bounds it. The variables ({names}) hold the last finite values."
            )
        if math.isnan(bad) and not growing:
            return (
                f"diverged after {steps_text(self.steps)}: step {self.steps + 1} made the loss NaN (not a number) "
                f"while it was not blowing up: the cell computed something undefined there, e.g. the sqrt or "
                f"log of a negative number or 0/0. Look at the values of {names} below and keep the step "
                f"inside the function's domain (a smaller eta, or tf.abs/tf.maximum in the cell). "
                f"The variables ({names}) hold the last finite values."
            )
        suggestion = self.suggested_eta()
        advice = self.eta_advice()
        smaller = 0.5 * suggestion if suggestion and suggestion < eta else eta / 10
        return (
            f"diverged after {steps_text(self.steps)}: step {self.steps + 1} made the loss blow up (infinite, NaN "
            f"or over {BLOWUP_FACTOR:g}x its starting value). eta={eta:g} is too large for this function: each "
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

