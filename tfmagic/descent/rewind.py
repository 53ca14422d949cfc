"""Time travel: `engine.rewind(k)` puts a run back exactly as it was after step k, as a new branch.

Every chunk of steps starts from a snapshot (Calls.save: the variables, the optimizer's state and
slots, its iterations, a --data run's batch position and order, the loss and gradients carried).
The timeline keeps, for each chunk the history kept, its start, steps, eta, compiled mode and
(thinned to a memory budget) its snapshot. A rewind restores the last snapshot at or before k and
replays the recorded chunks with their etas and modes: the same compiled steps give the same bits.
A run going on from there takes the modes the cut branch took at those steps, and does not
evaluate its point again (the graphs' carried gradients are what the original step used), so a
branch with the same eta repeats the original run bit for bit.

Facts only: refusals carry a code and numbers (present/messages.py words them).
"""

import math
from dataclasses import dataclass

import numpy as np

from tfmagic.descent.facts import Retired
from tfmagic.descent.graphs import ROW_CAPACITY
from tfmagic.descent.status import ESCAPED, Status, _Word
from tfmagic.errors import TfmagicError

SNAPSHOT_BYTES = 64 << 20  # the snapshots a timeline keeps, at most (the first chunk's always)
MOST_SNAPSHOTS, FEWEST_SNAPSHOTS = 64, 1  # ... and at most/least this many of them (a large model: the first alone)
REPEATS_WITHIN = 1e-4  # a replay's loss at k against the recorded one: farther apart, the cell has randomness


class Refusal(_Word):
    OUT_OF_RANGE = "out-of-range"  # k is not a step of the run: facts (k, steps)
    PAST_DIVERGENCE = "past-divergence"  # k is the step that blew up or after it: (k, last finite step)
    WHILE_RUNNING = "while-running"  # a run is going on: facts ()
    ONE_WAY = "one-way"  # a dataset's iterator cannot go back: facts ()
    OPTIMIZER_CHANGED = "optimizer-changed"  # k is before the optimizer was switched: (k, the step of the switch)
    NOT_REPEATABLE = "not-repeatable"  # the replay did not give the recorded loss (randomness in the cell): (k,)


class RewindRefused(TfmagicError, ValueError):
    """rewind(k) could not go back; nothing changed. `code` a Refusal, `facts` its numbers."""

    words = None  # (code, facts) -> the message: present/messages.py sets it (the engine holds no English)

    def __init__(self, code, *facts):
        self.code, self.facts = code, facts
        Exception.__init__(self, code, *facts)
        self.line = self.line_text = self.hint = self.detail = None

    @property
    def message(self):
        return RewindRefused.words(self.code, self.facts) if RewindRefused.words else f"{self.code} {self.facts}"


@dataclass
class Segment:
    """A chunk of steps the history kept."""

    start: int
    count: int
    eta: float
    mode: str
    calls: object  # the Calls that ran it (an optimizer switch makes another)
    primed: bool  # its run began here: the point was evaluated eagerly first
    saved: tuple | None  # Calls.save()'s snapshot at its start (thinned)
    stride: int = 1  # a history row every this many steps from its start ("blocks")
    plan: object = None  # the per-step etas its run followed (--eta-schedule), or None


def _nbytes(saved):
    values, state, _ = saved
    tensors = list(values) + list(state[2] or ())
    return sum(t.shape.num_elements() * t.dtype.size for t in tensors)


class Timeline:
    """The chunks of the current branch (`segments`), where branches began (`branches`: (step,
    number) from the first run, number 0), the future a rewind cut off (its modes are followed)."""

    def __init__(self):
        self.planned = False  # a rewind set the engine's eta plan for the next run (run_ends takes it back)
        self.clear()

    def clear(self):
        self.segments, self.branches, self.future = [], [(0, 0)], []
        self.count = 0  # branches begun so far
        self.exact = None  # after a rewind: the variables' values there (a run then needs no fresh evaluation)
        self.evaluated_at = None  # the step whose point was evaluated afresh (until a chunk is taken from it)
        self._primed, self._plan = False, None
        self._spacing = 0  # steps between kept snapshots (doubles as a run grows)
        self._kept, self._last_kept = 0, 0  # snapshots kept, the step of the last
        self._sized, self._most = None, MOST_SNAPSHOTS  # the Calls whose snapshots' size set _most: at most this many

    def run_begins(self, primed, plan):
        self._primed, self._plan = primed, plan

    def run_ends(self, engine):
        """A run after a rewind followed the cut branch's eta schedule: the schedule was its own."""
        if self.planned:
            engine.eta_plan, self.planned = None, False

    def taken(self, start, count, eta, mode, saved, calls, stride=1):
        """A chunk from `start` of `count` steps was kept in the history. Chunks without a snapshot
        join the one before when they ran alike: the list stays short however long the run."""
        if not count:
            return
        self.evaluated_at = None
        self.cut(start)
        keep = not self.segments or self._primed or start - self._last_kept >= self._spacing
        last = self.segments[-1] if self.segments else None
        if (not keep and (last.eta, last.mode, last.calls, last.stride, last.plan) == (eta, mode, calls, stride, self._plan)
                and last.start + last.count == start and last.count % stride == 0):
            last.count += count
        else:
            self.segments.append(Segment(start, count, eta, mode, calls, self._primed, saved if keep else None, stride,
                                         self._plan))
        self._primed = False
        if keep:
            self._last_kept, self._kept = start, self._kept + 1
            if calls is not self._sized:  # (a snapshot's size: once per optimizer)
                self._sized = calls
                self._most = max(FEWEST_SNAPSHOTS, min(MOST_SNAPSHOTS, SNAPSHOT_BYTES // max(_nbytes(saved), 1)))
            while self._kept > self._most:  # (each pass keeps half as many: it ends)
                self._thin(self._most)

    def _thin(self, most):
        """Every other snapshot dropped (the first kept), and they are taken half as often from now on."""
        kept = [s for s in self.segments if s.saved is not None]
        self._spacing = max(2 * self._spacing, 1, kept[-1].start // most + 1)
        last = kept[0].start
        for s in kept[1:]:
            if s.start - last < self._spacing:
                s.saved = None
            else:
                last = s.start
        self._counted()

    def _counted(self):
        kept = [s.start for s in self.segments if s.saved is not None]
        self._kept, self._last_kept = len(kept), (kept[-1] if kept else 0)

    def cut(self, step):
        """Forget the chunks from `step` on (a run that went back to it: keep_best.py, a rewind)."""
        if not self.segments or self.segments[-1].start + self.segments[-1].count <= step:
            return
        while self.segments and self.segments[-1].start >= step:
            self.segments.pop()
        if self.segments and self.segments[-1].start + self.segments[-1].count > step:
            self.segments[-1].count = step - self.segments[-1].start
        self._counted()

    def follow(self, step, mode, n, history_stride):
        """(mode, steps, stride) for the next chunk: the cut branch's mode where it ran from `step`."""
        while self.future and self.future[0].start + self.future[0].count <= step:
            self.future.pop(0)
        if not self.future or self.future[0].start > step:
            return None
        seg = self.future[0]
        n = min(n, seg.start + seg.count - step)
        if seg.mode != "blocks":
            return seg.mode, n, 1
        # (its rows where the cut branch had them: off its grid, a chunk up to the grid's next row first)
        off = (step - seg.start) % seg.stride
        return seg.mode, (min(n, seg.stride - off) if off else n), (seg.stride - off if off else seg.stride)

    def primed_at(self, step):
        """Did the cut branch begin a run at `step` (its point evaluated afresh there)?"""
        return any(s.start == step and s.primed for s in self.future)

    def primed_again(self):
        """The next chunk kept starts where its point was evaluated afresh, as a run's first does."""
        self._primed = True

    def eta_at(self, step):
        """The eta the step from `step` ran with, or None (not taken yet)."""
        return next((s.eta for s in self.segments if s.start <= step < s.start + s.count), None)


def _stride(mode, n, history_stride=1):
    return max(history_stride, -(-n // ROW_CAPACITY)) if mode == "blocks" else 1


class Rewinding:
    """Mixed into the engine (descent/engine.py): `rewind(k)` and what it records."""

    @property
    def branches(self):
        """[(step, branch number)]: where each branch of the history begins (0: the first run)."""
        return list(self.timeline.branches)

    def rewind(self, k):
        """Back to the point after step k, exactly as it was (variables, optimizer state, batches,
        eta), as a new branch: the history is cut at k and says where it branched. Raises
        RewindRefused (nothing changed) when it cannot."""
        if self.retired:
            raise Retired(self.loss_label)
        if self.status == Status.RUNNING:
            raise RewindRefused(Refusal.WHILE_RUNNING)
        if self.one_way:
            raise RewindRefused(Refusal.ONE_WAY)
        if isinstance(k, bool) or not isinstance(k, int) and not (hasattr(k, "__index__")):
            raise RewindRefused(Refusal.OUT_OF_RANGE, k, self.steps)
        k = int(k)
        if k > self.steps and self.status in ESCAPED and k <= self.steps + 1:
            raise RewindRefused(Refusal.PAST_DIVERGENCE, k, self.steps)
        if not 0 <= k <= self.steps:
            raise RewindRefused(Refusal.OUT_OF_RANGE, k, self.steps)
        segments = [s for s in self.timeline.segments if s.start < max(k, 1)]
        base = next((i for i in range(len(segments) - 1, -1, -1) if segments[i].saved is not None
                     and segments[i].start <= k), None)
        if base is None:  # (no step taken since the start: nothing to go back to)
            return
        switched = next((s.start for s in segments[base:] if s.calls is not self._calls), None)
        if switched is not None or segments[base].calls is not self._calls:
            later = [s.start for s in self.timeline.segments if s.calls is self._calls]
            raise RewindRefused(Refusal.OPTIMIZER_CHANGED, k, later[0] if later else self.steps)
        before = self._calls.save()
        eta_before = self._eta
        try:
            self._replay(segments[base:], k)
            recorded = self._recorded_loss(k, before)
            # (within rounding: a chunk of another compiled mode may have evaluated that point's loss)
            scale = abs(self._calls.start_loss or 1.0)  # (near a minimum a loss may be all rounding)
            if recorded is not None and not math.isclose(recorded, self._calls.point[0], rel_tol=REPEATS_WITHIN,
                                                         abs_tol=REPEATS_WITHIN * scale):
                raise RewindRefused(Refusal.NOT_REPEATABLE, k)
        except BaseException:
            self._calls.snapshot = before
            self._calls.restore()
            self.optimizer.learning_rate = eta_before
            raise
        self._branch_at(k)

    def _replay(self, segments, k):
        """From the first segment's snapshot, its steps and the next ones' up to step k, as they ran."""
        calls = self._calls
        values, calls.state, calls.point = segments[0].saved
        for v, s in zip(calls.live, values):
            v.assign(s)
        for i, seg in enumerate(segments):
            n = min(seg.count, k - seg.start)
            if n <= 0:
                break
            if i and seg.primed:  # (its run began there: as _begin did)
                self._evaluate_point()
            self.optimizer.learning_rate = seg.eta
            cap = ROW_CAPACITY if seg.mode in ("plain", "xla") else n  # (a row per step: chunks joined, in pieces)
            for piece in [cap] * (n // cap) + [n % cap] * bool(n % cap):
                calls.save()
                _, count, *_ = calls.call(seg.mode, piece, _stride(seg.mode, piece))
                if count != piece:
                    raise RewindRefused(Refusal.NOT_REPEATABLE, k)

    def _recorded_loss(self, k, before):
        """The loss the history (or, at the last step, the point) recorded after k steps."""
        h = self._history.as_dict()
        if k == self.steps:
            return before[2][0]
        at = int(np.searchsorted(h["step"], k))
        return h["loss"][at] if at < len(h["step"]) and h["step"][at] == k else None

    def _branch_at(self, k):
        t = self.timeline
        eta = t.eta_at(k)
        at = next((s for s in reversed(t.segments) if s.start <= k), None)
        if at is not None and at.plan is not None and self.eta_plan is None:  # (the schedule goes on from k)
            self.eta_plan, t.planned = at.plan, True
        t.future = [s for s in t.segments if s.start + s.count > k]
        if t.future and t.future[0].start < k:  # (a copy: the cut below shortens the chunk k is in)
            head = t.future[0]
            t.future[0] = Segment(head.start, head.count, head.eta, head.mode, head.calls, False, None, head.stride)
        t.cut(k)
        t.count += 1
        t.branches = [b for b in t.branches if b[0] < k] + [(k, t.count)]
        self._history.cut(k)
        self._history.branches = t.branches
        self.steps = k
        self._eta = self._eta if eta is None else eta
        self.optimizer.learning_rate = self._eta
        self.kept.clear()
        self._bad_point, self.error = None, None
        with self.tf.device(self.device):
            t.exact = [self.tf.identity(v) for v in self.variables.values()]
        self._finish(Status.PAUSED)

    def _evaluate_point(self):
        """The current point evaluated afresh (a run's start), on the batch it was judged on."""
        if self._stream and self._calls.point is not None:
            self._stream.rewind()  # a run goes on: its point is evaluated again on the same batch
        self._calls.prime()
        self.timeline.evaluated_at = self.steps

    def _evaluate_as_the_cut_branch_did(self):
        """A rewound branch where the cut one began a run: that run evaluated its point afresh."""
        if self.timeline.primed_at(self.steps) and self.timeline.evaluated_at != self.steps:
            self._evaluate_point()
            self.timeline.primed_again()

    def _point_is_exact(self):
        """After a rewind, are the variables still where it put them (a run then goes on with the
        carried gradients, as the original step did)? Asked once, by the next run."""
        exact, self.timeline.exact = self.timeline.exact, None
        if exact is None:
            return False
        tf = self.tf
        return all(bool(tf.reduce_all(tf.equal(v, e))) for v, e in zip(self.variables.values(), exact))
