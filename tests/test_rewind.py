"""Time travel: `run.engine.rewind(k)` puts a run back exactly as it was after step k (variables,
optimizer slots and iterations, the batches' position and order, eta), as a branch: a branch with
the same eta repeats the original run from k on bit for bit (history['loss'] and final values).
Bad input gets a short message and changes nothing. (On main there is no rewind.)"""

import numpy as np
import pytest

CELLS = {
    "1-D": ("x=10.0", "y = tf.pow(x, 2.0) - 4.0 * x + 4.0"),
    "2-D": ("x=-1.5 y=2.0", "f = (1 - x)**2 + 100.0 * (y - x**2)**2"),
    "vector": ("w=tf.zeros([12])", "loss = tf.reduce_mean((tf.linalg.matvec(A, w) - b) ** 2)"),
}
ETAS = {"sgd": 5e-4, "momentum": 5e-4, "nesterov": 5e-4, "adam": 0.05, "rmsprop": 0.01}
MLP = "loss = tf.reduce_mean(tf.square(model(X)[:, 0] - Y))"


@pytest.fixture
def data(ip):
    import keras

    rng = np.random.default_rng(0)
    A = rng.standard_normal((200, 12)).astype(np.float32)
    X = rng.standard_normal((300, 4)).astype(np.float32)
    ip.user_ns.update(A=A, b=(A @ rng.standard_normal(12)).astype(np.float32), keras=keras,
                      X=X, Y=np.tanh(X @ np.array([1.0, -2.0, 0.5, 3.0], np.float32)))
    return ip


def snapshot(engine):
    return ({c: np.array(v) for c, v in engine.history.items()},
            {n: v.numpy().copy() for n, v in engine.variables.items()})


def places(engine, n):
    """Steps to branch at: the start, inside a chunk, at chunk boundaries, the last step, the end."""
    starts = [s.start for s in engine.timeline.segments]
    inside = [s.start + s.count // 2 for s in engine.timeline.segments if s.count > 2]
    return sorted({0, 1, n - 1, n, *starts[1:3], *starts[-2:], *inside[:2], *inside[-1:]})


def assert_branch_repeats(engine, n, k, original, final, note=""):
    engine.rewind(k)
    assert engine.steps == k and len(engine.history["loss"]) == k
    if n > k:
        engine.run(n - k)
    h = engine.history
    assert np.array_equal(h["loss"], original["loss"]), f"{note} k={k}: first differing row " \
        f"{np.flatnonzero(h['loss'][:len(original['loss'])] != original['loss'][:len(h['loss'])])[:1]}"
    for name, value in final.items():
        assert np.array_equal(engine.variables[name].numpy(), value), f"{note} k={k}: {name}"
    if k:  # (the rows before k: the branch they were on)
        assert h["branch"][k - 1] == engine.branches[-2][1]
    assert engine.branches[-1][0] == k and np.all(h["branch"][k:] == engine.branches[-1][1])


@pytest.mark.parametrize("optimizer", list(ETAS))
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("n", [40, 400, 2500])  # one compiled step a call, graph loops, XLA loops
def test_a_branch_with_the_same_eta_repeats_the_run_bit_for_bit(data, run, cell, optimizer, n):
    names, body = CELLS[cell]
    res = run("descend", f"{names} --eta {ETAS[optimizer]} --optimizer {optimizer} --steps {n} --no-widgets", body)
    original, final = snapshot(res.engine)
    for k in places(res.engine, n):
        assert_branch_repeats(res.engine, n, k, original, final, f"{cell} {optimizer} n={n}")


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "momentum"])
@pytest.mark.parametrize("cell", ["vector", "2-D"])
@pytest.mark.parametrize("parts", [(40, 60), (500, 500), (300, 30, 2500)])  # the cell's run, then Play (or run) again
def test_a_run_continued_by_later_runs_repeats_from_any_step_in_one_run(data, run, cell, optimizer, parts):
    # Each later run evaluates its starting point afresh (eagerly, last bits apart from the carried
    # gradients): a branch that passes such a point in one run must do the same there.
    names, body = CELLS[cell]
    res = run("descend", f"{names} --eta {ETAS[optimizer]} --optimizer {optimizer} --steps {parts[0]} --no-widgets", body)
    for more in parts[1:]:
        res.engine.run(more)
    n = sum(parts)
    original, final = snapshot(res.engine)
    boundaries = np.cumsum(parts)[:-1].tolist()
    for k in sorted({*places(res.engine, n), *boundaries, *(b - 1 for b in boundaries), *(b + 1 for b in boundaries)}):
        assert_branch_repeats(res.engine, n, k, original, final, f"{cell} {optimizer} parts={parts}")


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_continued_mini_batch_run_repeats_from_any_step_in_one_run(data, run, optimizer):
    data.run_cell("keras.utils.set_random_seed(0)\nmodel = keras.Sequential([keras.Input((4,)), "
                  "keras.layers.Dense(8, activation='tanh'), keras.layers.Dense(1)])")
    res = run("descend", f"model --data X,Y --batch-size 16 --optimizer {optimizer} --eta 0.01 --seed 3 "
                         "--steps 50 --no-widgets", MLP)
    res.engine.run(45)  # (an epoch is 19 steps: the second run begins inside one)
    original, final = snapshot(res.engine)
    for k in sorted({*places(res.engine, 95), 49, 50, 51, 57}):
        assert_branch_repeats(res.engine, 95, k, original, final, f"mlp {optimizer}")


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
@pytest.mark.parametrize("n", [60, 700])
def test_an_mlp_on_shuffled_mini_batches_repeats_from_any_step(data, run, optimizer, n):
    data.run_cell("keras.utils.set_random_seed(0)\nmodel = keras.Sequential([keras.Input((4,)), "
                  "keras.layers.Dense(8, activation='tanh'), keras.layers.Dense(1)])")
    res = run("descend", f"model --data X,Y --batch-size 16 --optimizer {optimizer} --eta 0.01 --seed 3 "
                         f"--steps {n} --no-widgets", MLP)
    original, final = snapshot(res.engine)
    epochs = res.epochs["loss"].copy()
    ks = places(res.engine, n) + [19, 38]  # (an epoch is 19 steps: at and after an epoch's end)
    for k in sorted(set(ks)):
        assert_branch_repeats(res.engine, n, k, original, final, f"mlp {optimizer} n={n}")
        np.testing.assert_array_equal(res.epochs["loss"], epochs)  # (the epochs before k kept, the rest redone)


def test_steered_runs_repeat_with_their_etas_and_a_new_eta_makes_a_new_branch(data, run):
    res = run("descend", "x=-1.5 y=2.0 --eta 5e-4 --optimizer momentum --steps 120 --no-widgets", CELLS["2-D"][1])
    e = res.engine
    e.eta = 1e-3
    e.run(150)
    e.eta = 2e-4
    e.run(100)
    e.pause()
    original, final = snapshot(e)
    for k in [60, 120, 121, 200, 270, 369, 370]:
        e.rewind(k)
        assert e.eta == original["eta"][k] if k < 370 else e.eta == 2e-4
        # going on as the original did: its runs began at 120 and 270 (the eta changes)
        for end, eta in [(120, 5e-4), (270, 1e-3), (370, 2e-4)]:
            if e.steps < end:
                if e.steps in (120, 270):
                    e.eta = eta
                e.run(end - e.steps)
        np.testing.assert_array_equal(e.history["loss"], original["loss"])
        for name, value in final.items():
            assert np.array_equal(e.variables[name].numpy(), value)
    # Another eta from step 200: the branch is another run, the history says where it began
    e.rewind(200)
    e.eta = 3e-4
    e.run(170)
    h = e.history
    assert np.array_equal(h["loss"][:200], original["loss"][:200])
    assert not np.array_equal(h["loss"][200:], original["loss"][200:])
    assert e.branches[-1][0] == 200 and set(h["branch"][200:]) == {e.branches[-1][1]}
    assert np.all(h["eta"][201:] == np.float32(3e-4))


def test_a_branch_of_a_branch_and_a_rewind_back_to_the_first_run(data, run):
    res = run("descend", "w=tf.zeros([12]) --eta 0.01 --optimizer adam --steps 300 --no-widgets", CELLS["vector"][1])
    e = res.engine
    original, final = snapshot(e)
    e.rewind(100)
    e.eta = 0.03
    e.run(200)
    e.rewind(150)  # inside the branch: its own steps come back
    branch = e.history["loss"].copy()
    e.run(150)
    assert np.array_equal(e.history["loss"][:150], branch)
    assert [b[0] for b in e.branches] == [0, 100, 150]
    e.rewind(50)  # before both: the first run's steps at eta 0.01
    assert e.eta == pytest.approx(0.01) and [b[0] for b in e.branches] == [0, 50]
    e.run(250)
    np.testing.assert_array_equal(e.history["loss"], original["loss"])
    assert np.array_equal(e.variables["w"].numpy(), final["w"])


def test_variables_changed_after_a_rewind_are_evaluated_afresh(data, run):
    res = run("descend", "x=10.0 --eta 0.1 --steps 30 --no-widgets", CELLS["1-D"][1])
    res.engine.rewind(10)
    data.user_ns["x"].assign(3.0)
    res.engine.run(5)
    assert res.history["loss"][10] == pytest.approx(1.0)  # (3 - 2)², not the loss at the rewound point


def test_the_cell_sees_the_rewound_values(data, run):
    res = run("descend", "x=10.0 --eta 0.1 --steps 30 -o r --no-widgets", CELLS["1-D"][1])
    res.engine.rewind(7)
    assert float(data.user_ns["x"].numpy()) == pytest.approx(2 + 8 * 0.8 ** 7, rel=1e-5)
    assert res.status == "paused" and res.steps == 7


@pytest.mark.parametrize("k", [-1, 31, 100, 2.5, "3", True, None])
def test_a_step_that_is_not_in_the_run_is_refused_and_nothing_changes(data, run, k):
    res = run("descend", "x=10.0 --eta 0.1 --steps 30 --no-widgets", CELLS["1-D"][1])
    before, final = snapshot(res.engine)
    with pytest.raises(ValueError) as err:
        res.engine.rewind(k)
    assert str(err.value).startswith(f"cannot rewind to step {k!r}: this run has the steps 0 to 30")
    assert "\n" not in str(err.value) and len(err.value._render_traceback_()) == 1
    after, now = snapshot(res.engine)
    assert np.array_equal(after["loss"], before["loss"]) and now == final and res.steps == 30


def test_the_step_that_blew_up_is_refused_with_the_last_finite_step(data, run):
    res = run("descend", "x=10.0 --eta 1.5 --steps 500 --no-widgets", CELLS["1-D"][1])
    assert res.status == "diverged"
    last = res.steps
    with pytest.raises(ValueError, match=f"cannot rewind to step {last + 1}: that step blew up; the last finite "
                                         f"point is step {last}"):
        res.engine.rewind(last + 1)
    res.engine.rewind(last - 3)
    assert res.status == "paused" and np.isfinite(res.engine.final_loss)


def test_a_rewind_while_the_run_is_going_is_refused(data, run):
    res = run("descend", "x=10.0 --eta 0.001 --steps 20 --no-widgets", CELLS["1-D"][1])
    chunks = res.engine.run_chunks(5000, max_chunk=10)
    next(chunks)
    steps = res.steps
    with pytest.raises(ValueError, match="^cannot rewind while the run is going: pause or stop it first$"):
        res.engine.rewind(3)
    assert res.steps == steps
    chunks.close()


def test_a_shell_shows_the_refusal_as_one_line(data, run, capsys):
    run("descend", "x=10.0 --eta 0.1 --steps 30 -o r --no-widgets", CELLS["1-D"][1])
    capsys.readouterr()
    data.run_cell("r.engine.rewind(99)")
    out = capsys.readouterr()
    text = out.out + out.err
    assert "cannot rewind to step 99: this run has the steps 0 to 30" in text
    assert "Traceback" not in text and "File " not in text


def test_before_an_optimizer_switch_is_refused_after_it_works(data, run):
    res = run("descend", "x=10.0 --eta 0.05 --steps 30 --no-widgets", CELLS["1-D"][1])
    res.engine.set_optimizer("adam")
    res.engine.run(30)
    with pytest.raises(ValueError, match="switched at step 30; rewind to step 30 or later"):
        res.engine.rewind(10)
    res.engine.rewind(45)
    assert res.steps == 45


def test_a_dataset_iterator_cannot_go_back(data, run):
    data.run_cell("ds = tf.data.Dataset.from_tensor_slices((A, b)).batch(20).repeat()")
    res = run("descend", "w=tf.zeros([12]) --data Ab,bb=ds --eta 0.01 --steps 20 --no-widgets",
              "loss = tf.reduce_mean((tf.linalg.matvec(Ab, w) - bb) ** 2)")
    with pytest.raises(ValueError, match="tf.data.Dataset"):
        res.engine.rewind(5)
    assert res.steps == 20


def test_a_cell_with_randomness_is_refused_and_stays(data, run):
    res = run("descend", "x=10.0 --eta 0.05 --steps 40 --no-widgets",
              "y = (x - 2.0 + tf.random.normal([])) ** 2")
    before = res.engine.variables["x"].numpy()
    with pytest.raises(ValueError, match="randomness"):
        res.engine.rewind(20)
    assert res.steps == 40 and res.engine.variables["x"].numpy() == before


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_long_run_of_many_chunks_keeps_few_snapshots_and_still_repeats(data, run, optimizer):
    from tfmagic.descent.chunks import drain
    from tfmagic.descent.rewind import MOST_SNAPSHOTS

    res = run("descend", f"w=tf.zeros([12]) --eta {ETAS[optimizer]} --optimizer {optimizer} --steps 1 --no-widgets",
              CELLS["vector"][1])
    e = res.engine
    e.reset()
    drain(e.run_chunks(3000, max_chunk=7))  # (429 chunks, as a paced panel runs them)
    kept = [s for s in e.timeline.segments if s.saved is not None]
    assert len(kept) <= MOST_SNAPSHOTS and len(e.timeline.segments) < 200, (len(kept), len(e.timeline.segments))
    original, final = snapshot(e)
    for k in (2999, 1500, 7, 2222, 0):
        assert_branch_repeats(e, 3000, k, original, final, optimizer)


# (the last: one snapshot over 32 MB, so the first alone is kept)
@pytest.mark.parametrize("size, optimizer", [(300_000, "adam"), (1_500_000, "sgd"), (2_500_000, "adam")])
def test_the_snapshots_stay_within_their_bytes_whatever_the_variables_size(data, run, size, optimizer):
    from tfmagic.descent.rewind import MOST_SNAPSHOTS, SNAPSHOT_BYTES, _nbytes

    res = run("descend", f"w=tf.zeros([{size}]) --eta 0.01 --optimizer {optimizer} --steps 1 --jit off --no-widgets",
              "loss = 1e-3 * tf.reduce_sum((w - 1.0) ** 2)")
    e = res.engine
    e.reset()
    for chunk in e.run_chunks(50, max_chunk=5):  # (as a paced panel runs them)
        kept = [s for s in e.timeline.segments if s.saved is not None]
        first = _nbytes(kept[0].saved)
        assert len(kept) <= MOST_SNAPSHOTS and sum(_nbytes(s.saved) for s in kept) <= max(SNAPSHOT_BYTES, first), \
            (chunk.start, len(kept), sum(_nbytes(s.saved) for s in kept) / 2 ** 20)
    original, final = snapshot(e)
    for k in (49, 20):
        assert_branch_repeats(e, 50, k, original, final, f"{size} {optimizer}")


def test_a_run_with_a_row_every_few_steps_repeats_on_its_rows(data, run, monkeypatch):
    """Very long fast runs run "blocks": a history row every s steps. A branch keeps the grid of the
    cut one (a step off it adds that one row) and repeats its numbers."""
    from tfmagic.descent import policy

    monkeypatch.setattr(policy.ChunkPolicy, "first_mode", lambda self, steps: "blocks")
    n = 300_000
    res = run("descend", f"x=10.0 --eta 0.0001 --steps {n} --no-widgets", CELLS["1-D"][1])
    e = res.engine
    assert max(s.stride for s in e.timeline.segments) > 1
    final = snapshot(e)[1]
    for k in (int(e.history["step"][-40]), 123457, 70000, 250000):
        cut = snapshot(e)[0]  # (the branch cut: the one the new branch repeats)
        e.rewind(k)
        e.run(n - k)
        h = e.history
        extra = sorted(set(h["step"]) - set(cut["step"]))
        assert extra in ([], [k]) and set(cut["step"]) <= set(h["step"])
        keep = np.isin(h["step"], cut["step"])
        np.testing.assert_array_equal(h["loss"][keep], cut["loss"])
        assert np.array_equal(e.variables["x"].numpy(), final["x"])


def test_a_run_on_an_eta_schedule_repeats_from_any_step(data, run):
    steered = run("descend", "w=tf.zeros([12]) --eta 0.02 --steps 60 --no-widgets -o steered", CELLS["vector"][1])
    steered.engine.eta = 0.05
    steered.engine.run(60)
    res = run("descend", "w=tf.zeros([12]) --eta-schedule steered --steps 200 --no-widgets", CELLS["vector"][1])
    original, final = snapshot(res.engine)
    assert set(original["eta"]) == {np.float32(0.02), np.float32(0.05)}
    for k in (150, 61, 30, 60, 119, 120):
        assert_branch_repeats(res.engine, 200, k, original, final, "schedule")
        assert res.engine.eta == pytest.approx(0.05)
