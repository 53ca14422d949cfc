"""--strategy: the steps on several devices (two logical CPUs here) or worker processes, with
the history of one device."""

import asyncio
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from IPython.core.error import UsageError

from tfmagic.errors import LossError, TfmagicError
from tfmagic.kernel.runner import LiveRunner
from tfmagic.runs import device_choices
from tfmagic.widgets.panel import DescentPanel

COURSE = "y = x**2 - 4*x + 4"
LINEAR = "loss = tf.reduce_mean((tf.linalg.matvec(X, w) - Y) ** 2)"
WORKER = os.path.join(os.path.dirname(__file__), "workers", "multiworker.py")


@pytest.fixture
def regression(ip):
    rng = np.random.default_rng(0)
    ip.user_ns["X"] = rng.normal(size=(100, 3)).astype(np.float32)
    ip.user_ns["Y"] = ip.user_ns["X"] @ np.array([1.0, -2.0, 0.5], np.float32)
    return ip


def test_mirrored_runs_on_two_cpus_with_the_one_device_history(ip, run):
    tf = ip.user_ns["tf"]
    one = run("descend", "x=10.0 --steps 300 --no-widgets", COURSE)
    two = run("descend", "x=10.0 --steps 300 --strategy mirrored --no-widgets", COURSE)
    x = ip.user_ns["x"]
    assert isinstance(x, tf.distribute.DistributedValues)
    assert sorted(v.device[-5:] for v in x.values) == ["CPU:0", "CPU:1"]  # a copy on each CPU
    assert two.device == "2 replicas (MirroredStrategy)" and "on 2 replicas (MirroredStrategy)" in repr(two)
    np.testing.assert_allclose(two.history["loss"], one.history["loss"], rtol=1e-6, atol=1e-6)
    assert two.values["x"] == pytest.approx(2.0, abs=1e-4)


def test_mirrored_splits_each_batch_over_the_replicas(regression, run):
    line = "w=tf.zeros([3]) --data X,Y --batch-size 16 --epochs 3 --seed 1 --optimizer adam --eta 0.05 --no-widgets"
    one = run("descend", line, LINEAR)
    two = run("descend", line + " --strategy mirrored", LINEAR)
    assert two.steps == one.steps == 21  # 100 samples, 16 a batch (the last 4): the same batches
    np.testing.assert_allclose(two.history["loss"], one.history["loss"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(two.epochs["loss"], one.epochs["loss"], rtol=1e-5)
    np.testing.assert_allclose(regression.user_ns["w"].numpy(), one.values["w"], rtol=1e-5, atol=1e-6)


def test_a_model_built_in_the_users_strategy_trains_and_one_outside_is_refused(regression, run):
    regression.run_cell(
        "import keras\nstrategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])\n"
        "with strategy.scope():\n    inside = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])\n"
        "outside = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])")
    cell = "loss = tf.reduce_mean((MODEL(X)[:, 0] - Y) ** 2)"
    fit = run("descend", "inside --data X,Y --batch-size 20 --epochs 20 --strategy strategy --no-widgets",
              cell.replace("MODEL", "inside"))
    assert fit.status == "max_steps" and fit.epochs["loss"][-1] < 0.1 * fit.epochs["loss"][0]
    before = [w.copy() for w in regression.user_ns["outside"].get_weights()]
    with pytest.raises(TfmagicError) as err:
        run("descend", "outside --data X,Y --strategy mirrored --no-widgets", cell.replace("MODEL", "outside"))
    text = str(err.value)
    assert "the model outside was made outside the strategy's scope" in text
    assert "strategy = tf.distribute.MirroredStrategy()" in text and "with strategy.scope(): outside = ..." in text
    for w, b in zip(regression.user_ns["outside"].get_weights(), before):
        np.testing.assert_array_equal(w, b)


@pytest.mark.parametrize("line, message", [
    ("--strategy nothing", "name 'nothing' is not defined; give mirrored, multiworker"),
    ("--strategy number", "number is a float; give mirrored"),
    ("--strategy mirrored --device CPU:1", "give --strategy or --device, not both"),
    ("--strategy mirrored --compare eta=0.1,0.2", "cannot be combined with --compare"),
    ("--strategy mirrored --jit on", "--jit on is not supported with --strategy"),
])
def test_strategy_refuses_what_it_cannot_run(ip, run, line, message):
    ip.user_ns["number"] = 1.5
    with pytest.raises(UsageError, match=message):
        run("descend", f"x=3.0 {line} --no-widgets", COURSE)
    assert "x" not in ip.user_ns


def test_the_panel_steers_a_mirrored_run(ip, run, loop):
    res = run("descend", "x=10.0 --eta 0.0001 --steps 1 --strategy mirrored --no-widgets", "y = (x - 2.0) ** 2")
    engine = res.engine
    engine.reset()

    async def scenario():
        runner = LiveRunner(engine)  # (on this loop: the panel hands it the controls)
        panel = DescentPanel(runner, res, 10**8, device_choices(ip.user_ns["tf"], engine))
        assert panel.device.options == ("2 replicas (MirroredStrategy)",)
        task = asyncio.ensure_future(runner.run(10**8))

        async def until(done):
            for _ in range(2000):  # (10 s)
                if done():
                    return
                await asyncio.sleep(0.005)
            raise AssertionError("timed out")

        await until(lambda: res.steps >= 200)
        panel.eta_slider.value = 0.0002
        await until(lambda: engine.eta == pytest.approx(0.0002))
        at = res.steps
        await until(lambda: res.steps >= at + 200)
        panel.stop.click()
        return await asyncio.wait_for(task, 10), panel

    status, panel = loop.run_until_complete(scenario())
    assert status == "stopped"
    eta = res.history["eta"]
    assert eta[0] == np.float32(0.0001) and eta[-1] == np.float32(0.0002)
    assert "2 replicas (MirroredStrategy)" in panel.status.value


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multiworker_two_processes_end_with_the_one_device_variables(regression, run):
    line = "--data X,Y --batch-size 16 --epochs 2 --seed 1"
    one = run("descend", f"w=tf.zeros([3]) {line} --no-widgets", LINEAR)
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(2)]}
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    workers = [
        subprocess.Popen([sys.executable, WORKER, f"{line} --strategy multiworker"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True,
                         env={**env, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
        for i in range(2)
    ]
    try:
        outs = [json.loads(w.communicate(timeout=180)[0].strip().splitlines()[-1]) for w in workers]
    finally:
        for w in workers:
            w.kill()
    assert all(o["device"] == "2 replicas (MultiWorkerMirroredStrategy)" and o["status"] == "max_steps" for o in outs)
    assert outs[0]["w"] == outs[1]["w"]  # both workers hold the same variables
    np.testing.assert_allclose(outs[0]["w"], one.values["w"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs[0]["loss"], one.history["loss"], rtol=1e-5, atol=1e-6)


def test_a_last_batch_smaller_than_the_replicas(ip, run):
    rng = np.random.default_rng(1)
    ip.user_ns["X"] = rng.normal(size=(9, 3)).astype(np.float32)  # batches of 4, 4 and 1: one replica gets none
    ip.user_ns["Y"] = ip.user_ns["X"] @ np.array([1.0, -2.0, 0.5], np.float32)
    line = "w=tf.zeros([3]) --data X,Y --batch-size 4 --epochs 2 --seed 1 --no-widgets"
    one = run("descend", line, LINEAR)
    two = run("descend", line + " --strategy mirrored", LINEAR)
    assert two.status == "max_steps" and np.all(np.isfinite(two.history["loss"]))
    np.testing.assert_allclose(two.history["loss"], one.history["loss"], rtol=1e-5, atol=1e-6)


# -- a loss the replicas can split gives one device's numbers; another is refused -------------

PRED = "tf.linalg.matvec(X, w)"
LOSSES = {  # name -> (splits?, cell)
    "mean": (True, f"loss = tf.reduce_mean(({PRED} - Y) ** 2)"),
    "sum": (True, f"loss = tf.reduce_sum(({PRED} - Y) ** 2)"),
    "mean of squares plus L2 on the weights": (True, f"loss = tf.reduce_mean(({PRED} - Y) ** 2) + 0.1 * tf.reduce_sum(w * w)"),
    "keras mean squared error": (True, f"loss = keras.losses.MeanSquaredError()(Y[:, None], {PRED}[:, None])"),
    "keras Huber": (True, f"loss = keras.losses.Huber()(Y[:, None], {PRED}[:, None])"),
    "keras, summed": (True, f"loss = keras.losses.MeanAbsoluteError(reduction='sum')(Y[:, None], {PRED}[:, None])"),
    "root mean square": (False, f"loss = tf.sqrt(tf.reduce_mean(({PRED} - Y) ** 2))"),
    "max": (False, f"loss = tf.reduce_max(tf.abs({PRED} - Y))"),
    "sum plus L2": (False, f"loss = tf.reduce_sum(({PRED} - Y) ** 2) + 0.01 * tf.reduce_sum(w * w)"),
    "batch statistics": (False, f"p = {PRED}\nloss = tf.reduce_mean((p - tf.reduce_mean(p) + 1.0 - Y) ** 2)"),
    "keras plus L2": (False, f"loss = keras.losses.MeanSquaredError()(Y[:, None], {PRED}[:, None]) + tf.reduce_sum(w * w)"),
}


@pytest.mark.parametrize("data", ["--data X,Y --batch-size 16", "--data X,Y --batch-size 15", "--data X,Y --batch-size 7",
                                  "--data xb,yb=ds", ""])
@pytest.mark.parametrize("loss", list(LOSSES))
def test_a_loss_that_splits_gives_one_devices_history_and_one_that_does_not_is_refused(regression, run, loss, data):
    """Before: each replica's loss was scaled by its share of the batch, whatever the loss:
    a sum was halved, an RMS error off by a few %, a Keras loss divided by the replicas."""
    splits, cell = LOSSES[loss]
    regression.run_cell("import keras\nds = tf.data.Dataset.from_tensor_slices((X, Y + 0.5)).batch(9)")
    cell = cell.replace("X", "xb").replace("Y", "yb") if "=ds" in data else cell
    line = f"w=tf.zeros([3]) {data} --steps 20 --seed 1 --eta 0.002 --no-widgets"
    if not splits and (data or loss == "keras plus L2"):  # (a Keras loss divides itself by the replicas)
        with pytest.raises(LossError) as err:
            run("descend", line + " --strategy mirrored", cell)
        text = str(err.value)
        assert "cannot be split over the 2 replicas" in text and "one device computes" in text
        assert "tf.reduce_mean" in text and "w" not in regression.user_ns
        return
    one = run("descend", line, cell)
    two = run("descend", line + " --strategy mirrored", cell)
    assert two.steps == one.steps == 20
    np.testing.assert_allclose(two.history["loss"], one.history["loss"], rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(regression.user_ns["w"].numpy(), one.values["w"], rtol=2e-5, atol=1e-6)


def test_a_dataset_that_ends_on_two_replicas_keeps_its_steps(regression, run):
    regression.run_cell("def gen():\n    for i in range(5):\n        yield X[10 * i:10 * i + 10], Y[10 * i:10 * i + 10]\n"
                        "g = tf.data.Dataset.from_generator(gen, output_signature=(tf.TensorSpec([None, 3]), "
                        "tf.TensorSpec([None])))")
    cell = "loss = tf.reduce_mean((tf.linalg.matvec(xb, w) - yb) ** 2)"
    one = run("descend", "w=tf.zeros([3]) --data xb,yb=g --steps 50 --no-widgets", cell)
    two = run("descend", "w=tf.zeros([3]) --data xb,yb=g --steps 50 --strategy mirrored --no-widgets", cell)
    assert one.status == two.status == "out_of_data" and one.steps == two.steps == 5
    np.testing.assert_allclose(two.history["loss"], one.history["loss"], rtol=1e-5)


def test_one_replica_says_that_nothing_is_spread_and_the_logs_stay_out(ip, run):
    """A strategy run keeps TensorFlow's log lines (INFO "Using MirroredStrategy with devices",
    WARNING "Using MirroredStrategy eagerly") out of the cell, and the logger as it was."""
    import logging

    logger = ip.user_ns["tf"].get_logger()
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        ip.run_cell("one = tf.distribute.MirroredStrategy(['/cpu:0'])\nwith one.scope():\n    x = tf.Variable(10.0)")
        records.clear()  # (the user's own strategy says what it says)
        res = run("descend", "x --steps 30 --strategy one --no-widgets", "y = (x - 2.0) ** 2")
        assert res.device == "1 replica (MirroredStrategy found one device: nothing is spread; see README for logical CPUs/GPUs)"
        assert "on 1 replica (MirroredStrategy found one device: nothing is spread" in repr(res)
        assert records == [] and logger.level == logging.INFO
        logger.info("mine")  # (no filter left on the logger)
        assert [r.getMessage() for r in records] == ["mine"]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_mirrored_in_a_kernel_prints_no_tensorflow_lines_and_says_one_device_spreads_nothing(tmp_path):
    """Before: "INFO:tensorflow:Using MirroredStrategy with devices ..." and "WARNING:tensorflow:Using
    MirroredStrategy eagerly ..." in the cell, and "1 replica (MirroredStrategy)" for a run on one device.
    TF_CPP_MIN_LOG_LEVEL=0 lets TensorFlow's native lines through too, as a kernel without it would."""
    from test_live_kernel import Kernel

    k = Kernel(tmp_path)
    try:
        for code in ("import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '0'", "%load_ext tfmagic",
                     "import tensorflow as tf, numpy as np\nX = np.random.default_rng(0).normal(size=(40, 2)).astype('float32')"
                     "\nY = X @ np.array([1.0, -2.0], 'float32')\nlevel = tf.get_logger().level"):
            reply, out, _ = k.run(code, timeout=120)
            assert reply["content"]["status"] == "ok", out
        for line in ("--data X,Y --batch-size 8", ""):
            reply, out, result = k.run(f"%%descend w=tf.zeros([2]) {line} --steps 300 --strategy mirrored --no-widgets\n"
                                       "loss = tf.reduce_mean((tf.linalg.matvec(X, w) - Y) ** 2)", timeout=120)
            assert reply["content"]["status"] == "ok", out
            shown = out.replace("\r", "\n").splitlines()
            assert not [s for s in shown if "tensorflow" in s or s.startswith(("W0000", "I0000", "E0000"))], out
            assert "on 1 replica (MirroredStrategy found one device: nothing is spread" in result["text/plain"]
        reply, out, _ = k.run("print(tf.get_logger().level == level)\ntf.get_logger().warning('mine')", timeout=60)
        assert out.split()[0] == "True" and "mine" in out  # (the logger as it was, no filter on it)
    finally:
        k.close()
