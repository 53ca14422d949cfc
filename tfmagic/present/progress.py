"""Progress of a run as it goes, in text: the bar, a line per epoch, the course's
'iteration: i x: ... y: ...' lines, and the step rate the panel shows too."""

import numpy as np

from tfmagic.descent.history import shown_by_value
from tfmagic.descent.observers import Observer
from tfmagic.descent.status import Status


def epoch_line(row, epochs):
    """'epoch 2/5: loss 0.4312, val_loss 0.5104 (1.2 s)', as Keras's fit prints it."""
    epoch, loss, val, seconds = row
    val_text = "" if np.isnan(val) else f", val_loss {val:.4g}"
    return f"epoch {epoch}/{epochs}: loss {loss:.4g}{val_text} ({seconds:.1f} s)"


RATE_STEPS = 20  # a step rate is shown once measured on this many steps (one gave "299 steps/s") ...
RATE_SECONDS = 0.002  # ... and this long: well above a call's jitter (~0.2 ms)


def rate_text(engine, running):
    """'12,345 steps/s' once the run's rate is measured on enough steps and time; 'compiling'
    while a run has not got that far; '' otherwise (a single step, a short run)."""
    steps, seconds = engine.rate_basis
    if steps >= RATE_STEPS and seconds >= RATE_SECONDS and engine.steps_per_second:
        return f"{engine.steps_per_second:,.0f} steps/s"
    return "compiling" if running and not steps else ""


class TextProgress(Observer):
    """A one-line progress bar, redrawn at most ~5 times a second."""

    def __init__(self, total, stream, interval=0.2):
        import time

        self.total, self.stream, self.interval = total, stream, interval
        self._clock = time.perf_counter
        self._open = False  # a bar line not ended yet
        self._last = 0.0
        self._start = None

    def chunk(self, engine, chunk):
        now = self._clock()
        if self._start is None:
            self._start = now
        if chunk.epochs:  # a --data run: a line per epoch the chunk closed
            self.close()
            for row in chunk.epochs:
                self.stream.write(epoch_line(row, -(-self.total // engine.epoch_steps)) + "\n")
        elif chunk.status == Status.RUNNING and now - self._last < self.interval:
            return
        self._last = now
        done = min(engine.steps, self.total)
        width = 30
        filled = int(width * done / max(self.total, 1))
        if chunk.status != Status.RUNNING and engine.final_loss is not None:
            loss = engine.final_loss  # where the run ended (also when it took no step)
        else:
            loss = chunk.rows["loss"][-1] if len(chunk.rows["loss"]) else float("nan")
        rate = rate_text(engine, chunk.status == Status.RUNNING)
        rate = f" {rate}" if rate else ""
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} loss {loss:.6g} eta {engine.eta:g}{rate}"
        )
        self._open = chunk.status == Status.RUNNING
        if not self._open:
            self.stream.write("\n")
        self.stream.flush()

    def close(self):
        """End the bar's line, so a message after a failed run starts on its own line."""
        if self._open:
            self.stream.write("\n")
            self._open = False


class IterationPrinter(Observer):
    """Prints 'iteration: i x: ... y: ...' every K steps, as the course's loop does.

    The course prints x after its update and y before it; so do we.
    """

    needs_every_step = True  # rows one step apart, so i and "x after" are right

    def __init__(self, every, stream):
        self.every, self.stream = every, stream

    def chunk(self, engine, chunk):
        names = [c for c in engine.columns[3:]]
        after = {n: np.append(chunk.rows[n][1:], _summary(engine.variables[n])) for n in names}
        # a larger variable is shown by its norm, and says so
        shown = {n: n if shown_by_value(engine.variables[n]) else f"|{n}|" for n in names}
        loss_name = engine.loss_label or "y"  # (unnamed: the course's y)
        for j, loss in enumerate(chunk.rows["loss"]):
            i = chunk.start + j
            if i % self.every == 0:
                xs = " ".join(f"{shown[n]}: {after[n][j]:.6g}" for n in names)
                self.stream.write(f"iteration: {i} {xs} {loss_name}: {loss:.6g}\n")


def _summary(var):
    arr = np.asarray(var)
    return float(arr.reshape(())) if shown_by_value(var) else float(np.linalg.norm(arr))
