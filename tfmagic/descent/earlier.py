"""The earlier runs of a cell in this kernel: facts only (no English, no widgets).

A series is the runs of one cell's code: the same statements (comments and layout aside) on
the same variable names. Its settings (eta, optimizer, steps, starts, other options, Python
numbers the cell read) may change from run to run: that is what a re-run is for. A changed
statement (the loss) starts another series.

Bounded: each run keeps its loss, and the path of its variables when a picture draws them (1
or 2 scalar variables), at POINTS points (the first and the last kept), never its variables or
graphs; a series keeps the newest MAX_EARLIER runs; the newest MAX_SERIES series are kept.
"""

import ast
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

MAX_EARLIER = 10  # earlier runs a series keeps
MAX_SERIES = 20  # series kept per kernel (the least recently run go first)
POINTS = 500  # points kept of each earlier run's loss and path
PATH_NAMES = 2  # a path is kept for at most this many scalar variables (what a picture draws)
SETTING_CHARS = 60  # a setting's value kept as at most this many characters
# The numbers kept of one run: step (int32), loss and a path of PATH_NAMES (float32 each).
RUN_BYTES = POINTS * 4 * (2 + PATH_NAMES)
MAX_BYTES = RUN_BYTES * (MAX_EARLIER + 1) * MAX_SERIES  # (+1: each series' newest run)


def cell_key(source, names):
    """The series a cell belongs to: its statements (ast, so comments and spacing do not count)
    and its variable names (without their start values)."""
    try:
        code = ast.dump(ast.parse(source))
    except SyntaxError:
        code = source.strip()
    return code, tuple(spec.partition("=")[0].strip() for spec in names)


def simple(value):
    """A setting as it is compared and kept: a number, bool, None or a short string."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, np.generic) and value.size == 1:
        return value.item()
    return str(value)[:SETTING_CHARS]


def changes(before, now):
    """(setting, old, new) for each setting that differs, in `now`'s order (then those gone)."""
    keys = list(now) + [k for k in before if k not in now]
    return tuple((k, before.get(k), now.get(k)) for k in keys if _differ(before.get(k), now.get(k)))


def _differ(a, b):
    """Another value or another kind (True and 1 differ); NaN is NaN."""
    if type(a) is not type(b):
        return True
    return a != b and not (isinstance(a, float) and a != a and b != b)


def is_digest(value):
    """A setting that stands for an array's values (tfmagic/earlier.values_of)."""
    return isinstance(value, str) and value.startswith("<") and value.endswith(">")


@dataclass
class EarlierRun:
    """One run of a series: its settings, what changed from the run before it (None: the first
    of its series), and once it has ended its status, steps, final loss and `history`
    (column -> array at most POINTS long: 'step', 'loss' and up to PATH_NAMES variables; its
    last point is where the run ended)."""

    number: int  # 1, 2, ... in its series
    settings: dict
    changes: tuple | None
    status: object = None  # a status.Status; None until the run has ended
    steps: int = 0
    final_loss: float | None = None
    history: dict = field(default_factory=dict)

    @property
    def ended(self):
        return self.status is not None

    def keep(self, points, status, steps, final_loss, path_names=()):
        """Keep `points` (column -> array, as present.points.path_points gives them, already
        at most POINTS long) and how the run ended; called at each end (Play again: again)."""
        self.history = {"step": np.asarray(points["step"], np.float64).astype(np.int32)[:POINTS],
                        "loss": np.asarray(points["loss"], np.float32)[:POINTS]}
        for name in list(path_names)[:PATH_NAMES]:
            self.history[name] = np.asarray(points[name], np.float32)[:POINTS]
        self.status, self.steps = status, int(steps)
        self.final_loss = None if final_loss is None else float(final_loss)

    @property
    def nbytes(self):
        return sum(a.nbytes for a in self.history.values())


class Series:
    """The runs of one cell's code, oldest first (the newest may not have ended yet)."""

    def __init__(self):
        self.runs = []

    def begin(self, settings):
        """A new run with `settings`: (its EarlierRun, the earlier ones that ended, newest first)."""
        self.runs = [r for r in self.runs if r.ended]  # (one that never ended: refused or interrupted at its start)
        last = self.runs[-1] if self.runs else None
        settings = {k: simple(v) for k, v in settings.items()}
        run = EarlierRun(last.number + 1 if last else 1, settings, changes(last.settings, settings) if last else None)
        earlier = tuple(reversed(self.runs[-MAX_EARLIER:]))
        self.runs = self.runs[-MAX_EARLIER:] + [run]
        return run, earlier


class EarlierRuns:
    """The series of each namespace (a kernel's), newest MAX_SERIES; a namespace `session` that
    changed (IPython's %reset makes new ones) forgets them."""

    def __init__(self, max_series=MAX_SERIES):
        self.max_series = max_series
        self._series = OrderedDict()  # (namespace id, key) -> Series
        self._sessions = {}  # namespace id -> the session object its series belong to

    def series(self, namespace_id, session, key):
        if self._sessions.get(namespace_id, session) is not session:
            self.clear(namespace_id)
        self._sessions[namespace_id] = session
        series = self._series.pop((namespace_id, key), None) or Series()
        self._series[(namespace_id, key)] = series
        while len(self._series) > self.max_series:
            self._series.popitem(last=False)
        return series

    def clear(self, namespace_id=None):
        for k in [k for k in self._series if namespace_id is None or k[0] == namespace_id]:
            del self._series[k]
        if namespace_id is None:
            self._sessions.clear()
        else:
            self._sessions.pop(namespace_id, None)

    @property
    def nbytes(self):
        return sum(r.nbytes for s in self._series.values() for r in s.runs)

    def __len__(self):
        return len(self._series)


EARLIER = EarlierRuns()
