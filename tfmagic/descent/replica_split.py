"""Can the cell's loss be split over a strategy's replicas (replicas.py)? Checked at set-up.

Each replica computes the loss on its slice of the batch and the strategy sums what
they give. That is the one-device loss (and gradient) when the loss is a mean over
samples (each replica's scaled by its slice's share) or a sum over them (unscaled),
not for a root mean square, a max, batch statistics or a term added to a sum. So on
the first batch the replicas' combined loss and gradient, both ways, are compared
with one device's: the form that agrees is used, and a loss that agrees with neither
is refused, saying why. A loss with randomness in it (dropout) differs from itself
between evaluations; that spread, measured, widens the tolerance.
"""

import numpy as np

from tfmagic.descent.replicas import FORMS, masked, quiet_tf_logs
from tfmagic.errors import LossError

TOLERANCE = 1e-4  # relative: float32 sums over slices and over the whole batch differ by ~1e-6


def _flat(tf, grads, variables):
    return np.concatenate([np.ravel(tf.zeros_like(v) if g is None else g) for g, v in zip(grads, variables)] or [[]])


def _combined(tf, replicas, batch, variables):
    """form -> (loss, flat gradient) the replicas give on `batch`, and the scale of their
    gradients (the sum of each one's norm, weighted as the mean form weighs it)."""
    strategy = replicas.strategy

    def replica(batch):
        part, rows, size = replicas.sliced(batch)
        share = tf.cast(rows, tf.float32) / tf.cast(size, tf.float32)
        with tf.GradientTape() as tape:
            loss = tf.cast(replicas.replica_loss(part), tf.float32)
        loss, grads = masked(tf, rows, loss, tape.gradient(loss, variables), variables)
        norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(g)) for g in grads]))
        return share * loss, loss, [share * g for g in grads], grads, share * norm

    out = replicas.run(replica, batch)
    total = [strategy.reduce("SUM", part, axis=None) for part in tf.nest.flatten(out)]
    k = len(variables)
    mean_loss, sum_loss, rest = total[0], total[1], total[2:]
    mean_grads, sum_grads, scale = rest[:k], rest[k:2 * k], float(rest[2 * k])
    by_share = {True: (float(mean_loss), _flat(tf, mean_grads, variables)),
                False: (float(sum_loss), _flat(tf, sum_grads, variables))}
    return {form: tuple(x * (factor or replicas.count) for x in by_share[share])
            for form, (share, factor) in FORMS.items()}, scale


def _one_device(tf, replicas, batch, variables):
    """(loss, flat gradient) of the whole batch on one device."""
    with tf.GradientTape() as tape:
        loss = tf.cast(replicas.replica_loss(batch), tf.float32)
    return float(loss), _flat(tf, tape.gradient(loss, variables), variables)


def _error(got, want, scale):
    """How far (loss, flat gradient) `got` is from `want`, relative to their size: (loss's, gradient's)."""
    (loss, grad), (loss1, grad1) = got, want
    loss_error = abs(loss - loss1) / max(abs(loss), abs(loss1), 1e-30)
    grad_error = np.linalg.norm(grad - grad1) / max(np.linalg.norm(grad1), scale, 1e-30)
    return loss_error, grad_error


def _perturbed(tf, variables):
    """Move the variables to a nearby point (a term such as w.w vanishes at w = 0); returns their values before."""
    rng = np.random.default_rng(0)
    before = [tf.identity(v) for v in variables]
    for v, b in zip(variables, before):
        size = 0.5 * float(tf.sqrt(tf.reduce_mean(tf.square(tf.cast(b, tf.float32))))) + 0.1
        v.assign(b + tf.cast(size * rng.standard_normal(v.shape), v.dtype))
    return before


def _compared(tf, replicas, parts, variables):
    """form -> its largest (loss, gradient) error over the parts, at the start and near it;
    the loss's own spread (0 unless random); the first comparison, for the message."""
    errors, slack, first, before = {form: [0.0, 0.0] for form in FORMS}, None, None, None
    try:
        for point in ("start", "near"):
            if point == "near":
                before = _perturbed(tf, variables)
            for part in parts:  # (split unevenly too; a row a replica weighs a term without samples most)
                want = _one_device(tf, replicas, part, variables)
                if not (np.isfinite(want[0]) and np.isfinite(want[1]).all()):
                    continue  # (a point outside the loss's domain says nothing)
                combined, scale = _combined(tf, replicas, part, variables)
                first = first or (want, combined, scale)
                if slack is None:  # (the loss differs from itself if it is random, e.g. dropout)
                    slack = _error(_one_device(tf, replicas, part, variables), want, scale)
                for form in FORMS:
                    errors[form] = [max(a, b) for a, b in zip(errors[form], _error(combined[form], want, scale))]
    finally:
        for v, b in zip(variables, before or ()):
            v.assign(b)
    return errors, slack, first


def choose_form(tf, replicas, batch, variables, label):
    """Set replicas.form to the way the replicas' losses make the one-device loss on `batch`,
    on it less a row (split unevenly) and on a row a replica (where a term that does not
    depend on the batch weighs most), at the start and at a point near it; LossError if
    no way does."""
    if replicas.count == 1:
        return  # (nothing is split)
    size = int(next(iter(batch.values())).shape[0]) if batch else 0  # (no data: the whole loss on each replica)
    parts = [batch] + [{name: t[:k] for name, t in batch.items()} for k in {size - 1, replicas.count} if 0 < k < size]
    with quiet_tf_logs(tf):
        errors, slack, first = _compared(tf, replicas, parts, variables)
    fits = [f for f in FORMS if all(e <= TOLERANCE + 3 * s for e, s in zip(errors[f], slack or (0.0, 0.0)))]
    if fits or first is None:
        replicas.form = min(fits, key=lambda f: sum(errors[f])) if fits else "mean"
        return
    want, combined, _ = first
    how = ("Each replica computes it on its slice of the batch, and the slices' losses are added up, weighted by "
           "their sizes (or not): that is the loss of the whole batch only for a mean (or a sum) over its samples."
           if batch else "Each replica computes the whole loss, and a Keras loss divides itself by the number of "
                         "replicas under a strategy, so a term added to it is not divided alike.")
    raise LossError(
        f"--strategy: the loss ({label}) cannot be split over the {replicas.count} replicas. {how} On the first batch "
        f"one device computes {want[0]:.6g}, the replicas {combined['mean'][0]:.6g} (as a sum {combined['sum'][0]:.6g}); "
        f"their gradients differ by {errors['mean'][1]:.1%} or more.",
        hint="write the loss as a mean over samples, e.g. tf.reduce_mean(tf.square(pred - Y)) (for a root mean "
             "square, minimise the mean square: the same minimum); a max, batch statistics (batch normalisation), "
             "a term added to a sum or to a Keras loss do not split. Or run without --strategy.",
    )
