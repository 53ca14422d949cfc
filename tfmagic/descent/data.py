"""Mini-batches for `%%descend --data`: each evaluation of the loss takes the next
batch, inside the compiled steps, in an order shuffled afresh each epoch.

How many batches were taken and the epoch's order are tf.Variables that the
engine saves, restores and resets with the optimizer's state (`Descent(stream=)`),
so a redone chunk takes the same batches again and Reset starts at epoch 1.
Every sample is used once an epoch; the last batch holds the N mod B left over.
Under XLA the epochs' orders are computed by numpy before each call (`orders_for`): the
same orders as the graphs' sort, which cost the epoch loop ~8 % of its rate on digits.
"""

import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

# ints of epochs' orders held for the epoch loop (1 MB); epochs past them are sorted in the graph
ORDERS_HELD = 1 << 18
# _keys' hash: the multiplier of (seed, epoch), then (shift, factor) twice, then a last shift
_MIX = -7046029254386353131, ((30, -4658895280553007687), (27, -7723592293110705685)), 31


@dataclass
class DataSpec:
    """What --data, --batch-size, --seed and --validate asked for (checked by runs.py)."""

    arrays: dict  # name the cell reads -> the whole array (None for each with a dataset)
    batch_size: int | None
    seed: int
    validate: dict | None = None  # the same names -> validation arrays
    dataset: object = None  # --data NAMES=DS: the user's batched tf.data.Dataset
    epoch_steps: int | None = None  # ... its batches in one pass (None: it never ends)
    validate_dataset: object = None  # --validate NAMES=DS


def as_data(tf, value):
    """A tensor of the data: float64 (numpy's default) becomes float32, like the variables."""
    t = tf.convert_to_tensor(value)
    return tf.cast(t, tf.float32) if t.dtype == tf.float64 else t


class Batches:
    def __init__(self, tf, data, batch_size, seed, device):
        self.tf, self.names, self._device = tf, list(data), device
        self._seed_value = int(seed)
        with tf.device(device):
            self.data = {n: as_data(tf, v) for n, v in data.items()}
            self.n = int(self.data[self.names[0]].shape[0])
            self.batch_size = min(int(batch_size), self.n)
            self.epoch_steps = -(-self.n // self.batch_size)
            self._seed = tf.Variable(tf.constant(seed, tf.int64), trainable=False, name="shuffle_seed")  # (a re-run sets it)
            self.position = tf.Variable(tf.constant(0, tf.int64), trainable=False, name="batches_taken")
            self.order = tf.Variable(tf.range(self.n), trainable=False, name="epoch_order")
        self.static_shapes = self.n % self.batch_size == 0  # (else the last batch is smaller)
        self.last_size = self.n - (self.epoch_steps - 1) * self.batch_size  # the epoch's last batch
        self._size = None  # while tracing the epoch loop: take() gathers this many, the order shuffled already
        self.validation_loss = None  # () -> the loss on --validate's arrays, in a graph (the epoch loop's)
        self.state = [self.position, self.order]
        self.initial = [tf.identity(v) for v in self.state]  # what a reset puts back
        self._orders = self._held = None  # the epoch loop's orders computed by numpy, and which epochs
        self._held_now = None  # (seed, first epoch, how many) in them

    def reseed(self, seed):
        """Another --seed for the same compiled steps (a re-run)."""
        self._seed.assign(seed)
        self._seed_value = int(seed)

    def rewind(self):
        """Take the last batch again (the point it was taken for is evaluated again)."""
        self.position.assign_sub(1)

    @contextmanager
    def sized(self, size):
        """Trace take() for batches of this static size (epoch_loop.py: XLA compiles each once)."""
        self._size = size
        try:
            yield
        finally:
            self._size = None

    def hold_orders(self):
        """Make the variables the epoch loop reads its orders from (at its build, eagerly)."""
        from tfmagic.descent.graphs import ROW_CAPACITY

        if self._orders is None:
            tf, a_call = self.tf, ROW_CAPACITY // self.epoch_steps + 3  # (the most epochs a call reaches)
            with tf.device(self._device):
                self._orders = tf.Variable(tf.zeros([max(2, min(a_call, ORDERS_HELD // self.n)), self.n], tf.int32),
                                           trainable=False, name="epoch_orders")
                self._held = tf.Variable(tf.zeros([2], tf.int64), trainable=False, name="epochs_held")

    def orders_for(self, steps):
        """Before an epoch loop's call of up to `steps` steps: the orders of the epochs it reaches,
        by numpy (digits' 1 437 keys: ~50 µs an epoch, XLA's sort ~250; 441 keys: ~15 and ~55)."""
        at = int(self.position.numpy())  # (the call takes the batch before it again first)
        first = max(at - 1, 0) // self.epoch_steps
        count = min((at + steps) // self.epoch_steps - first + 1, int(self._orders.shape[0]))
        held = self._held_now
        if held and held[0] == self._seed_value and held[1] <= first and first + count <= held[1] + held[2]:
            return
        self._orders[:count].assign(epoch_orders(self._seed_value, first, count, self.n))
        self._held.assign([first, count])
        self._held_now = (self._seed_value, first, count)

    def shuffle_if_due(self):
        """In the epoch loop: the next epoch's order, when the next batch starts one (as take() does),
        from the orders held (orders_for), else sorted here."""
        tf = self.tf
        at, epoch = self.position % self.epoch_steps, self.position // self.epoch_steps
        k = epoch - self._held[0]
        held = (k >= 0) & (k < self._held[1])

        def new_order():
            order = tf.cond(held, lambda: tf.gather(self._orders, k), lambda: tf.argsort(self._keys(epoch)))
            return tf.identity(self.order.assign(order))

        tf.cond(tf.equal(at, 0), new_order, lambda: tf.identity(self.order))

    def take(self):
        """The next batch, name -> tensor (in a graph or eagerly); moves the position on."""
        tf, b = self.tf, self.batch_size
        if self._size is not None:
            start = tf.cast(self.position % self.epoch_steps, tf.int32) * b
            index = tf.gather(self.order, start + tf.range(self._size))
            self.position.assign_add(1)
            return {n: tf.gather(t, index) for n, t in self.data.items()}
        at, epoch = self.position % self.epoch_steps, self.position // self.epoch_steps

        def shuffled():
            return tf.identity(self.order.assign(tf.argsort(self._keys(epoch))))

        order = tf.cond(tf.equal(at, 0), shuffled, lambda: tf.identity(self.order))
        start = tf.cast(at, tf.int32) * b
        if self.n % b == 0:
            # A static size, and a gather (XLA compiled a slice again for each start).
            index = tf.gather(order, start + tf.range(b))
        else:
            index = order[start:tf.minimum(start + b, self.n)]
        self.position.assign_add(1)
        return {n: tf.gather(t, index) for n, t in self.data.items()}

    def _keys(self, epoch):
        """A pseudo-random int64 per sample from (seed, epoch): a splitmix64-style hash in
        integer ops, which XLA and TensorFlow's kernels compute alike (their random-number
        ops do not: the same seed gave XLA runs other batches). epoch_orders: the same by numpy."""
        tf = self.tf
        return _mix(tf.range(self.n, dtype=tf.int64) + (self._seed * 1_000_003 + epoch) * tf.constant(_MIX[0], tf.int64),
                    lambda z, k: tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, tf.constant(k, tf.int64))),
                    lambda k: tf.constant(k, tf.int64))

    def first(self):
        """The first rows (a batch's worth), for checking the cell without moving on."""
        return {n: t[: self.batch_size] for n, t in self.data.items()}


def _mix(z, xor_shift, const):
    for shift, factor in _MIX[1]:
        z = xor_shift(z, shift) * const(factor)
    return xor_shift(z, _MIX[2])


def epoch_orders(seed, first, count, n):
    """The orders of epochs first .. first+count-1 (int32, one a row): what Batches._keys sorted
    gives, computed by numpy. The keys are distinct (the hash is a bijection of the sample's
    number), so any sort gives the one order; it sorts each key's high bits packed with the
    sample's number (half an argsort's time), unless two keys share their high bits."""
    epochs = np.arange(first, first + count, dtype=np.int64)[:, None]
    with np.errstate(over="ignore"):
        z = np.arange(n, dtype=np.int64)[None, :] + (np.int64(seed) * np.int64(1_000_003) + epochs) * np.int64(_MIX[0])
        keys = _mix(z, lambda z, k: z ^ (z >> np.int64(k)), np.int64)
    bits = np.int64(max(1, (n - 1).bit_length()))
    packed = np.sort(((keys >> bits) << bits) | np.arange(n, dtype=np.int64), axis=1)
    if count and n > 1 and not np.diff(packed >> bits, axis=1).all():
        return np.argsort(keys, axis=1).astype(np.int32)
    return (packed & ((np.int64(1) << bits) - 1)).astype(np.int32)


EPOCH_COLUMNS = ("epoch", "loss", "val_loss", "seconds")


class EpochLog:
    """Closes each epoch of a --data run as its chunks come (observers.py: before the observers
    hear of a chunk): the mean training loss of its steps, the validation loss, its seconds
    (wall time; a chunk that spans epochs shares its time among them by steps; a run paused
    mid-epoch counts the pause). A chunk may span epochs (a row every step): the validation loss
    of an epoch that ended inside a chunk is the one the compiled steps took (engine.validated);
    other chunks end at each epoch's end, where it is taken."""

    def __init__(self, epoch_steps, validate=None):
        self.epoch_steps, self.validate = epoch_steps, validate  # validate: () -> float, or None
        self.rows = []  # (epoch, mean training loss, validation loss or NaN, seconds)
        self._table = None  # (the rows it is of, how many, their columns as arrays): table()'s
        self._losses, self._seconds, self._t0, self._logged = [], 0.0, time.perf_counter(), 0
        self._seen = 0  # steps at the last chunk: a chunk starting before it follows a reset

    def close(self, engine, chunk):
        """The epoch rows `chunk` closed: (epoch, mean training loss, validation loss, seconds)."""
        if chunk.start < self._seen:  # a reset, or a rewind (descent/rewind.py): back to the chunk's start
            self._back_to(engine.history, chunk.start)
        self._seen = engine.steps
        now = time.perf_counter()
        losses = np.asarray(chunk.rows["loss"], np.float64)
        span, steps, closed = now - self._t0, max(len(losses), 1), []
        self._t0 = now
        step = engine.steps - len(losses)  # the step of the chunk's first row
        while True:
            end = (step // self.epoch_steps + 1) * self.epoch_steps  # this epoch's end
            if end > engine.steps or (end == self._logged and not len(losses)):
                break
            taken, losses = losses[: end - step], losses[end - step:]
            self._losses.append(taken)
            self._seconds += span * len(taken) / steps
            step = end
            if end != self._logged:
                closed.append(self._close_epoch(end, end == engine.steps, engine.validated))
        self._losses.append(losses)
        self._seconds += span * len(losses) / steps
        return tuple(closed)

    def _back_to(self, history, step):
        """The epochs that ended by `step` stay; the one it is in has the losses before it."""
        start = step // self.epoch_steps * self.epoch_steps
        self.rows = [r for r in self.rows if r[0] * self.epoch_steps <= start]
        steps = np.asarray(history["step"])
        self._losses = [np.asarray(history["loss"], np.float64)[(steps >= start) & (steps < step)]]
        self._logged = self.rows[-1][0] * self.epoch_steps if self.rows else 0
        self._seconds, self._t0 = 0.0, time.perf_counter()

    def _close_epoch(self, end, here, validated):
        """The row of the epoch ending at step `end` (`here`: the variables hold that point;
        `validated`: step -> validation loss taken by the compiled steps)."""
        losses = np.concatenate(self._losses)
        val = float("nan")
        if end in validated:
            val = validated[end]
        elif self.validate is not None and here:
            val = float(self.validate())
        self.rows.append((end // self.epoch_steps, float(np.mean(losses)) if losses.size else float("nan"),
                          val, self._seconds))
        self._losses, self._seconds, self._logged = [], 0.0, end
        return self.rows[-1]

    def table(self):
        """name -> array: epoch, loss (mean training loss), val_loss, seconds. (The rows already
        turned into arrays are kept: the live panel asks for the table at each redraw, and a long
        run's 30 000 epochs took 180 ms to convert each time.)"""
        _, done, cols = self._table if self._table and self._table[0] is self.rows else (self.rows, 0, None)
        if cols is None or done != len(self.rows):
            new = list(zip(*self.rows[done:])) or [(), (), (), ()]
            new = [np.asarray(c, dtype=np.int64 if k == "epoch" else np.float64) for k, c in zip(EPOCH_COLUMNS, new)]
            cols = new if cols is None else [np.concatenate([a, b]) for a, b in zip(cols, new)]
            self._table = (self.rows, len(self.rows), cols)
        return {k: c.copy() for k, c in zip(EPOCH_COLUMNS, cols)}
