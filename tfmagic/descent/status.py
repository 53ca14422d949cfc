"""The engine's vocabulary, defined once: how a run stands (Status) and its groups, and the
facts it notes about a run (Note, with the codes a note carries). Words for people live in
present/messages.py; the UI's own display states in widgets/badges.py.

A Status is a str: `run.status == "max_steps"` holds, and str()/format() give the word.
"""

from dataclasses import dataclass
from enum import Enum


class _Word(str, Enum):
    """A str whose str() and format() are the word itself (on every Python >= 3.10)."""

    __str__ = str.__str__
    __format__ = str.__format__


class Status(_Word):
    READY = "ready"  # reset, no run since
    RUNNING = "running"
    PAUSED = "paused"  # Pause, or Step: it goes on later
    MAX_STEPS = "max_steps"  # it took all the steps it was given
    CONVERGED = "converged"  # |grad| fell below tol
    DIVERGED = "diverged"  # the loss blew up (or was not finite at the start)
    UNDEFINED = "undefined"  # a step made the loss NaN without blowing up
    STOPPED = "stopped"  # Stop
    INTERRUPTED = "interrupted"  # Ctrl-C, Kernel > Interrupt
    ERROR = "error"  # the cell raised
    OUT_OF_DATA = "out_of_data"  # a dataset had no batch for the next step
    BAD_DATA = "bad_data"  # a dataset's batch held NaN or inf

    @property
    def final(self):
        """The run is over: its result (values, final loss) stays as it is."""
        return self not in NOT_FINAL

    @property
    def escaped(self):
        """The loss left the finite numbers: the variables hold the last finite values."""
        return self in ESCAPED


NO_END_YET = frozenset({Status.READY, Status.RUNNING})  # no end point: the run is at its start or going
NOT_FINAL = NO_END_YET | {Status.PAUSED}  # a paused run has an end point but goes on
ESCAPED = frozenset({Status.DIVERGED, Status.UNDEFINED})
CUT_SHORT = frozenset({Status.INTERRUPTED, Status.ERROR})  # ended by something else than the loss or its steps
DATA_STOPS = frozenset({Status.OUT_OF_DATA, Status.BAD_DATA})  # a dataset's fault (engine.data_stop says more)
REQUESTED = frozenset({Status.STOPPED, Status.PAUSED, Status.INTERRUPTED})  # what request_stop() may ask for


class Note(_Word):
    """A fact the engine notes about a run (engine.notes); a note with a detail is a Noted."""

    NO_XLA_FOR_CHECKS = "no-xla-for-checks"  # --jit auto left XLA out: it would drop the cell's checks
    XLA_DROPS_CHECKS = "xla-drops-checks"  # --jit on: the cell's checks are not run
    XLA_FAILED = "xla-failed"  # detail: the error's type name; XLA could not compile the cell
    REUSED = "reused"  # detail: a Whose
    TRACED_AGAIN = "traced-again"  # detail: a Retrace, and what it names (a variable, an op)

    code = property(lambda self: self)
    detail = property(lambda self: ())

    def with_detail(self, *detail):
        return Noted(self, tuple(detail))


@dataclass(frozen=True)
class Noted:
    """A Note with its detail, e.g. Note.XLA_FAILED.with_detail("InvalidArgumentError")."""

    code: Note
    detail: tuple


class Whose(_Word):
    """Whose compiled steps a re-run ran on (Note.REUSED)."""

    THIS_CELL = "this-cell"
    ANOTHER_CELL = "another-cell"  # the same code
    SAME_CODE = "same-code"  # the cell is not known


class Retrace(_Word):
    """Why a re-run was built afresh, not reused (Note.TRACED_AGAIN; descent/reuse.py)."""

    GRAPH = "graph"
    VARIABLES = "variables"
    RUNNING = "running"
    SWITCHED = "switched"
    DATASET = "dataset"
    PYTHON_RANDOM = "python-random"
    CONSTRAINT = "constraint"
    UNJUDGEABLE = "unjudgeable"
    HELD = "held"  # detail: the NAME=INIT variable held elsewhere
    UNCHECKED = "unchecked"  # detail: the NAME=INIT variables
    RANDOM_OPS = "random-ops"  # detail: the op
