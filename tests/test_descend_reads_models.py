"""%%descend with no NAME takes what %%tfgrad with no NAME takes: every tf.Variable, Keras
model/layer and tf.Module the cell reads (a model by its trainable variables, model/dense/kernel)."""

import keras
import numpy as np
import pytest

from tfmagic.errors import TfmagicError

SETUP = (
    "import numpy as np, keras\n"
    "rng = np.random.default_rng(0)\n"
    "X = rng.normal(size=(32, 3)).astype('float32')\n"
    "Y = (X @ np.array([[1.0], [-2.0], [0.5]]) + 0.3).astype('float32')\n"
    "class Lin(tf.Module):\n"
    "    def __init__(self):\n"
    "        self.w = tf.Variable(tf.ones([3, 1]), name='w')\n"
    "        self.b = tf.Variable(0.0, name='b')\n"
    "    def __call__(self, x):\n"
    "        return x @ self.w + self.b\n"
    "class Sub(keras.Model):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.inner = keras.layers.Dense(1, name='inner')\n"
    "    def call(self, x):\n"
    "        return self.inner(x)\n"
)

HOLDERS = {  # name -> code that makes `f`, called as f(X); its variables' columns
    "sequential": ("f = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name='d1'), "
                   "keras.layers.Dense(1, name='d2')])", ["f/d1/kernel", "f/d1/bias", "f/d2/kernel", "f/d2/bias"]),
    "functional": ("i = keras.Input((3,)); f = keras.Model(i, keras.layers.Dense(1, name='d1')(i))",
                   ["f/d1/kernel", "f/d1/bias"]),
    "layer": ("f = keras.layers.Dense(1); f.build((None, 3))", ["f/kernel", "f/bias"]),
    "subclassed": ("f = Sub(); f(X[:1])", ["f/inner/kernel", "f/inner/bias"]),
    "module": ("f = Lin()", ["f/w", "f/b"]),
}


@pytest.fixture
def ns(ip):
    ip.run_cell(SETUP)
    keras.utils.set_random_seed(1)
    return ip


def _weights(value):
    return [v.numpy() for v in value.trainable_variables]


@pytest.mark.parametrize("holder", list(HOLDERS))
@pytest.mark.parametrize("extra", ["", "scale"])
def test_a_cell_that_reads_a_model_trains_it_as_tfgrad_differentiates_it(ns, run, holder, extra):
    make, names = HOLDERS[holder]
    ns.run_cell(make + "\nscale = tf.Variable(1.5)")
    before = _weights(ns.user_ns["f"])
    cell = f"loss = tf.reduce_mean(({'scale * ' if extra else ''}f(X) - Y)**2)"
    res = run("descend", "--steps 20 --eta 0.05 --no-widgets", cell)
    want = names + (["scale"] if extra else [])
    columns = [c for c in res.history if c not in ("loss", "eta", "grad_norm", "step", "epoch")]
    assert sorted(columns) == sorted(want)
    assert res.final_loss < res.history["loss"][0]
    assert all(not np.array_equal(a, b) for a, b in zip(_weights(ns.user_ns["f"]), before))
    grads = run("tfgrad", "", cell)  # the same default: the same names
    assert list(grads.gradients) == columns


@pytest.mark.parametrize("holder", ["sequential", "module"])
def test_no_name_and_naming_the_model_run_the_same_steps(ns, run, holder):
    make = HOLDERS[holder][0]
    cell = "loss = tf.reduce_mean((f(X) - Y)**2)"
    ns.run_cell(make + "\nstart = [v.numpy() for v in f.trainable_variables]")
    named = run("descend", "f --steps 15 --no-widgets", cell)
    ns.run_cell("for v, s in zip(f.trainable_variables, start): v.assign(s)")
    unnamed = run("descend", "--steps 15 --no-widgets", cell)
    assert list(unnamed.history) == list(named.history)
    np.testing.assert_array_equal(unnamed.history["loss"], named.history["loss"])


def test_a_variable_read_directly_and_in_a_model_is_stepped_once(ns, run):
    ns.run_cell("f = Lin()\nw = f.w")
    res = run("descend", "--steps 10 --no-widgets", "loss = tf.reduce_mean((f(X) - Y)**2) + tf.reduce_sum(w)")
    columns = [c for c in res.history if c.startswith(("f/", "w"))]
    assert len(columns) == 2 and "f/b" in columns and {"w", "f/w"} & set(columns)


@pytest.mark.parametrize("make", [
    "f = keras.Sequential([keras.layers.Dense(1)])",  # no Input: built on its first call
    "f = keras.layers.Dense(1)",
])
@pytest.mark.parametrize("with_variable", [False, True])
def test_a_model_without_weights_yet_gets_a_clear_message(ns, run, make, with_variable):
    ns.run_cell(make + "\nscale = tf.Variable(1.0)")
    cell = f"loss = tf.reduce_mean(({'scale * ' if with_variable else ''}f(X) - Y)**2)"
    if with_variable:  # (the cell's trial builds it: then the run would leave its weights as drawn)
        with pytest.raises(TfmagicError, match="f had no weights yet: the cell's first run built them") as err:
            run("descend", "--steps 5 --no-widgets", cell)
        assert "run the cell again" in err.value.hint
        assert float(ns.user_ns["scale"].numpy()) == 1.0
        res = run("descend", "--steps 5 --no-widgets", cell)  # ... as the message says
        assert any(c.startswith("f/") for c in res.history) and "scale" in res.history
    else:
        with pytest.raises(TfmagicError, match="f has no weights yet, so there is nothing to minimise over") as err:
            run("descend", "--steps 5 --no-widgets", cell)
        assert "f(X[:1])" in err.value.hint
        assert not ns.user_ns["f"].weights


@pytest.mark.parametrize("make", [
    "f = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]); f.trainable = False",
    "f = keras.layers.Dense(1); f.build((None, 3)); f.trainable = False",
])
def test_a_frozen_model_is_left_alone(ns, run, make):
    ns.run_cell(make + "\nscale = tf.Variable(1.0)")
    before = [v.numpy() for v in ns.user_ns["f"].weights]
    with pytest.raises(TfmagicError, match="The cell reads no tf.Variable, and f is frozen") as err:
        run("descend", "--steps 5 --no-widgets", "loss = tf.reduce_mean((f(X) - Y)**2)")
    assert "f.trainable = True" in err.value.hint
    with pytest.raises(TfmagicError, match="f has no trainable variables \\(it is frozen"):
        run("descend", "f --steps 5 --no-widgets", "loss = tf.reduce_mean((f(X) - Y)**2)")
    res = run("descend", "--steps 5 --no-widgets", "loss = tf.reduce_mean((scale * f(X) - Y)**2)")
    assert [c for c in res.history if c not in ("loss", "eta", "grad_norm", "step")] == ["scale"]
    assert float(ns.user_ns["scale"].numpy()) != 1.0
    for have, want in zip(ns.user_ns["f"].weights, before):
        np.testing.assert_array_equal(have.numpy(), want)


def test_a_layer_that_never_has_weights_is_no_trouble(ns, run):
    ns.run_cell("flat = keras.layers.Flatten()\nf = Lin()")
    res = run("descend", "--steps 10 --no-widgets", "loss = tf.reduce_mean((f(flat(X)) - Y)**2)")
    assert sorted(c for c in res.history if c.startswith("f")) == ["f/b", "f/w"] and res.steps == 10


def test_a_model_read_under_a_strategy_it_was_not_made_in_is_named(ns, run):
    ns.run_cell("strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])\n"
                "f = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])")
    with pytest.raises(TfmagicError, match="the model f was made outside the strategy's scope"):
        run("descend", "--data X,Y --batch-size 8 --steps 5 --strategy strategy --no-widgets",
            "loss = tf.reduce_mean((f(X) - Y)**2)")
