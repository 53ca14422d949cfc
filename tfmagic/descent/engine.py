"""The descent engine: gradient descent in compiled, time-boxed chunks.

TensorFlow only: no IPython, no widgets. A UI drives it (run, pause, stop,
step, reset, eta, optimizer) and observes it through `observe(callback)`.

How a run is executed depends on its length, as a person writing it by hand
would choose (measured in benchmarks/bench_descent.py): "step", a compiled single
step called from Python (the course's way; its trace is the cheapest, so it wins
for runs of <= STEP_MODE_STEPS); "plain", one tf.function call running K steps in
a graph while loop; "xla", the same loop compiled by XLA, up to ROW_CAPACITY steps
a call; "blocks", for problems so fast that rows cap an XLA chunk: a history row
every `stride` steps, the steps between in an inner loop (~15 ms more to compile).
K grows until a chunk takes about CHUNK_SECONDS, or STEERED_CHUNK_SECONDS for the
live panel, whose changes (eta, pause) wait at most one chunk. eta is the Keras
optimizer's learning-rate variable, read in the graph: changing it never retraces.
Between calls the engine carries the loss and gradients at the current point.
"""

import contextlib
import time

import numpy as np

from tfmagic.descent.graphs import ROW_CAPACITY, Graphs
from tfmagic.descent.facts import Retired, RunFacts
from tfmagic.descent.history import HISTORY_MAX, History, shown_by_value
from tfmagic.descent.keep_best import BestPoint
from tfmagic.descent.optimizers import check_eta, make_optimizer
from tfmagic.descent.schedule import plan_at
from tfmagic.descent.calls import XLA_MODES, Calls, XlaSkipsChecks
from tfmagic.descent.one_way import OneWayRuns
from tfmagic.descent.status import Note, Status
from tfmagic.descent.chunks import Chunk, drain  # noqa: F401 (drain: imported from here by others)

CHUNK_SECONDS = 0.1  # P3 runs at ~0.93 of a hand-written loop (a call costs ~1-3 ms); Ctrl-C acts within it
STEERED_CHUNK_SECONDS = 0.02  # the live panel's: an eta drag waits at most this (P3 at ~0.85)
RATE_SECONDS = 0.01  # a chunk this long shows the step rate, not its call's fixed cost
MAX_CHUNK_GROWTH = 16
FIRST_CHUNK = 16
REPLICATED_CHUNK = 128  # chunks of a run with replicas double up to this: every worker sizes them alike
STEP_MODE_STEPS = 200  # runs this short: one compiled step per call (cheapest to trace)
XLA_FROM_START_STEPS = 2000  # runs this long start with XLA: its 0.1-0.3 s compile pays back on most problems
XLA_PAYS_AFTER_SECONDS = 0.25  # a plain run switches to XLA when more than this is left
BLOCKS_PAY_AFTER_SECONDS = 0.1  # an XLA run switches to blocks when more than this is left: their ~0.1 s
# of tracing and compiling (P1) is then repaid, as a capped XLA chunk runs ~12x slower than a block chunk
BLOCK_ROWS = 1 << 13  # rows per "blocks" chunk: writing more costs its steady rate (242 vs 185 M steps/s on P1)


class Descent(RunFacts, OneWayRuns):
    """Minimise `loss_fn()` over `variables` (name -> tf.Variable)."""

    def __init__(self, tf, loss_fn, variables, *, eta=0.1, optimizer="sgd", device=None, tol=None, jit="auto",
                 loss_label=None, stream=None, full_loss_fn=None, epoch_steps=None, reuse=None, replicas=None):
        self.tf = tf
        self.loss_label = loss_label  # the loss's name in the cell, for printouts (None: unnamed)
        self.loss_fn = loss_fn
        self.full_loss_fn = full_loss_fn or loss_fn  # without a mini-batch's side effects (the pictures)
        self._stream = stream  # a data.Batches: .state a step changes too, .initial, .rewind()
        self.one_way = getattr(stream, "one_way", False)  # (a dataset's iterator cannot go back: one_way.py)
        self.epoch_steps = epoch_steps  # chunks end at its multiples: an epoch's end is seen between chunks
        self.variables = dict(variables)
        self.device = device
        self.replicas = replicas  # a replicas.Replicas (--strategy): chunks then grow by steps, not time
        self._tol = tol
        self.jit = jit  # the user's choice; XLA found unusable for this cell is _xla_unusable
        self.optimizer_name = optimizer
        self._eta = check_eta(eta)
        self.columns = ["loss", "eta", "grad_norm"] + list(self.variables)
        # Columns the graphs carry squared: |grad| and the norms of larger variables.
        self._history = History(self.columns, ["grad_norm"] + [n for n, v in self.variables.items() if not shown_by_value(v)])
        with tf.device(device):
            self._initial = [tf.identity(v) for v in self.variables.values()]
        self._observers = []
        self._xla_unusable = False  # XLA cannot compile this cell, or would drop its checks
        self._default_runtime = set()  # modes the lean runtime (callopts) could not run
        self._chunk_steps = {}  # mode -> the last chunk size: the next run starts there
        self.optimizer = self._calls = None
        self.notes = []  # facts about how the run went: status.Note codes (present/messages.py words them)
        self.retired = False  # a newer run of the cell took over the compiled steps and variables
        self.reused = reuse is not None  # this run took over an earlier run's (nothing traced for it)
        self.eta_plan = None  # per-step etas to follow (--eta-schedule), else None
        self.memo = {}  # what others built on these variables and loss (the charts' probe): a re-run keeps it
        self.kept = BestPoint()  # where a run that diverges after eta was raised goes back to
        if reuse is not None:
            self._take_over(reuse)
        self.reset()

    # -- state -------------------------------------------------------------
    def reset(self, device=None, start=None):
        """Back to the initial values, history cleared, optimizer state fresh.

        `device` (a full TensorFlow device name) moves the computation there;
        `start` (name -> value) makes those the new initial values (restarts).
        """
        if self.retired:
            raise Retired(self.loss_label)
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
        self._history.clear()
        self.kept.clear()
        self.steps = 0
        self.status = Status.READY
        self.error = None  # the exception that stopped the run (Status.ERROR)
        self.error_redone = False  # ... which did not come back when its steps were redone one at a time
        self.final_loss = self.final_grad_norm = None
        self.final_values = None  # name -> numpy value when a run ended
        self._bad_point = None  # what the step that blew up reached
        self.steps_per_second = 0.0
        self._stop_request = None
        self._unhealthy_start = False
        self._run_steps, self._run_seconds = 0, 0.0
        if self.optimizer is None:
            self._set_optimizer(self.optimizer_name)
        else:
            # The optimizer's state back to its start, in place: a new optimizer would
            # retrace. (Not zeros: Adagrad's accumulators start at 0.1.)
            for v, init in zip(self._opt_state, self._opt_initial):
                v.assign(init)
            getattr(self._stream, "restart", lambda: None)()  # (a dataset's iterator: to its start)
        self._calls.point = self._calls.start_loss = None  # evaluated afresh by the next run

    def initial_values(self):
        """name -> the value a reset puts back (numpy)."""
        return {n: init.numpy() for n, init in zip(self.variables, self._initial)}

    def _set_optimizer(self, name):
        tf = self.tf
        with tf.device(self.device), (self.replicas.scope() if self.replicas else contextlib.nullcontext()):
            opt = make_optimizer(name, self._eta)
            opt.build(list(self.variables.values()))
            opt_state = [v.value for v in opt.variables if v is not opt._learning_rate]
            # (with the stream's state: saved, restored and reset as the optimizer's is)
            self._opt_state = opt_state + (self._stream.state if self._stream else [])
            self._opt_initial = [tf.identity(v) for v in opt_state] + (self._stream.initial if self._stream else [])
            # Everything a step changes: the variables and the optimizer's state.
            live = list(self.variables.values()) + self._opt_state
        self.optimizer_name, self.optimizer = name, opt
        self._forget_rates()
        self._graphs = Graphs(tf, self.loss_fn, self.variables, opt, self.device, bool(self._tol), len(self.columns) - 1,
                              self.replicas)
        before = self._calls
        self._calls = Calls(tf, self._graphs, live, self.device, self.jit, self._tol, self._default_runtime, self.notes)
        self._calls.one_way_count = self._stream.position if self.one_way else None  # (its reads: no second try)
        if before is not None:  # a switch mid-run: the point and what is carried stay
            self._calls.point, self._calls.state, self._calls.start_loss = before.point, before.state, before.start_loss

    def _forget_rates(self):
        """What was measured about these compiled steps; kept across resets."""
        self._xla_verdict = None  # auto: does XLA beat the plain rate here? (None: not tried)
        self._xla_ran = False
        self._plain_rate = 0.0

    def set_optimizer(self, name):
        """Switch optimizer; takes effect at the next chunk (fresh optimizer state)."""
        if name != self.optimizer_name:
            self._set_optimizer(name)

    @property
    def tol(self):
        return self._tol

    @tol.setter
    def tol(self, value):
        self._calls.set_tol(value)
        self._tol = value

    @property
    def eta(self):
        return self._eta

    @eta.setter
    def eta(self, value):
        self._eta = self.kept.eta_set(self.steps, self._calls.point, self._eta, check_eta(value))
        self.optimizer.learning_rate = self._eta  # an assign: no retrace

    def observe(self, callback):
        """Call `callback(engine, chunk)` after every chunk; one with `needs_every_step = True`
        gets a row for every step (else long XLA chunks record every k-th step)."""
        self._observers.append(callback)

    def unobserve(self, callback):
        if callback in self._observers:
            self._observers.remove(callback)

    def observers_off(self):
        """Take every observer off (a range test's steps are not the run's); returns them for observers_on."""
        off, self._observers = self._observers, []
        return off

    def observers_on(self, observers):
        self._observers = list(observers) + self._observers

    def pause(self):
        """A run that took its steps but goes on later (the panel's Step) is paused, not done."""
        if self.status == Status.MAX_STEPS:
            self.status = Status.PAUSED

    def request_stop(self, status=Status.STOPPED):
        """Stop after the chunk that is running (as STOPPED, PAUSED or INTERRUPTED)."""
        self._stop_request = Status(status)

    @property
    def stop_requested(self):
        return self._stop_request is not None

    @property
    def history(self):
        """Per-step arrays; 'step' says which step each row is (see history.HISTORY_MAX)."""
        return self._history.as_dict()

    @property
    def compiled(self):
        """mode ("step", "plain", "xla", "blocks") -> its tf.function, for those built so far."""
        return self._graphs.built

    @property
    def history_stride(self):
        """A history row every this many steps (1 until a very long run is thinned)."""
        return self._history.stride

    def _run_chunk(self, mode, n, stride):
        """One chunk, recorded; returns (rows recorded, steps, code, traced).

        A chunk that ends unhealthy, or converged inside a block of several steps,
        is redone from its start (the same compiled steps give the same numbers)
        up to its last block, and that block in finer blocks, down to one row per
        step: the history then ends exactly where it happened, and a divergence
        leaves the last finite values.
        """
        saved = self._calls.save()  # for a redo, an error or an interrupt
        self.kept.offer(self, self._calls, saved)
        rows, count, block, lowest, traced = self._calls.call(mode, n, stride)
        code = self._calls.code(self._calls.point, lowest)
        if code == Status.DIVERGED:
            self._bad_point = self._calls.point  # what the step that blew up reached (for the message)
            if self.one_way:  # (a redo would take other batches)
                return (*self._stream_unhealthy(rows, count, stride), code, traced)
        if code == Status.RUNNING or (code == Status.CONVERGED and count - block == 1):
            return self._record(rows, count, stride), count, code, traced
        self._calls.restore()
        head = self._history.empty_rows()
        if block:
            # (a loss with randomness in it may not repeat: then this ends early, and is the result)
            head, steps, code, _ = self._run_chunk(mode, block, stride)
            if code != Status.RUNNING or steps < block:
                return head, steps, code, traced
        if count - block > 1:
            last = count - block  # finer blocks, down to one step, within the rows' capacity
            rows, steps, code, _ = self._run_chunk(mode, last, -(-last // ROW_CAPACITY))
            return np.concatenate([head, rows]), block + steps, code, traced
        # The step after `block` blew up: not taken; the variables hold the point after `block` steps.
        return head, block, Status.DIVERGED, traced

    # -- running -----------------------------------------------------------
    def _first_mode(self, steps):
        # (A re-run chooses as a fresh build does: the modes differ in their last bits, e.g. oneDNN's
        # kernels in a loop and in a single step; it only finds them compiled already.)
        short = "plain" if self.one_way else "step"  # (a dataset's reads: in a graph loop that keeps rows)
        if self._xla_unusable or self.jit == "off":
            return short if steps <= STEP_MODE_STEPS else "plain"
        if self.jit == "on":
            return "xla"
        if steps <= STEP_MODE_STEPS:
            return short
        if self.jit == "auto" and steps >= XLA_FROM_START_STEPS and self._xla_verdict is not False:
            return "xla"
        return "plain"

    def _record(self, points, count, stride):
        """Add a chunk's raw rows to the history; returns them as history rows."""
        rows = self._history.append(points, self.steps, stride, self._eta)  # (eta only changes between chunks)
        self.steps += count
        return rows

    def steps_iter(self, steps, max_chunk=None, chunk_seconds=None):
        """Run up to `steps` steps, yielding each Chunk; sets .status at the end.

        A generator: a blocking loop and an awaiting one (the live UI) decide what happens
        between chunks (a stop requested then ends the run). `max_chunk` caps a chunk's
        steps (a paced run); chunks grow to `chunk_seconds` (default CHUNK_SECONDS).
        """
        if steps <= 0:
            raise ValueError(f"steps must be a positive whole number, got {steps}")
        if self.retired:
            raise Retired(self.loss_label)
        self._stop_request = None
        self.status = Status.RUNNING
        self.error, self.error_redone, self.kept.rewound = None, False, None
        self._run_steps, self._run_seconds = 0, 0.0
        if self._stream and self._calls.point is not None:
            self._stream.rewind()  # a run goes on: its point is evaluated again on the same batch
        self._calls.prime()
        code = self._calls.code(self._calls.point, float(self._calls.point[1]))
        self._unhealthy_start = code == Status.DIVERGED
        self._stream_started(code)
        if steps <= HISTORY_MAX:  # (not for a Play that runs until stopped)
            self._history.reserve(steps)
        mode = self._first_mode(min(steps, max_chunk or steps))  # (a paced run's chunks are short)
        done, k = 0, self._chunk_steps.get(mode, FIRST_CHUNK)
        exact_until, exact_error = 0, None  # after an error: one step per chunk up to here, to find its step
        while code == Status.RUNNING and done < steps:
            if self._stop_request and done:
                yield self._chunk_done(self.steps, self._history.empty_rows(), code, False)
                return
            n = min(k, steps - done, max_chunk or steps)
            if self.epoch_steps:
                n = min(n, self.epoch_steps - self.steps % self.epoch_steps)
            if self.eta_plan is not None:  # a replayed schedule: its eta where it changes (a drag holds till then)
                eta, same_for = plan_at(self.eta_plan, self.steps)
                if self.steps < len(self.eta_plan) and (self.steps == 0 or self.eta_plan[self.steps - 1] != eta):
                    self.eta = eta
                n = int(min(n, same_for))
            if mode in ("plain", "xla"):
                n = min(n, ROW_CAPACITY)  # one row per step in the row buffer
            stride = max(self._history.stride, -(-n // BLOCK_ROWS)) if mode == "blocks" else 1
            chunk_mode = mode
            if self.steps < exact_until:
                chunk_mode, n, stride = "step", 1, 1
            start = self.steps
            t0 = time.perf_counter()
            try:
                rows, count, code, traced = self._run_chunk(chunk_mode, n, stride)
            except XlaSkipsChecks:
                self.notes.append(Note.NO_XLA_FOR_CHECKS)
                self._xla_unusable, mode = True, "plain"
                continue
            except Exception as err:
                if self.one_way:  # (kept up to the batch it failed on: an iterator cannot redo the chunk)
                    yield from self._stream_failed(chunk_mode, err)
                    return
                self._calls.restore()  # the start of this chunk: values match the history
                if chunk_mode in XLA_MODES and not self._xla_ran:
                    # XLA cannot compile every op (py_function, strings, ...): run without it.
                    self.notes.append(Note.XLA_FAILED.with_detail(type(err).__name__))
                    self._xla_unusable, mode = True, "plain"
                    continue
                if n > 1:
                    # Redo the chunk a step at a time: the error then names its step, and
                    # the variables and the history end at the last good step.
                    exact_until, exact_error = self.steps + n, err
                    continue
                self._stopped_by(err)
                raise
            except BaseException:
                self._calls.restore()
                raise
            elapsed = time.perf_counter() - t0
            if exact_error is not None and self.steps >= exact_until and code == Status.RUNNING:
                # (a cell with randomness: redone, its steps all passed; still, the cell raised)
                self._stopped_by(exact_error, redone=True)
                raise exact_error
            self._xla_ran |= chunk_mode in XLA_MODES
            done += count
            # A chunk that traced (or a single step after an error) says nothing about the rate of the next ones.
            rate = count / max(elapsed, 1e-9) if count and not traced and chunk_mode == mode else None
            if rate:
                self._run_steps += count
                self._run_seconds += elapsed
                self.steps_per_second = rate
            if rate and mode == "xla" and self.jit == "auto" and self._xla_verdict is None and elapsed > RATE_SECONDS:
                # The first full XLA chunk: keep XLA only if it beats the plain rate.
                self._xla_verdict = rate >= self._plain_rate
                mode = "xla" if self._xla_verdict else "plain"
            elif rate and mode == "plain":
                self._plain_rate = rate
            yield self._chunk_done(start, rows, code, done >= steps)
            if self.status != Status.RUNNING:
                return
            full = rate and count == n == k  # (not capped by the steps left, an epoch or max_chunk)
            if full:  # size the next chunk by its time (replicas: the same on each)
                grow = (chunk_seconds or CHUNK_SECONDS) / max(elapsed, 1e-6)
                k = min(2 * k, REPLICATED_CHUNK) if self.replicas else max(1, int(k * min(MAX_CHUNK_GROWTH, grow)))
                self._chunk_steps[mode] = k
            # (judged on a chunk that shows the rate, or one that is capped: it may never grow)
            if mode == "plain" and rate and (elapsed > RATE_SECONDS or not full) and self._use_xla_next(steps - done, rate):
                mode, k = "xla", self._chunk_steps.get("xla", max(k, FIRST_CHUNK))
            elif mode == "xla" and rate and k > ROW_CAPACITY and self._use_blocks_next(steps - done, rate):
                mode, k = "blocks", self._chunk_steps.get("blocks", k)
        if code != Status.RUNNING:  # unhealthy or converged at the start: no step taken
            yield self._chunk_done(self.steps, self._history.empty_rows(), code, False)

    def _chunk_done(self, start, rows, code, complete):
        """Set the status after a chunk, tell the observers; returns the Chunk."""
        status = code  # (the loss's verdict: RUNNING, CONVERGED or DIVERGED)
        if status == Status.DIVERGED and (self.data_stop or self._made_nan_in_place()):  # (the data's fault; a NaN in place)
            status = self.data_stop.status if self.data_stop else Status.UNDEFINED
        if status == Status.RUNNING and complete:
            status = Status.MAX_STEPS
        if status == Status.RUNNING and self._stop_request:
            status = self._stop_request
        if status != Status.RUNNING:
            self._finish(status)
        chunk = Chunk(start, {c: rows[:, i] for i, c in enumerate(self.columns)}, status, self.steps_per_second)
        for callback in list(self._observers):
            callback(self, chunk)
        return chunk

    def _use_xla_next(self, remaining, rate):
        """XLA for what is left when it is expected to pay for its compile time: the plain
        loop's time still to come (unless XLA was found slower here)."""
        if self.jit != "auto" or self._xla_verdict is False or self._xla_unusable:
            return False
        return (remaining / rate if rate else 0.0) > XLA_PAYS_AFTER_SECONDS

    def _use_blocks_next(self, remaining, rate):
        """Blocks when the row buffer caps XLA chunks and what is left pays for compiling them."""
        if any(getattr(cb, "needs_every_step", False) for cb in self._observers):
            return False  # e.g. the course's per-iteration printout
        return remaining / max(rate, 1e-9) > BLOCKS_PAY_AFTER_SECONDS

    def run_chunks(self, steps, max_chunk=None, chunk_seconds=None):
        """steps_iter, and an interrupt (Ctrl-C, or thrown in between chunks by an awaiting
        driver) ends the run as INTERRUPTED at the last good values."""
        try:
            yield from self.steps_iter(steps, max_chunk, chunk_seconds)
        except KeyboardInterrupt:
            self.interrupted()

    def run(self, steps):
        """Blocking run; returns the final status. Ctrl-C leaves a consistent state."""
        drain(self.run_chunks(steps))
        return self.status

