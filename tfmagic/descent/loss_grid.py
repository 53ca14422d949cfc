"""Evaluate the loss at many points (the 1-D curve, the 2-D surface) without
disturbing the run or the user's variables: one graph call sets the variables,
evaluates, restores; a point where the loss fails is a gap (NaN), not an error."""

import time

import numpy as np

from tfmagic.cell import autograph
from tfmagic.runtime.tfimport import quiet_native_stderr


class LossProbe:
    def __init__(self, tf, engine):
        self.tf = tf
        self.engine = engine
        self.loss_fn = engine.full_loss_fn
        self._fn = None

    def _build(self):
        tf = self.tf
        variables = list(self.engine.variables.values())
        loss_fn = self.loss_fn

        def at_points(points):
            saved = [tf.identity(v) for v in variables]
            n = tf.shape(points)[0]

            def at(i, out):
                self._set_point(variables, points[i])
                return i + 1, out.write(i, tf.cast(loss_fn(), tf.float32))

            # (one point at a time: each sets the variables the next one's loss reads)
            _, out = tf.while_loop(lambda i, _: i < n, at, [tf.constant(0), tf.TensorArray(tf.float32, size=n)],
                                   parallel_iterations=1)
            for v, s in zip(variables, saved):
                v.assign(s)
            return out.stack()

        spec = tf.TensorSpec([None, self._point_size(variables)], tf.float32)
        return autograph.function(tf, at_points, input_signature=[spec])

    def _point_size(self, variables):
        return len(variables)

    def _set_point(self, variables, row):
        """Set the variables to one point (inside the graph): here one value per variable."""
        for j, v in enumerate(variables):
            v.assign(self.tf.reshape(self.tf.cast(row[j], v.dtype), v.shape))

    def seconds_per_point(self):
        """What one more point costs, timed at the current values on 1 and 5 points
        after the one trace (a call's fixed cost is paid once per drawing)."""
        here = [[float(v.numpy().reshape(-1)[0]) for v in self.engine.variables.values()]]
        self.losses(here)  # traces

        def timed(n):
            t0 = time.perf_counter()
            self.losses(np.repeat(here, n, axis=0))
            return time.perf_counter() - t0

        one, five = timed(1), timed(5)
        return max((five - one) / 4, five / 50, 1e-9)

    def losses(self, points):
        """Loss at each row of `points` (one column per variable); NaN where it fails.

        The user's variables end as they were whatever happens: a loss that raises
        at some point (a check_numerics, a log of a negative) leaves the graph before
        its own restore, so they are put back here too, and the failing points are
        found by halving the batch and left as gaps."""
        if self._fn is None:
            self._fn = self._build()
        tf, variables = self.tf, list(self.engine.variables.values())
        points = np.asarray(points, np.float32)
        with tf.device(self.engine.device):
            saved = [tf.identity(v) for v in variables]
            try:
                return self._losses(points)
            finally:
                for v, s in zip(variables, saved):
                    v.assign(s)

    def _losses(self, points):
        try:
            with quiet_native_stderr():
                return self._fn(self.tf.constant(points)).numpy()
        except Exception:
            if len(points) == 1:
                return np.full(1, np.nan, np.float32)
            half = len(points) // 2
            return np.concatenate([self._losses(points[:half]), self._losses(points[half:])])

    def curve(self, xs):
        return self.losses(np.asarray(xs, np.float32).reshape(-1, 1))

    def surface(self, xs, ys):
        gx, gy = np.meshgrid(np.asarray(xs, np.float32), np.asarray(ys, np.float32))
        return self.losses(np.stack([gx.ravel(), gy.ravel()], axis=1)).reshape(len(ys), len(xs))


class Sampler:
    """A probe callable and `per_point`, the seconds one more point costs."""

    def __init__(self, fn, per_point):
        self.fn, self.per_point = fn, per_point

    def __call__(self, *args):
        return self.fn(*args)


def loss_grid_for(tf, engine):
    """(curve, surface) samplers where the charts can use them, else None."""
    shapes = [tuple(v.shape) for v in engine.variables.values()]
    if not all(np.prod(s, dtype=int) == 1 for s in shapes) or len(shapes) not in (1, 2):
        return None, None
    if "loss_probe" not in engine.memo:  # (a re-run of the cell has it already traced and timed)
        probe = LossProbe(tf, engine)
        engine.memo["loss_probe"] = probe, probe.seconds_per_point()
    probe, per_point = engine.memo["loss_probe"]
    if len(shapes) == 1:
        return Sampler(probe.curve, per_point), None
    return None, Sampler(probe.surface, per_point)
