"""One step over several devices or machines with a tf.distribute.Strategy (--strategy).

Each step takes one global batch (in cross-replica context, so the data's position
moves once), and every replica runs the cell on its slice of it. The strategy sums
what the replicas give, so each replica's loss is scaled to make that sum the
one-device loss: by its slice's share of the batch for a mean over samples, by 1
for a sum (`form`, chosen at set-up by replica_split.py, which refuses a loss that is
neither). Without --data every replica computes the whole loss, scaled by
1/replicas (by 1 for a Keras loss, which divides itself by them). The engine then
applies the summed gradient to the mirrored variables in cross-replica context, as on
one device.
"""

import contextlib
import logging

from tfmagic.runtime.tfimport import quiet_native_stderr

# How each replica's loss is scaled so that their sum is the batch's: (by its slice's share?, times).
FORMS = {
    "mean": (True, 1.0),  # a mean over samples
    "sum": (False, 1.0),  # a sum over samples
    "keras_mean": (True, None),  # a Keras loss's mean, which Keras divides by the replicas: times their number
}


@contextlib.contextmanager
def quiet_tf_logs(tf, native=True):
    """TensorFlow's log lines (INFO "Using MirroredStrategy with devices", "Reduce to ...",
    WARNING "Using MirroredStrategy eagerly ...", Grappler's on fd 2 unless not `native`) kept
    out of the cell during tfmagic's own calls; the logger is as it was afterwards."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with quiet_native_stderr() if native else contextlib.nullcontext():
            yield
    finally:
        logger.setLevel(level)


class Replicas:
    def __init__(self, tf, strategy, take, replica_loss):
        """`take()`: the global batch, name -> tensor ({} without --data), or (batch, whether
        there was one) from a dataset; `replica_loss(batch)`: the cell's loss on a batch."""
        self.tf, self.strategy = tf, strategy
        self.take, self.replica_loss = take, replica_loss
        self.form = "mean"  # how the slices' losses make the batch's: a key of FORMS (replica_split.py sets it)
        # Several processes: a control acting on one of them would leave the others waiting.
        self.multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)

    @property
    def count(self):
        return self.strategy.num_replicas_in_sync

    def scope(self):
        return self.strategy.scope()

    def run(self, replica, batch):
        return self.strategy.run(replica, args=(batch,))

    def sliced(self, batch):
        """In a replica: (its slice of the global batch, the slice's rows, the batch's rows);
        without data ({}) every replica computes the whole loss: a share of 1/replicas.
        A last batch smaller than the replicas leaves some a slice of none: they get a row
        to compute on instead (the cell may not take an empty batch), and `masked` drops it
        (no tf.cond: Grappler warns about one in a strategy's graph)."""
        tf = self.tf
        ctx = tf.distribute.get_replica_context()
        i, n = ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync
        if not batch:
            return batch, tf.constant(1), tf.constant(n)
        size = tf.shape(next(iter(batch.values())))[0]
        lo, hi = size * i // n, size * (i + 1) // n
        at = tf.minimum(lo, size - 1)
        return {name: t[at:tf.maximum(hi, at + 1)] for name, t in batch.items()}, hi - lo, size

    def evaluate(self, variables, convert=lambda fn: fn):
        """(loss, gradients) at the current point, summed over the replicas. `convert`:
        AutoGraph for the cell, in a trace (cell/autograph.py). Kept quiet: eagerly (once a run)
        TensorFlow warns that an eager strategy is slow and logs each reduction; a multi-worker
        trace logs its all-reduces ("Collective all_reduce tensors: ...")."""
        with quiet_tf_logs(self.tf, native=self.tf.executing_eagerly()):
            return self._evaluate(variables, convert)

    def _evaluate(self, variables, convert):
        tf, strategy = self.tf, self.strategy
        batch, present = self._taken()
        replica_loss = convert(self.replica_loss)

        def replica(batch):
            batch, rows, size = self.sliced(batch)
            by_share, factor = FORMS[self.form]
            scale = (factor or float(self.count)) * (tf.cast(rows, tf.float32) / tf.cast(size, tf.float32) if by_share else 1.0)
            with tf.GradientTape() as tape:
                loss = tf.cast(replica_loss(batch), tf.float32) * scale
            return masked(tf, rows, loss, tape.gradient(loss, variables), variables)

        loss, grads = self.run(replica, batch)
        total = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
        if present is not None:  # (a dataset that ended: NaN stops the loop there)
            total = tf.where(present, total, tf.constant(float("nan")))
        return total, [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) for g in grads]

    def _taken(self):
        """(the global batch, whether there was one: None when there always is)."""
        taken = self.take()
        return taken if isinstance(taken, tuple) else (taken, None)

    def describe(self):
        """'2 replicas (MirroredStrategy)'; one replica says that nothing is spread."""
        name = strategy_name(self.strategy)
        if self.count == 1:
            return f"1 replica ({name} found one device: nothing is spread; see README for logical CPUs/GPUs)"
        return f"{self.count} replicas ({name})"


def masked(tf, rows, loss, grads, variables):
    """A replica's (loss, gradients), or zeros for a replica whose slice has no rows."""
    keep = rows > 0
    grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]
    return tf.where(keep, loss, 0.0), [tf.where(keep, g, tf.zeros_like(g)) for g in grads]


def strategy_name(strategy):
    """The name a user writes for it (MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy)."""
    name = type(strategy).__name__
    return {"CollectiveAllReduceStrategy": "MultiWorkerMirroredStrategy"}.get(name, name)


def created_in(strategy, variable):
    """Was this variable made in the strategy's scope (mirrored over its devices)?"""
    return strategy.extended.variable_created_in_scope(variable)
