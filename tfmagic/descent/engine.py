"""The descent engine: gradient descent in compiled, time-boxed chunks.

TensorFlow only: no IPython, no widgets. A UI drives it (run, pause, stop,
step, reset, eta, optimizer) and observes it (`observe`, descent/observers.py).

Which compiled loop runs each chunk, and how many steps it takes, is the chunk
policy's choice (descent/policy.py). eta is the Keras optimizer's learning-rate
variable, read in the graph: changing it never retraces. Between calls the engine
carries the loss and gradients at the current point.
"""

import time

import numpy as np

from tfmagic.descent import policy as P
from tfmagic.descent.cluster_controls import cluster_for
from tfmagic.descent.compiled import CompiledSteps
from tfmagic.descent.facts import Retired, RunFacts
from tfmagic.descent.history import HISTORY_MAX, History, shown_by_value
from tfmagic.descent.observers import Observers
from tfmagic.descent.keep_best import BestPoint
from tfmagic.descent.marks import arm_marks, chunk_bound
from tfmagic.descent.optimizers import check_eta
from tfmagic.descent.schedule import plan_at
from tfmagic.descent.settings import Settings
from tfmagic.descent.start_point import StartPoint
from tfmagic.descent.motion import Motion
from tfmagic.descent.calls import XLA_MODES, XlaSkipsChecks
from tfmagic.descent.one_way import OneWayRuns
from tfmagic.descent.policy import CHUNK_SECONDS, STEERED_CHUNK_SECONDS, XLA_PAYS_AFTER_SECONDS  # noqa: F401 (read from here)
from tfmagic.descent.status import Note, Status
from tfmagic.descent.chunks import Chunk, drain  # noqa: F401 (drain: imported from here by others)
from tfmagic.descent.rewind import Rewinding, Timeline


class Descent(StartPoint, Settings, RunFacts, OneWayRuns, Motion, Rewinding):
    """Minimise `loss_fn()` over `variables` (name -> tf.Variable)."""

    def __init__(self, tf, loss_fn, variables, *, eta=0.1, optimizer="sgd", device=None, tol=None, jit="auto",
                 loss_label=None, stream=None, full_loss_fn=None, epoch_steps=None, reuse=None, replicas=None,
                 constraints=None):
        self.tf = tf
        self.loss_label = loss_label  # the loss's name in the cell, for printouts (None: unnamed)
        self.loss_fn = loss_fn
        self.full_loss_fn = full_loss_fn or loss_fn  # without a mini-batch's side effects (the pictures)
        self._stream = stream  # a data.Batches: .state a step changes too, .initial, .rewind()
        self.one_way = getattr(stream, "one_way", False)  # (a dataset's iterator cannot go back: one_way.py)
        self.epoch_steps = epoch_steps  # chunks end at its multiples: an epoch's end is seen between chunks
        self.variables = dict(variables)
        self.constraints = constraints  # name -> its projection after each step (graphs.py; None: the variables' own)
        self.device = device
        self.replicas = replicas  # a replicas.Replicas (--strategy): chunks then grow by steps, not time
        self.cluster = cluster_for(tf, replicas)  # several workers: the chief steers them all (cluster_controls.py)
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
        self.timeline = Timeline()  # the chunks kept, for rewind(k) (rewind.py)
        if reuse is not None:
            self._take_over(reuse)
        self.reset()

    # -- running (what a caller sets between chunks: settings.py) -----------
    def _run_chunk(self, mode, n, stride):
        """One chunk, recorded; returns (rows recorded, steps, code, traced).

        A chunk that ends unhealthy, or converged inside a block of several steps, is redone from
        its start (the same compiled steps give the same numbers) up to its last block, and that
        block in finer blocks, down to one row per step: the history then ends exactly where it
        happened, and a divergence leaves the last finite values.
        """
        saved = self._calls.save()  # for a redo, an error or an interrupt
        self.kept.offer(self, self._calls, saved)
        arm_marks(self, self._graphs, mode, self.steps)  # (a loop that copies the variables at multiples of K: marks.py)
        rows, count, block, lowest, traced = self._calls.call(mode, n, stride)
        self.validated.update({self.steps + k: v for k, v in self._calls.validated.items()})
        code = self._calls.code(self._calls.point, lowest)
        if code == Status.DIVERGED:
            self._bad_point = self._calls.point  # what the step that blew up reached (for the message)
            if self.one_way:  # (a redo would take other batches)
                return (*self._stream_unhealthy(rows, count, stride), code, traced)
        if code == Status.RUNNING or (code == Status.CONVERGED and count - block == 1):
            return self._record(rows, count, stride, (mode, saved)), count, code, traced
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
    def _record(self, points, count, stride, taken=None):
        """Add a chunk's raw rows to the history; returns them as history rows. `taken`: (its mode, the
        snapshot at its start), for rewind (rewind.py)."""
        rows = self._history.append(points, self.steps, stride, self._eta)  # (eta only changes between chunks)
        if taken is not None:
            self.timeline.taken(self.steps, count, self._eta, *taken, self._calls, stride)
        self.steps += count
        return rows

    def steps_iter(self, steps: int, max_chunk: int | None = None, chunk_seconds: float | None = None):
        """Run up to `steps` steps, yielding each Chunk; sets .status at the end.

        A generator: a blocking loop and an awaiting one (the live UI) decide what happens
        between chunks (a stop requested then ends the run). `max_chunk` caps a chunk's
        steps (a paced run); chunks grow to `chunk_seconds` (default CHUNK_SECONDS).
        Several workers run the chief's steps and chunks (the others follow it, pauses included).
        """
        if self.cluster and not self.cluster.is_chief:
            yield from self.cluster.follow(self, lambda n: self._steps_iter(n, max_chunk, chunk_seconds))
            return
        if self.cluster and steps > 0 and not self.retired:  # (else _begin refuses it: nothing to tell the others)
            self.cluster.begin(self, steps)
        yield from self._steps_iter(steps, max_chunk, chunk_seconds)

    def _steps_iter(self, steps, max_chunk, chunk_seconds):
        code = self._begin(steps)
        policy = self._compiled.policy
        policy.start(min(steps, max_chunk or steps))  # (a paced run's chunks are short)
        done = 0
        exact_until, exact_error = 0, None  # after an error: one step per chunk up to here, to find its step
        while code == Status.RUNNING and done < steps:
            def plan(left=steps - done):
                mode, n, stride = policy.next_chunk(self._steps_allowed(left, max_chunk), self._history.stride)
                # (after a rewind: the cut branch's chunks, so the branch repeats it exactly)
                return self.timeline.follow(self.steps, mode, n, self._history.stride) or (mode, n, stride)
            if self.cluster:  # the chief's stop request, eta and chunk on every worker
                plan = self.cluster.agree(self, self._stop_request if done else None, plan)
            if self._stop_request and done:
                yield self._chunk_done(self.steps, self._history.empty_rows(), code, False)
                return
            self._evaluate_as_the_cut_branch_did()
            mode, n, stride = plan()
            n = min(n, chunk_bound(self, self._graphs, mode, self.steps) or n)  # (a rewound branch's mode may not mark)
            chunk_mode = mode
            if self.steps < exact_until:
                chunk_mode, n, stride = "step", 1, 1
            start = self.steps
            self.validated = {}  # step -> the validation loss the chunk's compiled steps took there
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
        exact = self._point_is_exact()  # (after a rewind: the carried gradients, as the original step)
        if not exact:
            self._evaluate_point()
        self.timeline.run_begins(not exact, self.eta_plan)
        code = self._calls.code(self._calls.point, float(self._calls.point[1]))
        self._unhealthy_start = code == Status.DIVERGED
        self._stream_started(code)
        if steps <= HISTORY_MAX:  # (not for a Play that runs until stopped)
            self._history.reserve(steps)
        return code

    def _steps_allowed(self, left, max_chunk):
        """At most this many steps in the next chunk: the steps left, a paced run's chunk, the rest of
        the epoch, and a replayed eta schedule's steps at its eta (set here where it changes)."""
        n = min(left, max_chunk or left, chunk_bound(self, self._graphs, self._compiled.policy.mode, self.steps) or left)
        if self.epoch_steps and (self.one_way or (getattr(self._observers.epochs, "validate", None)
                                                  and not self._validates_in_graph())):
            n = min(n, self.epoch_steps - self.steps % self.epoch_steps)  # (the validation: at the epoch's end)
        if self.eta_plan is not None:  # a replayed schedule: its eta where it changes (a drag holds till then)
            eta, same_for = plan_at(self.eta_plan, self.steps)
            if self.steps < len(self.eta_plan) and (self.steps == 0 or self.eta_plan[self.steps - 1] != eta):
                self.eta = eta
            n = min(n, same_for)
        return n

    def _validates_in_graph(self):
        """Does the next chunk take the validation loss at each epoch's end itself (epoch_loop.py)?"""
        return self._compiled.policy.mode == "xla" and self._graphs.runs_epochs \
            and getattr(self._stream, "validation_loss", None) is not None

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

    def run_chunks(self, steps: int, max_chunk: int | None = None, chunk_seconds: float | None = None):
        """steps_iter, and an interrupt (Ctrl-C, or thrown in between chunks by an awaiting
        driver) ends the run as INTERRUPTED at the last good values. The observers hear it
        begin and end (also by an error)."""
        self._observers.begin(self, steps)
        try:
            yield from self.steps_iter(steps, max_chunk, chunk_seconds)
        except KeyboardInterrupt:
            self.interrupted()
        finally:
            self.timeline.run_ends(self)
            self._observers.end(self)

    def run(self, steps: int) -> Status:
        """Blocking run; returns the final status. Ctrl-C leaves a consistent state."""
        drain(self.run_chunks(steps))
        return self.status

