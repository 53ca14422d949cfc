"""A drag too far never costs the progress made: a run that diverges after eta was raised
(by code, a schedule, the panel's slider or entry) goes back to the point where eta was
raised, or a better one it passed after it: variables, optimizer state and batches, the
history cut there, eta back to its value before the raise. Then the next run goes on as
if the raise had never happened, and the message says exactly which point it is.

(On main the variables held the last finite values, a point on the way to the blow-up:
least squares at loss 0.951, eta dragged to 1.0, ended at loss 484 118.)
"""


import numpy as np
import pytest

from tfmagic.kernel.runner import LiveRunner
from test_panel import make_panel, until

LSQ = "loss = tf.reduce_mean((tf.linalg.matvec(A, w) - b) ** 2)"
MLP = "loss = tf.reduce_mean(tf.square(model(X)[:, 0] - Y))"
COURSE = "y = tf.pow(x, 2.0) - 4.0 * x + 4.0"


@pytest.fixture
def lsq(ip):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((200, 12)).astype(np.float32)
    ip.user_ns.update(A=A, b=(A @ rng.standard_normal(12) + 0.3 * rng.standard_normal(200)).astype(np.float32))
    return ip


def loss_at(ip, cell, values):
    """The cell's loss evaluated afresh at `values` (name -> array)."""
    tf = ip.user_ns["tf"]
    ns = dict(ip.user_ns, **{n: tf.constant(v) for n, v in values.items()})
    exec(cell, ns)
    return float(ns["loss" if "loss" in cell else "y"])


def check_went_back(ip, cell, res, raised_at, loss_at_raise, names):
    e = res.engine
    back = e.kept.rewound
    assert e.status == "diverged" and back is not None
    assert raised_at <= e.steps <= back.diverged_after and back.step == e.steps
    # (<=, but for an ulp: a run's first point is evaluated again, eagerly)
    assert e.final_loss <= loss_at_raise * (1 + 1e-6) and back.loss == e.final_loss
    # history, values and the message agree on one point
    h = e.history
    assert len(h["loss"]) == e.steps and (e.steps == 0 or h["step"][-1] == e.steps - 1)
    values = {n: v.numpy() for n, v in e.variables.items()}
    for n in names:
        np.testing.assert_array_equal(values[n], e.final_values[n])
        assert np.all(np.isfinite(values[n]))
    assert loss_at(ip, cell, values) == pytest.approx(e.final_loss, rel=1e-5, abs=1e-6)
    from tfmagic.present.messages import outcome

    text = outcome(e)
    assert f"at step {e.steps}, loss {e.final_loss:.4g}" in text
    assert f"eta is {e.eta:g} again" in text and f"at step {back.raised_at}" in text


@pytest.mark.parametrize("opt,eta,big", [("sgd", 0.05, 2.0), ("momentum", 0.02, 5.0), ("nesterov", 0.02, 5.0),
                                         ("adam", 0.01, 1e4), ("rmsprop", 0.01, 1e4)])
@pytest.mark.parametrize("n", [30, 700])  # (one compiled step a call; a graph loop of chunks)
def test_a_raise_by_code_that_diverges_goes_back_and_play_goes_on_as_without_it(lsq, run, opt, eta, big, n):
    line = f"w=tf.zeros([12]) --eta {eta} --steps {n} --optimizer {opt} --jit off --no-widgets"
    res = run("descend", line + " -o r", LSQ)
    at_raise, w_at_raise = res.final_loss, res.values["w"]
    res.engine.eta = big
    assert res.engine.run(5000) == "diverged", opt
    check_went_back(lsq, LSQ, res, n, at_raise, ["w"])
    assert res.engine.eta == eta
    if res.steps == n:  # (else a better point after the raise)
        np.testing.assert_array_equal(res.engine.variables["w"].numpy(), w_at_raise)
    res.engine.run(50)  # Play: from the kept point, eta, optimizer state
    # ... exactly as a run that never raised eta
    same = run("descend", line.replace(f"--steps {n}", f"--steps {res.steps}"), LSQ)
    # (a re-run may take its steps in a graph loop: the same steps, rounded apart by an ulp)
    np.testing.assert_allclose(res.history["loss"], same.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(res.engine.variables["w"].numpy(), same.values["w"], rtol=1e-4, atol=1e-6)


def test_mini_batches_go_back_with_their_batches(ip, run):
    import keras

    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 4)).astype(np.float32)
    ip.user_ns.update(X=X, Y=(X @ np.array([1.0, -2.0, 0.5, 3.0], np.float32)), keras=keras)
    for opt, big in [("sgd", 20.0), ("adam", 1e5)]:
        ip.run_cell("keras.utils.set_random_seed(0)\n"
                    "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation='tanh'), keras.layers.Dense(1)])\n"
                    "start = [w.copy() for w in model.get_weights()]")
        line = f"model --data X,Y --batch-size 16 --optimizer {opt} --eta 0.01 --seed 3 --jit off --no-widgets"
        res = run("descend", line + " --steps 100", MLP)
        at_raise = res.final_loss
        res.engine.eta = big
        assert res.engine.run(3000) == "diverged"
        back = res.engine.kept.rewound
        assert back is not None and res.steps >= 100 and res.final_loss <= at_raise * (1 + 1e-6)
        res.engine.run(40)
        ip.run_cell("model.set_weights(start)")
        same = run("descend", line + f" --steps {res.steps}", MLP)
        np.testing.assert_allclose(res.history["loss"], same.history["loss"], rtol=1e-4)


def test_a_schedule_that_raises_eta_goes_back_to_the_raise(lsq, run):
    lsq.user_ns["A1"] = lsq.user_ns["A"] * 0.1
    steered = run("descend", "w=tf.zeros([12]) --eta 0.02 --steps 120 --jit off --no-widgets -o steered",
                  LSQ.replace("A,", "A1,"))
    steered.engine.eta = 0.9  # stable on 0.1*A (2/λ ≈ 64), not on A (≈ 0.64)
    steered.engine.run(50)
    res = run("descend", "w=tf.zeros([12]) --eta-schedule steered --steps 2000 --jit off --no-widgets", LSQ)
    assert res.status == "diverged" and res.engine.kept.rewound.raised_at == 120
    assert res.steps >= 120 and res.engine.eta == pytest.approx(0.02)


def test_the_course_function_dragged_past_one_keeps_its_point(ip, run):
    res = run("descend", "x=10.0 --eta 0.1 --steps 12 --no-widgets", COURSE)
    before = float(ip.user_ns["x"].numpy())
    res.engine.eta = 1.3  # 2/λ = 1
    assert res.engine.run(500) == "diverged"
    assert res.steps == 12 and float(res.engine.variables["x"].numpy()) == before
    check_went_back(ip, COURSE, res, 12, res.history["loss"][-1] + 10, ["x"])


def test_without_a_raise_nothing_goes_back(ip, run):
    res = run("descend", "x=10.0 --eta 1.1 --steps 500 --no-widgets", COURSE)
    assert res.status == "diverged" and res.engine.kept.rewound is None
    assert "put back to the last finite values" in res.message and abs(float(ip.user_ns["x"].numpy())) > 100
    res = run("descend", "x=10.0 --eta 0.1 --steps 20 --no-widgets", COURSE)
    res.engine.eta = 0.05  # a lowering is no raise
    res.engine.eta = 1.5
    res.engine.reset()  # ... and Reset forgets it
    assert res.engine.run(500) == "diverged" and res.engine.kept.rewound is None


def test_the_panels_slider_raise_goes_back_and_play_goes_on(lsq, run, loop):
    async def scenario():
        res, runner, panel = make_panel(lsq, run, line="w=tf.zeros([12]) --eta 0.01 --jit off", cell=LSQ)
        panel.play.click()  # (the panel, not the cell's result, then says the outcome)
        await until(lambda: res.steps > 300)
        panel.eta_text.value = 3.0  # typed: far past 2/λ
        await until(lambda: not runner.running, timeout=30)
        status = res.status
        at = res.engine.kept.rewound
        shown = panel.status.value, panel.eta_text.value
        panel.play.click()
        await until(lambda: runner.running)
        await until(lambda: res.steps > at.step + 500)
        panel.stop.click()
        await until(lambda: not runner.running)
        return res, status, at, shown

    res, status, at, (status_html, entry) = loop.run_until_complete(scenario())
    assert status == "diverged" and at is not None and at.eta == pytest.approx(0.01) and entry == pytest.approx(0.01)
    assert "diverged" in status_html and f"at step {at.step}, loss" in status_html
    # Play went on from the kept point (at convergence float32 sums wobble by an ulp or two)
    assert res.status == "stopped" and res.final_loss <= at.loss * (1 + 1e-6)
    assert np.all(np.isfinite(res.history["loss"]))
    LiveRunner._active.clear()
