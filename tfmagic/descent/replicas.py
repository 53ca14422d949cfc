"""One step over several devices or machines with a tf.distribute.Strategy (--strategy).

Each step takes one global batch (in cross-replica context, so the data's position
moves once), and every replica runs the cell on its slice of it; the loss of a
replica is scaled by its slice's share of the global batch, so the sum over the
replicas (the strategy's reduction) is the one-device loss and its gradient the
one-device gradient. Without --data every replica computes the whole loss, scaled
by 1/replicas. The engine then applies the summed gradient to the mirrored
variables in cross-replica context, as on one device.
"""


class Replicas:
    def __init__(self, tf, strategy, take, replica_loss):
        """`take()`: the global batch, name -> tensor ({} without --data);
        `replica_loss(batch)`: the cell's loss on a batch (in a replica)."""
        self.tf, self.strategy = tf, strategy
        self.take, self.replica_loss = take, replica_loss
        # Several processes: a control acting on one of them would leave the others waiting.
        self.multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)

    @property
    def count(self):
        return self.strategy.num_replicas_in_sync

    def scope(self):
        return self.strategy.scope()

    def evaluate(self, variables, convert=lambda fn: fn):
        """(loss, gradients) at the current point, summed over the replicas. `convert`:
        AutoGraph for the cell, in a trace (cell/autograph.py)."""
        tf, strategy = self.tf, self.strategy
        batch = self.take()
        replica_loss = convert(self.replica_loss)

        def replica(batch):
            ctx = tf.distribute.get_replica_context()
            i, n = ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync
            share = tf.constant(1.0 / n)
            if batch:
                size = tf.shape(next(iter(batch.values())))[0]
                lo, hi = size * i // n, size * (i + 1) // n
                batch = {name: t[lo:hi] for name, t in batch.items()}
                share = tf.cast(hi - lo, tf.float32) / tf.cast(size, tf.float32)
            with tf.GradientTape() as tape:
                if batch:  # (a last batch smaller than the replicas leaves some a slice of none: 0, not NaN)
                    loss = tf.cond(hi > lo, lambda: tf.cast(replica_loss(batch), tf.float32) * share,
                                   lambda: tf.constant(0.0))
                else:
                    loss = tf.cast(replica_loss(batch), tf.float32) * share
            grads = tape.gradient(loss, variables)
            return loss, [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]

        loss, grads = strategy.run(replica, args=(batch,))
        total = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
        return total, [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) for g in grads]

    def describe(self):
        """'2 replicas (MirroredStrategy)'."""
        return f"{self.count} replica{'s' if self.count != 1 else ''} ({strategy_name(self.strategy)})"


def strategy_name(strategy):
    """The name a user writes for it (MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy)."""
    name = type(strategy).__name__
    return {"CollectiveAllReduceStrategy": "MultiWorkerMirroredStrategy"}.get(name, name)


def created_in(strategy, variable):
    """Was this variable made in the strategy's scope (mirrored over its devices)?"""
    return strategy.extended.variable_created_in_scope(variable)
