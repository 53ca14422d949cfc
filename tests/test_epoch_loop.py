"""--data under XLA (descent/epoch_loop.py): epochs of static-shaped batches in one compiled
call, a smaller last batch included, against the plain loop and the per-step chunks."""

import numpy as np
import pytest

LINEAR = "loss = tf.reduce_mean(tf.square(X[:, 0] * w + b - Y))"
# (N, batch): N mod batch zero and not, one batch an epoch, a last batch of 1
SHAPES = [(100, 32), (96, 32), (100, 100), (50, 49), (33, 8), (7, 3)]


def data(ip, n, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 1)).astype("float32")
    ip.user_ns.update(X=X, Y=(3.0 * X[:, 0] - 1.0 + noise * rng.normal(size=n)).astype("float32"))


def fit(run, line):
    return run("descend", f"w=0.0 b=0.0 {line} --no-widgets", LINEAR)


@pytest.mark.parametrize("n,batch", SHAPES)
def test_xla_takes_the_same_batches_and_steps_as_the_plain_loop(ip, run, n, batch):
    data(ip, n)
    epochs = max(3, 400 // -(-n // batch))  # (> 200 steps: loops, not single steps)
    line = f"--data X,Y --batch-size {batch} --epochs {epochs} --seed 5 --eta 0.05"
    on, off = fit(run, line + " --jit on"), fit(run, line + " --jit off")
    assert on.status == off.status == "max_steps" and on.steps == off.steps
    np.testing.assert_allclose(on.history["loss"], off.history["loss"], rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(on.history["w"], off.history["w"], rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(on.history["grad_norm"], off.history["grad_norm"], rtol=2e-3, atol=1e-5)
    assert np.array_equal(on.epochs["epoch"], off.epochs["epoch"]) and len(on.epochs["epoch"]) == epochs
    np.testing.assert_allclose(on.epochs["loss"], off.epochs["loss"], rtol=2e-4)


@pytest.mark.parametrize("n,batch", [(100, 32), (96, 32), (33, 8)])
def test_one_trace_and_chunks_that_span_epochs(ip, run, n, batch):
    data(ip, n)
    res = fit(run, f"--data X,Y --batch-size {batch} --epochs 300 --jit on --eta 0.05")
    engine = res.engine
    chunks = []
    engine.observers.add(lambda e, c: chunks.append(len(c.rows["loss"])))
    for steps in (5, 3 * engine.epoch_steps + 1, 5000, 17):
        engine.run(steps)
    fn = engine._graphs.built["xla"]
    assert fn.experimental_get_tracing_count() == 1  # a short last batch, chunks of any size: one trace
    assert max(chunks) > 4 * engine.epoch_steps  # (chunks are sized by time, not cut at each epoch)
    assert len(res.epochs["epoch"]) == engine.steps // engine.epoch_steps
    assert list(res.epochs["epoch"]) == list(range(1, engine.steps // engine.epoch_steps + 1))


@pytest.mark.parametrize("jit", ["on", "off"])
def test_the_epoch_table_does_not_depend_on_how_the_steps_were_cut(ip, run, jit):
    data(ip, 100)
    line = f"--data X,Y --batch-size 32 --steps 1 --jit {jit} --seed 2 --eta 0.05"
    whole = fit(run, line)  # (a run of the cell again retires the engine before it: one at a time)
    whole.engine.run(4 * 250)
    whole_epochs, whole_loss = dict(whole.epochs), whole.history["loss"].copy()
    cut = fit(run, line)
    for piece in (3, 250, 1, 500, 246):  # (ends mid-epoch, at epoch ends, a single step)
        cut.engine.run(piece)
    assert np.array_equal(whole_epochs["epoch"], cut.epochs["epoch"]) and len(cut.epochs["epoch"]) == 250
    np.testing.assert_allclose(whole_epochs["loss"], cut.epochs["loss"], rtol=1e-5)
    np.testing.assert_allclose(whole_loss, cut.history["loss"], rtol=1e-5)


def test_validation_is_taken_at_each_epochs_end_under_xla(ip, run):
    data(ip, 100)
    ip.user_ns.update(Xv=ip.user_ns["X"][:20] + 0.5, Yv=ip.user_ns["Y"][:20] + 1.0)
    line = "--data X,Y --batch-size 32 --epochs 80 --validate Xv,Yv --seed 1 --eta 0.05"
    on = fit(run, line + " --jit on")
    chunks = []
    on.engine.observers.add(lambda e, c: chunks.append((len(c.rows["loss"]), len(c.epochs))))
    on.engine.run(40 * on.engine.epoch_steps)  # (taken inside the compiled calls: chunks span epochs)
    assert max(n for n, _ in chunks) > 3 * on.engine.epoch_steps and max(k for _, k in chunks) > 3
    on_table = {k: np.array(v) for k, v in on.epochs.items()}
    off = fit(run, line + " --jit off")
    off.engine.run(40 * off.engine.epoch_steps)
    assert np.all(np.isfinite(on_table["val_loss"])) and len(on_table["val_loss"]) == 120
    np.testing.assert_allclose(on_table["val_loss"], off.epochs["val_loss"], rtol=2e-4)
    np.testing.assert_allclose(on_table["loss"], off.epochs["loss"], rtol=2e-4)


@pytest.mark.parametrize("cell", [
    "loss = tf.reduce_mean(tf.square(X[:, 0] * w + b - Y)) * tf.exp(w * w)",  # blows up
    "loss = tf.reduce_mean(tf.square(X[:, 0] * w + b - Y)) + nan_slope_above_2(w)",  # a finite loss, NaN gradient
])
@pytest.mark.parametrize("n,batch", [(100, 32), (64, 16)])
def test_a_divergence_ends_where_the_plain_loop_ends_it(ip, run, cell, n, batch):
    data(ip, n)
    tf = ip.user_ns["tf"]

    @tf.custom_gradient
    def nan_slope_above_2(w):  # (XLA and TensorFlow's kernels differ on sqrt's slope at 0: no such trick)
        return tf.zeros_like(w), lambda dy: dy * tf.where(w > 2.0, float("nan"), 0.0)

    ip.user_ns["nan_slope_above_2"] = nan_slope_above_2
    line = f"w=0.0 b=0.0 --data X,Y --batch-size {batch} --steps 3000 --eta 0.25 --seed 4 --no-widgets"
    on, off = run("descend", line + " --jit on", cell), run("descend", line + " --jit off", cell)
    assert on.status == off.status == "diverged"
    assert on.steps == off.steps
    for r in (on, off):
        assert np.all(np.isfinite(r.history["loss"])) and np.isfinite(r.values["w"]) and np.isfinite(r.values["b"])
    assert on.values["w"] == pytest.approx(off.values["w"], rel=1e-4)


def test_tol_stops_at_the_first_point_below_it_under_xla(ip, run):
    data(ip, 100, noise=0.0)
    line = "--data X,Y --batch-size 32 --steps 20000 --eta 0.1 --tol 1e-3 --seed 1"
    on, off = fit(run, line + " --jit on"), fit(run, line + " --jit off")
    assert on.status == off.status == "converged"
    assert on.steps == off.steps
    assert np.all(on.history["grad_norm"] >= 1e-3) and on.engine.final_grad_norm < 1e-3


def test_a_switch_out_of_the_epoch_loop_evaluates_the_point_again(ip, run):
    data(ip, 100)
    res = fit(run, "--data X,Y --batch-size 32 --steps 300 --jit on --seed 3 --eta 0.05")
    engine = res.engine
    before = engine.steps
    engine.jit = "off"
    engine._compiled.policy.jit = "off"  # (as --jit off would: plain loops, which carry the gradients)
    engine.run(300)
    ref = fit(run, "--data X,Y --batch-size 32 --steps 600 --jit off --seed 3 --eta 0.05")
    assert engine.steps == before + 300 == ref.steps
    np.testing.assert_allclose(res.history["loss"], ref.history["loss"], rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("change", ["validation values", "training values", "both"])
def test_a_rerun_after_the_data_changed_equals_a_fresh_build_under_xla(ip, run, change):
    data(ip, 100)
    X, Y = ip.user_ns["X"], ip.user_ns["Y"]
    ip.user_ns.update(Xv=X[:20] + 0.5, Yv=Y[:20] + 1.0)
    line = "--data X,Y --batch-size 32 --epochs 60 --validate Xv,Yv --seed 1 --eta 0.05 --jit on"
    fit(run, line)
    if change != "training values":
        ip.user_ns["Xv"] = X[:20] * 5.0
    if change != "validation values":
        ip.user_ns["X"] = X * 2.0
    again = fit(run, line)
    again_table = {k: np.array(v) for k, v in again.epochs.items()}
    fresh = run("descend", f"w=0.0 b=0.0 {line} --no-widgets", LINEAR + "  # (another cell: a fresh build)")
    np.testing.assert_array_equal(again.history["loss"], fresh.history["loss"])
    np.testing.assert_array_equal(again_table["val_loss"], fresh.epochs["val_loss"])


@pytest.mark.parametrize("n", [128, 120])  # (one batch shape: the plain XLA loop; a short last batch: the epoch loop)
def test_a_large_model_under_xla_takes_the_steps_of_the_plain_loop(ip, run, n):
    rng = np.random.default_rng(0)
    ip.user_ns.update(X=rng.normal(size=(n, 300)).astype("float32"), Y=rng.normal(size=n).astype("float32"))
    cell = "loss = tf.reduce_mean(tf.square(tf.reduce_sum(tf.tanh(X @ W), axis=1) * 0.01 - Y))"
    line = "W=tf.zeros([300,300]) --data X,Y --batch-size 32 --epochs 60 --seed 2 --eta 0.05 --no-widgets"
    on = run("descend", line + " --jit on", cell)
    assert on.engine._graphs.runs_epochs == (n % 32 != 0)
    on_loss = on.history["loss"].copy()
    off = run("descend", line + " --jit off", cell)
    assert on.steps == off.steps == 60 * -(-n // 32)
    np.testing.assert_allclose(on_loss, off.history["loss"], rtol=2e-4, atol=1e-6)


OPTIMIZERS = ["sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad"]


def optimizer_state(result):
    """The optimizer's variables (its step count, slots, learning rate) as numbers, now."""
    return [np.array(v.numpy()) for v in result.engine._compiled.optimizer.variables]


# Each optimizer on one batch shape (the plain XLA loop) and on a short last batch (the epoch loop),
# of 4 rows or of 1 in turn.
@pytest.mark.parametrize("optimizer, n, batch", [
    (opt, *shape) for i, opt in enumerate(OPTIMIZERS) for shape in [(96, 32), [(100, 32), (33, 8)][i % 2]]])
def test_each_optimizer_under_xla_takes_the_plain_loops_steps_and_keeps_its_state(ip, run, optimizer, n, batch):
    # The epoch loop steps only from the points it judged healthy, the last point of each call not:
    # the variables and every slot must be where the plain loop (which carries the gradients) left them.
    data(ip, n, seed=n + batch)
    line = f"--data X,Y --batch-size {batch} --epochs {max(3, 300 // -(-n // batch))} --seed 7 --eta 0.02 --optimizer {optimizer}"
    on = fit(run, line + " --jit on")
    for more in (7, 2 * on.engine.epoch_steps + 3):  # (calls that end mid-epoch and at an epoch's last batch)
        on.engine.run(more)
    on_history, on_state, on_epochs = dict(on.history), optimizer_state(on), dict(on.epochs)
    off = fit(run, line + " --jit off")
    for more in (7, 2 * off.engine.epoch_steps + 3):
        off.engine.run(more)
    assert on.engine._graphs.built.keys() >= {"xla"} and on.steps == off.steps
    assert int(on_state[0]) == on.steps and int(optimizer_state(off)[0]) == off.steps  # (the step count)
    for key in ("loss", "w", "b", "grad_norm"):
        np.testing.assert_allclose(on_history[key], off.history[key], rtol=2e-3, atol=1e-5)
    for a, b in zip(on_state, optimizer_state(off)):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-5)
    assert np.array_equal(on_epochs["epoch"], off.epochs["epoch"])
    np.testing.assert_allclose(on_epochs["loss"], off.epochs["loss"], rtol=2e-4)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov"])
@pytest.mark.parametrize("n,batch", [(100, 32), (64, 16)])
def test_a_converged_point_is_not_stepped_from_under_xla(ip, run, optimizer, n, batch):
    data(ip, n, noise=0.0)
    line = f"--data X,Y --batch-size {batch} --steps 20000 --eta 0.05 --tol 1e-3 --seed 1 --optimizer {optimizer}"
    on = fit(run, line + " --jit on")
    on_state, on_values = optimizer_state(on), dict(on.values)
    off = fit(run, line + " --jit off")
    assert on.status == off.status == "converged" and on.steps == off.steps
    assert int(on_state[0]) == on.steps  # (no step taken from the converged point)
    for a, b in zip(on_state, optimizer_state(off)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert on_values["w"] == pytest.approx(off.values["w"], rel=1e-4)
    assert on_values["b"] == pytest.approx(off.values["b"], rel=1e-4, abs=1e-6)

