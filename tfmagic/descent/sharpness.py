"""--sharpness K: λ, the largest eigenvalue of the loss's Hessian, every K steps.

Plain gradient descent is stable along a direction of curvature h only while eta·h < 2, so
a run whose λ rises past 2/eta goes unstable ("edge of stability", Cohen et al. 2021).
λ is found by Lanczos iteration on Hessian-vector products (two nested tapes, as
curvature.py; the Hessian is never formed), compiled once with tf.function: it gives the
largest *algebraic* eigenvalue, also where the largest in magnitude is negative (a saddle,
a maximum: λ then is small or negative, the one 2/eta is about). Each measurement starts
from the last one's eigenvector, so a few products suffice. The loss is the engine's full
loss (a --data run's: the loss on all its arrays, as the pictures take it). Measured between
chunks: the engine ends a chunk at each multiple of K (Observer.every).
"""

import numpy as np

from tfmagic.cell import autograph
from tfmagic.descent.callopts import calling_with, lean_options
from tfmagic.descent.observers import Observer
from tfmagic.runtime.tfimport import quiet_native_stderr

COLD_MOST, COLD_LEAST = 60, 8  # Lanczos steps from a random start: at most, at least (or the dimension)
WARM_MOST, WARM_LEAST = 12, 2  # ... from the last eigenvector
COLD_TOL, WARM_TOL = 1e-3, 1e-2  # stop once the residual β·|y_k| is below TOL·|θ| (θ's error is ~ its square/gap)
BASIS_FLOATS = 1 << 25  # the Krylov basis kept (128 MB): fewer steps for a model of millions of weights


class Lanczos:
    """λ of `loss_fn` over `variables` at their current values, warm-started by each call."""

    def __init__(self, tf, loss_fn, variables, device=None, seed=0):
        self.tf, self.loss_fn, self.variables, self.device = tf, loss_fn, list(variables), device
        self.shapes = [v.shape for v in self.variables]
        self.sizes = [v.shape.num_elements() for v in self.variables]
        self.dim = sum(self.sizes)
        self.basis = max(2, min(COLD_MOST, self.dim, BASIS_FLOATS // max(self.dim, 1)))
        self._start = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        self._warm = None  # the last eigenvector (a tf.Variable once measured)
        self._fn = autograph.function(tf, self._lanczos)
        # No Grappler (a first call ~3x quicker); not the single-threaded executor (no while loops there).
        self._options = lean_options(tf, single_threaded=False)

    def largest(self, afresh=False):
        """(λ, Lanczos steps taken); λ NaN where the loss or its curvature is not finite.
        `afresh`: as many steps as from a random start (a run's first measurement)."""
        tf = self.tf
        with quiet_native_stderr(), tf.device(self.device):
            if self._warm is None:
                self._warm = tf.Variable(self._start, trainable=False, name="sharpness_vector")
                afresh = True
            if afresh:
                most, least, tol = self.basis, min(COLD_LEAST, self.dim), COLD_TOL
            else:
                most, least, tol = min(WARM_MOST, self.basis), min(WARM_LEAST, self.dim), WARM_TOL
            args = tf.constant(most), tf.constant(least), tf.constant(tol, tf.float64)
            with calling_with(self._options):
                lam, steps = self._fn(*args)
        lam = float(lam)
        if not np.isfinite(lam):
            self._warm = None  # (a NaN vector would stay NaN: start afresh next time)
        return lam, int(steps)

    # -- the compiled iteration ------------------------------------------------
    def _flat(self, tensors):
        tf = self.tf
        return tf.concat([tf.reshape(tf.zeros(s) if t is None else tf.cast(t, tf.float32), [-1])
                          for t, s in zip(tensors, self.shapes)], 0)

    def _hvp(self, flat):
        tf = self.tf
        vectors = [tf.reshape(p, s) for p, s in zip(tf.split(flat, self.sizes), self.shapes)]
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = tf.cast(self.loss_fn(), tf.float32)
            grads = inner.gradient(loss, self.variables)
            directional = tf.add_n([tf.reduce_sum(tf.cast(g, tf.float32) * u)
                                    for g, u in zip(grads, vectors) if g is not None] + [tf.constant(0.0)])
        return self._flat(outer.gradient(directional, self.variables))

    def _lanczos(self, most, least, tol):
        """Lanczos with full reorthogonalisation from the warm vector; the top Ritz pair's
        vector is the next start. Returns (θ, steps)."""
        tf, m = self.tf, self.basis
        q0 = tf.math.l2_normalize(self._warm)
        f64 = tf.float64

        def body(j, q, q_prev, beta_prev, basis, alphas, betas, theta, resid, top):
            basis = tf.tensor_scatter_nd_update(basis, [[j]], q[None])
            w = tf.reshape(self._hvp(q), [self.dim])  # (a py_function's gradient has no static shape)
            alpha = tf.reduce_sum(w * q)
            w = w - alpha * q - beta_prev * q_prev
            for _ in range(2):  # (twice is enough: Kahan)
                w = w - tf.linalg.matvec(basis, tf.linalg.matvec(basis, w), transpose_a=True)
            beta = tf.norm(w)
            alphas = tf.tensor_scatter_nd_update(alphas, [[j]], [tf.cast(alpha, f64)])
            betas = tf.tensor_scatter_nd_update(betas, [[j]], [tf.cast(beta, f64)])
            k = j + 1
            a, b = alphas[:k], betas[:k - 1]
            t = tf.linalg.diag(a) + tf.linalg.diag(b, k=1, num_rows=k, num_cols=k) \
                + tf.linalg.diag(b, k=-1, num_rows=k, num_cols=k)
            values, vectors = tf.linalg.eigh(t)
            theta = values[-1]
            resid = tf.cast(beta, f64) * tf.abs(vectors[-1, -1])
            top = tf.reshape(tf.pad(vectors[:, -1], [[0, m - k]]), [m])
            q_next = tf.where(beta > 0, w / tf.maximum(beta, 1e-30), q)
            return k, q_next, q, beta, basis, alphas, betas, theta, resid, top

        def more(j, q, q_prev, beta_prev, basis, alphas, betas, theta, resid, top):
            exhausted = tf.logical_and(j > 0, beta_prev <= 1e-6 * tf.cast(tf.abs(theta), tf.float32) + 1e-30)
            unsure = tf.logical_or(j < least, resid > tol * tf.abs(theta))
            return tf.logical_and(tf.logical_and(j < most, tf.logical_not(exhausted)), unsure)

        zeros = tf.zeros([self.dim])
        start = (tf.constant(0), q0, zeros, tf.constant(0.0), tf.zeros([m, self.dim]), tf.zeros([m], f64),
                 tf.zeros([m], f64), tf.constant(0.0, f64), tf.constant(np.inf, f64), tf.zeros([m], f64))
        j, _, _, _, basis, _, _, theta, _, top = tf.while_loop(more, body, start)
        self._warm.assign(tf.math.l2_normalize(tf.linalg.matvec(basis, tf.cast(top, tf.float32), transpose_a=True)))
        return theta, j


class Sharpness(Observer):
    """Records λ at every step that is a multiple of `every` (the run's start included):
    `.steps`, `.values` and the eta each ran with, `.etas`. The engine ends its chunks there."""

    def __init__(self, engine, every):
        self.engine, self.every = engine, int(every)
        self.steps, self.values, self.etas = [], [], []
        self.error = None  # what stopped the measurements (the loss has no second derivative): then no more
        self._lanczos = None
        self.products = 0  # Hessian-vector products taken (the cost)

    def begin(self, engine, steps):
        self._forget_from(engine.steps)  # (after a Reset or a step back, what came later is gone)
        self._measure(engine)

    def chunk(self, engine, chunk):
        self._measure(engine)

    def _forget_from(self, step):
        keep = int(np.searchsorted(self.steps, step))
        del self.steps[keep:], self.values[keep:], self.etas[keep:]

    def _measure(self, engine):
        step = engine.steps
        if self.error is not None or step % self.every or (self.steps and self.steps[-1] >= step):
            return
        afresh = self._lanczos is None or self._lanczos.device != engine.device  # (Reset on another device)
        if afresh:  # (a re-run of the cell that took over the compiled steps has it traced already)
            key = ("sharpness", engine.device)
            if key not in engine.memo:
                engine.memo[key] = Lanczos(engine.tf, engine.full_loss_fn, engine.variables.values(), engine.device)
            self._lanczos = engine.memo[key]
        try:
            lam, products = self._lanczos.largest(afresh)
        except Exception as err:  # (no second derivative here: the run goes on without λ)
            self.error, self.every = err, None
            return
        self.products += products
        self.steps.append(step)
        self.values.append(lam)
        self.etas.append(float(engine.eta))

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
