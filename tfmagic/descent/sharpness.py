"""--sharpness K: λ, the largest eigenvalue of the loss's Hessian, every K steps.

Plain gradient descent is stable along a direction of curvature h only while eta·h < 2, so
a run whose λ rises past 2/eta goes unstable ("edge of stability", Cohen et al. 2021).
λ is found by Lanczos iteration on Hessian-vector products (two nested tapes, as
curvature.py; the Hessian is never formed): it gives the largest *algebraic* eigenvalue, also
where the largest in magnitude is negative (a saddle, a maximum: λ then is small or negative,
the one 2/eta is about). Each measurement starts from the last one's eigenvector, so one to
three products suffice. Only the product is compiled (tf.function, traced once per engine and
kept for re-runs); the iteration is numpy's, in float64: tracing a whole Lanczos loop took
~2x longer (0.13 + 0.04 s against 0.07 + 0.01 s on the examples' MLPs) and each call of it
cost ~0.5 ms more than a product. The loss is the engine's full loss; a --data run's is the
loss on SAMPLES of its rows, fixed (landscape.on_fixed_rows), as Cohen et al. measure on a
fixed subset: a product on all 1 437 rows of the digits cost ~20 of its steps. Measured
between chunks: the compiled loop keeps a copy of the variables at each multiple of K inside a chunk
(marks.py); a loop that cannot ends its chunk there (Observer.every).
"""

import contextlib
import hashlib

import numpy as np

from tfmagic.cell import autograph
from tfmagic.descent.callopts import calling_with, lean_options, on_one_cpu, single_threaded_pays
from tfmagic.descent.landscape import on_fixed_rows
from tfmagic.descent.marks import kept_marks
from tfmagic.descent.observers import Observer
from tfmagic.runtime.tfimport import quiet_native_stderr

COLD_MOST, COLD_LEAST = 60, 8  # Lanczos steps from a random start: at most, at least (or the dimension)
WARM_MOST, WARM_LEAST = 12, 1  # ... from the last eigenvector (one product: its residual says if it still is one)
COLD_TOL, WARM_TOL = 1e-3, 3e-2  # stop once the residual β·|y_k| is below TOL·|θ| (θ's error is ~ its square/gap:
# along the examples' runs, warm λ at 3e-2 were within 0.33 % of a cold start's, 0.05 % at 1e-2, for 0.6 products more)
BASIS_FLOATS = 1 << 24  # the Krylov basis kept (float64, 128 MB): fewer steps for a model of millions of weights
SAMPLES = 512  # a --data run's λ: the loss on this many of its rows, fixed (benchmarks/bench_sharpness.py)
SAMPLED_WARM_TOL = 0.07  # ... its warm measurements' TOL: within 0.4 % (1.2 % at most) of the sample's λ on digits, whose
# own distance to all rows' λ is 3 % (12 %), for 44 products a run instead of 60; at 0.1, 11 % off on a generated net
# (bench_sharpness.py --accuracy, tests/test_sharpness_cost.py)
KNOWN_POINTS = 4  # cold measurements kept by the point they were made at (a re-run of the cell from the same start)
KNOWN_FLOATS = 1 << 22  # ... where the product reads no more values than this (16 MB: hashed at ~1 GB/s)


class Lanczos:
    """λ of `loss_fn` over `variables` at their current values, warm-started by each call."""

    def __init__(self, tf, loss_fn, variables, device=None, seed=0, warm_tol=WARM_TOL):
        self.tf, self.loss_fn, self.variables, self.device = tf, loss_fn, list(variables), device
        self.shapes = [v.shape for v in self.variables]
        self.sizes = [v.shape.num_elements() for v in self.variables]
        self.dim = sum(self.sizes)
        self.basis = max(2, min(COLD_MOST, self.dim, BASIS_FLOATS // max(self.dim, 1)))
        self.warm_tol = warm_tol
        self._start = np.random.default_rng(seed).standard_normal(self.dim)
        self._warm = None  # the last eigenvector (float64), None: start afresh
        self._fn = autograph.function(tf, self._hvp)
        self._product = None  # its concrete function, once traced
        # No Grappler (a first call ~3x quicker). The single-threaded executor (a product ~10 % quicker on the
        # examples' MLPs), traced for it (so a While in the cell runs on it); TensorFlow's default one where
        # it cannot run the product (across devices, or an op it refuses).
        self._single_threaded = single_threaded_pays(self.dim)
        self._options = lean_options(tf, single_threaded=self._single_threaded)
        self._single_threaded &= self._options is not None
        self._known = {}  # digest of the values the product reads -> (λ, eigenvector) of a cold measurement there

    def largest(self, afresh=False):
        """(λ, Lanczos steps taken); λ NaN where the loss or its curvature is not finite.
        `afresh`: as many steps as from a random start (a run's first measurement). A cold measurement
        at a point measured cold before (a re-run of the cell from the same start) is that one's, bit for
        bit what it would measure again (the same start vector, product and values), without a product."""
        if self._warm is None:
            afresh = True
        if afresh:
            most, least, tol = self.basis, min(COLD_LEAST, self.dim), COLD_TOL
        else:
            most, least, tol = min(WARM_MOST, self.basis), min(WARM_LEAST, self.dim), self.warm_tol
        start = self._start if afresh else self._warm  # (a run's first: as a first run's, whatever ran before)
        with self.tf.device(self.device):
            self._traced()
            point = self._point() if afresh else None
            if point in self._known:
                lam, self._warm = self._known[point]
                return lam, 0
            try:
                with calling_with(self._options):
                    lam, steps, self._warm = self._lanczos(start, most, least, tol)
            except self.tf.errors.OpError:
                if not self._single_threaded:
                    raise
                self._on_default_executor()
                with calling_with(self._options):
                    lam, steps, self._warm = self._lanczos(start, most, least, tol)
        if not np.isfinite(lam):
            self._warm = None  # (a NaN vector would stay NaN: start afresh next time)
        elif point is not None:
            self._known = dict(list(self._known.items())[1 - KNOWN_POINTS:] + [(point, (lam, self._warm))])
        return lam, steps

    def _traced(self):
        if self._product is None:
            with quiet_native_stderr(), calling_with(self._options):
                self._product = self._fn.get_concrete_function(self.tf.TensorSpec([self.dim], self.tf.float32))
            if self._single_threaded and not on_one_cpu(self.tf, self._product, self.device):
                self._on_default_executor()

    def _on_default_executor(self):
        """The product traced again for TensorFlow's default executor (a While is lowered for the one it is
        traced under)."""
        self._options, self._single_threaded = lean_options(self.tf, single_threaded=False), False
        self._fn, self._product = autograph.function(self.tf, self._hvp), None
        self._traced()

    def _point(self):
        """A digest of the values of every variable the product reads (None: too many to read for it)."""
        read = self._product.variables
        if sum(v.shape.num_elements() for v in read) > KNOWN_FLOATS:
            return None
        digest = hashlib.blake2b(digest_size=16)
        for v in read:
            digest.update(np.ascontiguousarray(v.numpy()).tobytes())
        return digest.digest()

    def _lanczos(self, start, most, least, tol):
        """Lanczos with full reorthogonalisation from `start`: (θ, steps, the top Ritz vector)."""
        basis = np.empty((most, self.dim))
        alphas, betas = [], []
        q, q_prev, beta = start / np.linalg.norm(start), 0.0, 0.0
        for j in range(most):
            basis[j] = q
            w = self._product(self.tf.constant(q, self.tf.float32)).numpy().astype(np.float64)
            alphas.append(w @ q)
            w -= alphas[-1] * q + beta * q_prev
            for _ in range(2):  # (twice is enough: Kahan)
                w -= basis[:j + 1].T @ (basis[:j + 1] @ w)
            beta = float(np.linalg.norm(w))
            t = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
            if not np.all(np.isfinite(t)) or not np.isfinite(beta):
                return float("nan"), j + 1, None
            values, vectors = np.linalg.eigh(t)
            theta = float(values[-1])
            exhausted = beta <= 1e-6 * abs(theta) + 1e-30  # (the Krylov space holds an eigenvector)
            if exhausted or (j + 1 >= least and beta * abs(vectors[-1, -1]) <= tol * abs(theta)):
                break
            betas.append(beta)
            q_prev, q = q, w / beta
        return theta, j + 1, basis[:j + 1].T @ vectors[:, -1]

    def _hvp(self, flat):
        tf = self.tf
        vectors = [tf.reshape(p, s) for p, s in zip(tf.split(flat, self.sizes), self.shapes)]
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = tf.cast(self.loss_fn(), tf.float32)
            grads = inner.gradient(loss, self.variables)
            directional = tf.add_n([tf.reduce_sum(tf.cast(g, tf.float32) * u)
                                    for g, u in zip(grads, vectors) if g is not None] + [tf.constant(0.0)])
        hessian_vector = outer.gradient(directional, self.variables)
        return tf.concat([tf.reshape(tf.zeros(s) if h is None else tf.cast(h, tf.float32), [-1])
                          for h, s in zip(hessian_vector, self.shapes)], 0)


class Sharpness(Observer):
    """Records λ at every step that is a multiple of `every` (the run's start included):
    `.steps`, `.values` and the eta each ran with, `.etas`. The engine ends its chunks there."""

    def __init__(self, engine, every):
        self.engine, self.every = engine, int(every)
        self.steps, self.values, self.etas = [], [], []
        self.error = None  # what stopped the measurements (the loss has no second derivative): then no more
        self._lanczos = None
        self.products_each = []  # Hessian-vector products each measurement took (the cost)
        self.samples = None  # a --data run's: (rows λ is of, of how many); None: the whole loss
        self.rows = None  # ... and which (sorted indices into its arrays: on_fixed_rows)

    def begin(self, engine, steps):
        self._forget_from(engine.steps)  # (after a Reset or a step back, what came later is gone)
        self._measure(engine)

    def chunk(self, engine, chunk):
        marks = kept_marks(engine)
        if self.every and marks is not None:  # the multiples inside it, as its loop kept them
            first = (chunk.start // self.every + 1) * self.every
            # (closed here, also by an interrupt: the variables go back before anyone else sees them)
            with contextlib.closing(marks.visit(range(first, engine.steps, self.every), self.every)) as at:
                for step in at:
                    self._measure(engine, step)
        self._measure(engine)

    def _forget_from(self, step):
        keep = int(np.searchsorted(self.steps, step))
        del self.steps[keep:], self.values[keep:], self.etas[keep:]

    def _measure(self, engine, step=None):
        step = engine.steps if step is None else step
        if self.error is not None or step % self.every or (self.steps and self.steps[-1] >= step):
            return
        afresh = self._lanczos is None or self._lanczos.device != engine.device  # (Reset on another device)
        if afresh:  # (a re-run of the cell that took over the compiled steps has it traced already)
            loss_fn, self.rows = on_fixed_rows(engine.full_loss_fn, SAMPLES)
            self.samples = None if self.rows is None else (len(self.rows), engine.full_loss_fn.rows)
            key = ("sharpness", engine.device, self.samples)
            if key not in engine.memo:
                engine.memo[key] = Lanczos(engine.tf, loss_fn, engine.variables.values(), engine.device,
                                           warm_tol=WARM_TOL if self.rows is None else SAMPLED_WARM_TOL)
            self._lanczos = engine.memo[key]
        try:
            lam, products = self._lanczos.largest(afresh)
        except Exception as err:  # (no second derivative here: the run goes on without λ)
            self.error, self.every = err, None
            return
        self.products_each.append(products)
        self.steps.append(step)
        self.values.append(lam)
        self.etas.append(float(engine.eta))

    products = property(lambda self: sum(self.products_each), doc="Hessian-vector products taken in all")

    def record(self):
        """step, sharpness (λ) and eta arrays of the measurements up to where the run is now."""
        n = int(np.searchsorted(self.steps, self.engine.steps, side="right"))
        return {"step": np.array(self.steps[:n], np.int64), "sharpness": np.array(self.values[:n], np.float64),
                "eta": np.array(self.etas[:n], np.float64)}

    def column(self, steps):
        """λ at each of the history's `steps` where it was measured, NaN elsewhere."""
        record = self.record()
        out = np.full(len(steps), np.nan, np.float32)
        at = np.searchsorted(steps, record["step"])
        found = at < len(steps)
        found[found] = np.asarray(steps)[at[found]] == record["step"][found]
        out[at[found]] = record["sharpness"][found]
        return out


def watch_sharpness(engine, every):
    """--sharpness K: a Sharpness watching `engine` for its life (the panel's Play and Step are
    measured too); None without K."""
    if not every:
        return None
    watch = Sharpness(engine, every)
    engine.observe(watch)
    return watch
