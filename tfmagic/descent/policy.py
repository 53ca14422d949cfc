"""How a run's steps are cut into chunks and which compiled loop runs each: the engine's
chunk policy, with what it learnt running them (kept across resets, taken over by a re-run).

As a person writing it by hand would choose (measured in benchmarks/bench_descent.py): "step",
a compiled single step called from Python (the course's way; its trace is the cheapest, so it
wins for runs of <= STEP_MODE_STEPS); "plain", one tf.function call running K steps in a graph
while loop; "xla", the same loop compiled by XLA, up to ROW_CAPACITY steps a call; "blocks", for
problems so fast that rows cap an XLA chunk: a history row every `stride` steps, the steps
between in an inner loop (~15 ms more to compile). K grows until a chunk takes about
CHUNK_SECONDS, or STEERED_CHUNK_SECONDS for the live panel, whose changes (eta, pause) wait at
most one chunk.
"""

from tfmagic.descent.calls import XLA_MODES
from tfmagic.descent.graphs import ROW_CAPACITY

CHUNK_SECONDS = 0.1  # P3 runs at ~0.93 of a hand-written loop (a call costs ~1-3 ms); Ctrl-C acts within it
STEERED_CHUNK_SECONDS = 0.02  # the live panel's: an eta drag waits at most this (P3 at ~0.85)
RATE_SECONDS = 0.01  # a chunk this long shows the step rate, not its call's fixed cost
MAX_CHUNK_GROWTH = 16
FIRST_CHUNK = 16
REPLICATED_CHUNK = 128  # chunks of a run with replicas double up to this: every worker sizes them alike
STEP_MODE_STEPS = 200  # runs this short: one compiled step per call (cheapest to trace)
XLA_FROM_START_STEPS = 2000  # runs this long start with XLA: its 0.1-0.3 s compile pays back on most problems
XLA_PAYS_AFTER_SECONDS = 0.25  # a plain run switches to XLA when more than this is left
BLOCKS_PAY_AFTER_SECONDS = 0.1  # an XLA run switches to blocks when more than this is left: their ~0.1 s
# of tracing and compiling (P1) is then repaid, as a capped XLA chunk runs ~12x slower than a block chunk
BLOCK_ROWS = 1 << 13  # rows per "blocks" chunk: writing more costs its steady rate (242 vs 185 M steps/s on P1)


class ChunkPolicy:
    """The mode and size of each chunk of a run. `jit`: the user's choice (auto/on/off);
    `one_way`: the steps read a dataset's iterator; `replicated`: the steps run on replicas
    (their chunks grow by steps, not time, so that every worker sizes them alike)."""

    def __init__(self, jit, one_way=False, replicated=False):
        self.jit, self.one_way, self.replicated = jit, one_way, replicated
        self.xla_unusable = False  # XLA cannot compile this cell, or would drop its checks
        self.chunk_steps = {}  # mode -> the last chunk size: the next run starts there
        self.mode, self.k = None, FIRST_CHUNK  # this run's mode and chunk size
        self.forget_rates()

    def forget_rates(self):
        """What was measured about these compiled steps (a new optimizer's are others)."""
        self.xla_verdict = None  # auto: does XLA beat the plain rate here? (None: not tried)
        self.xla_ran = False
        self.plain_rate = 0.0

    def learn_from(self, old):
        """A re-run on `old`'s compiled steps runs as a fresh build would (the modes differ in their
        last bits): what the steps cannot do it finds out alike, and XLA's verdict only counts where a
        fresh build would try XLA; the chunk sizes change no number."""
        self.xla_unusable, self.chunk_steps = old.xla_unusable, old.chunk_steps
        self.xla_verdict, self.xla_ran = old.xla_verdict, old.xla_ran

    def first_mode(self, steps):
        # (A re-run chooses as a fresh build does: the modes differ in their last bits, e.g. oneDNN's
        # kernels in a loop and in a single step; it only finds them compiled already.)
        short = "plain" if self.one_way else "step"  # (a dataset's reads: in a graph loop that keeps rows)
        if self.xla_unusable or self.jit == "off":
            return short if steps <= STEP_MODE_STEPS else "plain"
        if self.jit == "on":
            return "xla"
        if steps <= STEP_MODE_STEPS:
            return short
        if self.jit == "auto" and steps >= XLA_FROM_START_STEPS and self.xla_verdict is not False:
            return "xla"
        return "plain"

    def start(self, steps):
        """A run of `steps` (its chunks' cap) begins."""
        self.mode = self.first_mode(steps)
        self.k = self.chunk_steps.get(self.mode, FIRST_CHUNK)

    def next_chunk(self, limit, history_stride):
        """(mode, steps, stride) of the next chunk, of at most `limit` steps."""
        n = min(self.k, limit)
        if self.mode in ("plain", "xla"):
            n = min(n, ROW_CAPACITY)  # one row per step in the row buffer
        stride = max(history_stride, -(-n // BLOCK_ROWS)) if self.mode == "blocks" else 1
        return self.mode, int(n), stride

    def without_xla(self):
        """XLA cannot run this cell (or would drop its checks): plain loops from now on."""
        self.xla_unusable, self.mode = True, "plain"

    def measured(self, mode, count, seconds, traced):
        """A chunk of `mode` took `count` steps in `seconds`: its rate (None when it says nothing of
        the next chunks': it traced, or ran another mode); the first full XLA chunk keeps XLA only
        if it beats the plain rate."""
        self.xla_ran |= mode in XLA_MODES
        rate = count / max(seconds, 1e-9) if count and not traced and mode == self.mode else None
        if rate and self.mode == "xla" and self.jit == "auto" and self.xla_verdict is None and seconds > RATE_SECONDS:
            self.xla_verdict = rate >= self.plain_rate
            self.mode = "xla" if self.xla_verdict else "plain"
        elif rate and self.mode == "plain":
            self.plain_rate = rate
        return rate

    def plan_next(self, asked, count, seconds, rate, left, chunk_seconds=None, every_step=lambda: False):
        """After a chunk that was `asked` `asked` steps and took `count`: the next chunk's size (by
        its time) and mode, for `left` steps to go. `every_step()`: an observer needs every row."""
        full = rate and count == asked == self.k  # (not capped by the steps left, an epoch or max_chunk)
        if full:
            grow = (chunk_seconds or CHUNK_SECONDS) / max(seconds, 1e-6)
            self.k = min(2 * self.k, REPLICATED_CHUNK) if self.replicated else max(1, int(self.k * min(MAX_CHUNK_GROWTH, grow)))
            self.chunk_steps[self.mode] = self.k
        # (judged on a chunk that shows the rate, or one that is capped: it may never grow)
        if self.mode == "plain" and rate and (seconds > RATE_SECONDS or not full) and self._xla_pays(left, rate):
            self.mode, self.k = "xla", self.chunk_steps.get("xla", max(self.k, FIRST_CHUNK))
        elif self.mode == "xla" and rate and self.k > ROW_CAPACITY and not every_step() \
                and left / max(rate, 1e-9) > BLOCKS_PAY_AFTER_SECONDS:
            # blocks when the row buffer caps XLA chunks and what is left pays for compiling them
            self.mode, self.k = "blocks", self.chunk_steps.get("blocks", self.k)

    def _xla_pays(self, left, rate):
        """XLA for what is left when it is expected to pay for its compile time: the plain loop's
        time still to come (unless XLA was found slower here)."""
        if self.jit != "auto" or self.xla_verdict is False or self.xla_unusable:
            return False
        return (left / rate if rate else 0.0) > XLA_PAYS_AFTER_SECONDS
