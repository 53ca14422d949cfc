"""The descent engine: gradient descent in compiled, time-boxed chunks.

TensorFlow only: no IPython, no widgets. A UI drives it (run, pause, stop,
step, reset, eta, optimizer) and observes it (`observe`, descent/observers.py).

Which compiled loop runs each chunk, and how many steps it takes, is the chunk
policy's choice (descent/policy.py). eta is the Keras optimizer's learning-rate
variable, read in the graph: changing it never retraces. Between calls the engine
carries the loss and gradients at the current point.
"""

import contextlib
import time

import numpy as np

from tfmagic.descent import policy as P
from tfmagic.descent.compiled import CompiledSteps
from tfmagic.descent.graphs import Graphs
from tfmagic.descent.facts import Retired, RunFacts
from tfmagic.descent.history import HISTORY_MAX, History, shown_by_value
from tfmagic.descent.observers import Observers
from tfmagic.descent.keep_best import BestPoint
from tfmagic.descent.optimizers import check_eta, make_optimizer
from tfmagic.descent.schedule import plan_at
from tfmagic.descent.calls import XLA_MODES, Calls, XlaSkipsChecks
from tfmagic.descent.one_way import OneWayRuns
from tfmagic.descent.policy import CHUNK_SECONDS, STEERED_CHUNK_SECONDS, XLA_PAYS_AFTER_SECONDS  # noqa: F401 (read from here)
from tfmagic.descent.status import REQUESTED, Note, Status
from tfmagic.descent.chunks import Chunk, drain  # noqa: F401 (drain: imported from here by others)


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
        self.jit = jit  # the user's choice; XLA found unusable for this cell: policy.xla_unusable
        self._eta = check_eta(eta)
        self.columns = ["loss", "eta", "grad_norm"] + list(self.variables)
        # Columns the graphs carry squared: |grad| and the norms of larger variables.
        self._history = History(self.columns, ["grad_norm"] + [n for n, v in self.variables.items() if not shown_by_value(v)])
        with tf.device(device):
            self._initial = [tf.identity(v) for v in self.variables.values()]
        self._observers = Observers()
        # The optimizer, the compiled steps and what running them taught (a re-run takes them over).
        self._compiled = CompiledSteps(P.ChunkPolicy(jit, self.one_way, replicas is not None), optimizer)
        self.notes = []  # facts about how the run went: status.Note codes (present/messages.py words them)
        self.retired = False  # a newer run of the cell took over the compiled steps and variables
        self.reused = reuse is not None  # this run took over an earlier run's (nothing traced for it)
        self.eta_plan = None  # per-step etas to follow (--eta-schedule), else None
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
            self._compiled.optimizer = None  # rebuilt there, with its state
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
            self._compiled.restart()
            getattr(self._stream, "restart", lambda: None)()  # (a dataset's iterator: to its start)
        self._calls.point = self._calls.start_loss = None  # evaluated afresh by the next run

    def initial_values(self):
        """name -> the value a reset puts back (numpy)."""
        return {n: init.numpy() for n, init in zip(self.variables, self._initial)}

    def _set_optimizer(self, name):
        tf, steps = self.tf, self._compiled
        with tf.device(self.device), (self.replicas.scope() if self.replicas else contextlib.nullcontext()):
            opt = make_optimizer(name, self._eta)
            opt.build(list(self.variables.values()))
            opt_state = [v.value for v in opt.variables if v is not opt._learning_rate]
            # (with the stream's state: saved, restored and reset as the optimizer's is)
            steps.state = opt_state + (self._stream.state if self._stream else [])
            steps.initial = [tf.identity(v) for v in opt_state] + (self._stream.initial if self._stream else [])
            # Everything a step changes: the variables and the optimizer's state.
            live = list(self.variables.values()) + steps.state
        steps.optimizer_name, steps.optimizer = name, opt
        steps.policy.forget_rates()
        steps.graphs = Graphs(tf, self.loss_fn, self.variables, opt, self.device, bool(self._tol), len(self.columns) - 1,
                              self.replicas)
        before = steps.calls
        steps.calls = Calls(tf, steps.graphs, live, self.device, self.jit, self._tol, steps.default_runtime, self.notes)
        steps.calls.one_way_count = self._stream.position if self.one_way else None  # (its reads: no second try)
        if before is not None:  # a switch mid-run: the point and what is carried stay
            steps.calls.point, steps.calls.state, steps.calls.start_loss = before.point, before.state, before.start_loss

    # (what the compiled steps hold, as the engine has always said it)
    optimizer = property(lambda self: self._compiled.optimizer)
    optimizer_name = property(lambda self: self._compiled.optimizer_name)
    memo = property(lambda self: self._compiled.memo, doc="what others built on these variables and loss (the "
                                                          "charts' probe): a re-run keeps it")
    _calls = property(lambda self: self._compiled.calls)
    _graphs = property(lambda self: self._compiled.graphs)

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

    def observe(self, observer):
        """An observers.Observer, or `callback(engine, chunk)` called after every chunk; one with
        `needs_every_step = True` gets a row for every step (else long XLA chunks keep every k-th)."""
        self._observers.add(observer)

    def unobserve(self, observer):
        self._observers.remove(observer)

    @property
    def observers(self):
        """The observers.Observers watching this engine's runs."""
        return self._observers

    def pause(self):
        """A run that took its steps but goes on later (the panel's Step) is paused, not done."""
        if self.status == Status.MAX_STEPS:
            self.status = Status.PAUSED

    def request_stop(self, status=Status.STOPPED):
        """Stop after the chunk that is running (as STOPPED, PAUSED or INTERRUPTED)."""
        if status not in REQUESTED:
            raise ValueError(f"a run stops as one of {', '.join(sorted(REQUESTED))}, not {status!r}")
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
            rows, steps, code, _ = self._run_chunk(mode, last, -(-last // P.ROW_CAPACITY))
            return np.concatenate([head, rows]), block + steps, code, traced
        # The step after `block` blew up: not taken; the variables hold the point after `block` steps.
        return head, block, Status.DIVERGED, traced

    # -- running -----------------------------------------------------------
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
        code = self._begin(steps)
        policy = self._compiled.policy
        policy.start(min(steps, max_chunk or steps))  # (a paced run's chunks are short)
        done = 0
        exact_until, exact_error = 0, None  # after an error: one step per chunk up to here, to find its step
        while code == Status.RUNNING and done < steps:
            if self._stop_request and done:
                yield self._chunk_done(self.steps, self._history.empty_rows(), code, False)
                return
            mode, n, stride = policy.next_chunk(self._steps_allowed(steps - done, max_chunk), self._history.stride)
            chunk_mode = mode
            if self.steps < exact_until:
                chunk_mode, n, stride = "step", 1, 1
            start = self.steps
            t0 = time.perf_counter()
            try:
                rows, count, code, traced = self._run_chunk(chunk_mode, n, stride)
            except XlaSkipsChecks:
                self.notes.append(Note.NO_XLA_FOR_CHECKS)
                policy.without_xla()
                continue
            except Exception as err:
                if self.one_way:  # (kept up to the batch it failed on: an iterator cannot redo the chunk)
                    yield from self._stream_failed(chunk_mode, err)
                    return
                exact_until, exact_error = self._chunk_failed(chunk_mode, n, err) or (exact_until, exact_error)
                continue
            except BaseException:
                self._calls.restore()
                raise
            elapsed = time.perf_counter() - t0
            if exact_error is not None and self.steps >= exact_until and code == Status.RUNNING:
                # (a cell with randomness: redone, its steps all passed; still, the cell raised)
                self._stopped_by(exact_error, redone=True)
                raise exact_error
            done += count
            rate = policy.measured(chunk_mode, count, elapsed, traced)
            if rate:
                self._run_steps += count
                self._run_seconds += elapsed
                self.steps_per_second = rate
            yield self._chunk_done(start, rows, code, done >= steps)
            if self.status != Status.RUNNING:
                return
            policy.plan_next(n, count, elapsed, rate, steps - done, chunk_seconds, self._observers.needs_every_step)
        if code != Status.RUNNING:  # unhealthy or converged at the start: no step taken
            yield self._chunk_done(self.steps, self._history.empty_rows(), code, False)

    def _begin(self, steps):
        """A run starts: its point evaluated; returns the loss's verdict there."""
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
        return code

    def _steps_allowed(self, left, max_chunk):
        """At most this many steps in the next chunk: the steps left, a paced run's chunk, the rest of
        the epoch, and a replayed eta schedule's steps at its eta (set here where it changes)."""
        n = min(left, max_chunk or left)
        if self.epoch_steps:
            n = min(n, self.epoch_steps - self.steps % self.epoch_steps)
        if self.eta_plan is not None:  # a replayed schedule: its eta where it changes (a drag holds till then)
            eta, same_for = plan_at(self.eta_plan, self.steps)
            if self.steps < len(self.eta_plan) and (self.steps == 0 or self.eta_plan[self.steps - 1] != eta):
                self.eta = eta
            n = min(n, same_for)
        return n

    def _chunk_failed(self, mode, n, err):
        """A chunk of `n` steps raised `err`; back to its start. Returns (the step up to which the
        steps are redone one at a time, err), None to go on (without XLA), or raises."""
        self._calls.restore()  # the start of this chunk: values match the history
        policy = self._compiled.policy
        if mode in XLA_MODES and not policy.xla_ran:
            # XLA cannot compile every op (py_function, strings, ...): run without it.
            self.notes.append(Note.XLA_FAILED.with_detail(type(err).__name__))
            policy.without_xla()
            return None
        if n > 1:
            # Redo the chunk a step at a time: the error then names its step, and
            # the variables and the history end at the last good step.
            return self.steps + n, err
        self._stopped_by(err)
        raise err

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
        self._observers.chunk(self, chunk)
        return chunk

    def run_chunks(self, steps, max_chunk=None, chunk_seconds=None):
        """steps_iter, and an interrupt (Ctrl-C, or thrown in between chunks by an awaiting
        driver) ends the run as INTERRUPTED at the last good values. The observers hear it
        begin and end (also by an error)."""
        self._observers.begin(self, steps)
        try:
            yield from self.steps_iter(steps, max_chunk, chunk_seconds)
        except KeyboardInterrupt:
            self.interrupted()
        finally:
            self._observers.end(self)

    def run(self, steps):
        """Blocking run; returns the final status. Ctrl-C leaves a consistent state."""
        drain(self.run_chunks(steps))
        return self.status

