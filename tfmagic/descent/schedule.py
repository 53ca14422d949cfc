"""A steered run's eta as a Keras LearningRateSchedule: each step's eta as it was
recorded, so a run steered by hand can be repeated with `model.compile`/`fit`."""

import numpy as np

_class = None


def per_step_etas(history):
    """eta of every step 0..last from the history's rows (a long run keeps every k-th
    step: eta changes only between chunks, so each row's eta holds until the next row)."""
    steps, etas = np.asarray(history["step"], np.int64), np.asarray(history["eta"], np.float64)
    if not len(steps):
        return np.zeros(0)
    out = np.full(int(steps[-1]) + 1, np.nan)
    out[steps] = etas
    filled = np.maximum.accumulate(np.where(np.isnan(out), 0, np.arange(len(out))))
    return out[filled]


def plan_at(etas, step):
    """(eta of `step`, steps from it that keep that eta) in a per-step plan; the last eta
    holds after the plan's end."""
    i = min(step, len(etas) - 1)
    later = np.flatnonzero(etas[i:] != etas[i])
    return float(etas[i]), (int(later[0]) if len(later) and step < len(etas) else np.inf)


def steered_schedule(tf, history):
    """A keras LearningRateSchedule giving step i the eta step i ran with (the last one after)."""
    global _class
    if _class is None:
        import keras

        @keras.saving.register_keras_serializable(package="tfmagic")
        class SteeredSchedule(keras.optimizers.schedules.LearningRateSchedule):
            """eta per step, as a %%descend run recorded it."""

            def __init__(self, etas):
                self.etas = [float(e) for e in etas]

            def __call__(self, step):
                table = tf.constant(self.etas, tf.float32)
                return tf.gather(table, tf.minimum(tf.cast(step, tf.int32), len(self.etas) - 1))

            def get_config(self):
                return {"etas": self.etas}

        _class = SteeredSchedule
    etas = per_step_etas(history)
    if not len(etas):
        raise ValueError("the run took no step, so it has no eta to repeat")
    return _class(etas)
