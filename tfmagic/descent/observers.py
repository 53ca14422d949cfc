"""What watches a run: a declared interface (as Keras's CallbackList and livelossplot's outputs
have) and the engine's collection of them, attached in one place and order-free.

A run's epochs are closed before anyone is told of its chunk (each Chunk carries the epoch rows
it closed), so no observer has to come before another. The learning-rate range test suspends
the run's observers while its own steps run (`suspended`).
"""

from contextlib import contextmanager


class Observer:
    """Override what you need; every method is called on the engine's thread, between chunks."""

    needs_every_step = False  # True: a history row for every step (long XLA chunks would keep every k-th)
    every = None  # K: the point at each multiple of K steps is wanted (kept by the loop, marks.py, or a chunk ends there)

    def begin(self, engine, steps):
        """A run of up to `steps` steps starts."""

    def chunk(self, engine, chunk):
        """A chunk ran (chunk.epochs: the epoch rows it closed); chunk.status is the run's status."""

    def epoch(self, engine, row):
        """An epoch closed: (epoch, mean training loss, validation loss or NaN, seconds)."""

    def end(self, engine):
        """The run ended (engine.status says how), also by an error or an interrupt."""

    def close(self):
        """Taken off for good: end what it shows (a progress line)."""


class Callback(Observer):
    """A bare `callback(engine, chunk)`, as `engine.observe` has always taken."""

    def __init__(self, fn):
        self.fn = fn
        self.needs_every_step = getattr(fn, "needs_every_step", False)

    def chunk(self, engine, chunk):
        self.fn(engine, chunk)

    def close(self):
        getattr(self.fn, "close", lambda: None)()

    def __eq__(self, other):  # (unobserve(fn) finds it; a bound method equals its twin)
        return self.fn == (other.fn if isinstance(other, Callback) else other)

    __hash__ = None


def as_observer(what):
    return what if isinstance(what, Observer) else Callback(what)


class Observers:
    """An engine's observers. `epochs`: a data.EpochLog that closes epochs before the observers
    hear of a chunk (None: not a --data run)."""

    def __init__(self, epochs=None):
        self._all = []
        self.epochs = epochs

    def add(self, observer):
        self._all.append(as_observer(observer))

    def remove(self, observer):
        if observer in self._all:
            self._all.remove(observer)

    def clear(self):
        self._all.clear()

    def __len__(self):
        return len(self._all)

    def __iter__(self):
        return iter(list(self._all))

    def needs_every_step(self):
        return self.epochs is not None or any(o.needs_every_step for o in self._all)

    def steps_to_boundary(self, step):
        """Steps from `step` to the next multiple of an observer's `every` (None: none has one)."""
        gaps = [o.every - step % o.every for o in self._all if getattr(o, "every", None)]
        return min(gaps) if gaps else None

    def begin(self, engine, steps):
        for o in list(self._all):
            o.begin(engine, steps)

    def chunk(self, engine, chunk):
        if self.epochs is not None:
            chunk.epochs = self.epochs.close(engine, chunk)
        for o in list(self._all):
            o.chunk(engine, chunk)
        for row in chunk.epochs:
            for o in list(self._all):
                o.epoch(engine, row)

    def end(self, engine):
        for o in list(self._all):
            o.end(engine)

    @contextmanager
    def attached(self, *observers):
        """`observers` watch the runs inside the block; then they are taken off and closed."""
        added = [as_observer(o) for o in observers if o is not None]
        self._all.extend(added)
        try:
            yield
        finally:
            for o in added:
                self.remove(o)
                o.close()

    @contextmanager
    def suspended(self, *instead):
        """Inside the block only `instead` watch, and no epoch closes (a range test's steps are not
        the run's); afterwards everything is as before, observers attached meanwhile included."""
        kept, epochs = self._all, self.epochs
        self._all, self.epochs = [as_observer(o) for o in instead], None
        try:
            yield
        finally:
            self._all, self.epochs = kept + [o for o in self._all if o not in instead], epochs
