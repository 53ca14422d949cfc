"""The loss of a model with many parameters, on a 2-D slice through its start: two
filter-normalised random directions (Li et al. 2018, "Visualizing the Loss Landscape of
Neural Nets"), the loss at start + a·d1 + b·d2 on a grid of (a, b), and a run's path
projected onto the slice. Facts only: numbers, no words, no widgets.

Directions. Each is drawn from N(0, 1) with a seed fixed by the cell (`seed_for`), so the
runs a cell compares, and its re-runs, share them. Filter normalisation: a variable's last
axis is its filters (Keras's kernels are (..., in, out): one output unit, or one conv
filter, a slice along it); each filter of the direction is scaled to the norm of the same
filter of the start. Variables of one dimension (biases, BatchNorm's scale and shift) get
0 in both directions, as the paper's plots do ("ignore biasbn"), when the model has a
variable of 2 dimensions or more; a model of vectors and scalars only (a linear model's
weights) has each variable taken as one filter. A filter of zeros (a layer that starts at
0) has no scale of its own: its direction gets norm 1.

The path: each point's offset from the start, least-squares projected onto (d1, d2), as the
paper projects paths onto its PCA directions; `captured` says how much of the offset lies
in the slice (random directions in many dimensions hold little of it).

A --data run's grid is the loss on SAMPLES of its samples, fixed (drawn once with seed 0), where
it has more: every point on the same data, and 1 681 points within seconds.

The grid is evaluated in one graph call per block of points: the call sets the variables to
each point, evaluates the loss, and puts them back (loss_grid.LossProbe), so the user's
variables end bit for bit as they were.
"""

import zlib

import numpy as np

from tfmagic.descent.loss_grid import LossProbe
from tfmagic.descent.observers import Observer

SPAN = 1.0  # the grid covers a, b in [-SPAN, SPAN], the paper's plots' range
PREVIEW, FINE = 11, 41  # points per axis of the first drawing and of the finished one
BLOCK = PREVIEW * PREVIEW  # points per graph call: the preview is one call
SAMPLES = 1024  # a --data run's landscape: the loss on this many of its samples, fixed (seed 0)


def seed_for(cell, variables):
    """A seed fixed by the cell's code and its variables' shapes, in order (not their names:
    Keras names a re-built model's layers afresh, dense_4 after dense)."""
    key = cell + "|" + ";".join(str(tuple(v.shape)) for v in variables.values())
    return zlib.crc32(key.encode())


def filter_directions(values, seed):
    """Two directions (lists of arrays shaped as `values`), filter-normalised to `values`."""
    rng = np.random.default_rng(seed)
    zero_1d = any(np.ndim(w) >= 2 for w in values)
    return [[_normalised(rng.standard_normal(np.shape(w)), np.asarray(w, np.float64), zero_1d) for w in values]
            for _ in range(2)]


def _normalised(d, w, zero_1d):
    if w.ndim <= 1 and zero_1d:
        return np.zeros(w.shape, np.float32)
    axes = tuple(range(w.ndim - 1)) if w.ndim >= 2 else None  # (each filter; a vector or scalar: as a whole)
    wn = np.sqrt(np.sum(w * w, axis=axes, keepdims=w.ndim >= 2))
    dn = np.sqrt(np.sum(d * d, axis=axes, keepdims=w.ndim >= 2))
    return (d * np.where(wn > 0, wn, 1.0) / np.where(dn > 0, dn, 1.0)).astype(np.float32)


def on_fixed_rows(full_loss_fn, samples):
    """A --data run's loss on `samples` of its rows, fixed (drawn once with seed 0): (that loss,
    the rows, sorted); (full_loss_fn, None) where there are no more rows than that."""
    count = getattr(full_loss_fn, "rows", None)  # (a --data run's arrays: how many rows)
    if not count or count <= samples:
        return full_loss_fn, None
    rows = np.sort(np.random.default_rng(0).choice(count, samples, replace=False))
    return (lambda: full_loss_fn.on_rows(rows)), rows


class _SliceProbe(LossProbe):
    """LossProbe whose points are (a, b): the variables are set to start + a·d1 + b·d2.
    (Not under XLA: its compile took 1.2 s to gain 0.15 s on the 41x41 grid of a 10 000-parameter MLP.)"""

    def __init__(self, tf, engine, start, d1, d2, loss_fn):
        super().__init__(tf, engine)
        self.loss_fn = loss_fn
        with tf.device(engine.device):
            self._parts = [(tf.constant(s), tf.constant(x.astype(s.dtype)), tf.constant(y.astype(s.dtype)))
                           for s, x, y in zip(start, d1, d2)]

    def _point_size(self, variables):
        return 2

    def _set_point(self, variables, row):
        for v, (s, x, y) in zip(variables, self._parts):
            a, b = (self.tf.cast(c, s.dtype) for c in (row[0], row[1]))
            v.assign(self.tf.cast(s + a * x + b * y, v.dtype))


class Landscape:
    """The slice through the variables' values now (the start) of one engine's loss."""

    def __init__(self, tf, engine, seed, span=SPAN):
        self.names = list(engine.variables)
        self.seed, self.span = seed, span
        self.start = [np.array(v.numpy()) for v in engine.variables.values()]  # (in their own dtypes)
        self.d1, self.d2 = filter_directions(self.start, seed)
        self._flat = np.stack([np.concatenate([d.ravel() for d in ds]).astype(np.float64) for ds in (self.d1, self.d2)])
        self._gram = self._flat @ self._flat.T
        loss_fn, rows = on_fixed_rows(engine.full_loss_fn, SAMPLES)
        self.samples = None if rows is None else (SAMPLES, engine.full_loss_fn.rows)  # (of how many); None: the cell's loss
        self._probe = _SliceProbe(tf, engine, self.start, self.d1, self.d2, loss_fn)
        self.engine = engine
        self.paths = []  # one Path per run watched (a --compare series: one per run, in order)
        self.grids, self._partial = {}, {}  # n -> the complete n x n grid; n -> (losses so far, how many)

    @property
    def parameters(self):
        return int(sum(w.size for w in self.start))

    def axis(self, n):
        """The n coordinates of each axis (n odd: the middle one is 0, the start)."""
        return np.linspace(-self.span, self.span, n, dtype=np.float32)

    def losses(self, points):
        """Loss at each (a, b) row of `points`; NaN where it fails; no variable changes. In
        blocks of BLOCK points (the last one padded): one graph call each, a fraction of a second."""
        points = np.asarray(points, np.float32).reshape(-1, 2)
        padded = np.concatenate([points, np.zeros(((-len(points)) % BLOCK, 2), np.float32)])
        out = [self._probe.losses(padded[i:i + BLOCK]) for i in range(0, len(padded), BLOCK)]
        return np.concatenate(out)[:len(points)] if out else np.zeros(0, np.float32)

    def grid(self, n):
        """The n x n grid, whole (computed now where `fill` has not)."""
        while not self.fill(n, n * n):
            pass
        return self.grids[n]

    def fill(self, n, points=BLOCK):
        """Compute up to `points` more points of the n x n grid (row by row: row i is b =
        axis[i], column j is a = axis[j]); True once it is complete (`self.grids[n]`)."""
        z, done = self._partial.get(n, (np.full(n * n, np.nan, np.float32), 0))
        if done < n * n:
            ax = self.axis(n)
            a, b = np.meshgrid(ax, ax)
            todo = slice(done, min(n * n, done + points))
            z[todo] = self.losses(np.stack([a.ravel()[todo], b.ravel()[todo]], axis=1))
            done = todo.stop
            self._partial[n] = z, done
        if done == n * n and n not in self.grids:
            self.grids[n] = z.reshape(n, n)
        return done == n * n

    def project(self, values):
        """(a, b, captured) of a point given as arrays in the variables' order: least squares
        onto (d1, d2); captured = |projection| / |offset| (1 at the start)."""
        offset = np.concatenate([(np.asarray(v, np.float64) - s).ravel() for v, s in zip(values, self.start)])
        a, b = np.linalg.lstsq(self._gram, self._flat @ offset, rcond=None)[0]
        size = float(np.linalg.norm(offset))
        captured = 1.0 if size == 0 else float(np.linalg.norm(self._flat.T @ [a, b]) / size)
        return float(a), float(b), captured

    def zoomed(self, span):
        """The same slice (directions, start, paths) over a, b in [-span, span]."""
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__, span=float(span), grids={}, _partial={})
        return other

    def path_span(self):
        """A round span (1, 2 or 5 times a power of 10) taking in every path with a margin; None
        before any step, or when the paths already fill a fifth of the grid or more."""
        ends = [max(np.max(np.abs(p.a)), np.max(np.abs(p.b))) for p in self.paths if p.steps]
        extent = max(ends, default=0.0)
        if not extent > 0 or extent >= 0.2 * self.span:
            return None
        need = 1.25 * extent
        base = 10.0 ** np.floor(np.log10(need))
        return float(next(m * base for m in (1, 2, 5, 10) if m * base >= need))

    def here(self):
        return self.project([v.numpy() for v in self.engine.variables.values()])


class Path:
    """A run's path on the slice: the step and (a, b) of each point recorded."""

    def __init__(self, label=None):
        self.label = label
        self.steps, self.a, self.b = [], [], []
        self.captured = 1.0  # of the last point

    def add(self, step, point):
        a, b, captured = point
        if self.steps and self.steps[-1] == step:
            self.steps.pop(), self.a.pop(), self.b.pop()
        self.steps.append(int(step)), self.a.append(a), self.b.append(b)
        self.captured = captured


class PathRecorder(Observer):
    """An Observer (observers.py's interface) that adds the point the variables are at to the
    landscape's current path: at each run's begin and after each chunk (a chunk's end: the
    steps inside a chunk are not read back). A run that starts again from step 0 (Reset, or
    the next run of a --compare series) starts a new path."""

    def __init__(self, landscape):
        self.landscape = landscape

    def begin(self, engine, steps):
        paths = self.landscape.paths
        if not paths or engine.steps == 0 or engine.steps < paths[-1].steps[-1]:
            paths.append(Path())
        self._add(engine)

    def chunk(self, engine, chunk):
        if self.landscape.paths:
            self._add(engine)

    def _add(self, engine):
        self.landscape.paths[-1].add(engine.steps, self.landscape.here())

    def end(self, engine):
        if self.landscape.paths:
            self._add(engine)


def wanted(variables):
    """True where the 1-D curve or the 2-D surface cannot show the loss: more than two scalars."""
    return not (all(int(np.prod(v.shape)) == 1 for v in variables.values()) and len(variables) in (1, 2))
