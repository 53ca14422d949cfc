"""A %%descend cell's loss as an object: what the set-up builds once the cell is compiled
(setup.py), what the engine's steps call, and what the re-run cache keeps (reuse.py)."""

from dataclasses import dataclass

from tfmagic.cell import autograph
from tfmagic.descent.data import EpochLog, as_data
from tfmagic.descent.dataset_stream import DatasetStream, untuned
from tfmagic.descent.engine import Descent
from tfmagic.descent.replicas import Replicas


@dataclass
class Prepared:
    """A %%descend cell, compiled and checked, with its engine built."""

    engine: object  # Descent
    created: dict  # NAME=INIT variables to put into the namespace
    tensors: dict  # name -> TensorRecord of what the cell reads, optimises and assigns
    constants: dict  # globals baked into the compiled cell
    device: str  # where it runs, short ('CPU:0')
    cell: object  # the compiled cell
    assigned_now: object  # () -> the names the cell assigns, at the current values
    epochs: object = None  # data.EpochLog of a --data run (its engine's observers close its epochs), else None


class LossProgram:
    """A %%descend cell's loss as a program bound to its variables: the compiled cell, its
    arguments and batches, the loss (on the next batch, or a given one), the trial, what the
    cell assigns now, the validation. The re-run cache (reuse.py) holds it: a re-run that
    reuses it rebinds it to the namespace as it is now."""

    def __init__(self, tf, cell, variables, created, extra, batches, strategy, device, optimizer, constraints=None):
        self.tf, self.cell, self.variables, self.created, self.extra = tf, cell, variables, created, extra
        self.constraints = constraints or {}  # name -> the projection after each step (cell/variables.py)
        self.batches, self.device, self.optimizer = batches, device, optimizer
        # The cell converted by AutoGraph, the wrappers around it not (cell/autograph.py).
        self.cell_function = autograph.converted(tf, cell.function)
        self.replicas = None if strategy is None else Replicas(tf, strategy, batches.take if batches else dict,
                                                                self.batch_loss)

    @autograph.calls_converted
    def loss(self):
        """The loss on the next batch (the engine's steps)."""
        if isinstance(self.batches, DatasetStream):  # (a NaN once it ends; each batch read after the step before)
            return self.batches.loss(self.batch_loss)
        return self.cell_function(**self.extra, **(self.batches.take() if self.batches else {}))[0]

    @autograph.calls_converted
    def batch_loss(self, batch):
        return self.cell_function(**self.extra, **batch)[0]

    def run_cell(self):
        """The loss and what the cell assigns, on the first batch."""
        return self.cell_function(**self.extra, **(self.batches.first() if self.batches else {}))

    def trial(self):
        """One run of the cell under a tape: its checks, and what it assigns."""
        tf = self.tf
        with tf.GradientTape() as tape:
            loss, assigned = self.run_cell()
            loss = tf.convert_to_tensor(loss)  # (read under the tape: a loss that is a variable itself, `y = x`)
        grads = tape.gradient(loss, list(self.variables.values())) if loss.dtype.is_floating else None
        return loss, grads, assigned

    def finish(self, jit, data, tensors, where):
        """What the checked cell adds: its jit mode, validation, tensor table and device."""
        self.jit, self.tensors, self.where = jit, tensors, where
        self.constants = dict.fromkeys(self.cell.constants)  # (names: the values stay the user's)
        self.validate = None
        if self.batches:
            self.validate = _validation(self.tf, self.batch_loss, data.validate, self.device, data.validate_dataset)

    def rebind(self, new, data):
        """Read the namespace as `new`, a program of the same cell made just now, read it, on these
        variables: its globals, arguments, validation data, tensor table and device."""
        from tfmagic.cell.compiler import FUNC_NAME, KEEP_NAME

        own = set(self.created) | {FUNC_NAME, KEEP_NAME}
        now, then = new.cell.function.__globals__, self.cell.function.__globals__
        for name in [n for n in then if n not in own and n not in now]:
            del then[name]
        then.update({n: v for n, v in now.items() if n not in own})
        self.extra.update({n: v for n, v in new.extra.items() if n not in self.created})
        self.cell.constants.clear()
        self.cell.constants.update(new.cell.constants)
        self.finish(self.jit, data, new.tensors, new.where)

    def assigned_now(self):
        """The names the cell assigns, at the current values."""
        return self.cell.published(self.run_cell()[1])

    def prepared(self, eta, tol, reuse=None, seed=None):
        """The engine (on the compiled steps of `reuse`, an engine of this program) and the rest."""
        tf, batches = self.tf, self.batches
        if seed is not None:
            batches.reseed(seed)
        stream = {}
        if batches:
            full = lambda: self.batch_loss(batches.data)  # noqa: E731 (traced without AutoGraph)
            full.on_rows = lambda rows: self.batch_loss({n: tf.gather(t, rows) for n, t in batches.data.items()})
            full.rows = getattr(batches, "n", None)  # (a dataset's: its first batch, no rows to choose)
            stream = dict(stream=batches, epoch_steps=batches.epoch_steps, full_loss_fn=full)
        engine = Descent(tf, self.loss, self.variables, eta=eta, optimizer=self.optimizer, device=self.device,
                         tol=tol, jit=self.jit, loss_label=self.cell.target_name, reuse=reuse, constraints=self.constraints,
                         replicas=self.replicas, **stream)
        epochs = EpochLog(batches.epoch_steps, self.validate) if batches and batches.epoch_steps else None
        if hasattr(batches, "validation_loss"):
            before, batches.validation_loss = batches.validation_loss, getattr(self.validate, "in_graph", None)
            if reuse is not None and before is not batches.validation_loss:
                engine.forget_compiled("xla")  # (the epoch loop compiled the validation arrays it was built with)
        engine.observers.epochs = epochs  # (closed before any observer hears of a chunk)
        return Prepared(engine, self.created, self.tensors, self.constants, self.where, self.cell,
                        self.assigned_now, epochs)


def _validation(tf, batch_loss, arrays, device, dataset=None):
    """() -> the cell's loss on the validation arrays, or the mean over a dataset's batches
    weighted by their sizes (no variable changes); None without --validate."""
    if dataset is not None:
        names, dataset = list(arrays), untuned(tf, dataset)
        batch_loss = autograph.function(tf, batch_loss)

        def over_dataset():
            total = count = 0.0
            with tf.device(device):
                for element in dataset:
                    parts = element if isinstance(element, (tuple, list)) else (element,)
                    batch = {n: element[n] for n in names} if isinstance(element, dict) else dict(zip(names, parts))
                    batch = {n: as_data(tf, t) for n, t in batch.items()}  # (float64 -> float32, as training's)
                    size = float(tf.shape(next(iter(batch.values())))[0])
                    total, count = total + float(batch_loss(batch)) * size, count + size
            return total / count if count else float("nan")

        return over_dataset
    if not arrays:
        return None
    with tf.device(device):
        data = {n: as_data(tf, v) for n, v in arrays.items()}
    loss = autograph.function(tf, lambda: batch_loss(data))

    def validate():
        with tf.device(device):
            return float(loss())

    validate.in_graph = lambda: batch_loss(data)  # (the epoch loop takes it at each epoch's end)
    return validate
