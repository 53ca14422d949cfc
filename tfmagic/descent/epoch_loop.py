"""The XLA loop of a --data run on arrays: epochs of static-shaped batches, nothing carried
but scalars from one step to the next.

Measured under XLA on a 30-64-2 MLP (batch 32, 2 cores, steps/s): a loop that carries the
gradients from one iteration into the next runs at half the rate of one that evaluates and
updates in the same iteration (42 000 against 80 000). So each iteration evaluates the point
on its batch, judges its loss (and with a tol its |grad|²), and steps from it only if the
point is healthy and the chunk not done: every assignment of the step writes where(go, new,
old) (only_if). A branch around the step did the same, but XLA, turning it into selects,
copied every optimizer slot each step (0.53 -> 0.58 of a hand-written loop on that MLP, CPU
time). The loop ends on an evaluated point; its gradients are not kept (writing them to
variables costs ~13 %): a loop that needs them evaluates the point again (calls.py). A call
starts by evaluating its starting point again on the same batch (the position goes back by
one): one evaluation more a chunk.

A point with a finite loss and a gradient that is not finite is stepped from; the next
point's loss is then not finite, and the engine's redo (Descent._run_chunk) ends the run
where the carried loops do, at the last point whose step stayed finite.

XLA compiles one shape per batch size: an epoch's full batches run in an inner loop after the
order is shuffled, its smaller last batch (N mod B samples) in a step of its own. Rows and
health checks are the plain loop's (graphs.py), so a chunk may span epochs.
"""

import math
from contextlib import contextmanager

# |grad|² of the gradients joined into one vector up to this many elements (a 30-64-2 MLP: 2 114,
# 58 000 steps/s against 27 000 with a sum per variable); past it, copying them costs more than the
# sums (a 784-256-256-10 MLP: 574 steps/s with sums per variable, 501 joined)
CONCAT_ELEMENTS = 1 << 16


def epoch_loop(graphs, stream):
    """The tf.function of the "xla" mode for a data.Batches `stream`: the plain loop's signature
    and outputs without the gradients (the carried loss and |grad|² passed in are not read)."""
    tf = graphs.tf
    raw_row = graphs.pieces()[3]
    epoch, size, last = stream.epoch_steps, stream.batch_size, stream.last_size
    full = epoch if last == size else epoch - 1  # batches of `size` in an epoch
    validation = Validation(tf, stream.validation_loss, graphs) if stream.validation_loss else None
    iteration, put_summaries = _steps(graphs, stream)
    stream.hold_orders()  # (the epochs' orders: numpy's, before each call, Calls._call_with)
    full_batch, last_batch = iteration(size), iteration(last)

    def rest_of_epoch(start, validated, *state):
        """The steps to the end of this epoch; `start`: the steps taken before the call."""
        stream.shuffle_if_due()
        at = tf.cast(stream.position % epoch, tf.int32)
        before = state[0]
        end = before + tf.where(at < full, full - at, 0)  # i after the epoch's full batches
        state = tf.while_loop(lambda i, *s: s[-1] & (i < end), full_batch, state)
        if last != size:  # (a loop that runs once: a branch would copy the rows' buffer in and out)
            state = tf.while_loop(lambda *s: s[-1] & tf.equal(stream.position % epoch, full), last_batch, state)
        if validation is not None:  # at the point where this epoch's last step ended it
            i = state[0]
            validated = validation.take((i > before) & tf.equal((start + i) % epoch, 0), i, validated)
        return (start, validated, *state)

    def loop(n, stride, tol2, limit, loss, gn2):
        stream.position.assign_sub(1)  # the starting point again, on the batch it was judged on
        start = tf.cast(stream.position.read_value(), tf.int32)  # (the steps taken: a batch each)
        put_summaries(tf.constant(0), raw_row(loss, gn2)[2:])
        state = (start, tf.constant(0), tf.constant(0), n, tol2, limit, loss, gn2, tf.constant(True))
        _, validated, i, _, _, _, loss, gn2, _ = tf.while_loop(lambda *s: s[-1], rest_of_epoch, state)
        if validation is not None:
            validation.count.assign(validated)
        return (i, gn2, *raw_row(loss, gn2))

    return graphs.compiled(loop, jit_compile=True)


def _steps(graphs, stream):
    """iteration(batch) -> a loop body for batches of that size, and put_summaries(row, values)."""
    tf = graphs.tf
    evaluate, advance, squared, raw_row, _ = graphs.pieces()
    buffer = graphs.row_buffer()
    track = graphs.track_tol
    marks = graphs.marks_traced("xla")
    variables = list(graphs.variables.values())
    constrained = [v for n, v in graphs.variables.items() if n in graphs.constraints]
    squared_norm = squared
    if sum(v.shape.num_elements() for v in graphs.variables.values()) <= CONCAT_ELEMENTS:
        def squared_norm(grads):  # (one reduction: a sum per variable halves a small model's rate)
            flat = tf.concat([tf.reshape(tf.cast(g, tf.float32), [-1]) for g in grads], 0)
            return tf.reduce_sum(flat * flat)

    def put_summaries(row, summaries):
        buffer.scatter_nd_update(tf.stack([tf.stack([row, c]) for c in range(2, 2 + len(summaries))]),
                                 tf.stack(summaries))

    def iteration(batch):
        def body(i, n, tol2, limit, loss, gn2, go):
            if marks is not None:  # (the point before its step: marks.py)
                marks.keep(i)
            with stream.sized(batch):
                loss, grads = evaluate()
            gn2 = squared_norm(grads)
            go = (i < n) & (loss <= limit) & (loss >= -limit)
            if track:  # (converged: no step from the point)
                go = go & (gn2 < math.inf) & (gn2 >= tol2)

            with only_if(tf, go, graphs.optimizer, variables, constrained):  # (no branch: see only_if)
                advance.update(grads)
            # The point's loss and |grad|² in its row, the next point's summaries (read after the step)
            # in the next row: carried from one iteration to the next instead, they halve the rate.
            # (Rows of the point not stepped from land past the chunk's rows: the buffer has spares.)
            buffer.scatter_nd_update(tf.stack([[i, 0], [i, 1]]), tf.stack([loss, gn2]))
            put_summaries(i + 1, raw_row(loss, gn2)[2:])
            return i + tf.cast(go, tf.int32), n, tol2, limit, loss, gn2, go
        return body

    return iteration, put_summaries


class Validation:
    """The validation losses an epoch loop's call took: at which of its steps, and the loss there."""

    def __init__(self, tf, loss, graphs):
        from tfmagic.descent.graphs import ROW_CAPACITY

        self.tf, self.loss = tf, loss
        with tf.device(graphs.device):
            self.count = tf.Variable(0, trainable=False)
            self.steps = tf.Variable(tf.zeros([ROW_CAPACITY + 2], tf.int32), trainable=False)
            self.losses = tf.Variable(tf.zeros([ROW_CAPACITY + 2]), trainable=False)
        graphs.epoch_validation = self.read

    def take(self, due, i, k):
        """In the loop: the loss now, kept as the k-th if `due`; returns the new count."""
        tf = self.tf
        value = tf.cond(due, lambda: tf.cast(self.loss(), tf.float32), lambda: tf.constant(math.nan))
        self.steps.scatter_update(tf.IndexedSlices(i[None], k[None]))
        self.losses.scatter_update(tf.IndexedSlices(value[None], k[None]))
        return k + tf.cast(due, tf.int32)

    def read(self, count):
        """steps into the call -> validation loss, for its first `count` steps."""
        k = int(self.count.numpy())
        steps, losses = self.steps[:k].numpy(), self.losses[:k].numpy()
        return {int(s): float(v) for s, v in zip(steps, losses) if s <= count}


@contextmanager
def only_if(tf, go, optimizer, variables, constrained=()):
    """The step traced inside changes nothing unless `go`: each assignment of the optimizer
    (Keras's assign, assign_add, assign_sub, which every update_step uses) writes where(go, new,
    old), so XLA updates each slot in place; what is assigned otherwise (the step count, a
    constraint's projection, an optimizer's own assignments) is put back after. (A branch
    around the step made XLA copy every slot each step: the step's fusions read a slot's old
    value after its new one was written.)"""
    seen = set()

    def masked(combine):
        def assign(variable, value):
            variable = tf_variable(variable)
            seen.add(id(variable))
            variable.assign(tf.where(go, combine(variable, tf.cast(value, variable.dtype)), variable))
        return assign

    def tf_variable(v):
        return v if isinstance(v, tf.Variable) else v.value

    constrained = {id(tf_variable(v)) for v in constrained}  # (their projection is a plain assign)
    others = [tf_variable(v) for v in [*optimizer.variables, *variables]]
    before = [v.read_value() for v in others]  # (unused reads cost nothing under XLA)
    optimizer.assign = masked(lambda v, x: x)
    optimizer.assign_add = masked(lambda v, x: v + x)
    optimizer.assign_sub = masked(lambda v, x: v - x)
    try:
        yield
    finally:
        del optimizer.assign, optimizer.assign_add, optimizer.assign_sub
    for v, old in zip(others, before):
        if id(v) not in seen or id(v) in constrained:
            v.assign(tf.where(go, v.read_value(), old))
