"""%%descend --data: mini-batches, epochs and validation."""

import numpy as np
import pytest
from IPython.core.error import UsageError

from tfmagic.descent.data import Batches

LINEAR = "loss = tf.reduce_mean(tf.square(X[:, 0] * w + b - Y))"


@pytest.fixture
def regression(ip):
    ip.run_cell(
        "import numpy as np\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.normal(size=(100, 1)).astype('float32')\n"
        "Y = (3.0 * X[:, 0] - 1.0 + 0.1 * rng.normal(size=100)).astype('float32')\n"
        "Xv, Yv = X[:30] + 0.5, 3.0 * (X[:30, 0] + 0.5) - 1.0\n"
    )
    return ip


def test_every_sample_once_an_epoch_in_a_new_order_each_epoch(ip):
    tf = ip.user_ns["tf"]
    batches = Batches(tf, {"X": np.arange(10.0)}, 4, seed=7, device=None)
    assert batches.epoch_steps == 3

    def epoch():
        return [batches.take()["X"].numpy() for _ in range(batches.epoch_steps)]

    first, second = epoch(), epoch()
    assert [len(b) for b in first] == [4, 4, 2]  # the last batch holds the 10 mod 4 left over
    for taken in (first, second):
        assert sorted(np.concatenate(taken)) == list(range(10))
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))
    again = Batches(tf, {"X": np.arange(10.0)}, 4, seed=7, device=None)
    assert np.array_equal(np.concatenate([again.take()["X"].numpy() for _ in range(3)]), np.concatenate(first))


def test_one_batch_of_everything_is_the_full_batch_run(regression, run):
    full = run("descend", "w=0.0 b=0.0 --steps 20 --no-widgets", LINEAR)
    one = run("descend", "w=0.0 b=0.0 --data X,Y --batch-size 100 --steps 20 --no-widgets", LINEAR)
    np.testing.assert_allclose(one.history["loss"], full.history["loss"], rtol=1e-6)


def test_epochs_validation_and_the_table(regression, run):
    fit = run("descend", "w=0.0 b=0.0 --data X,Y --batch-size 32 --epochs 6 --validate Xv,Yv --seed 1 "
                         "--eta 0.1 --no-widgets", LINEAR)
    assert fit.steps == 6 * 4  # 100 samples in batches of 32: 4 steps an epoch
    ep = fit.epochs
    assert list(ep["epoch"]) == [1, 2, 3, 4, 5, 6]
    assert list(fit.history["epoch"]) == [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 4 + [6] * 4
    np.testing.assert_allclose(ep["loss"], [fit.history["loss"][4 * i:4 * i + 4].mean() for i in range(6)], rtol=1e-6)
    ns = regression.user_ns
    w, b = float(ns["w"].numpy()), float(ns["b"].numpy())
    want = np.mean((ns["Xv"][:, 0] * w + b - ns["Yv"]) ** 2)
    assert ep["val_loss"][-1] == pytest.approx(want, rel=1e-4)  # at the end of the last epoch
    assert ep["val_loss"][-1] < ep["val_loss"][0] and abs(w - 3.0) < 0.3
    assert "epochs:" in repr(fit) and "val_loss" in repr(fit)
    assert "<table class='tfmagic-epochs'>" in fit._repr_html_()
    assert not any("XLA" in n for n in fit.notes)  # B does not divide N: no XLA tried, none failed


def test_a_seed_repeats_the_order_and_reset_starts_at_epoch_one(regression, run):
    a = run("descend", "w=0.0 b=0.0 --data X,Y --batch-size 16 --steps 15 --seed 3 --no-widgets", LINEAR)
    b = run("descend", "w=0.0 b=0.0 --data X,Y --batch-size 16 --steps 15 --seed 3 --no-widgets", LINEAR)
    c = run("descend", "w=0.0 b=0.0 --data X,Y --batch-size 16 --steps 15 --seed 4 --no-widgets", LINEAR)
    np.testing.assert_array_equal(a.history["loss"], b.history["loss"])
    assert not np.array_equal(a.history["loss"], c.history["loss"])
    assert b.engine.reused and c.engine.reused  # (another seed, the same compiled steps)
    first = c.history["loss"].copy()
    c.engine.reset()
    c.engine.run(15)
    np.testing.assert_array_equal(c.engine.history["loss"], first)


@pytest.mark.parametrize("line, message", [
    ("--data X,Z", "name 'Z' is not defined"),
    ("--data X,Short", "the same number each; X has 100, Short has 7"),
    ("--data X,Y --batch-size 0", "between 1 and the 100 samples"),
    ("--data X,Y --batch-size 101", "between 1 and the 100 samples"),
    ("--data X,Y --validate Xv", "one array for each of --data's"),
    ("--data X,Y --validate Yv,Xv", "rows of shape"),
    ("--data X,Y --epochs 2 --steps 5", "--epochs or --steps, not both"),
    ("--batch-size 10", "goes with --data"),
    ("--data X,Y --compare eta=0.1,0.2", "cannot be combined"),
    ("--data w0", "not an array"),
])
def test_bad_data_options_change_nothing(regression, run, line, message):
    regression.run_cell("Short = np.zeros(7)\nw0 = tf.Variable(1.0)")
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run("descend", f"w=0.0 b=0.0 {line} --no-widgets", LINEAR)
    assert "w" not in regression.user_ns  # nothing was created


def test_a_keras_model_trains_on_mini_batches(ip, run):
    ip.run_cell(
        "import keras, numpy as np\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.normal(size=(512, 8)); Y = np.argmax(X @ rng.normal(size=(8, 3)), axis=1)\n"
        "model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation='relu'), keras.layers.Dense(3)])\n"
    )
    fit = run("descend", "model --data X,Y --batch-size 64 --epochs 8 --validate X,Y --optimizer adam --eta 0.01 "
                         "--no-widgets",
              "loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(Y, model(X), from_logits=True))")
    assert fit.epochs["val_loss"][-1] < 0.5 * fit.epochs["val_loss"][0]
    assert "shape (8, 16), norm" in repr(fit)  # a model's weights are summarised


def test_xla_takes_the_same_batches_when_the_batch_size_divides_the_data(regression, run):
    plain = run("descend", "w=0.0 b=0.0 --data X,Y --batch-size 25 --steps 40 --seed 2 --jit off --no-widgets", LINEAR)
    xla = run("descend", "w=0.0 b=0.0 --data X,Y --batch-size 25 --steps 40 --seed 2 --jit on --no-widgets", LINEAR)
    assert "xla" in xla.engine.compiled and not xla.notes
    np.testing.assert_allclose(xla.history["loss"], plain.history["loss"], rtol=1e-4)


def test_a_run_that_goes_on_takes_the_batches_one_run_would(regression, run):
    """Play after a pause (a new run on the same engine) evaluated its point on a new batch,
    skipping one: epochs then drifted from the steps and samples went unused."""
    line = "w=0.0 b=0.0 --data X,Y --batch-size 32 --seed 5 --jit off --no-widgets"
    whole = run("descend", line + " --steps 25", LINEAR).history["loss"].copy()
    parts = run("descend", line + " --steps 6", LINEAR)
    parts.engine.run(11)
    parts.engine.run(8)
    np.testing.assert_allclose(parts.history["loss"], whole, rtol=1e-6)
    assert list(parts.epochs["epoch"]) == [1, 2, 3, 4, 5, 6]


def test_a_steered_eta_is_kept_as_a_keras_schedule(regression, run):
    import keras

    fit = run("descend", "w=0.0 b=0.0 --steps 10 --eta 0.01 --no-widgets", LINEAR)
    fit.engine.eta = 0.05  # steered by hand between chunks, as the panel does
    fit.engine.run(5)
    schedule = fit.eta_schedule()
    assert [round(float(schedule(i)), 6) for i in (0, 9, 10, 14, 99)] == [0.01, 0.01, 0.05, 0.05, 0.05]
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert float(again(12)) == pytest.approx(0.05)
    opt = keras.optimizers.SGD(schedule)
    assert float(opt.learning_rate) == pytest.approx(0.01)  # step 0


def test_find_eta_sweeps_suggests_and_puts_everything_back(ip, run):
    sweep = run("descend", "x=10.0 --find-eta --no-widgets", "y = (x - 2.0) ** 2")
    assert float(ip.user_ns["x"].numpy()) == 10.0  # back at the start
    assert sweep.etas[0] == pytest.approx(1e-7) and np.all(np.diff(sweep.etas) > 0)
    assert sweep.stopped_early and sweep.bound == pytest.approx(1.0, rel=1e-3)  # 2/λ of (x-2)^2
    assert 1e-3 < sweep.suggested_eta < sweep.bound
    assert "suggested eta ≈" in repr(sweep) and "tfmagic-sweep-svg" in sweep._repr_html_()
    after = run("descend", f"x=10.0 --eta {sweep.suggested_eta} --steps 200 --no-widgets", "y = (x - 2.0) ** 2")
    assert after.final_loss < 1e-6  # the suggestion trains


def test_find_eta_on_a_model_with_data_leaves_its_weights(regression, run):
    regression.run_cell("import keras\nmodel = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])")
    before = [w.copy() for w in regression.user_ns["model"].get_weights()]
    sweep = run("descend", "model --data X,Y --batch-size 20 --find-eta --steps 60 --optimizer adam --no-widgets",
                "loss = tf.reduce_mean(tf.square(model(X)[:, 0] - Y))")
    for w, b in zip(regression.user_ns["model"].get_weights(), before):
        np.testing.assert_array_equal(w, b)
    assert len(sweep.etas) > 10 and sweep.bound is None  # (2/λ is for plain gradient descent)
    with pytest.raises(UsageError, match="--find-eta"):
        run("descend", "w=0.0 --find-eta --compare eta=0.1,0.2 --no-widgets", "y = (w - 2.0) ** 2")


def test_eta_schedule_replays_a_steered_run_exactly(ip, run):
    course = "y=tf.pow(x,2.0)-4.0*x+4.0"
    fit = run("descend", "x=10.0 --steps 30 --eta 0.01 --no-widgets -o fit", course)
    fit.engine.eta = 0.05  # steered by hand, as the panel does
    fit.engine.run(20)
    fit.engine.eta = 0.002
    fit.engine.run(7)
    again = run("descend", "x=10.0 --eta-schedule fit --no-widgets", course)
    assert again.steps == 57
    np.testing.assert_array_equal(again.history["eta"], fit.history["eta"])
    np.testing.assert_array_equal(again.history["loss"], fit.history["loss"])
    # from its .eta_schedule(), past its end (the last eta holds), and on a fresh build
    ip.user_ns["sched"] = fit.eta_schedule()
    longer = run("descend", "x=10.0 --eta-schedule sched --steps 60 --jit off --no-widgets", course)
    np.testing.assert_array_equal(longer.history["loss"][:57], fit.history["loss"])
    assert list(longer.history["eta"][-4:]) == [np.float32(0.002)] * 4


@pytest.mark.parametrize("line, message", [
    ("--eta-schedule nothing", "name 'nothing' is not defined"),
    ("--eta-schedule number", "number is a float; give a %%descend result"),
    ("--eta-schedule fit --eta 0.1", "give --eta or --eta-schedule fit, not both"),
    ("--eta-schedule fit --compare eta=0.1,0.2", "cannot be combined with --compare"),
])
def test_eta_schedule_refuses_what_it_cannot_replay(ip, run, line, message):
    from IPython.core.error import UsageError

    ip.user_ns["number"] = 1.5
    run("descend", "x=10.0 --steps 5 --no-widgets -o fit", "y = x * x")
    x = ip.user_ns["x"]
    with pytest.raises(UsageError, match=message):
        run("descend", f"x=3.0 {line} --no-widgets", "y = x * x")
    assert ip.user_ns["x"] is x and float(x.numpy()) == float(ip.user_ns["fit"].values["x"])


@pytest.fixture
def datasets(regression):
    regression.run_cell("train = tf.data.Dataset.from_tensor_slices((X, Y)).batch(16)\n"
                        "val = tf.data.Dataset.from_tensor_slices((Xv, Yv)).batch(8)")
    return regression


DS_CELL = "loss = tf.reduce_mean((xb[:, 0] * w + b - yb) ** 2)"


def test_a_dataset_run_survives_many_retraces(datasets, run):
    """Each optimizer picked in the panel traces the steps again. A tf.data iterator read in a
    trace with AutoGraph off counts as a misuse and raises after 32 (found in review)."""
    fit = run("descend", "w=0.0 b=0.0 --data xb,yb=train --epochs 1 --no-widgets", DS_CELL)
    engine = fit.engine
    first = len(engine.history["loss"])
    for i in range(36):
        engine.set_optimizer(["adam", "sgd", "momentum"][i % 3])
        assert engine.run(3) == "max_steps"
    assert len(engine.history["loss"]) == first + 36 * 3 and np.isfinite(engine.history["loss"]).all()


def test_a_dataset_is_taken_a_batch_a_step_an_epoch_a_pass(datasets, run):
    tf = datasets.user_ns["tf"]
    fit = run("descend", "w=0.0 b=0.0 --data xb,yb=train --epochs 3 --validate xb,yb=val --no-widgets", DS_CELL)
    passes = -(-len(datasets.user_ns["X"]) // 16)
    assert fit.steps == 3 * passes and list(fit.epochs["epoch"]) == [1, 2, 3]
    # the same steps as a loop over the dataset by hand
    w, b, losses = tf.Variable(0.0), tf.Variable(0.0), []
    for _ in range(3):
        for xb, yb in datasets.user_ns["train"]:
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((tf.cast(xb[:, 0], tf.float32) * w + b - tf.cast(yb, tf.float32)) ** 2)
            losses.append(float(loss))
            for v, g in zip((w, b), tape.gradient(loss, [w, b])):
                v.assign_sub(0.1 * g)
    np.testing.assert_allclose(fit.history["loss"], losses, rtol=1e-5)
    # validation: the loss over val's batches, weighted by their sizes, at the end
    ns = datasets.user_ns
    want = np.mean((ns["Xv"][:, 0] * float(ns["w"].numpy()) + float(ns["b"].numpy()) - ns["Yv"]) ** 2)
    assert fit.epochs["val_loss"][-1] == pytest.approx(want, rel=1e-4)
    again = run("descend", "w=0.0 b=0.0 --data xb,yb=train --epochs 3 --validate xb,yb=val --no-widgets", DS_CELL)
    assert not again.engine.reused  # (a dataset run is never reused: its iterator cannot go back)
    assert "a tf.data.Dataset is never reused" in repr(again)  # and Reset / a re-run starts a whole pass:
    np.testing.assert_array_equal(again.history["loss"], fit.history["loss"])


def test_a_dataset_of_dicts_and_an_endless_one(datasets, run):
    datasets.run_cell("named = tf.data.Dataset.from_tensor_slices({'yb': Y, 'xb': X}).batch(25)\n"
                      "endless = train.repeat()")
    fit = run("descend", "w=0.0 b=0.0 --data xb,yb=named --epochs 2 --no-widgets", DS_CELL)
    assert fit.steps == 2 * 4 and fit.final_loss < fit.history["loss"][0]
    endless = run("descend", "w=0.0 b=0.0 --data xb,yb=endless --steps 30 --no-widgets", DS_CELL)
    assert endless.steps == 30 and endless.epochs is None


@pytest.mark.parametrize("line, message", [
    ("--data xb=train", "each element of train holds 2 tensors, but 1 name is given"),
    ("--data xb,yb=nothing", "name 'nothing' is not defined; after = name a tf.data.Dataset"),
    ("--data xb,yb=X", "X is a ndarray"),
    ("--data a,b=named", "train's elements have the keys xb, yb|named's elements have the keys xb, yb"),
    ("--data xb,yb=train --batch-size 4", "train is batched already"),
    ("--data xb,yb=endless", "endless never ends"),
    ("--data xb,yb=endless --epochs 2", "never ends"),
    ("--data xb,yb=train --validate Xv,Yv", "give --validate NAMES=VALIDATION_DS"),
    ("--data xb,yb=train --validate yb,xb=val", "give --data's names, in its order"),
])
def test_a_dataset_that_does_not_fit_is_refused_before_anything_changes(datasets, run, line, message):
    from IPython.core.error import UsageError

    datasets.run_cell("named = tf.data.Dataset.from_tensor_slices({'yb': Y, 'xb': X}).batch(25)\n"
                      "endless = train.repeat()")
    with pytest.raises(UsageError, match=message):
        run("descend", f"w=0.0 b=0.0 {line} --no-widgets", DS_CELL)
    assert "w" not in datasets.user_ns


def test_float64_validation_data_and_a_dataset_of_unknown_length(datasets, run):
    from IPython.core.error import UsageError

    datasets.run_cell("val64 = tf.data.Dataset.from_tensor_slices((Xv.astype('float64'), Yv.astype('float64'))).batch(8)\n"
                      "unknown = train.filter(lambda x, y: True)")
    fit = run("descend", "w=0.0 b=0.0 --data xb,yb=train --epochs 2 --validate xb,yb=val64 --no-widgets", DS_CELL)
    assert np.all(np.isfinite(fit.epochs["val_loss"]))
    with pytest.raises(UsageError, match="does not know how many batches unknown has"):
        run("descend", "w=0.0 b=0.0 --data xb,yb=unknown --epochs 2 --no-widgets", DS_CELL)
    assert run("descend", "w=0.0 b=0.0 --data xb,yb=unknown --steps 5 --no-widgets", DS_CELL).steps == 5


def test_a_replayed_schedule_ends_with_the_cells_run(ip, run):
    course = "y=tf.pow(x,2.0)-4.0*x+4.0"
    run("descend", "x=10.0 --steps 10 --eta 0.01 --no-widgets -o fit", course)
    again = run("descend", "x=10.0 --eta-schedule fit --no-widgets", course)
    again.engine.eta = 0.05  # as the panel's slider, after the replay
    again.engine.run(5)
    assert list(again.history["eta"][-5:]) == [np.float32(0.05)] * 5
