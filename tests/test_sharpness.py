"""--sharpness K: λ, the largest eigenvalue of the loss's Hessian, every K steps, against the
exact eigenvalues of generated problems; the history it adds, the words, the panel's chart."""

import asyncio

import numpy as np
import pytest
import tensorflow as tf
from IPython.core.error import UsageError

from tfmagic.descent.loss_grid import loss_grid_for
from tfmagic.kernel.runner import LiveRunner
from tfmagic.runtime import devices
from tfmagic.widgets.panel import DescentPanel

QUADRATIC = "loss = 0.5 * tf.reduce_sum(x * tf.linalg.matvec(A, x)) + tf.reduce_sum(b * x)"


def spectrum(rng, n, kind):
    """Eigenvalues of a generated symmetric matrix of size n."""
    if kind == "ill":  # condition numbers 1e3 to 1e7
        return rng.permutation(np.logspace(0, rng.uniform(3, 7), n)) * rng.uniform(0.01, 10)
    if kind == "negative_dominant":  # a saddle whose largest magnitude is negative
        ev = rng.uniform(0.1, 5, n)
        ev[: max(1, n // 3)] = -rng.uniform(10, 100, max(1, n // 3))
        return ev
    if kind == "negative_definite":  # a maximum: λ is negative
        return -rng.uniform(1, 20, n)
    if kind == "clustered":  # the top two within 0.1 %
        ev = rng.uniform(0.1, 1, n)
        ev[:2] = [7.0, 7.0 * (1 - 1e-3)][:n]
        return ev
    return rng.uniform(-3, 30, n)


def matrix(rng, ev):
    q, _ = np.linalg.qr(rng.standard_normal((len(ev), len(ev))))
    return ((q * ev) @ q.T).astype(np.float32)


CASES = [(seed, n, kind) for seed, (n, kind) in enumerate(
    [(n, kind) for kind in ("ill", "negative_dominant", "negative_definite", "clustered", "mixed")
     for n in (1, 2, 7, 30)] + [(120, "ill"), (200, "mixed"), (150, "negative_dominant")])]


@pytest.mark.parametrize("seed,n,kind", CASES)
def test_lambda_is_the_largest_eigenvalue_of_generated_quadratics(ip, run, seed, n, kind):
    rng = np.random.default_rng(seed)
    a = matrix(rng, spectrum(rng, n, kind))
    ip.user_ns.update(A=a, b=rng.standard_normal(n).astype(np.float32), np=np)
    exact = np.linalg.eigvalsh(a.astype(np.float64)).max()
    res = run("descend", f"x=np.ones({n},'float32') --eta 1e-7 --steps 6 --sharpness 2 --no-widgets", QUADRATIC)
    lam = res.sharpness["sharpness"]
    assert list(res.sharpness["step"]) == [0, 2, 4, 6]
    assert np.all(np.abs(lam - exact) <= 0.01 * abs(exact)), (exact, lam)


def test_the_largest_eigenvalue_of_a_matrix_variable_and_of_two_variables(ip, run):
    rng = np.random.default_rng(7)
    a = matrix(rng, rng.uniform(-2, 9, 12))
    ip.user_ns.update(A=a, np=np)
    # Hessian of ½ tr(WᵀAW) for W 12x3: A repeated, so its eigenvalues are A's.
    res = run("descend", "W=np.ones((12,3),'float32') --eta 1e-6 --steps 3 --sharpness 1 --no-widgets",
              "loss = 0.5 * tf.reduce_sum(W * tf.matmul(A, W))")
    assert res.sharpness["sharpness"] == pytest.approx(np.linalg.eigvalsh(a.astype(np.float64)).max(), rel=0.01)
    # Two variables coupled through one matrix: the Hessian is the whole of A.
    res = run("descend", "u=np.ones(5,'float32') v=np.ones(7,'float32') --eta 1e-6 --steps 2 --sharpness 1 --no-widgets",
              "z = tf.concat([u, v], 0)\nloss = 0.5 * tf.reduce_sum(z * tf.linalg.matvec(A, z))")
    assert res.sharpness["sharpness"] == pytest.approx(np.linalg.eigvalsh(a.astype(np.float64)).max(), rel=0.01)


def test_the_courses_problems_follow_the_exact_hessian_along_the_path(ip, run):
    res = run("descend", "x=10.0 --steps 50 --sharpness 5 --no-widgets", "y = x**2 - 4*x + 4")
    assert res.sharpness["sharpness"] == pytest.approx(np.full(11, 2.0), rel=0.01)
    # Rosenbrock: not a quadratic; λ at each measured step against its exact Hessian there.
    res = run("descend", "a=-1.5 b=2.0 --eta 0.0004 --steps 400 --sharpness 40 --no-widgets",
              "loss = (1.0 - a) ** 2 + 100.0 * (b - a ** 2) ** 2")
    h = res.history
    rows = np.flatnonzero(np.isfinite(h["sharpness"]))
    assert list(h["step"][rows]) == list(range(0, 400, 40))
    for a, b, lam in zip(h["a"][rows].astype(np.float64), h["b"][rows].astype(np.float64), h["sharpness"][rows]):
        hess = [[1200 * a * a - 400 * b + 2, -400 * a], [-400 * a, 200]]
        assert lam == pytest.approx(np.linalg.eigvalsh(hess).max(), rel=0.01)


@pytest.mark.parametrize("jit", ["off", "on"])
def test_history_gets_lambda_every_k_steps_and_stays_exact(ip, run, jit):
    ip.user_ns["np"] = np
    cell = "loss = tf.reduce_sum((tf.tanh(w) - tf.linspace(-0.9, 0.9, 8)) ** 2) + 0.1 * tf.reduce_sum(w ** 4)"
    line = f"w=np.linspace(-2,2,8).astype('float32') --eta 0.05 --steps 1000 --jit {jit} --no-widgets"
    plain = run("descend", line, cell)
    sharp = run("descend", line + " --sharpness 100", cell)
    for k, v in plain.history.items():  # the measurements change nothing in the run (bit for bit)
        np.testing.assert_array_equal(sharp.history[k], v)
    assert {n: v.tobytes() for n, v in sharp.values.items()} == {n: v.tobytes() for n, v in plain.values.items()}
    lam, steps = sharp.history["sharpness"], sharp.history["step"]
    assert lam.shape == steps.shape and lam.dtype == np.float32
    assert list(steps[np.isfinite(lam)]) == list(range(0, 1000, 100))
    assert list(sharp.sharpness["step"]) == list(range(0, 1001, 100))  # ... and where it ended
    assert np.isnan(lam[steps % 100 != 0]).all()
    assert "sharpness" not in plain.history and plain.sharpness is None


def test_each_measurement_starts_from_the_last_eigenvector(ip, run):
    rng = np.random.default_rng(3)
    ip.user_ns.update(A=matrix(rng, rng.uniform(0.5, 10, 40)), b=np.zeros(40, np.float32), np=np)
    res = run("descend", "x=np.ones(40,'float32') --eta 0.01 --steps 1000 --sharpness 100 --no-widgets", QUADRATIC)
    log = res.sharpness_log
    assert len(log.steps) == 11 and log.products <= 40 + 10 * 2  # the first from a random start, then a few each


LEAST_SQUARES = "loss = tf.reduce_mean((tf.linalg.matvec(X, w) - Y) ** 2)"


def heavy_rows(rng, n, features):
    """Rows of generated data whose scales differ by orders of magnitude: the Hessian of a few
    rows is not the Hessian of all (so a λ of the wrong rows shows)."""
    scale = np.exp(rng.normal(0, 1.0, (n, 1))) * np.linspace(0.2, 3, features)
    return (rng.standard_normal((n, features)) * scale).astype(np.float32)


def top_eigenvalue(h):
    return np.linalg.eigvalsh(np.asarray(h, np.float64)).max()


@pytest.mark.parametrize("seed,n,features", [(0, 513, 4), (1, 800, 6), (2, 1437, 3), (3, 3000, 12), (4, 1000, 1)])
def test_a_data_runs_lambda_is_of_the_loss_on_its_fixed_rows(ip, run, seed, n, features):
    from tfmagic.descent.sharpness import SAMPLES

    rng = np.random.default_rng(seed)
    X = heavy_rows(rng, n, features)
    ip.user_ns.update(X=X, Y=rng.standard_normal(n).astype(np.float32), np=np)
    res = run("descend", f"w=np.zeros({features},'float32') --data X,Y --batch-size 16 --eta 1e-4 --steps 40 "
              "--sharpness 20 --no-widgets", LEAST_SQUARES)
    log = res.sharpness_log
    rows = np.asarray(log.rows)
    assert log.samples == (SAMPLES, n) and len(np.unique(rows)) == SAMPLES and 0 <= rows.min() and rows.max() < n
    on_rows = top_eigenvalue(2.0 / SAMPLES * X[rows].T.astype(np.float64) @ X[rows])
    assert res.sharpness["sharpness"] == pytest.approx(np.full(3, on_rows), rel=0.01)
    on_all = top_eigenvalue(2.0 / n * X.T.astype(np.float64) @ X)
    if n >= 800:  # (the data tell the two apart: λ is not the whole loss's)
        assert abs(on_all / on_rows - 1) > 0.02
    said = f"λ is of the loss on {SAMPLES:,} fixed rows of the {n:,}."
    assert said in repr(res) and said in res._repr_html_()


def network_hessian_top(X, Y, start):
    """The largest eigenvalue of the whole Hessian of mean((tanh(X W + c)·v - Y)²) at `start`
    (W, c, v), in float64: TensorFlow's jacobian of the gradient."""
    x, y = tf.constant(X.astype(np.float64)), tf.constant(Y.astype(np.float64))
    W, c, v = (tf.Variable(a.astype(np.float64)) for a in start)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            loss = tf.reduce_mean((tf.linalg.matvec(tf.tanh(x @ W + c), v) - y) ** 2)
        grad = tf.concat([tf.reshape(g, [-1]) for g in inner.gradient(loss, [W, c, v])], 0)
    blocks = outer.jacobian(grad, [W, c, v])
    return top_eigenvalue(np.concatenate([tf.reshape(b, (grad.shape[0], -1)).numpy() for b in blocks], 1))


@pytest.mark.parametrize("seed,n,features,hidden", [(0, 600, 3, 4), (1, 1500, 5, 3), (2, 900, 2, 6)])
def test_a_data_runs_lambda_is_the_exact_hessians_on_its_rows_for_generated_networks(ip, run, seed, n, features, hidden):
    rng = np.random.default_rng(seed)
    X = heavy_rows(rng, n, features) / 3
    Y = np.tanh(X.sum(1)).astype(np.float32)
    start = (rng.normal(0, 1, (features, hidden)).astype(np.float32), rng.normal(0, 0.5, hidden).astype(np.float32),
             rng.normal(0, 1, hidden).astype(np.float32))
    ip.user_ns.update(X=X, Y=Y, W0=start[0], c0=start[1], v0=start[2], np=np)
    res = run("descend", "W=W0 c=c0 v=v0 --data X,Y --batch-size 32 --eta 1e-3 --steps 10 --sharpness 10 --no-widgets",
              "loss = tf.reduce_mean((tf.linalg.matvec(tf.tanh(tf.matmul(X, W) + c), v) - Y) ** 2)")
    rows = res.sharpness_log.rows
    assert res.sharpness["sharpness"][0] == pytest.approx(network_hessian_top(X[rows], Y[rows], start), rel=0.01)


@pytest.mark.parametrize("n", [1, 2, 50, 511, 512])
def test_a_data_run_with_no_more_rows_than_the_sample_measures_them_all(ip, run, n):
    rng = np.random.default_rng(n)
    X = heavy_rows(rng, n, 5)
    ip.user_ns.update(X=X, Y=rng.standard_normal(n).astype(np.float32), np=np)
    res = run("descend", f"w=np.zeros(5,'float32') --data X,Y --batch-size {min(16, n)} --eta 1e-4 --steps 40 "
              "--sharpness 20 --no-widgets", LEAST_SQUARES)
    exact = top_eigenvalue(2.0 / n * X.T.astype(np.float64) @ X)
    assert res.sharpness["sharpness"] == pytest.approx(np.full(3, exact), rel=0.01)
    assert res.sharpness_log.samples is None and "fixed rows" not in repr(res)


def test_the_rows_are_the_same_on_a_rerun_and_whatever_the_seed_or_eta(ip, run):
    rng = np.random.default_rng(5)
    X = heavy_rows(rng, 1200, 4)
    ip.user_ns.update(X=X, Y=rng.standard_normal(1200).astype(np.float32), np=np)
    line = "w=np.zeros(4,'float32') --data X,Y --batch-size 64 --steps 40 --sharpness 20 --no-widgets"
    first = run("descend", line + " --eta 1e-3 --seed 0", LEAST_SQUARES)
    runs = [run("descend", line + extra, LEAST_SQUARES) for extra in (" --eta 1e-3 --seed 0", " --eta 3e-3 --seed 7",
                                                                     " --eta 2e-3 --seed 3", " --eta 1e-3 --seed 0")]
    for res in runs:
        np.testing.assert_array_equal(res.sharpness_log.rows, first.sharpness_log.rows)
        # (the same start, the same rows: the same λ; the cold start began from another vector)
        assert res.sharpness["sharpness"][0] == pytest.approx(first.sharpness["sharpness"][0], rel=1e-4)
    for res in [r for r in runs if r.engine.reused]:  # (on the Lanczos it compiled: traced once)
        assert res.sharpness_log._lanczos._fn.experimental_get_tracing_count() == 1


# (Not --jit auto: it switches to XLA by measured speed, so two runs under load may not switch alike,
# with or without --sharpness; 700 rows in batches of 100 is the plain XLA loop, of 64 the epoch loop.)
@pytest.mark.parametrize("batch,jit", [(16, "off"), (64, "off"), (64, "on"), (100, "on")])
def test_a_data_runs_numbers_are_the_same_bit_for_bit_with_sharpness(ip, run, batch, jit):
    rng = np.random.default_rng(batch)
    X = heavy_rows(rng, 700, 6)
    ip.user_ns.update(X=X, Y=np.tanh(X[:, 0]).astype(np.float32), np=np)
    line = (f"W=np.full((6,5),0.1,'float32') v=np.full(5,0.2,'float32') --data X,Y --batch-size {batch} --jit {jit} "
            "--eta 0.01 --optimizer adam --steps 300 --seed 1 --no-widgets")
    cell = "loss = tf.reduce_mean((tf.linalg.matvec(tf.tanh(tf.matmul(X, W)), v) - Y) ** 2)"
    plain = run("descend", line, cell)
    sharp = run("descend", line + " --sharpness 50", cell)
    assert list(sharp.sharpness["step"]) == list(range(0, 301, 50))
    for k, v in plain.history.items():
        np.testing.assert_array_equal(sharp.history[k], v)
    assert {n: v.tobytes() for n, v in sharp.values.items()} == {n: v.tobytes() for n, v in plain.values.items()}


@pytest.mark.parametrize("seed,n,kind", [(40, 5, "mixed"), (41, 30, "ill"), (42, 80, "clustered"),
                                         (43, 12, "negative_dominant")])
def test_a_constant_hessian_is_measured_again_with_one_product(ip, run, seed, n, kind):
    rng = np.random.default_rng(seed)
    a = matrix(rng, spectrum(rng, n, kind))
    ip.user_ns.update(A=a, b=rng.standard_normal(n).astype(np.float32), np=np)
    ev = np.linalg.eigvalsh(a.astype(np.float64))
    exact, eta = ev.max(), 1e-4 / np.abs(ev).max()  # (steps that stay near the start, also along negative curvature)
    res = run("descend", f"x=np.ones({n},'float32') --eta {eta:.3g} --steps 500 --sharpness 50 --no-widgets", QUADRATIC)
    assert res.sharpness["sharpness"] == pytest.approx(np.full(11, exact), rel=0.01)
    assert res.sharpness_log.products_each[1:] == [1] * 10  # (the last eigenvector still is one: its residual says so)


def test_the_text_says_the_last_lambda_and_two_over_eta(ip, run):
    res = run("descend", "x=10.0 --eta 0.1 --steps 20 --sharpness 10 --no-widgets", "y = 3 * x**2")
    text = repr(res)
    assert "sharpness λ = 6 at step 20; 2/eta = 20: below it" in text
    res = run("descend", "x=1.0 --eta 0.5 --steps 20 --sharpness 2 --no-widgets", "y = 3 * x**2")
    assert res.status == "diverged" and "2/eta = 4: above it: plain gradient descent is unstable" in repr(res)
    html = res._repr_html_()
    assert "tfmagic-sharpness-svg" in html and "2/eta = 4" in html
    res = run("descend", "x=10.0 --eta 0.1 --steps 10 --sharpness 10 --optimizer adam --no-widgets", "y = 3 * x**2")
    assert "adam steps differently" in repr(res)


@pytest.mark.parametrize("line,says", [
    ("--sharpness 0", "--sharpness must be a positive whole number, got 0"),
    ("--sharpness -3", "--sharpness must be a positive whole number, got -3"),
    ("--sharpness 10 --compare eta=0.1,0.2", "--sharpness measures one run"),
    ("--sharpness 10 --restarts 3", "--sharpness measures one run"),
    ("--sharpness 10 --find-eta", "--sharpness measures one run"),
])
def test_bad_sharpness_lines_are_refused_with_a_message(ip, run, line, says):
    ip.user_ns["x"] = None
    with pytest.raises(UsageError, match=says.replace("(", r"\(")):
        run("descend", f"x=2.0 {line} --no-widgets", "y = x * x")
    assert ip.user_ns["x"] is None  # nothing ran


def test_a_loss_without_curvature_records_zero(ip, run):
    res = run("descend", "x=3.0 --eta 0.1 --steps 4 --sharpness 2 --no-widgets", "y = tf.abs(x)")
    assert list(res.sharpness["sharpness"]) == [0.0, 0.0, 0.0]


SECOND_DERIVATIVE_FAILS = """@tf.custom_gradient
def f(v):
    def grad(dy):  # 2v, through an op TensorFlow cannot differentiate (lstsq's fast=False)
        s = tf.linalg.lstsq(tf.reshape(tf.stack([v, 0.0, 0.0, 1.0]), [2, 2]), tf.constant([[2.0], [0.0]]), fast=False)
        return dy * s[0, 0] * v * v
    return v * v, grad
y = f(x)"""


def test_a_loss_whose_second_derivative_fails_runs_on_and_says_so(ip, run):
    res = run("descend", "x=3.0 --eta 0.1 --steps 30 --sharpness 10 --no-widgets -o r", SECOND_DERIVATIVE_FAILS)
    assert res.status == "max_steps" and res.steps == 30 and float(ip.user_ns["x"].numpy()) < 0.01
    assert len(res.sharpness["step"]) == 0 and np.isnan(res.history["sharpness"]).all()
    said = repr(res)
    assert "sharpness: λ could not be measured (the loss's second derivative failed:" in said
    assert "the run went on without it" in res._repr_html_()


def test_the_panel_draws_lambda_and_two_over_eta_and_the_line_follows_eta(ip, run, loop):
    async def scenario():
        res = run("descend", "x=10.0 --eta 0.05 --steps 1 --sharpness 10 --no-widgets", "y = 3 * x**2")
        engine = res.engine
        engine.reset()
        curve, surface = loss_grid_for(ip.user_ns["tf"], engine)
        runner = LiveRunner(engine)
        panel = DescentPanel(runner, res, 100, {devices.short(n): n for n in devices.available(ip.user_ns["tf"])},
                             curve=curve, surface=surface)
        await runner.run(100)
        chart = panel.sharpness_chart
        drawn = (list(chart.sharpness_line.x), list(chart.sharpness_line.y), list(chart.bound_line.y))
        panel.eta_text.value = 0.25
        for _ in range(400):
            if chart.bound_line.y[-1] == pytest.approx(8.0):
                break
            await asyncio.sleep(0.005)
        return panel, drawn

    panel, (xs, ys, bound) = loop.run_until_complete(scenario())
    assert xs == list(range(0, 101, 10)) and ys == pytest.approx([6.0] * 11, rel=0.01)
    assert bound == pytest.approx([40.0] * len(bound))
    chart = panel.sharpness_chart
    assert chart.bound_line.y[-1] == pytest.approx(8.0) and chart.bound_line.y[0] == pytest.approx(40.0)
    assert chart.widget in panel.widget.children


def test_a_rerun_of_the_cell_measures_on_what_it_compiled(ip, run):
    rng = np.random.default_rng(11)
    a = matrix(rng, rng.uniform(-1, 6, 9))
    ip.user_ns.update(A=a, b=np.zeros(9, np.float32), np=np)
    exact = np.linalg.eigvalsh(a.astype(np.float64)).max()
    first = run("descend", "x=np.ones(9,'float32') --eta 0.01 --steps 20 --sharpness 10 --no-widgets", QUADRATIC)
    again = run("descend", "x=np.ones(9,'float32') --eta 0.02 --steps 20 --sharpness 5 --no-widgets", QUADRATIC)
    assert again.engine.reused and again.sharpness_log._lanczos is first.sharpness_log._lanczos
    assert again.sharpness_log._lanczos._fn.experimental_get_tracing_count() == 1  # (traced once, for both)
    assert again.sharpness["sharpness"] == pytest.approx(np.full(5, exact), rel=0.01)
