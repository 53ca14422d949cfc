"""The batches of a tf.data.Dataset the user built (--data NAMES=DS), one a step, read by
the compiled steps from an iterator that cannot go back.

So nothing is ever redone with other batches (descent/one_way.py): a batch is read
only once the step before it is complete (`_done_so_far`), so when the cell fails on a
batch the variables, the optimizer and the history rows are exactly those of the last
good step. The end of the data is not an error: each element comes with a flag, and a
last element flagged False (zeros: `_flagged`) makes the loss NaN, which stops the loop
where it happened (a tf.cond on an optional read did it too, at ~3x the cost of a step
of a small model). The last batch is kept, so a loss made NaN by the data is told apart
from one made NaN by the step, and named.

A re-run or Reset starts from the dataset's first state, the same batches again: the
iterator's state is saved right after it is made (once per dataset object, so a cell
built afresh starts there too) and put back; a dataset whose state cannot be saved (a
Python generator, a py_function) is started afresh instead, which calls it again.
"""

import math
import weakref
from dataclasses import dataclass

import numpy as np

from tfmagic.descent.data import as_data
from tfmagic.descent.status import Status
from tfmagic.cell.explain import tf_message
from tfmagic.errors import TfmagicError
from tfmagic.runtime.tfimport import quiet_native_stderr

_STARTS = weakref.WeakKeyDictionary()  # the user's dataset -> its iterator's first state (None: cannot be saved)
_SAVE_FAILS = 2  # SerializeIterator's external_state_policy: refuse a state that lives outside TensorFlow


@dataclass
class DataStop:
    """Why a run on a dataset stopped where it did (present/messages.py words it)."""

    status: Status  # OUT_OF_DATA: the dataset ended; BAD_DATA: a batch held NaN or inf
    step: int  # the step (from 1) whose batch was missing or not finite
    name: str = None  # bad_data: which of the cell's names held it
    row: int = None  # ... its first row that did, in that batch
    value: str = None  # ... "NaN" or "inf"


def _done_so_far(tf):
    """The stateful ops traced so far in this graph (the step's updates, its history row):
    a batch read after them is read only once they are done, so an error in the cell on
    that batch finds them complete. (Eagerly: nothing to wait for.)"""
    if tf.executing_eagerly():
        return []
    graph = tf.compat.v1.get_default_graph()
    return [op for op in graph.get_operations() if op.op_def is not None and op.op_def.is_stateful]


def _flagged(tf, source):
    """`source`'s elements as (element, True), then one (zeros of its shape, False): the end of
    the data as a value the compiled steps can read without an error or a branch."""
    def zeros(spec):
        if spec.shape.rank is None:
            return tf.zeros([], spec.dtype) if spec.dtype != tf.string else tf.constant("")
        shape = [d if d is not None else 1 for d in spec.shape.as_list()]  # (a row: the cell may refuse none)
        return tf.zeros(shape, spec.dtype) if spec.dtype != tf.string else tf.fill(shape, "")

    end = tf.nest.map_structure(zeros, source.element_spec)
    flagged = tf.data.Dataset.zip((source, tf.data.Dataset.from_tensors(True).repeat()))
    return untuned(tf, flagged.concatenate(tf.data.Dataset.from_tensors((end, False))))


def untuned(tf, dataset):
    """`dataset` with tf.data's autotuning off (its other options kept). The tuning thread
    sleeps up to 60 s between rounds and freeing an iterator waited for it: a garbage
    collection that freed 20 runs' iterators took 19 s (0.4 s untuned), a test worker froze
    78 s, and a 2.7 s pass over a validation set took 2.4 s more to free its iterator."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def first_bad_row(array):
    """(row, 'NaN' or 'inf') of the first row of `array` holding a non-finite number, else None."""
    a = np.asarray(array)
    if a.dtype.kind not in "fc" or a.ndim == 0 or not a.size:
        return None
    bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    if not bad.any():
        return None
    row = int(np.argmax(bad))
    return row, "NaN" if np.isnan(a[row]).any() else "inf"


class DatasetStream:
    one_way = True  # an iterator cannot go back: a failed chunk is never redone (one_way.py)

    def __init__(self, tf, dataset, names, epoch_steps, device):
        self.tf, self.names, self.epoch_steps = tf, list(names), epoch_steps
        self._spec = dataset.element_spec
        flat = tf.nest.flatten(self._spec)
        source = _flagged(tf, dataset.repeat() if epoch_steps else dataset)  # (an epoch is a pass; a run may take several)
        kinds = tf.nest.flatten(source.element_spec)
        self._kinds = dict(output_types=[s.dtype for s in kinds], output_shapes=[s.shape for s in kinds])
        with tf.device("/cpu:0"):  # (tf.data runs on the CPU)
            self._variant = tf.data.experimental.to_variant(source)
            self._iterator = tf.raw_ops.AnonymousIteratorV3(**self._kinds)
        self._start = self._first_state(dataset)
        with tf.device(device):
            self.position = tf.Variable(tf.constant(0, tf.int64), trainable=False, name="batches_taken")
            self._ended = tf.Variable(False, trainable=False, name="dataset_ended")
            self._last = [tf.Variable(tf.constant("") if s.dtype == tf.string else tf.zeros([], s.dtype),
                                      shape=tf.TensorShape(None), trainable=False, name="last_batch") for s in flat]
        self.state = [self.position]
        self.initial = [tf.identity(self.position)]
        self.static_shapes = False  # (XLA cannot compile an iterator's reads)
        self._first_batch = None
        self._replay = False  # the next read, eager, gives the last batch again (a run going on)
        self.kept_going = True  # ... unless the last run stopped on it: then the next batch
        self.data = self.first()  # (the pictures' loss: on the first batch)

    # -- where the iterator starts -------------------------------------------
    def _first_state(self, dataset):
        """The iterator's state at its start (kept per dataset object), or None when it
        cannot be saved; the iterator is left there."""
        tf = self.tf
        known = dataset in _STARTS
        with tf.device("/cpu:0"):
            tf.raw_ops.MakeIterator(dataset=self._variant, iterator=self._iterator)
            if known:
                if _STARTS[dataset] is not None:
                    tf.raw_ops.DeserializeIterator(resource_handle=self._iterator, serialized=_STARTS[dataset])
                return _STARTS[dataset]
            try:
                with quiet_native_stderr():
                    state = tf.raw_ops.SerializeIterator(resource_handle=self._iterator, external_state_policy=_SAVE_FAILS)
            except (tf.errors.FailedPreconditionError, tf.errors.UnimplementedError):
                state = None  # (a generator: its state is Python's)
        _STARTS[dataset] = state
        return state

    def restart(self):
        """Back to the dataset's start (after a reset, and for a re-run of the cell)."""
        tf = self.tf
        with tf.device("/cpu:0"):
            if self._start is not None:
                tf.raw_ops.DeserializeIterator(resource_handle=self._iterator, serialized=self._start)
            else:
                tf.raw_ops.MakeIterator(dataset=self._variant, iterator=self._iterator)
        self._ended.assign(False)
        self._replay, self.kept_going = False, True

    # -- reading -------------------------------------------------------------
    def _read(self):
        """(the next batch, whether it is data: False at the end), read after the step before it;
        the batch is kept as the last one. Eagerly an end past the end is no error either."""
        tf = self.tf
        with tf.control_dependencies(_done_so_far(tf)):
            counted = self.position.assign_add(1)
        with tf.control_dependencies([counted]):
            if tf.executing_eagerly():  # (a run starting after the end: nothing left to read)
                optional = tf.raw_ops.IteratorGetNextAsOptional(iterator=self._iterator, **self._kinds)
                if not bool(tf.raw_ops.OptionalHasValue(optional=optional)):
                    self._ended.assign(True)
                    return self.first(), tf.constant(False)
                flat = tf.raw_ops.OptionalGetValue(optional=optional, **self._kinds)
            else:
                flat = tf.raw_ops.IteratorGetNext(iterator=self._iterator, **self._kinds)
        *data, present = flat
        kept = [v.assign(t) for v, t in zip(self._last, data)] + [self._ended.assign(tf.logical_not(present))]
        with tf.control_dependencies(kept):  # (the cell sees the batch once it is kept)
            data = [tf.stop_gradient(t) for t in data]  # (data: no gradient)
        return self._bind(tf.nest.pack_sequence_as(self._spec, data)), present

    def _bind(self, element):
        if isinstance(element, dict):
            return {n: as_data(self.tf, element[n]) for n in self.names}
        parts = tuple(element) if isinstance(element, (tuple, list)) else (element,)
        return {n: as_data(self.tf, t) for n, t in zip(self.names, parts)}

    def _again(self):
        """The last batch, when a run goes on from the point it was read for (else None)."""
        if not (self._replay and self.tf.executing_eagerly()):
            return None
        self._replay = False
        self.position.assign_add(1)
        return self._bind(self.tf.nest.pack_sequence_as(self._spec, [v.value() for v in self._last]))

    def loss(self, loss_of):
        """`loss_of(batch)` on the next batch; NaN once the data has ended (the loop stops there)."""
        tf = self.tf
        again = self._again()
        if again is not None:
            return tf.cast(loss_of(again), tf.float32)
        batch, present = self._read()
        return tf.where(present, tf.cast(loss_of(batch), tf.float32), math.nan)

    def take(self):
        """(the next batch, whether it is data): for a strategy, which splits the batch itself
        (replicas.py) and makes the loss NaN at the end."""
        again = self._again()
        return (again, self.tf.constant(True)) if again is not None else self._read()

    def first(self):
        """The first batch, for checking the cell (read once, kept; the iterator is put back)."""
        if self._first_batch is None:
            tf = self.tf
            try:
                with tf.device("/cpu:0"):
                    optional = tf.raw_ops.IteratorGetNextAsOptional(iterator=self._iterator, **self._kinds)
                    present = bool(tf.raw_ops.OptionalHasValue(optional=optional))
                    flat = tf.raw_ops.OptionalGetValue(optional=optional, **self._kinds) if present else None
            except tf.errors.OpError as err:
                raise TfmagicError(f"--data: reading the dataset's first batch failed: {tf_message(err)}") from None
            if not (present and bool(flat[-1])):
                raise TfmagicError("--data: the dataset gave no batch (it is empty)")
            self._first_batch = self._bind(tf.nest.pack_sequence_as(self._spec, flat[:-1]))
            self.restart()
        return self._first_batch

    def rewind(self):
        """A run goes on from the current point: its batch is read again (not the next one),
        so Play after Pause takes the batches one uninterrupted run would."""
        self.position.assign_sub(1)
        self._replay, self.kept_going = self.kept_going, True

    def reseed(self, seed):
        """(The dataset shuffles itself, if it does.)"""

    # -- what stopped a run --------------------------------------------------
    def ended(self):
        return bool(self._ended.numpy())

    def stop_at(self, step):
        """A DataStop when the point of `step` (from 1) could not be evaluated because of
        the data (it ended, or its batch held NaN or inf), else None."""
        if self.ended():
            return DataStop(Status.OUT_OF_DATA, step)
        for name, var in zip(self._names_of_flat(), self._last):
            bad = first_bad_row(var.numpy()) if var.dtype.is_floating or var.dtype.is_complex else None
            if bad is not None:
                return DataStop(Status.BAD_DATA, step, name, *bad)
        return None

    def _names_of_flat(self):
        """The cell's name of each flat component of an element."""
        spec = self._spec
        if isinstance(spec, dict):
            return sorted(spec)  # (tf.nest flattens a dict by its sorted keys)
        return self.names
