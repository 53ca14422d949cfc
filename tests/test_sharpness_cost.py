"""What --sharpness K spends on λ, and that λ stays true where it spends less: a re-run of the cell
from the same start takes its first λ over (the same number, no product) and measures afresh where
anything the loss reads changed; a --data run's λ of its fixed rows within 3 % of their exact one at
every mark; the product on the single-threaded executor, also through a loss with a loop or a branch."""

import numpy as np
import pytest
import tensorflow as tf

from tfmagic.descent import sharpness

QUADRATIC = "loss = 0.5 * tf.reduce_sum(x * tf.linalg.matvec(A, x)) + tf.reduce_sum(b * x)"
NETWORK = "loss = tf.reduce_mean((tf.linalg.matvec(tf.tanh(tf.matmul(X, W) + c), v) - Y) ** 2)"


def exact_top(loss_of, start):
    """The largest eigenvalue of the Hessian of loss_of(*variables) at `start`, in float64."""
    variables = [tf.Variable(np.asarray(a, np.float64)) for a in start]
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            loss = loss_of(*variables)
        grad = tf.concat([tf.reshape(g, [-1]) for g in inner.gradient(loss, variables)], 0)
    blocks = outer.jacobian(grad, variables)
    hessian = np.concatenate([tf.reshape(b, (grad.shape[0], -1)).numpy() for b in blocks], 1)
    return np.linalg.eigvalsh(hessian).max()


def network(rng, n, features, hidden):
    X = (rng.standard_normal((n, features)) * np.exp(rng.normal(0, 0.7, (n, 1)))).astype(np.float32)
    Y = np.tanh(X @ rng.standard_normal(features)).astype(np.float32)
    start = (rng.normal(0, 1, (features, hidden)).astype(np.float32), rng.normal(0, 0.5, hidden).astype(np.float32),
             rng.normal(0, 1, hidden).astype(np.float32))
    return X, Y, start


def network_top(X, Y, start):
    x, y = tf.constant(X.astype(np.float64)), tf.constant(Y.astype(np.float64))
    return exact_top(lambda W, c, v: tf.reduce_mean((tf.linalg.matvec(tf.tanh(x @ W + c), v) - y) ** 2), start)


@pytest.mark.parametrize("seed,features,hidden", [(0, 2, 3), (1, 4, 5), (2, 3, 8)])
def test_a_rerun_from_the_same_start_takes_its_first_lambda_over_and_measures_afresh_elsewhere(ip, run, seed,
                                                                                              features, hidden):
    rng = np.random.default_rng(seed)
    X, Y, start = network(rng, 200, features, hidden)
    other = tuple((a + rng.normal(0, 0.5, a.shape)).astype(np.float32) for a in start)
    ip.user_ns.update(X=X, Y=Y, W0=start[0], c0=start[1], v0=start[2], W1=other[0], c1=other[1], v1=other[2], np=np)
    line = "--steps 200 --sharpness 50 --no-widgets"
    first = run("descend", f"W=W0 c=c0 v=v0 --eta 0.01 {line}", NETWORK)
    again = run("descend", f"W=W0 c=c0 v=v0 --eta 0.03 {line}", NETWORK)  # (eta changed, the same start)
    assert again.engine.reused and first.sharpness_log.products_each[0] > 0
    assert again.sharpness_log.products_each[0] == 0
    assert again.sharpness["sharpness"][0] == first.sharpness["sharpness"][0]
    assert first.sharpness["sharpness"][0] == pytest.approx(network_top(X, Y, start), rel=0.01)
    moved = run("descend", f"W=W1 c=c1 v=v1 --eta 0.01 {line}", NETWORK)  # (another start: measured there)
    assert moved.engine.reused and moved.sharpness_log.products_each[0] > 0
    assert moved.sharpness["sharpness"][0] == pytest.approx(network_top(X, Y, other), rel=0.01)
    back = run("descend", f"W=W0 c=c0 v=v0 --eta 0.02 {line}", NETWORK)  # (the first start again: still known)
    assert back.sharpness_log.products_each[0] == 0 and back.sharpness["sharpness"][0] == first.sharpness["sharpness"][0]


@pytest.mark.parametrize("seed,n", [(3, 4), (4, 9), (5, 25)])
def test_a_rerun_whose_loss_reads_a_changed_variable_measures_it_again(ip, run, seed, n):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = ((q * rng.uniform(0.5, 9, n)) @ q.T).astype(np.float32)
    scale = tf.Variable(1.0)  # (read by the loss, not trained: the same start, another Hessian)
    ip.user_ns.update(A=a, b=np.zeros(n, np.float32), np=np, scale=scale)
    cell = "loss = scale * (" + QUADRATIC.split("= ", 1)[1] + ")"
    line = f"x=np.ones({n},'float32') --eta 1e-4 --steps 20 --sharpness 10 --no-widgets"
    exact = np.linalg.eigvalsh(a.astype(np.float64)).max()
    for factor in (1.0, 3.0, 0.5, 1.0):
        scale.assign(factor)
        res = run("descend", line, cell)
        assert res.sharpness["sharpness"] == pytest.approx(np.full(3, factor * exact), rel=0.01)
    assert res.engine.reused and res.sharpness_log.products_each[0] == 0  # (1.0 again: known)


@pytest.mark.parametrize("seed,n,features,hidden,every", [(6, 700, 3, 4, 20), (7, 1300, 2, 6, 25), (8, 900, 5, 3, 40)])
def test_a_data_runs_lambda_is_within_3_percent_of_its_rows_exact_one_at_every_mark(ip, run, monkeypatch, seed, n,
                                                                                   features, hidden, every):
    rng = np.random.default_rng(seed)
    X, Y, start = network(rng, n, features, hidden)
    ip.user_ns.update(X=X, Y=Y, W0=start[0], c0=start[1], v0=start[2], np=np)
    seen = []  # the values each λ was measured at (a copy the loop kept, or where the run is)
    measure = sharpness.Sharpness._measure

    def measuring(self, engine, step=None):
        values, before = [v.numpy() for v in engine.variables.values()], len(self.values)
        measure(self, engine, step)
        if len(self.values) > before:
            seen.append(values)

    monkeypatch.setattr(sharpness.Sharpness, "_measure", measuring)
    res = run("descend", f"W=W0 c=c0 v=v0 --data X,Y --batch-size 32 --optimizer adam --eta 0.05 --steps 200 "
                         f"--sharpness {every} --seed 0 --no-widgets", NETWORK)
    rows = res.sharpness_log.rows
    assert len(rows) == sharpness.SAMPLES and list(res.sharpness["step"]) == list(range(0, 201, every))
    assert len(seen) == len(res.sharpness["step"])
    exact = [network_top(X[rows], Y[rows], values) for values in seen]
    np.testing.assert_allclose(res.sharpness["sharpness"], exact, rtol=0.03)


LOOPING = """s = tf.constant(0.0)
for k in tf.range(3):
    s += tf.reduce_sum(tf.sin(x * tf.cast(k + 1, tf.float32)) ** 2)
loss = s + (tf.reduce_sum(x ** 4) if tf.reduce_sum(x) > 100.0 else 0.5 * tf.reduce_sum(x ** 2))"""


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_loss_with_a_loop_and_a_branch_is_measured_on_the_single_threaded_executor(ip, run, seed):
    start = np.random.default_rng(seed).uniform(-1, 1, 4).astype(np.float32)
    ip.user_ns.update(x0=start, np=np)
    res = run("descend", "x=x0 --eta 1e-6 --steps 4 --sharpness 2 --no-widgets", LOOPING)

    def loss_of(x):
        return tf.add_n([tf.reduce_sum(tf.sin(x * (k + 1.0)) ** 2) for k in range(3)]) + 0.5 * tf.reduce_sum(x ** 2)

    assert res.sharpness["sharpness"] == pytest.approx(np.full(3, exact_top(loss_of, [start])), rel=0.01)
    assert res.sharpness_log._lanczos._single_threaded
