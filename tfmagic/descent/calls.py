"""Calling the engine's compiled functions from the current point, and judging
where they got: the point carried between calls, its snapshot, the runtime a
function runs on, the health and convergence checks.

Between calls the engine carries the loss and gradients at the current point,
so each compiled function evaluates the loss once per step and never twice.
"""

import math

import numpy as np

from tfmagic.descent.callopts import calling_with, lean_options, on_one_cpu, single_threaded_pays
from tfmagic.descent.graphs import mode_of, check_ops
from tfmagic.descent.status import Note, Status
from tfmagic.runtime.tfimport import quiet_native_stderr

BLOWUP_FACTOR = 1e6  # |loss| above this times the starting loss counts as divergence
XLA_MODES = ("xla", "blocks")


class XlaSkipsChecks(Exception):
    """XLA would compile the cell's checks to nothing, and --jit auto may run without it."""


class Calls:
    """Runs chunks of steps from the current point of one optimizer's graphs.

    `live`: everything a step changes (the variables and the optimizer's state);
    `default_runtime`: modes the lean runtime could not run (shared by the engine's
    Calls, so a switch of optimizer remembers it); `notes`: the engine's list.
    """

    def __init__(self, tf, graphs, live, device, jit, tol, default_runtime, notes):
        self.tf, self.graphs, self.live, self.device = tf, graphs, live, device
        self.jit, self.tol = jit, tol
        self.default_runtime, self.notes = default_runtime, notes
        self.concrete = {}  # graphs.key(mode) -> its traced ConcreteFunction
        self.start_loss = None  # the run's first finite loss: divergence is judged against it
        self.point = None  # [loss, |grad|², summaries] at the current point, once evaluated
        self.state = None  # (loss, |grad|², grads) carried into the next call
        self._saved = None
        self.one_way_count = None  # a dataset stream's count of batches taken (see _took_batches)
        self.validated = {}  # the last call's validation losses: steps into it -> loss (epoch_loop.py)
        self._other_tol = {}, {}  # the loops' functions and traces for a run with(out) a tol
        self.small = single_threaded_pays(sum(v.shape.num_elements() or 0 for v in graphs.variables.values()))

    def set_tol(self, value):
        """A new tol. The loops test |grad| against tol only in a run with one (an op
        less a step): going from none to some, or back, needs them built again."""
        if bool(value) != bool(self.tol):
            loops = ("plain", *XLA_MODES)
            # The loops built for the other choice are kept: a re-run that goes back needs no trace.
            kept = self.graphs.swap_out(loops), {k: self.concrete.pop(k) for k in list(self.concrete) if mode_of(k) in loops}
            self.graphs.track_tol = bool(value)
            fns, concrete = self._other_tol
            self.graphs.swap_in(fns)
            self.concrete.update(concrete)
            self._other_tol = kept
        self.tol = value

    def save(self):
        """Remember the current point: the variables, the optimizer's state and what is carried.
        (Tensors: a variable's later update writes a new buffer while a read of it is held.)"""
        with self.tf.device(self.device):
            self._saved = [self.tf.identity(v) for v in self.live], self.state, self.point
        return self._saved

    @property
    def snapshot(self):
        """The point save() remembered (restore() goes back to it)."""
        return self._saved

    @snapshot.setter
    def snapshot(self, saved):
        self._saved = saved

    def restore(self):
        values, self.state, self.point = self._saved
        for v, s in zip(self.live, values):
            v.assign(s)

    def _evaluate_again(self):
        """The gradients at the current point, which the epoch loop does not hand back: the point
        evaluated again on the batch it was judged on."""
        self.graphs.stream.rewind()
        self.prime()

    def prime(self):
        """Evaluate the current point eagerly (no trace): the next step needs its gradients."""
        tf = self.tf
        evaluate, _, squared, raw_row, _ = self.graphs.pieces(traced=False)
        with tf.device(self.device):
            loss, grads = evaluate()
            gn2 = squared(grads)
            self.point = tf.stack(raw_row(loss, gn2)).numpy()
        self.state = (loss, gn2, grads)
        if self.start_loss is None and math.isfinite(self.point[0]):
            self.start_loss = float(self.point[0])

    def limit(self):
        start = self.start_loss if self.start_loss is not None else 1.0
        return BLOWUP_FACTOR * max(abs(start), 1.0)

    def tol2(self):
        """tol², in float32 as the graphs compare it with |grad|². At least the smallest
        normal float32: TensorFlow's CPU kernels read a subnormal as 0, which would make a
        tol below ~1e-19 never converge in a graph while Python saw it converge."""
        if not self.tol:
            return np.float32(0.0)
        return max(np.float32(self.tol) ** 2, np.finfo(np.float32).tiny)

    def code(self, point, lowest):
        """The loss's verdict, Status.RUNNING, CONVERGED or DIVERGED. `point`: a raw row
        (|grad|² second); `lowest`: the smallest |grad|² seen."""
        loss, gn2 = float(point[0]), float(point[1])
        if not (math.isfinite(loss) and math.isfinite(gn2) and abs(loss) <= self.limit()):
            return Status.DIVERGED
        return Status.CONVERGED if np.float32(lowest) < self.tol2() else Status.RUNNING

    def call(self, mode, n, stride):
        """Up to n steps from the current point (just snapshotted).

        Returns (raw rows, steps taken, first step of the last block, lowest |grad|², traced);
        a row is the point before its step, without eta, |grad| squared (see _record).
        """
        tf = self.tf
        traced = self.graphs.key(mode) not in self.concrete
        self.validated = {}
        if mode in self.default_runtime:
            return self._call_with(False, mode, n, stride, traced)
        try:
            return self._call_with(True, mode, n, stride, traced)
        except tf.errors.OpError as err:
            if self._took_batches():
                raise  # (from a dataset: a second try would take other batches; the state stays where it failed)
            # The lean runtime is only faster: TensorFlow's default one runs what it
            # cannot, and a real error then comes with the node's place in the cell.
            # (A fresh trace: a second instantiation loses the nodes' stack traces.)
            self.restore()
            out = self._call_on_defaults(mode, n, stride)
            if not isinstance(err, (tf.errors.FailedPreconditionError, tf.errors.UnimplementedError)):
                raise err  # the cell's own error, gone on the second try: still an error
            return out

    def _took_batches(self):
        """Did the failed call read from an iterator that cannot go back (`one_way_count`)?"""
        if self.one_way_count is None:
            return False
        at = next(i for i, v in enumerate(self.live) if v is self.one_way_count)
        return int(self.one_way_count.numpy()) != int(self._saved[0][at].numpy())

    def forget(self, mode):
        """Trace `mode` again when next called (what it compiled in has changed)."""
        self.graphs.forget([mode])
        for kept in (self.concrete, *self._other_tol):
            for key in [k for k in kept if mode_of(k) == mode]:
                del kept[key]

    def _call_on_defaults(self, mode, n, stride):
        """The call on TensorFlow's default runtime from now on, freshly traced for it."""
        self.default_runtime.add(mode)
        self.forget(mode)
        return self._call_with(False, mode, n, stride, True)

    def _call_with(self, lean, mode, n, stride, traced):
        tf = self.tf
        # Traced under the options it runs with: a While traced for the default
        # executor is lowered to a form the single-threaded one cannot run.
        options = lean_options(tf, single_threaded=mode not in XLA_MODES and self.small) if lean else None
        epochs = mode == "xla" and self.graphs.runs_epochs  # (epoch_loop.py: no gradients carried)
        if self.state[2] is None and not epochs:
            self._evaluate_again()
        loss, gn2, grads = self.state
        if mode == "step":
            args = (grads,)
        else:
            limit = tf.constant(self.limit(), tf.float32)
            args = (tf.constant(n), tf.constant(stride), tf.constant(self.tol2()), limit, loss, gn2) + (() if epochs else (grads,))
        with tf.device(self.device), quiet_native_stderr(traced):
            if traced:
                with calling_with(options):
                    # Kept: calling the concrete function skips matching the arguments
                    # to a trace (~0.1 ms a call).
                    fn = self.graphs.function(mode).get_concrete_function(*args)
                if mode in XLA_MODES and check_ops(fn):
                    if self.jit == "auto":
                        raise XlaSkipsChecks()
                    if Note.XLA_DROPS_CHECKS not in self.notes:
                        self.notes.append(Note.XLA_DROPS_CHECKS)
                if lean and not on_one_cpu(tf, fn, self.device):  # (checked once, at its trace)
                    return self._call_on_defaults(mode, n, stride)  # across devices (see on_one_cpu)
                self.concrete[self.graphs.key(mode)] = fn
            fn = self.concrete[self.graphs.key(mode)]
            with calling_with(options):
                if mode == "step":
                    return self._step_calls(fn, n, traced)
                if epochs:
                    self.graphs.stream.orders_for(n)  # (sorted by numpy, not in the loop: data.py)
                out = fn(*args)
                if epochs:
                    (count, lowest, *row), grads = out, None
                    used, block = count, max(int(count) - 1, 0)
                    self.validated = self.graphs.epoch_validation(int(count))
                elif mode == "blocks":
                    count, used, block, lowest, grads, *row = out
                else:  # a row per step: the last block is the last step
                    count, lowest, grads, *row = out
                    used, block = count, max(int(count) - 1, 0)
                rows = self.graphs.buffer[: int(used)].numpy()
        self.state = row[0], row[1], grads
        self.point = np.array([t.numpy() for t in row], np.float32)
        return rows, int(count), int(block), float(lowest), traced

    def _step_calls(self, fn, n, traced):
        """Up to n calls of the compiled single step, checked after each."""
        rows = np.empty((n, self.graphs.width), np.float32)
        loss, gn2, grads = self.state
        now, count, code = self.point, 0, Status.RUNNING
        while count < n and code == Status.RUNNING:  # checked every step: no block to redo
            rows[count] = now
            row, loss, gn2, grads = fn(grads)
            now, count = row.numpy(), count + 1
            code = self.code(now, now[1])
        self.state, self.point = (loss, gn2, grads), now
        return rows[:count], count, count - 1, now[1], traced
