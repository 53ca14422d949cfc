import math
import os
import signal
import threading

import numpy as np
import pytest
from IPython.core.error import UsageError

from tfmagic.runtime.tfimport import tensorflow
from tfmagic.errors import CellRuntimeError, CellSyntaxError, LossError, TfmagicError

COURSE = "y=tf.pow(x,2.0)-4.0*x+4.0"
tf = tensorflow()  # (conftest has imported it, with two logical CPUs)


def course_loop(tf, eta=0.1, steps=50):
    """The course's Exercise 1, version 1: (x before each update, y at it)."""
    x = tf.Variable(10.0, tf.float32)
    xs, ys = [], []
    for _ in range(steps):
        with tf.GradientTape() as tape:
            y = tf.pow(x, 2.0) - 4.0 * x + 4.0
        dydx = tape.gradient(y, x)
        xs.append(x.numpy())
        ys.append(y.numpy())
        x.assign(x - dydx * eta)
    return np.array(xs), np.array(ys), x.numpy()


def test_course_exercise_matches_hand_written_loop_step_for_step(ip, run):
    res = run("descend", "x=10.0 --eta 0.1 --steps 50 --no-widgets", COURSE)
    xs, ys, x_final = course_loop(ip.user_ns["tf"])
    assert res.status == "max_steps" and res.steps == 50
    np.testing.assert_allclose(res.history["x"], xs, rtol=1e-6)
    np.testing.assert_allclose(res.history["loss"], ys, rtol=1e-5, atol=1e-6)
    assert np.all(res.history["eta"] == np.float32(0.1))
    assert ip.user_ns["x"].numpy() == pytest.approx(x_final, rel=1e-6)
    assert abs(x_final - 2.0) < 1e-3
    assert float(ip.user_ns["y"]) == pytest.approx(0.0, abs=1e-5)  # the cell's names hold final values
    assert res.final_loss == pytest.approx(0.0, abs=1e-5)


def test_too_large_eta_diverges_and_keeps_finite_values(ip, run):
    res = run("descend", "x=10.0 --eta 1.1 --steps 1000 --no-widgets", COURSE)
    assert res.status == "diverged"
    x = ip.user_ns["x"].numpy()
    # the variables hold the point after res.steps steps (the last with a finite, not blown-up
    # loss); the history's last row is the step before it; the step after it was not taken
    last = res.history["x"][-1]
    assert res.steps == len(res.history["x"]) < 1000
    assert math.isfinite(x) and x == pytest.approx(last - 1.1 * (2 * last - 4), rel=1e-5)
    assert res.final_loss == pytest.approx((x - 2) ** 2, rel=1e-3) and res.final_loss < 1e6 * 64
    next_x = x - 1.1 * (2 * x - 4)
    assert (next_x - 2) ** 2 > 1e6 * 64  # that step would have blown the loss up
    assert f"diverged after {res.steps} steps" in res.message
    assert "eta=1.1 is too large" in res.message and "smaller eta" in res.message
    assert "diverged" in repr(res)


def test_nan_start_is_reported_not_stepped(ip, run):
    res = run("descend", "x=float('nan') --no-widgets", COURSE)
    assert res.status == "diverged" and res.steps == 0
    assert "at the start" in res.message


def test_tol_stops_as_converged(ip, run):
    res = run("descend", "x=10.0 --eta 0.1 --steps 1000 --tol 1e-3 --no-widgets", COURSE)
    assert res.status == "converged" and 10 < res.steps < 1000
    assert res.history["grad_norm"][-1] >= 1e-3  # the last step taken was still above tol
    assert abs(2.0 * (ip.user_ns["x"].numpy() - 2.0)) < 1e-3


@pytest.mark.parametrize(
    "opt, eta", [("sgd", 0.05), ("momentum", 0.05), ("nesterov", 0.05), ("adam", 0.05), ("rmsprop", 0.05), ("adagrad", 1.0)]
)
def test_every_optimizer_reduces_the_loss(ip, run, opt, eta):
    res = run("descend", f"x=10.0 --optimizer {opt} --eta {eta} --steps 300 --no-widgets", COURSE)
    assert res.optimizer == opt
    assert res.final_loss < 0.5 * res.history["loss"][0]


@pytest.mark.parametrize("opt", ["sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad"])
def test_each_optimizer_is_keras_apply_gradients_step_for_step(ip, run, opt):
    # The engine runs the optimizer's update_step itself (less tracing): same numbers as Keras's own loop.
    tf = ip.user_ns["tf"]
    from tfmagic.descent.optimizers import make_optimizer

    res = run("descend", f"x=10.0 --optimizer {opt} --eta 0.05 --steps 20 --no-widgets", COURSE)
    x = tf.Variable(10.0)
    keras_opt = make_optimizer(opt, 0.05)
    xs = []
    for _ in range(20):
        xs.append(x.numpy())
        with tf.GradientTape() as tape:
            y = tf.pow(x, 2.0) - 4.0 * x + 4.0
        keras_opt.apply_gradients([(tape.gradient(y, x), x)])
    assert res.history["x"] == pytest.approx(xs, rel=1e-5)
    assert ip.user_ns["x"].numpy() == pytest.approx(x.numpy(), rel=1e-5)
    assert int(res.engine.optimizer.iterations.numpy()) == 20  # Adam's bias correction counts steps


def test_two_variables_and_a_matrix(ip, run):
    res = run("descend", "a=1.0 b=-1.0 W=tf.ones([2, 2]) --steps 200 --no-widgets",
              "loss = (a - 3.0)**2 + (b + 2.0)**2 + tf.reduce_sum(tf.square(W))")
    assert set(res.history) == {"loss", "eta", "grad_norm", "a", "b", "W", "step"}
    assert res.history["step"].tolist() == list(range(200))
    assert res.history["W"][0] == pytest.approx(2.0)  # a matrix is shown by its norm
    assert ip.user_ns["a"].numpy() == pytest.approx(3.0, abs=1e-3)
    assert ip.user_ns["W"].shape == (2, 2)
    assert res.tensors["W"].shape == (2, 2) and res.tensors["W"].dtype == "float32"


def test_existing_variables_are_found_from_the_cell(ip, run):
    ip.run_cell("x = tf.Variable(10.0)")
    x_before = ip.user_ns["x"]
    res = run("descend", "--no-widgets", COURSE)
    assert ip.user_ns["x"] is x_before  # the user's own variable is updated in place
    assert x_before.numpy() == pytest.approx(2.0, abs=1e-3)
    assert res.status == "max_steps"


def test_keras_model_by_name(ip, run):
    ip.run_cell(
        "import keras, numpy as np\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.normal(size=(64, 3)).astype('float32')\n"
        "Y = X @ np.array([[1.0], [-2.0], [0.5]], 'float32') + 0.3\n"
        "model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])\n"
    )
    res = run("descend", "model --optimizer adam --eta 0.05 --steps 400 --no-widgets",
              "loss = tf.reduce_mean(tf.square(model(X) - Y))")
    assert res.final_loss < 0.01 * res.history["loss"][0]
    kernel = ip.user_ns["model"].layers[0].kernel.numpy().ravel()
    np.testing.assert_allclose(kernel, [1.0, -2.0, 0.5], atol=0.05)


def test_a_large_variable_is_summarised_in_the_result_not_printed_whole(ip, run):
    ip.run_cell("w = tf.Variable(tf.ones((20, 10)))\nb = tf.Variable(tf.zeros(3))")
    res = run("descend", "w b --steps 3 --no-widgets", "loss = tf.reduce_sum(tf.square(w)) + tf.reduce_sum(tf.square(b - 1.0))")
    text, html = repr(res), res._repr_html_()
    norm = np.linalg.norm(ip.user_ns["w"].numpy())
    assert f"w = shape (20, 10), norm {norm:.6g}" in text and f"shape (20, 10), norm {norm:.6g}" in html
    assert "b = [" in text  # 3 numbers are shown as they are
    assert len(text.splitlines()) < 6


def test_a_module_with_two_unnamed_variables_optimises_both(ip, run):
    ip.run_cell("m = tf.Module()\nm.a = tf.Variable(5.0)\nm.b = tf.Variable(-3.0)")
    res = run("descend", "m --steps 200 --no-widgets", "loss = (m.a - 1.0)**2 + (m.b + 2.0)**2")
    assert len(res.values) == 2  # both named "Variable": one column each
    assert ip.user_ns["m"].a.numpy() == pytest.approx(1.0, abs=1e-3)
    assert ip.user_ns["m"].b.numpy() == pytest.approx(-2.0, abs=1e-3)


@pytest.mark.parametrize("jit", ["off", "on"])
def test_a_variables_constraint_holds_after_each_step(ip, run, jit):
    # (as Keras's apply_gradients does; the engine runs the optimizer's update_step itself)
    ip.run_cell("x = tf.Variable(5.0, constraint=lambda v: tf.clip_by_value(v, 1.0, 10.0))")
    res = run("descend", f"x --steps 300 --jit {jit} --no-widgets", "y = x**2")
    assert ip.user_ns["x"].numpy() == pytest.approx(1.0)
    assert res.history["x"].min() == pytest.approx(1.0)


@pytest.mark.parametrize("flags", ["--steps 100", "--steps 1000 --jit off", "--steps 1000 --jit on"])
def test_a_tiny_tol_still_converges_on_the_exact_step(ip, run, flags):
    # (a compiled step, a graph loop, XLA) tol² below float32's smallest normal number reads as 0 in a graph
    res = run("descend", f"x=3.0 --eta 0.5 --tol 1e-30 {flags} --no-widgets", "y = x**2")
    assert res.status == "converged" and res.steps == 1


def test_setting_tol_after_a_run_takes_effect(ip, run):
    res = run("descend", "x=10.0 --steps 1000 --jit off --no-widgets", COURSE)
    engine = res.engine
    engine.tol = 1e-3
    engine.reset()
    assert engine.run(1000) == "converged" and engine.steps < 100


def test_eta_change_never_retraces_and_shows_in_history(ip, run):
    res = run("descend", "x=10.0 --eta 0.1 --steps 20 --no-widgets", COURSE)
    engine = res.engine
    fn = next(iter(engine.compiled.values()))
    traces = fn.experimental_get_tracing_count()
    engine.eta = 0.01
    engine.run(30)
    assert fn.experimental_get_tracing_count() == traces
    assert np.all(res.history["eta"][:20] == np.float32(0.1))
    assert np.all(res.history["eta"][20:] == np.float32(0.01))
    assert res.steps == 50


def run_changing_after_first_chunk(run, change, steps):
    """A fresh run in which `change(engine)` happens after the first chunk; returns
    (result, steps in the first chunk)."""
    res = run("descend", "x=10.0 --eta 0.001 --steps 1 --no-widgets", COURSE)
    res.engine.reset()
    sizes = []

    def observer(engine, chunk):
        sizes.append(len(chunk.rows["loss"]))
        if len(sizes) == 1:
            change(engine)

    res.engine.observe(observer)
    res.engine.run(steps)
    return res, sizes[0]


def test_eta_change_in_an_observer_applies_to_the_next_chunk(ip, run):
    res, first = run_changing_after_first_chunk(run, lambda e: setattr(e, "eta", 0.002), 2000)
    assert np.all(res.history["eta"][:first] == np.float32(0.001))
    assert np.all(res.history["eta"][first:] == np.float32(0.002))


def test_pause_via_request_stop_then_resume(ip, run):
    res = run("descend", "x=10.0 --steps 1 --no-widgets", COURSE)
    engine = res.engine
    engine.observe(lambda eng, chunk: eng.request_stop("paused"))
    assert engine.run(100000) == "paused" and engine.steps < 100000
    steps = engine.steps
    engine._observers.clear()
    engine.run(10)
    assert engine.steps == steps + 10


def test_reset_restores_initial_values(ip, run):
    res = run("descend", "x=10.0 --no-widgets", COURSE)
    res.engine.reset()
    assert ip.user_ns["x"].numpy() == 10.0 and res.steps == 0 and len(res.history["loss"]) == 0


def test_switch_optimizer_between_runs(ip, run):
    res = run("descend", "x=10.0 --steps 5 --no-widgets", COURSE)
    res.engine.set_optimizer("adam")
    res.engine.run(5)
    assert res.optimizer == "adam" and res.steps == 10


@pytest.mark.parametrize(
    "line, match",
    [
        ("x=1.0 --eta 0", "eta must be a positive"),
        ("x=1.0 --eta -1", "eta must be a positive"),
        ("x=1.0 --eta nan", "eta must be a positive"),
        ("x=1.0 --eta abc", "invalid float value"),
        ("x=1.0 --steps 0", "steps must be a positive"),
        ("x=1.0 --optimizer sgdd", "sgd, momentum, nesterov, adam, rmsprop, adagrad"),
        ("x=1.0 --device TPU:0", "CPU:0, CPU:1"),
    ],
)
def test_bad_options_are_usage_errors(ip, run, line, match):
    with pytest.raises(UsageError, match=match):
        run("descend", line + " --no-widgets", COURSE)


def test_errors_leave_the_users_variable_alone(ip, run):
    ip.run_cell("x = tf.Variable(7.0)")
    before = ip.user_ns["x"]
    with pytest.raises(CellSyntaxError):
        run("descend", "x=10.0 --no-widgets", "y = x *")
    with pytest.raises(TfmagicError, match="not defined"):
        run("descend", "x=10.0 --no-widgets", "y = x * zz")
    assert ip.user_ns["x"] is before and before.numpy() == 7.0


def test_non_scalar_loss_says_its_shape(ip, run):
    with pytest.raises(LossError, match=r"shape \(3,\)") as info:
        run("descend", "x=1.0 --no-widgets", "y = x * tf.constant([1.0, 2.0, 3.0])")
    assert "reduce_sum" in str(info.value)


def test_integer_variable_is_refused_with_a_fix(ip, run):
    ip.run_cell("n = tf.Variable(3)")
    with pytest.raises(TfmagicError, match="integer variable") as info:
        run("descend", "n --no-widgets", "y = tf.cast(n, tf.float32) ** 2")
    assert "n=10.0" in str(info.value) or "float" in str(info.value)


def test_not_a_variable_says_how_to_make_one(ip, run):
    ip.user_ns["x"] = 3.0
    with pytest.raises(TfmagicError, match="not a tf.Variable") as info:
        run("descend", "x --no-widgets", COURSE)
    assert "x=3.0" in str(info.value)


def test_dtype_mismatch_in_loss_gets_cast_hint(ip, run):
    with pytest.raises(CellRuntimeError, match="tf.cast"):
        run("descend", "x=1.0 --no-widgets", "y = x * tf.constant(3)")


def test_error_part_way_keeps_last_good_values(ip, run):
    # A Python check inside the graph, run at every step; it fails once x < 3.
    ip.run_cell(
        "def guard(v):\n"
        "    if v < 3.0:\n"
        "        raise ValueError('x left the allowed range')\n"
        "    return v\n"
    )
    cell = "g = tf.py_function(guard, [x], tf.float32)\ny = (x - 2.0) ** 2 + 0.0 * g"
    with pytest.raises(CellRuntimeError, match="allowed range") as info:
        run("descend", "x=10.0 --eta 0.01 --steps 5000 --no-widgets -o r", cell)
    x = ip.user_ns["x"].numpy()
    # the last good step: the next one (x - 0.01 * 2(x - 2)) is where the check fails
    assert x >= 3.0 and x - 0.02 * (x - 2.0) < 3.0
    assert info.value.line == 1
    r = ip.user_ns["r"]  # kept, with the history up to there
    assert r.status == "error" and r.steps == len(r.history["x"]) and f"step {r.steps + 1}" in str(info.value)
    assert r.history["x"][-1] == pytest.approx(x + 0.02 * (r.history["x"][-1] - 2.0), rel=1e-5)


def test_ctrl_c_mid_run_is_interrupted_with_good_values(ip, run):
    pid = os.getpid()
    timer = threading.Timer(1.0, lambda: os.kill(pid, signal.SIGINT))
    timer.start()
    try:
        res = run("descend", "x=10.0 --eta 1e-7 --steps 100000000 --jit off --no-widgets", COURSE)
    finally:
        timer.cancel()
    assert res.status == "interrupted" and 0 < res.steps < 100000000
    x = ip.user_ns["x"].numpy()
    assert math.isfinite(x) and 2.0 < x < 10.0
    # the kernel is still usable
    again = run("descend", "x=10.0 --steps 5 --no-widgets", COURSE)
    assert again.status == "max_steps"


def test_device_choice(ip, run):
    res = run("descend", "x=10.0 --device CPU:1 --no-widgets", COURSE)
    assert res.device == "CPU:1"
    assert ip.user_ns["x"].device.endswith("CPU:1")
    assert "on CPU:1" in repr(res)


def test_print_every_prints_the_course_lines(ip, run, capsys):
    run("descend", "x=10.0 --print-every 10", COURSE)
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("iteration:")]
    assert [ln.split()[1] for ln in lines] == ["0", "10", "20", "30", "40"]
    assert lines[0] == "iteration: 0 x: 8.4 y: 64"
    # the loss under its own name; a larger variable by its norm, marked as such
    run("descend", "W=tf.constant([[1.0, -2.0], [0.5, 3.0]]) --steps 1 --print-every 1 --no-widgets",
        "loss = tf.reduce_sum(tf.square(W - 1.0))")
    assert "iteration: 0 |W|: 3.1749 loss: 13.25" in capsys.readouterr().out  # |0.8 W + 0.2|, as the course prints x after its update


def test_text_progress_and_summary(ip, run, capsys):
    res = run("descend", "x=10.0 --no-widgets", COURSE)
    out = capsys.readouterr().out
    assert "50/50" in out
    assert repr(res).startswith("max_steps: 50 steps of sgd (eta=0.1)")


def test_xla_long_run_matches_plain_run(ip, run):
    a = run("descend", "x=10.0 --eta 0.001 --steps 6000 --jit off --no-widgets", COURSE).history["x"]
    b = run("descend", "x=10.0 --eta 0.001 --steps 6000 --jit on --no-widgets", COURSE)
    np.testing.assert_allclose(a, b.history["x"], rtol=1e-4)
    # Chunks of up to ROW_CAPACITY steps keep every step; blocks only pay where rows cap the chunks.
    np.testing.assert_array_equal(b.history["step"], np.arange(6000))
    assert set(b.engine.compiled) == {"xla"}


@pytest.mark.parametrize("optimizer", ["adam", "adagrad"])  # adagrad's state starts at 0.1, not 0
def test_reset_does_not_retrace_and_repeats_the_run(ip, run, optimizer):
    res = run("descend", f"x=10.0 --optimizer {optimizer} --eta 0.5 --steps 30 --no-widgets", COURSE)
    first = res.history["x"].copy()
    fn = next(iter(res.engine.compiled.values()))
    res.engine.reset()
    res.engine.run(30)
    assert fn.experimental_get_tracing_count() == 1 and next(iter(res.engine.compiled.values())) is fn
    np.testing.assert_array_equal(res.history["x"], first)  # adam's moments were zeroed too


def test_optimizer_switch_mid_run_applies_to_next_chunk(ip, run):
    res, first = run_changing_after_first_chunk(run, lambda e: e.set_optimizer("adam"), 3000)
    assert res.optimizer == "adam" and res.steps == 3000
    moves = -np.diff(res.history["x"])
    # sgd moves x by eta*|grad| = 0.001*16 near x=10; adam by about eta = 0.001
    assert moves[: first - 1].min() > 0.01
    assert np.all(moves[first:first + 100] < 0.0015)


def test_reset_on_another_device(ip, run):
    res = run("descend", "x=10.0 --steps 5 --no-widgets", COURSE)
    res.engine.reset(device="/job:localhost/replica:0/task:0/device:CPU:1")
    res.engine.run(5)
    assert res.engine.device.endswith("CPU:1") and res.steps == 5


def test_suggested_eta_is_the_divergence_bound(ip, run):
    res = run("descend", "x=10.0 --steps 1 --no-widgets", COURSE)
    bound = res.engine.suggested_eta()
    assert bound == pytest.approx(1.0, rel=1e-3)  # y'' = 2, so 2/λ = 1
    above = run("descend", f"x=10.0 --eta {bound * 1.05} --steps 2000 --no-widgets", COURSE)
    below = run("descend", f"x=10.0 --eta {bound * 0.95} --steps 2000 --no-widgets", COURSE)
    assert above.status == "diverged" and "2/λ = 1" in above.message
    assert below.status == "max_steps" and abs(ip.user_ns["x"].numpy() - 2.0) < 1e-3


def test_suggested_eta_for_a_quadratic_form(ip, run):
    ip.run_cell("import numpy as np\nA = np.array([[3.0, 1.0], [1.0, 2.0]], 'float32')")
    res = run("descend", "w=tf.ones([2]) --steps 1 --no-widgets", "loss = tf.tensordot(w, tf.linalg.matvec(A, w), 1)")
    lam = 2 * max(np.linalg.eigvalsh(np.array([[3.0, 1.0], [1.0, 2.0]])))
    assert res.engine.curvature() == pytest.approx(lam, rel=1e-3)


def test_very_long_runs_keep_a_bounded_strided_history(ip, run, monkeypatch):
    import tfmagic.descent.history as history_module
    import tfmagic.descent.policy as policy_module

    monkeypatch.setattr(policy_module, "ROW_CAPACITY", 256)
    monkeypatch.setattr(policy_module, "BLOCK_ROWS", 256)
    monkeypatch.setattr(history_module, "HISTORY_MAX", 4096)
    res = run("descend", "x=10.0 --eta 1e-4 --steps 200000 --jit on --no-widgets", COURSE)
    h = res.history
    assert res.steps == 200000 and len(h["loss"]) <= 4096
    steps = h["step"]
    # a row is the point before the first step of its block: step 0 is the start
    assert steps[0] == 0 and np.all(np.diff(steps) > 0) and np.diff(steps).max() > 1
    assert 199999 - steps[-1] < np.diff(steps).max()
    # each row is the point at its step: x_t - 2 = 8 (1 - 2 eta)^t (a row one stride off is ~1 % off)
    expected = 8 * (1 - 2e-4) ** steps.astype(np.float64)
    seen = h["x"].astype(np.float64) - 2
    far = expected > 1e-2  # where float32 still resolves x - 2 well
    assert far.sum() > 50
    np.testing.assert_allclose(seen[far], expected[far], rtol=2e-3)


@pytest.mark.parametrize("steps", [20, 3000])  # a per-step function, then graph loops
def test_python_control_flow_on_tensors_in_the_cell(ip, run, steps):
    # AutoGraph turns the cell's `if` and `for` on tensors into graph ops inside the engine's steps.
    branch = run("descend", f"x=3.0 --eta 0.01 --steps {steps} --no-widgets",
                 "if x > 1.0:\n    y = (x - 1.0)**2\nelse:\n    y = 0.5 * (x - 1.0)**2\ny")
    assert branch.status == "max_steps" and 1.0 < ip.user_ns["x"].numpy() < 3.0
    loop = run("descend", f"x=3.0 --eta 0.01 --steps {steps} --no-widgets",
               "y = 0.0\nfor i in tf.range(3):\n    y += (x - tf.cast(i, tf.float32))**2\ny")
    assert loop.status == "max_steps" and loop.history["loss"][-1] < loop.history["loss"][0]


@pytest.mark.parametrize("flags", ["--eta 1.05", "--eta 0.01 --tol 1e-3"])
def test_strided_xla_ends_on_the_exact_step(ip, run, monkeypatch, flags):
    # With 4 rows per chunk, XLA chunks run blocks of many steps between rows; a block
    # that diverges or converges inside is redone one step at a time from its start.
    import tfmagic.descent.policy as policy_module

    plain = run("descend", f"x=10.0 {flags} --steps 100000 --jit off --no-widgets", COURSE)
    monkeypatch.setattr(policy_module, "ROW_CAPACITY", 4)
    monkeypatch.setattr(policy_module, "BLOCK_ROWS", 4)
    xla = run("descend", f"x=10.0 {flags} --steps 100000 --jit on --no-widgets", COURSE)
    assert xla.status == plain.status and plain.status in ("diverged", "converged")
    assert xla.steps == plain.steps and np.diff(xla.history["step"]).max() > 1
    assert "blocks" in xla.engine.compiled  # rows capped the one-row-per-step chunks
    # every row XLA kept is the plain run's row for that step
    np.testing.assert_allclose(xla.history["x"], plain.history["x"][xla.history["step"]], rtol=1e-5)
    assert xla.history["step"][-1] < xla.steps
    assert xla.values["x"] == pytest.approx(plain.values["x"], rel=1e-5)
    assert np.isfinite(xla.values["x"]) and xla.final_loss == pytest.approx(plain.final_loss, rel=1e-4, abs=1e-5)



@pytest.mark.parametrize("jit", ["off", "on"])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_a_gradient_that_stops_being_finite_diverges_in_every_mode(bad, jit):
    # The loss -x stays finite; its gradient turns inf/NaN once x > 3 (sgd, eta 1: x = 0, 1, 2, ...).
    from tfmagic.descent.engine import Descent

    x = tf.Variable(0.0)

    @tf.custom_gradient
    def line(v):
        return -v, lambda up: up * tf.where(v > 3.0, tf.constant(bad, tf.float32), -1.0)

    engine = Descent(tf, lambda: line(x), {"x": x}, eta=1.0, jit=jit)
    assert engine.run(3000) == "diverged"
    assert engine.steps == 3 and x.numpy() == 3.0 and list(engine.history["step"]) == [0, 1, 2]


def test_a_thinned_history_keeps_its_ends_and_stays_sparse(monkeypatch):
    import tfmagic.descent.engine as engine_module
    import tfmagic.descent.history as history_module

    monkeypatch.setattr(history_module, "HISTORY_MAX", 64)
    x = tf.Variable(10.0)
    engine = engine_module.Descent(tf, lambda: (x - 2.0) ** 2, {"x": x}, eta=1e-4, jit="off")
    engine.run(1000)
    engine.run(1000)  # a second run records as sparsely as the history now holds
    steps = engine.history["step"]
    assert steps[0] == 0 and 1999 - steps[-1] < engine.history_stride and len(steps) <= 65
    assert np.all(np.diff(steps) > 0) and np.diff(steps)[-10:].min() > 1


def test_a_run_reserves_its_history_at_once():
    """Grown by doubling, a 200 000-step run's history was copied four times (~10 ms of a
    10 ms re-run); a run knows its length. What was handed out before never changes."""
    from tfmagic.descent.history import History

    h = History(["loss", "eta", "grad_norm", "x"], ["grad_norm"])
    h.append(np.ones((10, 3), np.float32), 0, 1, 0.1)
    view = h.as_dict()["loss"]
    h.reserve(90_000)
    buffer = h._rows
    for k in range(3):
        h.append(np.full((30_000, 3), k + 2.0, np.float32), 10 + 30_000 * k, 1, 0.1)
    assert h._rows is buffer  # (no copy while the run fills it)
    assert list(view) == [1.0] * 10
    d = h.as_dict()
    assert len(d["loss"]) == 90_010 and d["step"][-1] == 90_009 and d["loss"][-1] == 4.0 and d["eta"][-1] == 0.1


def test_xla_never_skips_the_cells_checks(ip, run):
    # XLA compiles tf.debugging asserts to nothing: auto keeps them by not using XLA.
    cell = "tf.debugging.assert_greater(x, 3.0, message='x got too small')\ny = (x - 2.0) ** 2"
    with pytest.raises(CellRuntimeError, match="x got too small"):
        run("descend", "x=10.0 --eta 0.001 --steps 5000 --no-widgets", cell)
    assert ip.user_ns["x"].numpy() >= 3.0
    forced = run("descend", "x=10.0 --eta 0.001 --steps 5000 --jit on --no-widgets", cell)
    assert forced.status == "max_steps" and any("XLA skips the cell's checks" in n for n in forced.notes)


def test_a_result_keeps_its_values_when_a_later_run_moves_the_variable(ip, run):
    slow = run("descend", "x=10.0 --eta 0.1 --steps 5 --no-widgets", COURSE)
    kept = slow.values["x"].copy()
    run("descend", "x --eta 0.4 --steps 5 --no-widgets", COURSE)
    assert slow.values["x"] == kept and (kept - 2.0) ** 2 == pytest.approx(slow.final_loss, rel=1e-5)
    assert f"x = {kept:g}" in repr(slow)


def test_divergence_message_tells_an_unbounded_loss_and_a_nan_from_a_too_large_eta(ip, run):
    unbounded = run("descend", "x=10.0 --eta 0.001 --steps 50000 --no-widgets", "y = 4.0 - tf.pow(x, 2.0)")
    assert unbounded.status == "diverged" and "no minimum" in unbounded.message and "Try a smaller eta" not in unbounded.message
    nan = run("descend", "x=1.0 --eta 0.1 --steps 500 --no-widgets", "y = tf.sqrt(x)")
    assert nan.status == "undefined" and nan.message.startswith("undefined after") and "sqrt" in nan.message
    assert ip.user_ns["x"].numpy() >= 0.0
    overshoot = run("descend", "x=10.0 --eta 1.5 --steps 500 --no-widgets", COURSE)
    assert overshoot.status == "diverged" and "too large" in overshoot.message and "no minimum" not in overshoot.message


def test_out_never_replaces_a_variable(ip, run):
    with pytest.raises(UsageError, match="-o x would replace"):
        run("descend", "x=10.0 --steps 5 --no-widgets -o x", COURSE)
    ip.run_cell("w = tf.Variable(3.0)")
    with pytest.raises(UsageError, match="-o w would replace"):
        run("tfgrad", "-o w", "f = w * w")
    assert isinstance(ip.user_ns["w"], tf.Variable)


def test_an_error_that_does_not_come_back_still_stops_the_run(ip, run):
    # A cell whose error depends on chance: redone step by step it may pass, but it did raise.
    ip.run_cell(
        "import random\nrandom.seed(1)\n"
        "def flaky(v):\n"
        "    if random.random() < 0.002:\n"
        "        raise RuntimeError('read failed')\n"
        "    return v\n"
    )
    cell = "y = (x - 2.0) ** 2 + 0.0 * tf.py_function(flaky, [x], tf.float32)"
    with pytest.raises(CellRuntimeError, match="read failed"):
        run("descend", "x=10.0 --eta 0.001 --steps 3000 --jit off --no-widgets -o r", cell)
    r = ip.user_ns["r"]
    assert r.status == "error" and "\n" not in r.message and "read failed" in r.message
    assert r.final_loss == pytest.approx((ip.user_ns["x"].numpy() - 2.0) ** 2, rel=1e-5)


def test_pace_is_for_the_live_panel_and_text_mode_says_so(ip, run, capsys):
    res = run("descend", "x=10.0 --eta 0.1 --steps 40 --pace 10 --no-widgets", "y = (x - 2.0) ** 2")
    out = capsys.readouterr().out
    assert "--pace applies to the live panel" in out and out.count("--pace") == 1
    assert res.status == "max_steps" and res.steps == 40  # at full speed, not 4 s


@pytest.mark.parametrize("pace", ["0", "-3", "inf", "nan"])
def test_pace_must_be_a_positive_rate(ip, run, pace):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="--pace is steps per second"):
        run("descend", f"x=10.0 --pace {pace}", "y = x * x")
    assert "x" not in ip.user_ns  # refused before anything changed


@pytest.mark.parametrize("magic, cell", [("descend", COURSE), ("tfgrad", COURSE)])
def test_a_result_does_not_keep_the_namespace_alive(ip, run, magic, cell):
    """Each result held a copy of the whole namespace (via its compiled cell's globals), so a
    deleted array, and every earlier result, stayed in memory for good."""
    import gc
    import weakref

    ip.user_ns["big"] = big = np.ones(1000)
    gone = weakref.ref(big)
    del big
    line = "x=10.0 --steps 5 --no-widgets -o r1" if magic == "descend" else "-o r1"
    if magic == "tfgrad":
        ip.run_cell("x = tf.Variable(10.0)")
    run(magic, line, cell)
    run(magic, line.replace("r1", "r2"), cell)
    first = weakref.ref(ip.user_ns["r1"])
    del ip.user_ns["big"], ip.user_ns["r1"]
    gc.collect()
    assert gone() is None, "a result keeps a deleted array alive"
    assert first() is None, "a later result keeps an earlier one alive"


@pytest.mark.parametrize("line, cell, message", [
    ("x=1.0 -o __builtins__", COURSE, "not a Python keyword or builtin"),
    ("x=1.0 -o print", COURSE, "not a Python keyword or builtin"),
    ("x=1.0 x=2.0", COURSE, "x is named twice"),
    ("for=1.0", COURSE, "for is a Python keyword"),
    ("x=1.0 --eta 1e-50", COURSE, "0 or infinite in float32"),
    ("x=1j", COURSE, "complex128; give a real number"),
    ("x=-1:1 --restarts 2 --seed -1", COURSE, "--seed must be 0 or more"),
    ("s", COURSE, "complex variable"),
    ("f", COURSE, "non-trainable"),
    ("x y", "y2 = (x - 2.0) ** 2 + (y - 1.0) ** 2", "same tf.Variable"),
])
def test_names_and_values_are_checked_before_anything_changes(ip, run, line, cell, message):
    from IPython.core.error import UsageError

    ip.run_cell("x = tf.Variable(5.0); y = x; s = tf.Variable(1j); f = tf.Variable(1.0, trainable=False)")
    before = {n: ip.user_ns[n] for n in ("x", "y", "s", "f")}
    with pytest.raises((TfmagicError, UsageError), match=message):
        run("descend", line + " --no-widgets", cell)
    assert {n: ip.user_ns[n] for n in before} == before and float(ip.user_ns["x"].numpy()) == 5.0
    assert ip.run_cell("len([1, 2])").result == 2  # later cells still run (-o __builtins__ broke them all)


@pytest.mark.parametrize("cell, message", [
    ("from math import *\ny = x * x", "`from ... import \\*` cannot be used"),
    ("await foo()\ny = x * x", "`await` cannot be used"),
    ("nonlocal q\ny = x * x", "`nonlocal` cannot be used"),
    ("return x\ny = x * x", "`return` cannot be used"),
    ("yield x\ny = x * x", "`yield` cannot be used"),
])
def test_what_a_function_body_cannot_hold_gets_a_short_message(ip, run, cell, message):
    with pytest.raises(TfmagicError, match=message) as info:
        run("descend", "x=3.0 --steps 3 --no-widgets", cell)
    assert info.value.line == 1 and "tfmagic" not in (info.value.line_text or "")


def test_a_recursive_def_and_a_loss_that_is_the_variable_itself(ip, run):
    res = run("descend", "x=3.0 --steps 3 --no-widgets", "def f(n):\n    return 1.0 if n == 0 else n * f(n - 1)\ny = x * f(3)")
    assert res.status == "max_steps" and ip.user_ns["f"](4) == 24.0  # the def is kept, recursion and all
    res = run("descend", "x=3.0 --eta 0.5 --steps 2 --no-widgets", "y = x")
    assert res.status == "max_steps" and float(ip.user_ns["x"].numpy()) == pytest.approx(2.0)  # dy/dx = 1


def test_a_global_in_a_def_that_the_cell_also_assigns_is_refused(ip, run):
    cell = "g = 1.0\ndef bump():\n    global g\n    g = 2.0\nbump()\ny = (x - g) ** 2"
    with pytest.raises(TfmagicError, match="global g") as info:
        run("descend", "x=3.0 --steps 3 --no-widgets", cell)
    assert info.value.line == 3 and "g" not in ip.user_ns


def test_the_result_keeps_a_static_chart_of_the_loss(ip, run):
    """The live charts are widgets: a reopened notebook (or GitHub, nbviewer) shows 'model not
    found' where they were. The result's HTML carries a small SVG of the loss that survives."""
    import re

    res = run("descend", "x=10.0 --eta 0.02 --steps 50 --no-widgets", COURSE)
    svg = re.search(r"<svg class='tfmagic-loss-svg'.*?</svg>", res._repr_html_())
    assert svg and ">64</text>" in svg.group(0) and "iteration 50" in svg.group(0)  # (to where the run ended)
    points = re.search(r"points='([^']*)'", svg.group(0)).group(1).split()
    assert len(points) == 51
    ys = [float(p.split(",")[1]) for p in points]
    assert ys[0] < ys[-1]  # the loss falls: drawn from the top down
    assert "<svg" not in repr(res)


def test_a_healthy_cell_is_tried_eagerly_and_only_traced_not_run_in_its_set_up(ip, run, monkeypatch):
    """The set-up's trial of the cell runs eagerly (~1 ms) after a trace of the cell alone (~2.5 ms),
    against ~10 ms for a traced trial run with its gradient."""
    from tfmagic.cell import autograph

    wrapped, function = [], autograph.function
    monkeypatch.setattr(autograph, "function", lambda tf, fn, **o: wrapped.append(fn.__name__) or function(tf, fn, **o))
    res = run("descend", "x=10.0 --eta 0.01 --steps 20 --no-widgets", COURSE + "\nz = 2.0 * y")
    assert res.status == "max_steps" and wrapped == ["run_cell", "step"]
    # What the cell assigns is published at the final values, as before.
    assert float(ip.user_ns["z"]) == pytest.approx(2.0 * (float(ip.user_ns["x"].numpy()) - 2.0) ** 2, rel=1e-5)


@pytest.mark.parametrize("cell, message, line", [
    ("y = x.numpy() ** 2", "only available when eager execution", "x.numpy()"),  # eagerly: no gradient
    ("c = x.numpy()\ny = x ** 2 + c", "only available when eager execution", "x.numpy()"),  # eagerly: fine
    ("y = x ** 2 + np.sin(x)", "NotImplementedError", "np.sin"),
    ("v = tf.Variable(2.0)\ny = (x * v) ** 2", "singleton tf.Variables", "tf.Variable"),
    ("if x > 0:\n    z = x ** 2\ny = z + 0.0", "initialized in the else branch", "if x > 0"),
    ("w = tf.ones([3, 4])\ny = tf.reduce_sum(tf.linalg.matvec(w, tf.stack([x, x, x])))",
     "Dimensions must be equal, but are 4 and 3", "matvec"),
    ("tf.debugging.assert_positive(x - 20.0)\ny = x ** 2", "Condition x > 0 did not hold", "assert_positive"),
])
def test_a_cell_that_fails_in_a_step_says_so_as_a_traced_step_would(ip, run, cell, message, line):
    """The eager trial passes cells a graph refuses: the set-up also traces the cell, so they are
    refused with the graph's message and the cell's line before anything is published."""
    ip.user_ns.update(np=np, x=3.0, fit="kept")
    with pytest.raises(CellRuntimeError, match=message) as info:
        run("descend", "x=10.0 --steps 5 --no-widgets -o fit", cell)
    assert line in (info.value.line_text or "") and "running the cell" in str(info.value)
    assert ip.user_ns["x"] == 3.0 and ip.user_ns["fit"] == "kept"  # nothing was published


def test_only_the_live_panel_takes_short_chunks(ip, run, monkeypatch, loop):
    """Chunks grow until one takes CHUNK_SECONDS (a call costs P3 ~1-3 ms: ~10 % of its rate
    in 0.02-s chunks); the live panel's runner asks for STEERED_CHUNK_SECONDS, so an eta drag
    waits at most that. Text mode, --compare and Descent.run take the longer ones."""
    import types

    from tfmagic.descent import engine as E
    from tfmagic.kernel.runner import LiveRunner

    def chunk_sizes(drive):
        x = tf.Variable(10.0)
        eng = E.Descent(tf, lambda: (x - 2.0) ** 2, {"x": x}, eta=1e-4, jit="off")
        monkeypatch.setattr(E, "time", types.SimpleNamespace(perf_counter=lambda: eng.steps * 1e-5))  # 10 µs a step
        sizes = []
        eng.observe(lambda e, c: sizes.append(len(c.rows["loss"])))
        drive(eng)
        return max(set(sizes), key=sizes.count)  # the size most chunks had

    assert chunk_sizes(lambda eng: eng.run(50_000)) == pytest.approx(E.CHUNK_SECONDS / 1e-5, abs=1)
    async def live_run(eng):
        return await LiveRunner(eng).run(50_000)

    live = chunk_sizes(lambda eng: loop.run_until_complete(live_run(eng)))  # (conftest's loop: a thread of its own)
    assert live == pytest.approx(E.STEERED_CHUNK_SECONDS / 1e-5, abs=1)
    monkeypatch.undo()
    passed, run_chunks = [], E.Descent.run_chunks
    monkeypatch.setattr(E.Descent, "run_chunks", lambda self, *a, **k: passed.append((a, k)) or run_chunks(self, *a, **k))
    run("descend", "x=10.0 --steps 20 --no-widgets", COURSE)
    assert passed == [((20,), {})]  # (text mode: the default)


def test_the_switch_to_xla_is_judged_on_chunks_long_enough_to_show_the_rate(monkeypatch):
    """A 16-step chunk of a few ms is mostly its call's fixed cost: judged on it, P3's 1 000-step
    runs compiled XLA (~0.2 s) for ~0.1 s of steps left. Here a chunk costs 2.5 ms and a step 10 µs."""
    import types

    from tfmagic.descent import engine as E, policy

    def run(steps):
        x = tf.Variable(10.0)
        eng = E.Descent(tf, lambda: (x - 2.0) ** 2, {"x": x}, eta=1e-4, jit="auto")
        calls = []
        clock = types.SimpleNamespace(perf_counter=lambda: calls.append(1) or eng.steps * 1e-5 + len(calls) * 0.0025)
        monkeypatch.setattr(E, "time", clock)
        eng.run(steps)
        return eng

    short = run(1900)  # (the second chunk, 16 steps in 2.66 ms, reads as 0.31 s of steps left)
    assert short.status == "max_steps" and "xla" not in short.compiled
    monkeypatch.setattr(policy, "RATE_SECONDS", 0.002)  # the same chunk judged: the old rule
    assert "xla" in run(1900).compiled
