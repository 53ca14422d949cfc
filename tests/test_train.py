"""%%descend --data: mini-batches, epochs and validation."""

import numpy as np
import pytest
from IPython.core.error import UsageError

from tfmagic.descent.data import Batches
from tfmagic.errors import TfmagicError

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


# -- a dataset: an iterator cannot go back ---------------------------------------------------

GEN_CELL = "loss = tf.reduce_mean((tf.linalg.matvec(xb, w) - yb) ** 2)"


@pytest.fixture
def wide(ip):
    rng = np.random.default_rng(3)
    ip.user_ns["X"] = rng.normal(size=(640, 2)).astype(np.float32)
    ip.user_ns["Y"] = ip.user_ns["X"] @ np.array([1.5, -2.0], np.float32) + 0.3
    ip.user_ns["np"] = np
    return ip


def _by_hand(tf, batches, steps, eta=0.1):
    """The course's loop over `batches` for `steps` steps: (losses, w)."""
    w, losses = tf.Variable(tf.zeros([2])), []
    for xb, yb in batches:
        if len(losses) == steps:
            break
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((tf.linalg.matvec(tf.cast(xb, tf.float32), w) - tf.cast(yb, tf.float32)) ** 2)
        losses.append(float(loss))
        w.assign_sub(eta * tape.gradient(loss, w))
    return np.array(losses, np.float32), w.numpy()


@pytest.mark.parametrize("batches", [1, 2, 15, 16, 17, 31, 40, 75])
def test_a_generator_that_ends_early_keeps_the_steps_it_took(wide, run, batches):
    """Chunks hold 16, 32, ... steps: an end inside the first, at a boundary, in a later one."""
    wide.run_cell(f"def gen():\n    for i in range({batches}):\n        yield X[8 * i:8 * i + 8], Y[8 * i:8 * i + 8]\n"
                  "g = tf.data.Dataset.from_generator(gen, output_signature=(tf.TensorSpec([None, 2]), tf.TensorSpec([None])))")
    fit = run("descend", "w=tf.zeros([2]) --data xb,yb=g --steps 200 --no-widgets", GEN_CELL)
    assert fit.status == "out_of_data" and fit.steps == batches == len(fit.history["loss"])
    losses, w = _by_hand(wide.user_ns["tf"], wide.user_ns["g"], batches)
    np.testing.assert_allclose(fit.history["loss"], losses, rtol=1e-5)
    np.testing.assert_allclose(wide.user_ns["w"].numpy(), w, rtol=1e-5, atol=1e-6)
    assert f"no batch for step {batches + 1}" in fit.message and "Traceback" not in repr(fit)


@pytest.mark.parametrize("at", [1, 2, 9, 16, 17, 33, 70])
@pytest.mark.parametrize("kind", ["width", "label"])
def test_a_batch_the_cell_fails_on_is_named_by_its_step_and_the_steps_before_it_are_kept(wide, run, at, kind):
    """Before: the chunk was redone a step at a time from its start with the batches that came
    next, so the error named another step (or 'did not come back') and steps were lost."""
    ns = wide.user_ns
    if kind == "width":  # (a generator whose batch `at` has another number of columns)
        wide.run_cell(f"def gen():\n    for i in range(80):\n        x = X[8 * i:8 * i + 8]\n"
                      f"        yield (np.concatenate([x, x], 1) if i == {at} - 1 else x), Y[8 * i:8 * i + 8]\n"
                      "ds = tf.data.Dataset.from_generator(gen, output_signature=(tf.TensorSpec([None, None]), "
                      "tf.TensorSpec([None])))")
        cell = GEN_CELL
    else:  # (a label out of range in batch `at` of a shuffled dataset: the loss op raises)
        wide.run_cell(f"L = (X[:, 0] > 0).astype('int64'); L[8 * ({at} - 1) + 3] = 7\n"
                      "ds = tf.data.Dataset.from_tensor_slices((X, L)).batch(8)")
        cell = ("loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits("
                "labels=yb, logits=tf.stack([tf.linalg.matvec(xb, w), -tf.linalg.matvec(xb, w)], 1)))")
    if at == 1:  # (the first batch is the one the cell is checked on: refused before anything changes)
        with pytest.raises(TfmagicError, match="while running the cell"):
            run("descend", "w=tf.zeros([2]) --data xb,yb=ds --steps 200 --no-widgets -o fit", cell)
        assert "w" not in ns and "fit" not in ns
        return
    with pytest.raises(TfmagicError, match=f"step {at}:"):
        run("descend", "w=tf.zeros([2]) --data xb,yb=ds --steps 200 --no-widgets -o fit", cell)
    fit = ns["fit"]
    assert fit.status == "error" and fit.steps == at - 1 == len(fit.history["loss"])
    assert np.all(np.isfinite(ns["w"].numpy()))
    if kind == "width":
        losses, w = _by_hand(ns["tf"], ns["ds"], at - 1)
        np.testing.assert_allclose(fit.history["loss"], losses, rtol=1e-5)
        np.testing.assert_allclose(ns["w"].numpy(), w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("row, name, value", [(0, "X", "nan"), (37, "X", "inf"), (200, "Y", "nan"), (639, "Y", "-inf"),
                                              (400, "X", "nan")])
@pytest.mark.parametrize("batch", [8, 32])
def test_nan_in_a_dataset_is_named_by_its_step_and_row_not_blamed_on_eta(wide, run, row, name, value, batch):
    ns = wide.user_ns
    ns[name] = ns[name].copy()
    ns[name][row] = float(value)
    wide.run_cell(f"ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch({batch})")
    fit = run("descend", "w=tf.zeros([2]) --data xb,yb=ds --epochs 2 --no-widgets", GEN_CELL)
    step = row // batch + 1  # (in the first epoch)
    shown = "NaN" if value == "nan" else "inf"
    assert fit.status == "bad_data" and fit.steps == step - 1 == len(fit.history["loss"])
    assert (f"the batch of step {step} has {shown} in {'xb' if name == 'X' else 'yb'} (row {row % batch} of that batch)"
            in fit.message)
    assert "eta" not in fit.message.split("the step and eta are not at fault")[1] and "too large" not in fit.message
    losses, w = _by_hand(ns["tf"], ns["ds"], step - 1)
    np.testing.assert_allclose(fit.history["loss"], losses, rtol=1e-5)
    np.testing.assert_allclose(ns["w"].numpy(), w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("eta", [1.15, 1.3, 3.0])
def test_a_divergence_on_a_dataset_goes_back_to_its_chunk_and_says_which_step_blew_up(wide, run, eta):
    """Before: the chunk was redone from its start with the batches that came next."""
    ns = wide.user_ns
    make = "tf.data.Dataset.from_tensor_slices((X, Y)).shuffle(640, seed=3).batch(16).repeat()"
    wide.run_cell(f"ds = {make}\nby_hand = {make}")  # (the same batches: a fresh shuffle's seeds)
    fit = run("descend", f"w=tf.zeros([2]) --data xb,yb=ds --steps 400 --eta {eta} --no-widgets", GEN_CELL)
    losses, _ = _by_hand(ns["tf"], ns["by_hand"], 400, eta)
    limit = 1e6 * max(abs(losses[0]), 1.0)
    blowup = int(np.argmax(~(np.abs(losses) <= limit)))  # (the point it reached: step `blowup` took it there)
    assert fit.status == "diverged" and 0 <= fit.steps < blowup < 400
    assert f"step {blowup} made the loss blow up" in fit.message
    if blowup - fit.steps > 1:
        assert f"their values after step {fit.steps}: a dataset cannot give its batches again" in fit.message
    wide.run_cell(f"by_hand = {make}")
    kept, w = _by_hand(ns["tf"], ns["by_hand"], fit.steps, eta)
    np.testing.assert_allclose(fit.history["loss"], kept, rtol=1e-4)
    np.testing.assert_allclose(ns["w"].numpy(), w, rtol=1e-4, atol=1e-6)


def test_a_raise_of_eta_that_diverges_on_a_dataset_goes_back_and_says_which_step_blew_up(wide, run):
    """With a dataset the variables go back to the raise's point as with arrays (keep_best.py),
    the steps a chunk took before the blow-up are counted in the message, and the batches go on."""
    ns = wide.user_ns
    wide.run_cell("ds = tf.data.Dataset.from_tensor_slices((X, Y)).shuffle(640, seed=3).batch(16).repeat()")
    fit = run("descend", "w=tf.zeros([2]) --data xb,yb=ds --steps 40 --eta 0.05 --no-widgets", GEN_CELL)
    at_raise = ns["w"].numpy().copy()
    fit.engine.eta = 1.4
    fit.engine.run(300)
    back = fit.engine.kept.rewound
    assert fit.status == "diverged" and back is not None and fit.steps == 40 and fit.engine.unkept_steps > 1
    np.testing.assert_array_equal(ns["w"].numpy(), at_raise)
    blew = 40 + fit.engine.unkept_steps
    assert f"step {blew} made the loss blow up at eta=1.4" in fit.message
    assert "with the batches that come next (a dataset cannot give its batches again)" in fit.message
    assert fit.engine.run(20) == "max_steps" and np.isfinite(fit.history["loss"]).all()


DATASETS = {
    "plain": "ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(24)",
    "shuffled with a seed": "ds = tf.data.Dataset.from_tensor_slices((X, Y)).shuffle(640, seed=4).batch(24)",
    "shuffled, prefetched": "ds = tf.data.Dataset.from_tensor_slices((X, Y)).shuffle(100, seed=1).batch(32).prefetch(2)",
    "global seed": "tf.random.set_seed(5)\nds = tf.data.Dataset.from_tensor_slices((X, Y)).shuffle(64).batch(16)",
    "mapped, dicts": "ds = tf.data.Dataset.from_tensor_slices({'xb': X, 'yb': Y}).shuffle(50, seed=2).batch(20)"
                     ".map(lambda d: {'xb': d['xb'] * 2.0, 'yb': d['yb']})",
    "generator": "def gen():\n    for i in range(0, 640, 40):\n        yield X[i:i + 40], Y[i:i + 40]\n"
                 "ds = tf.data.Dataset.from_generator(gen, output_signature=(tf.TensorSpec([None, 2]), "
                 "tf.TensorSpec([None]))).apply(tf.data.experimental.assert_cardinality(16))",
}


@pytest.mark.parametrize("steps", [30, 61])
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_a_rerun_or_reset_of_a_dataset_takes_the_batches_of_the_first_run(wide, run, dataset, steps):
    """Before: they started at the next whole pass, so a shuffled dataset gave other batches."""
    wide.run_cell(DATASETS[dataset])
    line = f"w=tf.zeros([2]) --data xb,yb=ds --steps {steps} --no-widgets"
    first = run("descend", line, GEN_CELL).history["loss"].copy()
    again = run("descend", line, GEN_CELL)  # (traced again: a dataset run is never reused, reuse.py)
    np.testing.assert_array_equal(again.history["loss"], first)
    again.engine.reset()
    again.engine.run(steps)
    np.testing.assert_array_equal(again.history["loss"], first)
    fresh = run("descend", line, GEN_CELL + "  # (another cell: built afresh, a new iterator on the same dataset)")
    assert not fresh.engine.reused
    np.testing.assert_array_equal(fresh.history["loss"], first)


@pytest.mark.parametrize("parts", [(6, 11, 8), (1, 1, 23), (16, 9)])
def test_a_dataset_run_that_goes_on_takes_the_batches_one_run_would(wide, run, parts):
    """Play after Pause (a new run on the same engine) read the next batch for the point it
    stopped at: one batch skipped at every pause."""
    wide.run_cell(DATASETS["shuffled with a seed"])
    line = "w=tf.zeros([2]) --data xb,yb=ds --no-widgets"
    whole = run("descend", line + f" --steps {sum(parts)}", GEN_CELL).history["loss"].copy()
    fit = run("descend", line + f" --steps {parts[0]}", GEN_CELL)
    for steps in parts[1:]:
        fit.engine.pause()
        fit.engine.run(steps)
    np.testing.assert_allclose(fit.history["loss"], whole, rtol=1e-5)  # (a point evaluated eagerly: the last bit)


def test_jit_on_with_a_dataset_is_refused(wide, run):
    wide.run_cell("ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(32, drop_remainder=True)")
    with pytest.raises(UsageError, match="XLA cannot compile the reads of ds's iterator"):
        run("descend", "w=tf.zeros([2]) --data xb,yb=ds --steps 5 --jit on --no-widgets", GEN_CELL)
    fit = run("descend", "w=tf.zeros([2]) --data xb,yb=ds --steps 3000 --no-widgets", GEN_CELL)
    assert fit.status == "max_steps" and not fit.notes  # (no XLA tried, none failed)


# -- arrays that cannot be batched, or hold NaN: one line, before anything changes ---------------

BAD_ARRAYS = {
    "a ragged list": ("X", "[[1.0, 2.0], [3.0]] * 50", "ragged list (its rows have different lengths: row 0 has 2, row 1 has 1)"),
    "a ragged list, later": ("Y", "[[1.0]] * 60 + [[1.0, 2.0]] * 40", "row 0 has 1, row 60 has 2"),
    "a tf.RaggedTensor": ("X", "tf.ragged.constant([[1.0, 2.0], [3.0]] * 50)", "is a tf.RaggedTensor"),
    "a ragged object array": ("X", "np.array([np.zeros(2), np.zeros(3)] * 50, dtype=object)",
                              "ragged object array (its rows have different lengths: row 0 has 2, row 1 has 3)"),
    "Python objects": ("Y", "np.array([{'a': 1}] * 100)", "object array of Python objects"),
    "a sparse tensor": ("X", "tf.sparse.from_dense(X)", "tf.sparse.to_dense(X)"),
    "dates": ("Y", "np.array(['2024-01-01'] * 100, dtype='datetime64[D]')", "holds datetime64[D] values"),
    "no rows": ("X", "X[:0]", "X has no rows"),
    "nan in X": ("X", "np.where(np.arange(100)[:, None] == 41, np.nan, X)", "X has NaN in row 41:"),
    "inf in Y, twice": ("Y", "np.where(np.isin(np.arange(100), [7, 90]), np.inf, Y)", "Y has inf in row 7 (and 1 more row"),
    "nan in a tensor": ("X", "tf.constant(np.where(np.arange(100)[:, None] == 99, np.nan, X))", "X has NaN in row 99"),
    "nan in a list": ("Y", "[0.0] * 50 + [float('nan')] + [0.0] * 49", "Y has NaN in row 50"),
    "complex inf": ("X", "X.astype(complex) * np.where(np.arange(100)[:, None] == 3, np.inf, 1)", "X has "),
}


@pytest.mark.parametrize("option", ["--data", "--validate"])
@pytest.mark.parametrize("case", list(BAD_ARRAYS))
def test_arrays_that_cannot_be_batched_or_hold_nan_get_one_line(regression, run, case, option):
    """Before: a traceback wall (ragged), or a NaN blamed on the step and eta."""
    name, value, message = BAD_ARRAYS[case]
    ns = regression.user_ns
    ns.update(Xg=ns["X"], Yg=ns["Y"])
    regression.run_cell(f"{name} = {value}")
    line = "--data X,Y" if option == "--data" else "--data Xg,Yg --validate X,Y"
    with pytest.raises(UsageError) as err:
        run("descend", f"w=0.0 b=0.0 {line} --batch-size 10 --steps 5 --no-widgets", LINEAR)
    text = str(err.value)
    assert text.startswith(f"{option}: ") and message in text and "\n" not in text
    assert "w" not in ns


FINE_ARRAYS = {
    "integer labels": ("Y", "np.round(Y).astype('int64')"),
    "bool": ("Y", "Y > 0"),
    "a tf.Tensor": ("X", "tf.constant(X)"),
    "a list of lists": ("X", "X.tolist()"),
    "a tuple": ("Y", "tuple(Y.tolist())"),
    "float16": ("X", "X.astype('float16')"),
    "float64": ("X", "X.astype('float64')"),
    "a pandas frame": ("X", "__import__('pandas').DataFrame(X)"),
    "a pandas series": ("Y", "__import__('pandas').Series(Y)"),
    "an object array of equal rows": ("X", "np.array(list(X), dtype=object)"),
}


@pytest.mark.parametrize("case", list(FINE_ARRAYS))
def test_arrays_of_other_kinds_train_as_their_numbers_do(regression, run, case):
    """Before: a pandas frame or series, a tuple and an object array of equal rows were refused."""
    name, value = FINE_ARRAYS[case]
    cell = "loss = tf.reduce_mean(tf.square(tf.cast(X[:, 0], tf.float32) * w + b - tf.cast(Y, tf.float32)))"
    line = "w=0.0 b=0.0 --data X,Y --batch-size 16 --steps 20 --seed 2 --jit off --no-widgets"
    regression.run_cell(f"{name} = {value}")
    fit = run("descend", line, cell)
    regression.run_cell(f"{name} = np.array(np.asarray({name}).tolist())")  # (the same numbers, a plain array)
    same = run("descend", line, cell)
    assert fit.status == "max_steps"
    np.testing.assert_allclose(fit.history["loss"], same.history["loss"], rtol=1e-6)
