"""AutoGraph converts the cell and the user's functions, not tfmagic's own code
(cell/autograph.py): converting a function parses its module's source, which made a
kernel's first %%descend cost ~320 ms instead of ~55 ms. (A tf.data run's loss wrapper is
the exception: tests/test_train.py, test_a_dataset_run_survives_many_retraces.)"""

import numpy as np
import pytest

from tensorflow.python.autograph.impl import api as autograph_api  # (tests only: to watch what is converted)

# A Python `if` and `for` on tensors: only AutoGraph makes these traceable.
CELL = "y = x * x - 4.0 * x\nfor i in tf.range(2):\n    y = y + 1.0\nif y > 100.0:\n    y = y * 1.0\ny"


@pytest.fixture
def converted(monkeypatch):
    """The names of the functions AutoGraph converts (each call, cached or not)."""
    seen = []
    real = autograph_api._convert_actual

    def watching(entity, program_ctx):
        seen.append(getattr(entity, "__qualname__", repr(entity)))
        return real(entity, program_ctx)

    monkeypatch.setattr(autograph_api, "_convert_actual", watching)
    return seen


def _outside_the_cell(names):
    return [n for n in names if n != "__tfmagic_cell__" and n != "helper"]


def test_descend_converts_only_the_cell(ip, run, converted):
    res = run("descend", "x=10.0 --eta 0.1 --steps 300 --jit off --no-widgets", CELL)
    assert res.status == "max_steps" and float(ip.user_ns["x"]) == pytest.approx(2.0, abs=1e-3)
    assert "__tfmagic_cell__" in converted and _outside_the_cell(converted) == []


def test_a_users_function_is_converted_with_the_cell(ip, run, converted):
    ip.run_cell("def helper(t):\n    if t > 0.0:\n        return t * t\n    return -t")
    res = run("descend", "x=3.0 --eta 0.1 --steps 20 --no-widgets", "helper(x)")
    assert res.status in ("max_steps", "converged") and "helper" in converted
    assert _outside_the_cell(converted) == []


def test_the_probe_and_validation_convert_only_the_cell(ip, run, converted):
    from tfmagic.descent.loss_grid import LossProbe

    rng = np.random.default_rng(0)
    ip.user_ns.update(X=rng.normal(size=64).astype("float32"), Y=rng.normal(size=64).astype("float32"))
    res = run("descend", "w=0.0 --data X,Y --batch-size 16 --epochs 2 --validate X,Y --no-widgets",
              "e = tf.reduce_mean((w * X - Y) ** 2)\nif e > 1e9:\n    e = e * 1.0\ne")
    assert res.status == "max_steps"
    w = float(ip.user_ns["w"])
    points = np.linspace(-3.0, 3.0, 64, dtype=np.float32)[:, None]  # (each point sets w, then reads the loss)
    losses = LossProbe(ip.user_ns["tf"], res.engine).losses(points)
    expect = [np.mean((a * ip.user_ns["X"] - ip.user_ns["Y"]) ** 2) for a in points[:, 0]]
    assert losses == pytest.approx(expect, rel=1e-5) and float(ip.user_ns["w"]) == w  # (and put back)
    assert "__tfmagic_cell__" in converted and _outside_the_cell(converted) == []


def test_tfgrad_converts_only_the_cell(ip, run, converted):
    ip.run_cell("x = tf.Variable(3.0)")
    res = run("tfgrad", "", CELL)
    assert float(res.value) == pytest.approx(9.0 - 12.0 + 2.0)
    assert _outside_the_cell(converted) == [] and "__tfmagic_cell__" in converted


def test_tfgrad_bench_times_the_cell_as_written_eagerly(ip, run, converted):
    """--bench's eager side is the course's cell as written: converted, each eager call paid
    AutoGraph's overhead and the speedup read ~25 % high (found in review)."""
    ip.run_cell("x = tf.Variable(3.0)")
    res = run("tfgrad", "--bench", CELL)
    assert res.bench["calls"] > 10
    assert converted.count("__tfmagic_cell__") == 1  # the trace only
