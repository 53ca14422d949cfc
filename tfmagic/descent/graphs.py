"""The engine's compiled functions: one step, the graph loop (also under XLA) and
the XLA "blocks" loop, for one set of variables, optimizer and device.

Every op costs ~0.2 ms of tracing and more of XLA compiling, which is most of a
short run: the graphs hold the step and the history row, nothing else. Health
checks, eta and divergence restores happen in Python between calls (engine.py).
Norms are carried squared and rooted in Python (history.py): XLA:CPU takes ~10 ms
longer to compile a graph with a sqrt, and about as long for abs or is_finite.
"""

import functools
import math

from tfmagic.cell import autograph
from tfmagic.cell.variables import constraints as constraints_of
from tfmagic.descent.callopts import graph_nodes
from tfmagic.descent.history import shown_by_value

ROW_CAPACITY = 1 << 16  # rows per chunk: plain and XLA chunks stop there (a call costs ~0.5 ms)
_CHECK_OPS = {"Assert", "CheckNumerics"}  # XLA compiles these to nothing: the check silently never runs


def check_ops(concrete):
    """The check ops (asserts, check_numerics) in a traced function: XLA drops them."""
    return {n.op for n in graph_nodes(concrete)} & _CHECK_OPS


class Graphs:
    """Builds and keeps the compiled functions; `track_tol`: the loops stop at |grad| < tol
    (an op less a step without one). `width`: a raw history row's length."""

    def __init__(self, tf, loss_fn, variables, optimizer, device, track_tol, width, replicas=None, stream=None,
                 constraints=None):
        self.tf, self.loss_fn, self.device = tf, loss_fn, device
        self.stream = stream  # a --data run's batches: XLA runs them in epochs (epoch_loop.py)
        self.epoch_validation = lambda count: {}  # the epoch loop's last call: its validation losses
        self.replicas = replicas  # a replicas.Replicas: the loss and gradients summed over a strategy's replicas
        self.variables = dict(variables)
        # name -> the projection Keras's optimizer.apply makes after each step (a Keras variable's
        # constraint: the tf.Variable under it, which the steps assign, does not carry it)
        self.constraints = constraints_of(tf, self.variables) if constraints is None else constraints
        self.optimizer = optimizer
        self.track_tol = track_tol
        self.width = width
        self.buffer = None  # the loops' history rows, made when a loop needs them
        self.marks, self.marking = None, False  # marks.Marks; do this run's loops copy the variables (marks.py)?
        self._fns = {}  # key(mode) -> its tf.function

    # Every op costs ~0.2 ms of tracing and more of XLA compiling, which is most of
    # a short run: the graphs hold the step and the history row, nothing else.
    # Health checks, eta and divergence restores happen in Python between calls.
    # Norms are carried squared and rooted in Python (_record): XLA:CPU takes ~10 ms
    # longer to compile a graph with a sqrt, and about as long for abs or is_finite.
    def pieces(self, traced=True):
        """evaluate() -> (loss, grads) at the current point; advance(grads) takes one step (.update)
        and evaluates the new point; squared(grads) is |grad|²; raw_row(loss, gn2) is a history row
        without eta, as scalars: loss, |grad|², one summary per variable (its value, or the sum of its
        squares: see shown_by_value); healthy(...) is the loops' health check. `traced`: for a
        tf.function made by compiled() (AutoGraph converts the loss only)."""
        tf = self.tf
        variables = list(self.variables.values())
        constrained = [(v, self.constraints[n]) for n, v in self.variables.items() if n in self.constraints]
        opt = self.optimizer
        iterations = opt.iterations.value  # the tf.Variable: Keras's own assign_add traces ~1 ms more
        loss_fn = autograph.converted(tf, self.loss_fn) if traced else self.loss_fn

        sum_of_squares = functools.partial(_sum_of_squares, tf)

        def squared(grads):
            total = sum_of_squares(grads[0])
            for g in grads[1:]:
                total += sum_of_squares(g)
            return total

        def evaluate():
            if self.replicas is not None:
                loss, grads = self.replicas.evaluate(variables, lambda fn: autograph.converted(tf, fn) if traced else fn)
            else:
                with tf.GradientTape() as tape:
                    loss = tf.cast(loss_fn(), tf.float32)
                grads = tape.gradient(loss, variables)
            grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]
            # Loop variables keep their shapes (a py_function's output has none).
            loss = loss if loss.shape.rank == 0 else tf.reshape(loss, [])
            grads = [g if g.shape == v.shape else tf.reshape(g, v.shape) for g, v in zip(grads, variables)]
            return loss, grads

        def update(grads):
            # What apply_gradients runs for an optimizer without clipping, weight decay,
            # EMA, loss scaling or accumulation (make_optimizer's), in ~1.2 ms less tracing.
            learning_rate = opt.learning_rate
            for g, v in zip(grads, variables):
                opt.update_step(g, v, learning_rate)
            for v, constraint in constrained:  # as Keras's optimizer.apply does after the update
                v.assign(constraint(v))
            iterations.assign_add(1)

        def advance(grads):
            update(grads)
            return evaluate()
        advance.update = update  # (the epoch loop judges a point before it steps: epoch_loop.py)

        def summary(v):
            if shown_by_value(v):
                v = tf.cast(v, tf.float32)
                return v if v.shape.rank == 0 else tf.reshape(v, [])
            return sum_of_squares(v)

        def raw_row(loss, gn2):
            return [loss, gn2] + [summary(v) for v in variables]

        return evaluate, advance, squared, raw_row, functools.partial(_healthy, tf)

    def compiled(self, fn, **options):
        """tf.function for the engine's own code (cell/autograph.py: ~2-5 ms less tracing)."""
        return autograph.function(self.tf, fn, **options)

    def row_buffer(self):
        """The chunks' history rows (a variable: cheaper to compile than a TensorArray)."""
        if self.buffer is None:
            with self.tf.device(self.device):
                self.buffer = self.tf.Variable(self.tf.zeros([ROW_CAPACITY + 2, self.width]), trainable=False)  # (+2: epoch_loop.py)
        return self.buffer

    def _build_step(self):
        """One compiled step (the course's shape), called from Python per step."""
        _, advance, squared, raw_row, _ = self.pieces()

        def step(grads):
            loss, grads = advance(grads)
            gn2 = squared(grads)
            return self.tf.stack(raw_row(loss, gn2)), loss, gn2, grads

        return self.compiled(step)

    def _build_plain(self, jit=False):
        """Up to n steps in a graph while loop, a history row per step.

        Without XLA every op and loop variable costs ~1 us per step, so the loop
        carries only what the next step needs. Its condition holds the health
        checks: the body has no branch.
        """
        tf = self.tf
        _, advance, squared, raw_row, healthy = self.pieces()
        buffer = self.row_buffer()
        track = self.track_tol
        marks = self.marks_traced("plain")

        def loop(n, stride, tol2, limit, loss, gn2, grads):  # (stride unused: one signature for both loops)
            def keep_going(i, loss, gn2, grads):
                ok = (i < n) & healthy(loss, gn2, limit, jit)
                return ok & (gn2 >= tol2) if track else ok

            def body(i, loss, gn2, grads):
                buffer.scatter_update(tf.IndexedSlices(tf.stack(raw_row(loss, gn2)), i))
                loss, grads = advance(grads)
                if marks is not None:  # (the point after the step: marks.py)
                    marks.keep(i + 1)
                return i + 1, loss, squared(grads), grads

            i, loss, gn2, grads = tf.while_loop(keep_going, body, [tf.constant(0), loss, gn2, grads])
            # No more computed after the loop than the row needs: under XLA every extra
            # kernel, even a stack of the scalars or an i - 1, costs ~14 ms of compiling.
            return (i, gn2, grads, *raw_row(loss, gn2))

        return self.compiled(loop, jit_compile=jit)

    def _build_blocks(self):
        """Up to n steps under XLA; a history row every `stride` steps.

        The steps between rows run in an inner loop that does only the step, so
        a step costs what a hand-written XLA loop's does; the health checks are
        the outer loop's condition. `lowest` (the smallest |grad|² seen, only with
        a tol) makes convergence inside a block visible.
        """
        tf = self.tf
        _, advance, squared, raw_row, healthy = self.pieces()
        buffer = self.row_buffer()
        track = self.track_tol

        def loop(n, stride, tol2, limit, loss, gn2, grads):
            def keep_going(i, r, block, loss, gn2, lowest, grads):
                ok = (i < n) & healthy(loss, gn2, limit, True)
                return ok & (lowest >= tol2) if track else ok

            def body(i, r, block, loss, gn2, lowest, grads):
                buffer.scatter_update(tf.IndexedSlices(tf.stack(raw_row(loss, gn2)), r))

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
            i, r, block, loss, gn2, lowest, grads = tf.while_loop(keep_going, body, [zero, zero, zero, loss, gn2, gn2, grads])
            return (i, r, block, lowest if track else gn2, grads, *raw_row(loss, gn2))

        return self.compiled(loop, jit_compile=True)

    @property
    def runs_epochs(self):
        """Does the "xla" mode run epoch_loop.py's loop (which hands back no gradients)? Not for a
        large model whose batches all have one shape: there it ran no faster than the plain XLA loop
        (a 784-256-256-10 MLP: 0.66 of a hand-written loop in CPU time, both, 2026-12-07)."""
        if not hasattr(self.stream, "sized"):
            return False
        from tfmagic.descent.epoch_loop import CONCAT_ELEMENTS

        size = sum(v.shape.num_elements() for v in self.variables.values())
        return not (self.stream.static_shapes and size > CONCAT_ELEMENTS)

    def _build_xla(self):
        if self.runs_epochs:
            from tfmagic.descent.epoch_loop import epoch_loop

            return epoch_loop(self, self.stream)
        return self._build_plain(jit=True)

    def markable(self, mode):
        """Does `mode`'s loop copy the variables at multiples of K when marking (marks.py)? The loops
        with a row per step; not the single step, nor the blocks (their inner loop is bare)."""
        return mode in ("plain", "xla")

    def marks_traced(self, mode):
        """The Marks `mode`'s loop copies the variables into (marks.py), None if it does not."""
        return self.marks if self.marking and self.markable(mode) else None

    def key(self, mode):
        """What `mode`'s function is kept under: a loop that marks is another function."""
        return (mode, "marks") if self.marks_traced(mode) is not None else mode

    def function(self, mode):
        """The tf.function of `mode` ("step", "plain", "xla", "blocks"), built once."""
        key = self.key(mode)
        if key not in self._fns:
            build = {"step": self._build_step, "plain": self._build_plain, "blocks": self._build_blocks,
                     "xla": self._build_xla}[mode]
            self._fns[key] = build()
        return self._fns[key]

    @property
    def built(self):
        """mode -> its tf.function, for those built so far (a marking one where both are)."""
        return {k if isinstance(k, str) else k[0]: fn for k, fn in self._fns.items()}

    def swap_out(self, modes):
        """Take these modes' functions out (key -> function), to swap_in again later."""
        return {k: self._fns.pop(k) for k in list(self._fns) if mode_of(k) in modes}

    def swap_in(self, fns):
        self._fns.update(fns)

    def forget(self, modes):
        """Build these modes' functions again when next asked (for another runtime or tol)."""
        self.swap_out(modes)


def mode_of(key):
    return key if isinstance(key, str) else key[0]


def _sum_of_squares(tf, t):
    t = tf.cast(t, tf.float32)
    return t * t if t.shape.rank == 0 else tf.reduce_sum(t * t, axis=list(range(t.shape.rank)))


def _healthy(tf, loss, gn2, limit, xla):
    """The loops' health check of a point."""
    # (comparisons are False for NaN, and inf fails one of them; each op costs
    # every step outside XLA, and abs ~10 ms of compiling under it)
    bounded = (loss <= limit) & (loss >= -limit) if xla else tf.abs(loss) <= limit
    return bounded & (gn2 < math.inf)
