"""A re-run of the same cell runs on its compiled steps (descent/reuse.py), and never on stale ones."""

import numpy as np
import pytest

from tfmagic.descent.engine import Retired
from tfmagic.descent.reuse import CELLS, MAX_CELLS

COURSE = "y=tf.pow(x,2.0)-4.0*x+4.0"


@pytest.fixture(autouse=True)
def cold_cache():
    """Each test starts with no cell kept (other modules run the same course cell)."""
    CELLS.clear()


def traces(engine):
    """mode -> how many times its tf.function has traced."""
    return {m: fn.experimental_get_tracing_count() for m, fn in engine.compiled.items()}


def test_a_rerun_reuses_the_compiled_steps_and_keeps_the_last_result(ip, run):
    first = run("descend", "x=10.0 --steps 500 --jit off --no-widgets", COURSE)
    assert not first.engine.reused and "Reused" not in repr(first)
    x_after_first = first.values["x"].copy()
    built = traces(first.engine)
    assert built.get("plain") == 1
    # another eta, steps, tol and start: the same graphs, no new trace
    again = run("descend", "x=-3.0 --eta 0.05 --steps 300 --tol 1e-4 --jit off --no-widgets", COURSE)
    assert again.engine.reused and "Reused the compiled steps" in repr(again)
    assert again.engine.compiled["plain"] is first.engine.compiled["plain"]
    assert traces(again.engine)["plain"] == 1
    assert again.history["x"][0] == -3.0 and again.eta == 0.05
    assert np.isclose(float(ip.user_ns["x"].numpy()), 2.0, atol=1e-3)
    # the same numbers as a fresh build of the same run
    fresh = run("descend", "x=-3.0 --eta 0.05 --steps 300 --tol 1e-4 --jit off --no-widgets", COURSE + " ")
    assert not fresh.engine.reused
    np.testing.assert_array_equal(again.history["loss"], fresh.history["loss"])
    # the first result is frozen: its values and history are its own run's
    assert first.values["x"] == x_after_first and first.history["x"][0] == 10.0
    assert first.engine.retired
    with pytest.raises(Retired):
        first.engine.run(5)
    with pytest.raises(Retired):
        first.engine.reset()
    # what the cell assigns is published at the new values
    assert float(ip.user_ns["y"].numpy()) == pytest.approx(again.final_loss, abs=1e-6)


def test_a_rerun_runs_in_the_modes_a_fresh_build_would_on_its_compiled_steps(ip, run):
    """The modes' last bits differ (oneDNN's kernels in a loop and in one step): a re-run picks
    the mode a fresh build picks, and finds it compiled. (--jit off: under auto, XLA is chosen by
    measured speed, which a loaded machine changes between two builds.)"""
    ip.run_cell("import numpy as np\nA = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)\n"
                "b = A @ np.arange(8, dtype=np.float32)")
    cell = "loss = tf.reduce_mean((tf.linalg.matvec(A, w) - b) ** 2)"
    first = run("descend", "w=tf.zeros([8]) --eta 0.01 --steps 50 --jit off --no-widgets", cell)
    again = run("descend", "w=tf.zeros([8]) --eta 0.01 --steps 50 --jit off --no-widgets", cell)
    assert again.engine.reused and traces(again.engine) == {"step": 1}  # the first run's step, not traced again
    np.testing.assert_array_equal(again.history["loss"], first.history["loss"])
    longer = run("descend", "w=tf.zeros([8]) --eta 0.01 --steps 300 --jit off --no-widgets", cell)
    CELLS.clear()
    fresh = run("descend", "w=tf.zeros([8]) --eta 0.01 --steps 300 --jit off --no-widgets", cell)
    assert longer.engine.reused and not fresh.engine.reused
    np.testing.assert_array_equal(longer.history["loss"], fresh.history["loss"])


def test_a_changed_constant_is_traced_again(ip, run):
    ip.user_ns["a"] = 1.0
    run("descend", "w=0.0 --steps 200 --no-widgets", "loss = (w - a) ** 2")
    ip.user_ns["a"] = 3.0
    res = run("descend", "w=0.0 --steps 200 --no-widgets", "loss = (w - a) ** 2")
    assert not res.engine.reused
    assert float(ip.user_ns["w"].numpy()) == pytest.approx(3.0, abs=1e-3)


def test_an_array_changed_in_place_is_traced_again(ip, run):
    ip.user_ns["A"] = np.array([1.0, 2.0], np.float32)
    cell = "loss = tf.reduce_sum((w - A) ** 2)"
    run("descend", "w=tf.zeros([2]) --steps 200 --no-widgets", cell)
    ip.user_ns["A"][0] = 5.0
    res = run("descend", "w=tf.zeros([2]) --steps 200 --no-widgets", cell)
    assert not res.engine.reused
    np.testing.assert_allclose(ip.user_ns["w"].numpy(), [5.0, 2.0], atol=1e-3)


def test_a_function_whose_global_changed_is_traced_again(ip, run):
    ip.run_cell("k = 1.0\ndef f(w):\n    return (w - k) ** 2")
    run("descend", "w=0.0 --steps 200 --no-widgets", "loss = f(w)")
    again = run("descend", "w=0.0 --steps 200 --no-widgets", "loss = f(w)")
    assert again.engine.reused
    ip.run_cell("k = 2.0")
    res = run("descend", "w=0.0 --steps 200 --no-widgets", "loss = f(w)")
    assert not res.engine.reused
    assert float(ip.user_ns["w"].numpy()) == pytest.approx(2.0, abs=1e-3)
    ip.run_cell("def f(w):\n    return (w + k) ** 2")  # redefined: a new function
    res = run("descend", "w=0.0 --steps 200 --no-widgets", "loss = f(w)")
    assert not res.engine.reused and float(ip.user_ns["w"].numpy()) == pytest.approx(-2.0, abs=1e-3)


def test_a_changed_cell_or_shape_is_traced_again(ip, run):
    run("descend", "W=tf.zeros([2]) --steps 20 --no-widgets", "loss = tf.reduce_sum((W - 1.0) ** 2)")
    res = run("descend", "W=tf.zeros([3]) --steps 20 --no-widgets", "loss = tf.reduce_sum((W - 1.0) ** 2)")
    assert not res.engine.reused and ip.user_ns["W"].shape == (3,)
    res = run("descend", "W=tf.zeros([3]) --steps 20 --no-widgets", "loss = tf.reduce_sum((W - 2.0) ** 2)")
    assert not res.engine.reused and ip.user_ns["W"].numpy()[0] > 1.0


def test_a_variable_the_user_kept_is_never_changed_by_a_rerun(ip, run):
    run("descend", "x=10.0 --steps 200 --no-widgets", COURSE)
    ip.run_cell("x_first = x")
    kept = float(ip.user_ns["x_first"].numpy())
    res = run("descend", "x=-5.0 --steps 3 --no-widgets", COURSE)
    assert not res.engine.reused
    assert ip.user_ns["x"] is not ip.user_ns["x_first"]
    assert float(ip.user_ns["x_first"].numpy()) == kept


def test_a_variable_shown_in_an_output_is_held_there(ip, run):
    run("descend", "x=10.0 --steps 200 --no-widgets", COURSE)
    ip.run_cell("x", store_history=True)  # Out[n] is the variable itself
    shown = next(v for v in ip.user_ns["Out"].values() if v is ip.user_ns["x"])
    kept = float(shown.numpy())
    res = run("descend", "x=-3.0 --steps 200 --no-widgets", COURSE)
    assert not res.engine.reused and float(shown.numpy()) == kept and ip.user_ns["x"] is not shown


def test_an_optimizer_switched_on_the_engine_is_not_reused(ip, run):
    first = run("descend", "x=10.0 --steps 20 --no-widgets", COURSE)
    first.engine.set_optimizer("adam")  # as the panel's dropdown does
    res = run("descend", "x=10.0 --steps 20 --no-widgets", COURSE)
    assert not res.engine.reused and res.optimizer == "sgd"
    assert res.history["x"][1] == pytest.approx(8.4)  # sgd's first step, not adam's


def test_an_existing_variable_goes_on_from_where_it_is(ip, run):
    ip.run_cell("v = tf.Variable(5.0)")
    run("descend", "v --steps 3 --no-widgets", "loss = v * v")
    ip.run_cell("v.assign(4.0)")
    res = run("descend", "v --steps 3 --no-widgets", "loss = v * v")
    assert res.engine.reused and res.history["v"][0] == 4.0


def test_data_that_changed_is_traced_again(ip, run):
    rng = np.random.default_rng(0)
    ip.user_ns["X"] = rng.normal(size=(64, 3)).astype(np.float32)
    ip.user_ns["Y"] = ip.user_ns["X"] @ np.array([1.0, -2.0, 0.5], np.float32)
    cell = "loss = tf.reduce_mean((tf.linalg.matvec(X, w) - Y) ** 2)"
    run("descend", "w=tf.zeros([3]) --data X,Y --batch-size 16 --epochs 2 --no-widgets", cell)
    again = run("descend", "w=tf.zeros([3]) --data X,Y --batch-size 16 --epochs 2 --no-widgets", cell)
    assert again.engine.reused and len(again.epochs["epoch"]) == 2
    ip.user_ns["Y"] = ip.user_ns["Y"] * 2
    res = run("descend", "w=tf.zeros([3]) --data X,Y --batch-size 16 --epochs 2 --no-widgets", cell)
    assert not res.engine.reused


def test_the_cells_kept_are_bounded(ip, run):
    for i in range(MAX_CELLS + 3):
        run("descend", "x=1.0 --steps 2 --no-widgets", f"loss = (x - {i}.0) ** 2")
    assert len(CELLS) == MAX_CELLS


def test_turning_tol_on_and_off_keeps_both_loops(ip, run):
    run("descend", "x=10.0 --steps 500 --jit off --no-widgets", COURSE)
    with_tol = run("descend", "x=10.0 --steps 500 --tol 1e-3 --jit off --no-widgets", COURSE)
    assert with_tol.status == "converged"
    plain_with_tol = with_tol.engine.compiled["plain"]
    without = run("descend", "x=10.0 --steps 500 --jit off --no-widgets", COURSE)
    assert without.status == "max_steps" and without.engine.compiled["plain"] is not plain_with_tol
    again = run("descend", "x=10.0 --steps 500 --tol 1e-3 --jit off --no-widgets", COURSE)
    assert again.engine.compiled["plain"] is plain_with_tol and again.status == "converged"
    assert again.steps == with_tol.steps


def test_what_cannot_be_judged_is_never_reused(ip, run):
    # an object of a class of yours (its code reads your globals), Python random draws, a dict holding x
    ip.run_cell("def act(t):\n    return t\n"
                "class Lin(tf.Module):\n    def __init__(self):\n        self.w = tf.Variable(0.5)\n"
                "    def __call__(self, x):\n        return act(self.w * x)\nm = Lin()")
    run("descend", "m --steps 5 --no-widgets", "loss = (m(2.0) - 4.0) ** 2")
    ip.run_cell("def act(t):\n    return t * 1.5")
    assert not run("descend", "m --steps 5 --no-widgets", "loss = (m(2.0) - 4.0) ** 2").engine.reused
    ip.run_cell("import numpy as np")
    cell = "loss = (x - float(np.random.uniform())) ** 2"
    run("descend", "x=0.0 --steps 5 --no-widgets", cell)
    assert not run("descend", "x=0.0 --steps 5 --no-widgets", cell).engine.reused
    run("descend", "x=10.0 --steps 20 --no-widgets", COURSE)
    ip.run_cell("kept = {'first': x}")
    first = float(ip.user_ns["kept"]["first"].numpy())
    assert not run("descend", "x=-5.0 --steps 3 --no-widgets", COURSE).engine.reused
    assert float(ip.user_ns["kept"]["first"].numpy()) == first


def test_a_refused_rerun_changes_nothing(ip, run):
    from IPython.core.error import UsageError

    first = run("descend", "x=10.0 --steps 20 --no-widgets", COURSE)
    x = float(ip.user_ns["x"].numpy())
    with pytest.raises(UsageError, match="needs a range"):
        run("descend", "x=3.0 --restarts 3 --no-widgets", COURSE)
    assert float(ip.user_ns["x"].numpy()) == x and not first.engine.retired


def test_a_cell_without_names_runs_on_the_variables_it_reads_now(ip, run):
    ip.run_cell("v = tf.Variable(3.0)")
    first = run("descend", "--steps 5 --no-widgets", "loss = v * v")
    ip.run_cell("old = v\nv = tf.Variable(3.0)")
    again = run("descend", "--steps 5 --no-widgets", "loss = v * v")
    assert not again.engine.reused and again.engine.variables["v"] is ip.user_ns["v"]
    assert float(ip.user_ns["old"].numpy()) == first.values["v"]
