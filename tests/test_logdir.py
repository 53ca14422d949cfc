"""--logdir: the event files TensorBoard reads back hold what `result.history` holds
(loss, eta, grad_norm per step; epoch and validation losses per epoch), one run directory per
run, never a step twice in one directory; a path that cannot be written is refused in one line."""

import glob
import itertools
import math
import os

import numpy as np
import pytest
from IPython.core.error import UsageError
from tensorboard.backend.event_processing import event_accumulator

from tfmagic.descent.engine import drain
from tfmagic.descent.summaries import EVERY_STEP_UNTIL, TAGS, SummaryLog
from tfmagic.runtime.tfimport import tensorflow

tf = tensorflow()


def read_raw(path):
    """tag -> [(step, value)] in the order written, from the directory's own event files."""
    out = {}
    for f in sorted(glob.glob(os.path.join(path, "events.out.tfevents*"))):
        for event in tf.compat.v1.train.summary_iterator(f):
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, float(tf.make_ndarray(v.tensor))))
    return out


def board(path):
    """tag -> (steps, values) as TensorBoard loads them (its scalars plugin data), all points."""
    acc = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        assert acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"
        events = acc.Tensors(tag)
        out[tag] = (np.array([e.step for e in events]), np.array([tf.make_ndarray(e.tensor_proto) for e in events]))
    return out


def no_step_twice(path):
    for tag, points in read_raw(path).items():
        steps = [s for s, _ in points]
        assert steps == sorted(set(steps)), (path, tag, "a step written twice or out of order")


def assert_matches_history(path, history, upto=None):
    """Every point written (below step `upto`) is history's row of that step, every step below
    EVERY_STEP_UNTIL and the last row are written, and the rest is thinned to the bound."""
    no_step_twice(path)
    got = board(path)
    hist_steps = np.asarray(history["step"])
    for tag in TAGS:
        steps, values = got[tag]
        if upto is not None:
            steps, values = steps[steps < upto], values[steps < upto]
        rows = np.searchsorted(hist_steps, steps)
        assert np.array_equal(hist_steps[rows], steps), tag
        np.testing.assert_array_equal(values.astype(np.float32), np.asarray(history[tag], np.float32)[rows], err_msg=tag)
        assert set(hist_steps[hist_steps < EVERY_STEP_UNTIL]) <= set(steps.tolist()), tag
        if len(hist_steps):
            assert steps[-1] == hist_steps[-1], tag
        n = len(hist_steps)
        assert len(steps) <= EVERY_STEP_UNTIL * (1 + math.log(max(n, EVERY_STEP_UNTIL) / EVERY_STEP_UNTIL)) + 2


def runs_under(logdir):
    return sorted(os.path.relpath(os.path.dirname(f), logdir)
                  for f in glob.glob(os.path.join(logdir, "**", "events.out.tfevents*"), recursive=True))


PROBLEMS = {
    "course": ("x=10.0", "y = x * x - 4.0 * x + 4.0"),
    "rosenbrock": ("a=-1.5 b=2.0", "f = (1.0 - a) ** 2 + 100.0 * (b - a * a) ** 2"),
    "matrix": ("W=tf.ones([3, 2])", "loss = tf.reduce_sum((W - tf.reshape(tf.range(6.0), [3, 2])) ** 2)"),
}
RUNS = [(p, opt, eta, steps) for p, opt, (eta, steps) in itertools.product(
    PROBLEMS, ["sgd", "momentum", "adam", "rmsprop"], [(1e-3, 50), (0.01, 300), (1e-4, 2600)])]


@pytest.mark.parametrize("problem, optimizer, eta, steps", RUNS)
def test_a_run_is_written_as_its_history(ip, run, tmp_path, problem, optimizer, eta, steps):
    names, cell = PROBLEMS[problem]
    res = run("descend", f"{names} --optimizer {optimizer} --eta {eta} --steps {steps} --logdir {tmp_path} -o fit", cell)
    (name,) = runs_under(tmp_path)
    assert name.startswith("fit-")
    assert_matches_history(tmp_path / name, res.history)
    assert len(res.history["step"]) == res.steps <= steps


@pytest.mark.parametrize("optimizer, eta", [("sgd", 1.5), ("sgd", 3.0), ("sgd", 50.0), ("momentum", 3.0),
                                            ("momentum", 50.0), ("nesterov", 10.0)])
def test_a_diverged_run_is_written_up_to_its_last_good_step(ip, run, tmp_path, eta, optimizer):
    res = run("descend", f"x=10.0 --optimizer {optimizer} --eta {eta} --steps 500 --logdir {tmp_path}", "y = x * x")
    assert res.status == "diverged"
    (name,) = runs_under(tmp_path)
    assert name.startswith("descend-")
    assert_matches_history(tmp_path / name, res.history)
    assert all(np.isfinite(board(tmp_path / name)["loss"][1]))


@pytest.mark.parametrize("spec, dirs", [
    ("eta=0.01,0.1,1.1", ["eta=0.01", "eta=0.1", "eta=1.1"]),
    ("eta=0.1,0.1000001", ["eta=0.1", "eta=0.1000001"]),
    ("optimizer=sgd,adam,rmsprop", ["optimizer=sgd", "optimizer=adam", "optimizer=rmsprop"]),
])
def test_compare_writes_one_run_directory_per_run(ip, run, tmp_path, spec, dirs):
    res = run("descend", f"x=10.0 y=-3.0 --compare {spec} --steps 120 --logdir {tmp_path} -o cmp",
              "f = (x - 1.0) ** 2 + 0.5 * (y + 2.0) ** 2")
    (series,) = {d.split(os.sep)[0] for d in runs_under(tmp_path)}
    assert series.startswith("cmp-")
    assert runs_under(tmp_path) == sorted(os.path.join(series, d) for d in dirs)
    for label, d in zip(res.runs, dirs):
        assert_matches_history(tmp_path / series / d, res.runs[label].history)


def test_restarts_write_one_run_directory_per_start(ip, run, tmp_path):
    res = run("descend", f"x=-4:4 --restarts 4 --seed 3 --steps 80 --logdir {tmp_path}", "y = (x * x - 4.0) ** 2")
    (series,) = {d.split(os.sep)[0] for d in runs_under(tmp_path)}
    assert runs_under(tmp_path) == [os.path.join(series, f"start_{i}") for i in range(1, 5)]
    for i, label in enumerate(res.runs, 1):
        assert_matches_history(tmp_path / series / f"start_{i}", res.runs[label].history)


def _data(ip, n, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    Y = X @ np.array([1.0, -2.0, 0.5], np.float32) + 0.1 * rng.normal(size=n).astype(np.float32)
    ip.user_ns.update(X=X, Y=Y, Xv=X[: n // 4] + 0.05, Yv=Y[: n // 4], w=tf.Variable(tf.zeros([3])))


TRAIN = "loss = tf.reduce_mean((tf.linalg.matvec(X, w) - Y) ** 2)"


@pytest.mark.parametrize("n, batch, epochs, validate, optimizer", [
    (100, 16, 3, True, "sgd"), (64, 64, 4, True, "adam"), (257, 32, 2, False, "momentum"), (90, 7, 5, True, "rmsprop"),
])
def test_a_training_run_writes_its_epochs_and_validation(ip, run, tmp_path, n, batch, epochs, validate, optimizer):
    _data(ip, n, seed=n)
    extra = " --validate Xv,Yv" if validate else ""
    fit = run("descend", f"w --data X,Y --batch-size {batch} --epochs {epochs}{extra} --optimizer {optimizer} "
                         f"--eta 0.05 --logdir {tmp_path} -o fit", TRAIN)
    name = runs_under(tmp_path)[0]
    assert runs_under(tmp_path) == [name] + ([os.path.join(name, "validation")] if validate else [])
    assert_matches_history(tmp_path / name, fit.history)
    steps, values = board(tmp_path / name)["epoch_loss"]
    assert steps.tolist() == list(range(1, epochs + 1))
    np.testing.assert_allclose(values, fit.epochs["loss"], rtol=1e-6)
    if validate:
        steps, values = board(tmp_path / name / "validation")["epoch_loss"]
        assert steps.tolist() == list(range(1, epochs + 1))
        np.testing.assert_allclose(values, fit.epochs["val_loss"], rtol=1e-6)


def test_a_dataset_run_writes_its_epochs(ip, run, tmp_path):
    _data(ip, 96, seed=1)
    ip.user_ns["ds"] = tf.data.Dataset.from_tensor_slices((ip.user_ns["X"], ip.user_ns["Y"])).batch(24)
    ip.user_ns["vds"] = tf.data.Dataset.from_tensor_slices((ip.user_ns["Xv"], ip.user_ns["Yv"])).batch(24)
    fit = run("descend", f"w --data X,Y=ds --validate X,Y=vds --epochs 3 --logdir {tmp_path} -o fit", TRAIN)
    name = runs_under(tmp_path)[0]
    assert_matches_history(tmp_path / name, fit.history)
    np.testing.assert_allclose(board(tmp_path / name)["epoch_loss"][1], fit.epochs["loss"], rtol=1e-6)
    np.testing.assert_allclose(board(tmp_path / name / "validation")["epoch_loss"][1], fit.epochs["val_loss"], rtol=1e-6)


def test_runs_of_one_cell_and_of_one_second_get_their_own_directories(ip, run, tmp_path):
    for eta in (0.1, 0.2, 0.3):
        run("descend", f"x=10.0 --eta {eta} --steps 20 --logdir {tmp_path} -o fit", "y = x * x")
    names = runs_under(tmp_path)
    assert len(names) == 3 and len(set(names)) == 3
    etas = sorted(float(board(tmp_path / n)["eta"][1][0]) for n in names)
    assert etas == pytest.approx([0.1, 0.2, 0.3])


def test_config_sets_the_logdir_for_the_notebook(ip, run, tmp_path):
    magics = ip.magics_manager.registry["TfMagics"]
    try:
        ip.run_line_magic("config", f"TfMagics.logdir = {str(tmp_path)!r}")
        res = run("descend", "x=10.0 --steps 30", "y = x * x")
    finally:
        magics.logdir = None
    (name,) = runs_under(tmp_path)
    assert_matches_history(tmp_path / name, res.history)


# -- what the engine does after the cell: Play after Pause, Reset, a divergence that goes back ----
@pytest.mark.parametrize("plan, directories", [
    (("run 40", "run 60"), 1),  # Play after Pause: steps go on
    (("run 40", "reset", "run 30"), 2),
    (("run 40", "run 25", "reset", "run 10", "run 15"), 2),
    (("run 30", "eta 1.5", "run 400"), 1),  # raised too far: diverges in one chunk, back to where eta was raised
    (("run 30", "eta 1.5", "chunks 400"), 1),  # ... in chunks of 5 steps, written before the blow-up was seen
    (("run 30", "eta 1.5", "chunks 400", "run 50"), 2),  # ... and Play goes on from there, in a new directory
    (("chunks 30", "eta 1.5", "chunks 400", "reset", "chunks 30", "eta 1.5", "chunks 40", "chunks 20"), 3),
    (("chunks 30", "eta 1.5", "chunks 400", "chunks 20", "eta 1.5", "chunks 400", "chunks 20"), 3),
])
def test_steps_continue_and_no_directory_holds_a_step_twice(ip, run, tmp_path, plan, directories):
    res = run("descend", "x=10.0 --eta 0.05 --steps 1 --no-widgets", "y = (x - 2.0) ** 2")
    engine = res.engine
    engine.reset()
    log = SummaryLog(tf, str(tmp_path / "r"))
    engine.observe(log)
    for action in plan:
        what, value = action.split()[0], action.split()[1:]
        if what in ("run", "chunks"):
            drain(engine.run_chunks(int(value[0]), max_chunk=5 if what == "chunks" else None))
        elif what == "reset":
            engine.reset()
        else:
            engine.eta = float(value[0])
    log.close()
    assert [os.path.basename(p) for p in log.paths] == ["r"] + [f"r.{k}" for k in range(2, directories + 1)]
    assert runs_under(tmp_path) == sorted(os.path.basename(p) for p in log.paths)
    for path, after in zip(log.paths, log.paths[1:]):  # a new directory only where the history went back
        assert board(after)["loss"][0][0] <= board(path)["loss"][0][-1]
    # each directory from its first step up to where the next one starts, read back in turn: the history
    hist, upto = res.history, engine.steps
    for path in reversed(log.paths):
        first = int(board(path)["loss"][0][0])
        assert_matches_history(path, {k: v[(hist["step"] >= first) & (hist["step"] < upto)] for k, v in hist.items()},
                               upto=upto)
        upto = min(upto, first)
    assert upto == 0
    rewound, last = engine.kept.rewound, board(log.paths[-1])["loss"][0]
    beyond = last[last >= engine.steps]  # (the steps a divergence took back stay where they were written)
    assert len(beyond) == 0 or (rewound and rewound.moved and beyond.max() < rewound.diverged_after)


# -- bad paths: one line, nothing run ---------------------------------------------------------
def _bad_paths(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    return {"a file": str(a_file), "under a file": str(a_file / "logs"), "in /proc": "/proc/no/logs"}


@pytest.mark.parametrize("kind", ["a file", "under a file", "in /proc"])
@pytest.mark.parametrize("mode", ["", "--compare eta=0.1,0.2", "--no-widgets"])
def test_a_path_that_cannot_be_written_is_refused_in_one_line_before_anything_runs(ip, run, tmp_path, kind, mode):
    path = _bad_paths(tmp_path)[kind]
    before = set(ip.user_ns)
    with pytest.raises(UsageError) as err:
        run("descend", f"x=10.0 {mode} --logdir {path} -o fit", "y = x * x")
    message = str(err.value)
    assert message.startswith(f"--logdir {path}: cannot write") and "\n" not in message, message
    assert "nothing was run" in message
    assert set(ip.user_ns) == before  # neither x nor fit was made
