"""The largest curvature of the loss at a point, and the eta it allows.

Plain gradient descent on a quadratic with largest Hessian eigenvalue λ
diverges for eta > 2/λ. We estimate λ by power iteration on Hessian-vector
products (two nested tapes), never forming the Hessian.
"""

import numpy as np

from tfmagic.cell import autograph
from tfmagic.runtime.tfimport import quiet_native_stderr, quiet_retracing


def at_initial_values(engine):
    """λ at the engine's initial values (None if not positive or not differentiable
    twice); the variables end where they were."""
    return at_values(engine, engine.initial_values())


def at_values(engine, values):
    """λ at `values` (name -> value, e.g. where a run ended; None if not positive or not
    differentiable twice); the variables end where they were."""
    tf, variables = engine.tf, list(engine.variables.values())
    now = [tf.identity(v) for v in variables]
    try:
        for name, var in engine.variables.items():
            var.assign(tf.reshape(tf.cast(values[name], var.dtype), var.shape))
        with quiet_native_stderr(), tf.device(engine.device):
            return largest_curvature(tf, engine.full_loss_fn, variables)
    except Exception:  # a loss without second derivatives: no suggestion
        return None
    finally:
        for var, value in zip(variables, now):
            var.assign(value)


def largest_curvature(tf, loss_fn, variables, iterations=30, seed=0):
    """λ, the dominant Hessian eigenvalue at the current values (None if not positive)."""
    variables = list(variables)
    rng = np.random.default_rng(seed)
    start = [tf.constant(rng.standard_normal(v.shape).astype(np.float32)) for v in variables]

    def hvp(vectors):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = tf.cast(loss_fn(), tf.float32)
            grads = inner.gradient(loss, variables)
            grads = [tf.zeros_like(v) if g is None else tf.cast(g, tf.float32) for g, v in zip(grads, variables)]
            directional = tf.add_n([tf.reduce_sum(g * u) for g, u in zip(grads, vectors)])
        out = outer.gradient(directional, variables)
        return [tf.zeros_like(v) if h is None else tf.cast(h, tf.float32) for h, v in zip(out, variables)]

    def norm(vectors):
        return tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(u)) for u in vectors]))

    def iterate(i, lam, vectors):
        hv = hvp(vectors)
        lam = tf.add_n([tf.reduce_sum(h * u) for h, u in zip(hv, vectors)])
        n = norm(hv)
        return i + 1, lam, [tf.where(n > 0, h / n, u) for h, u in zip(hv, vectors)]

    def power(vectors):
        n = norm(vectors)
        vectors = [u / n for u in vectors]
        return tf.while_loop(lambda i, *_: i < iterations, iterate, [tf.constant(0), tf.constant(0.0), vectors])[1]

    with quiet_retracing():  # (a new function each call, on purpose: TensorFlow's hint is not the user's)
        lam = float(autograph.function(tf, power)(start))
    return lam if np.isfinite(lam) and lam > 0 else None
