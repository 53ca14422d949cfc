"""Keras constraints (kernel_constraint=, bias_constraint=): %%descend projects each variable after
every step as Keras's optimizer.apply does, on every path a step is taken; the reference is
Keras's own optimizer.apply on a copy of the model, batch for batch."""

import keras
import numpy as np
import pytest

from tfmagic.descent.data import Batches

CELL = "loss = tf.reduce_mean((model(X) - Y)**2)"
N, BATCH, SEED = 64, 10, 3  # 64 mod 10: a short last batch of 4


def _clip(w):
    return keras.ops.clip(w, -0.3, 0.3)


CONSTRAINTS = {  # name -> (kernel_constraint, bias_constraint), made afresh for each model
    "nonneg": lambda: (keras.constraints.NonNeg(), None),
    "maxnorm": lambda: (keras.constraints.MaxNorm(0.5), None),
    "unitnorm": lambda: (keras.constraints.UnitNorm(), None),
    "minmaxnorm": lambda: (keras.constraints.MinMaxNorm(0.2, 0.6, rate=0.5), None),
    "callable": lambda: (_clip, None),
    "bias": lambda: (None, keras.constraints.NonNeg()),
}


def _model(kind):
    kernel, bias = CONSTRAINTS[kind]()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, kernel_constraint=kernel, bias_constraint=bias)])
    rng = np.random.default_rng(5)
    model.set_weights([rng.normal(size=(3, 2)).astype("float32"), np.array([0.3, -0.2], "float32")])
    return model


@pytest.fixture
def data(ip):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 3)).astype("float32")
    Y = X @ np.array([[-1, 1], [2, -2], [-3, 0.5]], "float32") + np.array([-1.0, 1.0], "float32")
    ip.user_ns.update(X=X, Y=Y, keras=keras)
    return ip


def _reference(tf, kind, optimizer, eta, runs, X, Y, batched):
    """Keras's loop: per run a fresh optimizer (and batches from epoch 1), optimizer.apply per step.
    Returns the losses at each point stepped from, the kernel's norm there, and the end weights."""
    model = _model(kind)
    losses, norms = [], []
    for steps in runs:
        opt = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}[optimizer](eta)
        batches = Batches(tf, {"X": X, "Y": Y}, BATCH, SEED, None) if batched else None
        for _ in range(steps):
            b = batches.take() if batched else {"X": X, "Y": Y}
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((model(b["X"]) - b["Y"]) ** 2)
            losses.append(float(loss))
            norms.append(float(np.linalg.norm(model.layers[0].kernel.numpy())))
            opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    return np.array(losses), np.array(norms), model.get_weights()


def _check(ip, kind, results, optimizer, eta, runs, batched, rtol):
    tf, ns = ip.user_ns["tf"], ip.user_ns
    losses, norms, weights = _reference(tf, kind, optimizer, eta, runs, ns["X"], ns["Y"], batched)
    got = np.concatenate([np.asarray(r.history["loss"]) for r in results])
    np.testing.assert_allclose(got, losses, rtol=rtol, atol=1e-6)
    kernel = next(k for k in results[0].history if k.endswith("/kernel"))
    got_norms = np.concatenate([np.asarray(r.history[kernel]) for r in results])
    np.testing.assert_allclose(got_norms, norms, rtol=rtol, atol=1e-6)  # the history shows the projected point
    for have, want in zip(ns["model"].get_weights(), weights):
        np.testing.assert_allclose(have, want, rtol=rtol, atol=1e-6)
    kernel, bias = ns["model"].get_weights()
    if kind == "nonneg":
        assert kernel.min() >= 0
    if kind == "bias":
        assert bias.min() >= 0


PATHS = {  # name -> (line, optimizer, batched, tolerance)
    "plain": ("--steps 30", "sgd", False, 2e-5),
    "graph loop": ("--steps 30 --jit off", "sgd", False, 2e-5),
    "xla": ("--steps 30 --jit on", "sgd", False, 1e-4),
    "adam": ("--steps 30 --jit off --optimizer adam", "adam", False, 2e-5),
    "data": (f"--data X,Y --batch-size {BATCH} --seed {SEED} --steps 30", "sgd", True, 2e-5),
    "data graph loop": (f"--data X,Y --batch-size {BATCH} --seed {SEED} --steps 30 --jit off", "sgd", True, 2e-5),
    "data xla epochs": (f"--data X,Y --batch-size {BATCH} --seed {SEED} --steps 30 --jit on", "sgd", True, 1e-4),
    "data xla adam": (f"--data X,Y --batch-size {BATCH} --seed {SEED} --steps 30 --jit on --optimizer adam",
                      "adam", True, 1e-4),
}


@pytest.mark.parametrize("kind", list(CONSTRAINTS))
@pytest.mark.parametrize("path", list(PATHS))
def test_each_step_is_projected_as_kerass_optimizer_apply_does(data, run, kind, path):
    line, optimizer, batched, rtol = PATHS[path]
    data.user_ns["model"] = _model(kind)
    res = run("descend", f"model {line} --eta 0.1 --no-widgets", CELL)
    assert res.steps == 30
    _check(data, kind, [res], optimizer, 0.1, [30], batched, rtol)


@pytest.mark.parametrize("kind", ["nonneg", "maxnorm", "callable"])
@pytest.mark.parametrize("batched", [False, True])
def test_a_rerun_a_rewind_and_single_steps_project_too(data, run, kind, batched):
    """A re-run (a fresh optimizer and epoch 1, from where the last run left), a rewind
    (engine.rewind(k): restored and replayed) and Step (engine.run(1), the panel's Step)."""
    line = f"--data X,Y --batch-size {BATCH} --seed {SEED} " if batched else ""
    data.user_ns["model"] = _model(kind)
    first = run("descend", f"model {line}--steps 12 --eta 0.1 --no-widgets", CELL)
    again = run("descend", f"model {line}--steps 20 --eta 0.1 --no-widgets", CELL)
    again.engine.rewind(9)  # back to step 9 of the re-run, then on to 20 again
    again.engine.run(8)
    for _ in range(3):
        again.engine.run(1)
    assert again.engine.steps == 20
    _check(data, kind, [first, again.engine], "sgd", 0.1, [12, 20], batched, 2e-5)


def test_a_rerun_is_not_run_on_kept_steps_that_would_miss_a_changed_constraint(data, run):
    """The constraint's function is not in the cell's trace: a re-run with another constraint on
    the same model must take the new one."""
    data.user_ns["model"] = model = _model("maxnorm")
    run("descend", "model --steps 5 --eta 0.1 --no-widgets", CELL)
    model.layers[0].kernel.constraint = keras.constraints.NonNeg()
    run("descend", "model --steps 5 --eta 0.1 --no-widgets", CELL)
    assert model.layers[0].kernel.numpy().min() >= 0


@pytest.mark.parametrize("kind", ["nonneg", "unitnorm", "bias"])
def test_a_mirrored_strategys_steps_project_too(data, run, kind):
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        data.user_ns.update(model=_model(kind), strategy=strategy)
    res = run("descend", f"model --data X,Y --batch-size {BATCH} --seed {SEED} --steps 20 --strategy strategy "
                         "--eta 0.1 --no-widgets", CELL)
    assert res.device == "2 replicas (MirroredStrategy)"
    _check(data, kind, [res], "sgd", 0.1, [20], True, 1e-4)


@pytest.mark.parametrize("line", ["--compare eta=0.01,0.1", "--compare optimizer=sgd,adam"])
def test_a_series_steps_as_keras_does(data, run, line):
    """--compare's runs: the best one's values are kept."""
    data.user_ns["model"] = model = _model("nonneg")
    before = model.get_weights()
    run("descend", f"model {line} --steps 30 --no-widgets", CELL)
    assert model.get_weights()[0].min() >= 0 and not np.array_equal(model.get_weights()[0], before[0])


def test_a_rerun_after_a_constraint_is_removed_steps_without_it(data, run):
    data.user_ns["model"] = model = _model("nonneg")
    run("descend", "model --steps 5 --eta 0.1 --no-widgets", CELL)
    model.layers[0].kernel.constraint = None
    run("descend", "model --steps 30 --eta 0.1 --no-widgets", CELL)
    assert model.layers[0].kernel.numpy().min() < 0  # (the target's kernel has negative entries)
