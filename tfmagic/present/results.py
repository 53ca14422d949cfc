"""What a magic returns: views of the facts that show themselves as text and HTML."""

from tfmagic.descent.status import NOT_FINAL
from tfmagic.present.html import descent_html, grad_html, multi_html, sweep_html
from tfmagic.present.messages import note, outcome
from tfmagic.present.text import descent_text, grad_text, multi_text, sweep_text


class _Shown:
    """A result shows itself as its class's `_text` and `_html` functions of it."""

    def __repr__(self):
        return self._text(self)

    def _repr_html_(self):
        return self._html(self)


class DescentResult(_Shown):
    """A live view of a descent: it follows the engine when the UI runs more steps."""

    shown_steps = None  # the steps its last HTML showed (a panel's Play may take more after)
    this_run = None  # its descent.earlier.EarlierRun in its cell's series (None: not in one)
    earlier = ()  # the earlier runs of its cell, newest first (present.earlier.EarlierResult each)

    def _repr_html_(self):
        self.shown_steps = self.steps
        return self._html(self)

    def __init__(self, engine, tensors, constants, device, cell, epochs=None):
        self.engine = engine
        self._epochs = epochs  # data.EpochLog of a --data run
        self.cell = cell
        self.cell_notes = [cell.not_kept_note] if cell is not None and cell.not_kept_note else []
        self.tensors = tensors
        self.constants = constants
        self.device = device

    @property
    def history(self) -> dict:
        """Per-step arrays (see the README); a --data run's also has 'epoch' (from 1)."""
        h = self.engine.history
        if self._epochs is None:
            return h
        return {**h, "epoch": h["step"] // self._epochs.epoch_steps + 1}

    def eta_schedule(self):
        """A keras LearningRateSchedule that gives each step the eta it ran with (for
        model.compile(optimizer=keras.optimizers.Adam(fit.eta_schedule()))."""
        from tfmagic.descent.schedule import steered_schedule

        return steered_schedule(self.engine.tf, self.engine.history)

    @property
    def epochs(self) -> dict | None:
        """A --data run's table, name -> array: epoch, loss (its mean training loss),
        val_loss (NaN without --validate), seconds; None for other runs."""
        return None if self._epochs is None else self._epochs.table()

    def epoch_points(self):
        """(end step, mean training loss, validation loss) of each epoch of a --data run, as
        its charts draw them (the live one and the record's); None for other runs."""
        table = self.epochs
        if table is None:
            return None
        return table["epoch"] * self.engine.epoch_steps - 1, table["loss"], table["val_loss"]

    @property
    def validated(self) -> bool:
        """Does this run take a validation loss each epoch (--validate)?"""
        return self._epochs is not None and self._epochs.validate is not None
    status = property(lambda self: self.engine.status)
    steps = property(lambda self: self.engine.steps)
    final_loss = property(lambda self: self.engine.final_loss)

    @property
    def message(self) -> str:
        """How the run ended, in words ('' while it runs or when it ran its steps)."""
        return outcome(self.engine)

    @property
    def notes(self) -> list[str]:
        return self.cell_notes + [note(code) for code in self.engine.notes]

    optimizer = property(lambda self: self.engine.optimizer_name)
    eta = property(lambda self: self.engine.eta)

    @property
    def values(self) -> dict:
        """name -> value (numpy) when the run ended, whatever ran on these variables since."""
        engine = self.engine
        if engine.final_values is not None and (engine.retired or engine.status not in NOT_FINAL):
            return dict(self.engine.final_values)
        return {n: v.numpy() for n, v in engine.variables.items()}

    _text, _html = staticmethod(descent_text), staticmethod(descent_html)


class _Holds(_Shown):
    """A result that holds its facts (`.facts`, the object the run found), shows them, and
    reads their attributes as its own."""

    def __init__(self, facts):
        self.facts = facts

    def __getattr__(self, name):  # (only for what the result itself lacks)
        if name == "facts":  # (not set yet: a copy being made)
            raise AttributeError(name)
        return getattr(self.facts, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(dir(self.facts)))

    def __repr__(self):
        return self._text(self.facts)

    def _repr_html_(self):
        return self._html(self.facts)


class MultiResult(_Holds):
    """The runs of --compare or --restarts (its Experiment); the variables hold the best run's values."""

    _text, _html = staticmethod(multi_text), staticmethod(multi_html)


class GradResult(_Holds):
    """%%tfgrad's value, gradients (with reasons for the None ones) and tensors (its Gradients)."""

    _text, _html = staticmethod(grad_text), staticmethod(grad_html)


class EtaSweepResult(_Holds):
    """--find-eta's sweep (its EtaSweep): .etas, .losses, .smoothed, .suggested_eta, .bound (2/λ or None)."""

    _text, _html = staticmethod(sweep_text), staticmethod(sweep_html)
