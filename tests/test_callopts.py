"""The engine's lean runtime (tfmagic.callopts): scoped to its own calls, safe across devices."""

import subprocess
import sys
import textwrap

import pytest
from tensorflow.python.eager import context
from tfmagic.errors import TfmagicError

COURSE = "y = tf.pow(x, 2.0) - 4.0 * x + 4.0"


def _options():
    opts = context.context().function_call_options
    return opts.executor_type, opts.config_proto_serialized


@pytest.mark.parametrize("steps", [20, 1000, 3000])  # per-step function, graph loop, XLA
def test_the_users_call_options_are_untouched(ip, run, steps):
    before = _options()
    run("descend", f"x=10.0 --steps {steps} --no-widgets", COURSE)
    assert _options() == before
    with pytest.raises(TfmagicError):
        run("descend", f"x=10.0 --steps {steps} --no-widgets",
            "tf.debugging.assert_greater(x, 5.0)\ny = (x - 2.0) ** 2")
    assert _options() == before


def test_runs_spanning_two_cpus_finish():
    # The single-threaded executor hangs, without an error, on a function that spans two
    # devices; the engine must not use it there. A fresh process, so a hang is a timeout.
    code = textwrap.dedent("""
        from tfmagic.runtime.tfimport import tensorflow
        tf = tensorflow()
        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
        from tfmagic.descent.engine import Descent
        for steps in (20, 1000):
            x = tf.Variable(10.0)  # on CPU:0
            e = Descent(tf, lambda: (x - 2.0) ** 2, {"x": x}, eta=0.01, jit="off",
                        device="/job:localhost/replica:0/task:0/device:CPU:1")
            print(e.run(steps), e.steps, round(float(x.numpy()), 4))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.split("\n")
    assert lines[0].startswith("max_steps 20 ") and lines[1].startswith("max_steps 1000 ")
    assert abs(float(lines[1].split()[2]) - 2.0) < 0.01


@pytest.mark.parametrize("width", [4, 127, 129, 200])  # width² elements: on both sides of THREADED_FROM_ELEMENTS (2^14)
@pytest.mark.parametrize("steps", [20, 600])  # per-step function, graph loop
def test_a_large_model_runs_on_the_threaded_executor_with_the_same_numbers(ip, run, monkeypatch, width, steps):
    import numpy as np
    import tfmagic.descent.callopts as callopts
    import tfmagic.descent.calls as calls

    asked = []

    def spy(tf, single_threaded):
        asked.append(single_threaded)
        return callopts.lean_options(tf, single_threaded)

    monkeypatch.setattr(calls, "lean_options", spy)
    ip.run_cell(f"import tensorflow as tf\nw0 = tf.random.stateless_normal([{width}, {width}], [1, 2]) * 0.1")
    cell = "y = tf.reduce_sum(tf.tanh(W @ tf.ones([W.shape[0], 3])) ** 2) + 0.1 * tf.reduce_sum(W ** 2)"
    elements = width * width
    histories = []
    for threshold in (callopts.THREADED_FROM_ELEMENTS, elements if elements < callopts.THREADED_FROM_ELEMENTS else elements + 1):
        monkeypatch.setattr(callopts, "THREADED_FROM_ELEMENTS", threshold)
        ip.run_cell("W = tf.Variable(w0)")
        asked.clear()
        r = run("descend", f"W --steps {steps} --eta 0.01 --jit off --no-widgets", cell)
        assert r.status == "max_steps"
        assert asked and set(asked) == {elements < threshold}, (asked, elements, threshold)
        histories.append(r.history["loss"])
    np.testing.assert_array_equal(histories[0], histories[1])  # the executor changes no number
