"""A --data run's epoch orders under XLA, computed by numpy before each call (descent/data.py:
orders_for): the plain loop's batches however a run is cut, past the epochs held, and after a
re-run with another seed."""

import numpy as np
import pytest

from tfmagic.descent import data as data_module

LINEAR = "loss = tf.reduce_mean(tf.square(X[:, 0] * w + b - Y))"
_rng = np.random.default_rng(27)
# (N, batch, seed, pieces, epochs' orders held), generated: a short last batch or none, runs of > 200
# steps (loops, not single steps) that end anywhere in an epoch; the orders held as many as a call
# needs (None), or 2 epochs' (the later epochs of a call sorted in the graph)
CASES = [(int(n), int(n // _rng.integers(2, 9) + 1), int(_rng.integers(0, 1 << 30)),
          [int(p) for p in _rng.integers(201, 700, 3)], held) for n, held in zip(_rng.integers(5, 300, 2), [None, 2])]


def put_data(ip, n):
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 1)).astype("float32")
    ip.user_ns.update(X=X, Y=(3.0 * X[:, 0] - 1.0 + 0.5 * rng.normal(size=n)).astype("float32"))


def fit(run, line, cell=LINEAR):
    return run("descend", f"w=0.0 b=0.0 {line} --no-widgets", cell)


@pytest.mark.parametrize("n,batch,seed,pieces,held", CASES)
def test_xla_takes_the_plain_loops_batches_however_the_run_is_cut(ip, run, monkeypatch, n, batch, seed, pieces, held):
    if held:
        monkeypatch.setattr(data_module, "ORDERS_HELD", held * n)
    put_data(ip, n)
    line = f"--data X,Y --batch-size {batch} --steps 1 --seed {seed} --eta 0.02"
    on = fit(run, line + " --jit on", LINEAR + f"  # ({held} held: a build of its own)")
    for piece in pieces:
        on.engine.run(piece)
    on_loss, on_w = on.history["loss"].copy(), on.history["w"].copy()
    off = fit(run, line + " --jit off")
    off.engine.run(sum(pieces))
    assert len(on_loss) == len(off.history["loss"]) == 1 + sum(pieces)
    np.testing.assert_allclose(on_loss, off.history["loss"], rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(on_w, off.history["w"], rtol=2e-4, atol=1e-6)


def test_a_rerun_with_another_seed_equals_a_fresh_build_under_xla(ip, run):
    put_data(ip, 100)
    line = "--data X,Y --batch-size 32 --epochs 40 --eta 0.02 --jit on"
    first = fit(run, line + " --seed 1")
    first_loss = first.history["loss"].copy()
    again = fit(run, line + " --seed 2")  # (the same cell: it takes over the compiled steps and the orders they hold)
    assert again.engine._graphs is first.engine._graphs
    fresh = fit(run, line + " --seed 2", LINEAR + "  # (another cell: a fresh build)")
    assert fresh.engine._graphs is not first.engine._graphs
    np.testing.assert_array_equal(again.history["loss"], fresh.history["loss"])
    assert not np.array_equal(again.history["loss"], first_loss)  # (the seed is what differs)
