"""--sharpness K without ending a chunk at each multiple of K: the compiled loops copy the variables
there (descent/marks.py) and λ is measured on the copies. Proven against the way it was measured
before (a chunk ended at each multiple, λ measured on the variables then: `cut_way`) over generated
runs (several K, chunks that do and do not align with K, full batch and --data, sgd/momentum/adam,
XLA or not, a divergence mid-chunk, re-runs, a stop mid-run and a rewind across a measurement): the
same steps, the same λ, the same run bit for bit, in fewer chunks."""

import contextlib

import numpy as np
import pytest

from tfmagic.descent import marks, sharpness
from tfmagic.descent.chunks import drain

MLP = "loss = tf.reduce_mean((tf.linalg.matvec(tf.tanh(tf.matmul(X, W) + c), v) - Y) ** 2)"
MLP_LINE = "W=W0 c=c0 v=v0"
ROSENBROCK = "loss = (1.0 - a) ** 2 + 100.0 * (b - a ** 2) ** 2"


def rosenbrock_top(a, b):
    a, b = float(a), float(b)
    return np.linalg.eigvalsh([[1200 * a * a - 400 * b + 2, -400 * a], [-400 * a, 200]]).max()


def mlp_data(ip, seed, n=400, features=3, hidden=6):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, features)).astype(np.float32)
    ip.user_ns.update(X=X, Y=np.sin(X @ rng.standard_normal(features)).astype(np.float32), np=np,
                      W0=rng.normal(0, 1, (features, hidden)).astype(np.float32),
                      c0=rng.normal(0, 0.3, hidden).astype(np.float32), v0=rng.normal(0, 1, hidden).astype(np.float32))


@contextlib.contextmanager
def cut_way(monkeypatch):
    """Inside: no loop copies the variables, so the engine ends a chunk at each multiple (as before)."""
    with monkeypatch.context() as m:
        m.setattr(marks, "marks_every", lambda engine: None)
        yield


@pytest.fixture
def chunks_seen(monkeypatch):
    """The start of every chunk a Sharpness heard of."""
    seen = []
    heard = sharpness.Sharpness.chunk

    def chunk(self, engine, c):
        seen.append(c.start)
        return heard(self, engine, c)

    monkeypatch.setattr(sharpness.Sharpness, "chunk", chunk)
    return seen


def both_ways(run, monkeypatch, chunks_seen, line, cell=MLP):
    """The run with the loops' copies, then as it ran before; with the chunks each took."""
    marked = run("descend", line, cell)
    marked_chunks = len(chunks_seen)
    chunks_seen.clear()
    with cut_way(monkeypatch):
        cut = run("descend", line, cell)
    return marked, cut, marked_chunks, len(chunks_seen)


def same_run(marked, cut):
    """Both runs took the same steps, bit for bit, and measured λ at the same steps, alike."""
    for k, v in cut.history.items():
        np.testing.assert_array_equal(marked.history[k], v, err_msg=k)
    assert {n: v.tobytes() for n, v in marked.values.items()} == {n: v.tobytes() for n, v in cut.values.items()}
    for k in ("step", "eta"):
        np.testing.assert_array_equal(marked.sharpness[k], cut.sharpness[k])
    np.testing.assert_allclose(marked.sharpness["sharpness"], cut.sharpness["sharpness"], rtol=1e-6)


# (K, steps, jit, optimizer, eta): K that divides the run and K that does not, chunks of 16 steps up to ~1 000
# (--jit auto is left out: its switch to XLA is timed, and the modes differ in their last bits; see the exact test)
FULL_BATCH = [(1, 90, "off", "sgd", 0.05), (3, 250, "off", "sgd", 0.05), (7, 400, "off", "momentum", 0.02),
              (50, 1000, "on", "sgd", 0.1), (64, 700, "on", "adam", 0.01), (100, 2300, "on", "sgd", 0.05),
              (13, 333, "on", "adam", 0.01), (100, 1000, "off", "momentum", 0.05), (250, 900, "on", "sgd", 0.05)]


@pytest.mark.parametrize("every,steps,jit,optimizer,eta", FULL_BATCH)
def test_lambda_at_each_multiple_is_the_lambda_of_the_variables_there(ip, run, monkeypatch, chunks_seen,
                                                                      every, steps, jit, optimizer, eta):
    mlp_data(ip, every)
    line = f"{MLP_LINE} --eta {eta} --optimizer {optimizer} --jit {jit} --steps {steps} --sharpness {every} --no-widgets"
    marked, cut, marked_chunks, cut_chunks = both_ways(run, monkeypatch, chunks_seen, line)
    assert list(marked.sharpness["step"]) == list(range(0, steps + 1, every))
    same_run(marked, cut)
    if steps > 200 and every < 100:  # (a run of <= 200 steps calls one compiled step per step: cut there)
        assert marked_chunks < cut_chunks


@pytest.mark.parametrize("every,steps,jit,batch", [(10, 300, "off", 16), (50, 500, "on", 32), (7, 260, "off", 64),
                                                   (100, 1200, "on", 16), (33, 400, "off", 100)])
def test_a_data_runs_lambda_at_each_multiple_is_the_lambda_of_the_variables_there(ip, run, monkeypatch, chunks_seen,
                                                                                  every, steps, jit, batch):
    mlp_data(ip, batch, n=700)
    line = (f"{MLP_LINE} --data X,Y --batch-size {batch} --optimizer adam --eta 0.01 --jit {jit} --steps {steps} "
            f"--seed 1 --sharpness {every} --no-widgets")
    marked, cut, marked_chunks, cut_chunks = both_ways(run, monkeypatch, chunks_seen, line)
    assert list(marked.sharpness["step"]) == list(range(0, steps + 1, every))
    same_run(marked, cut)
    assert marked_chunks < cut_chunks


@pytest.mark.parametrize("jit,every", [("off", 5), ("on", 5), ("off", 3), ("on", 1)])
def test_a_run_that_diverges_mid_chunk_has_lambda_up_to_where_it_stopped(ip, run, monkeypatch, jit, every):
    mlp_data(ip, 3)
    line = f"{MLP_LINE} --eta 40 --jit {jit} --steps 600 --sharpness {every} --no-widgets"
    marked = run("descend", line, MLP)
    with cut_way(monkeypatch):
        cut = run("descend", line, MLP)
    assert marked.status == "diverged" and marked.steps < 600
    assert list(marked.sharpness["step"]) == list(range(0, marked.steps + 1, every))
    same_run(marked, cut)


@pytest.mark.parametrize("every,steps,jit", [(40, 400, "off"), (25, 1000, "on"), (9, 300, "auto"), (100, 2100, "auto")])
def test_lambda_follows_the_exact_hessian_at_each_multiple(ip, run, every, steps, jit):
    res = run("descend", f"a=-1.5 b=2.0 --eta 0.0004 --jit {jit} --steps {steps} --sharpness {every} --no-widgets",
              ROSENBROCK)
    h = res.history
    rows = np.flatnonzero(np.isfinite(h["sharpness"]))
    assert list(h["step"][rows]) == list(range(0, steps, every))
    for a, b, lam in zip(h["a"][rows], h["b"][rows], h["sharpness"][rows]):
        assert lam == pytest.approx(rosenbrock_top(a, b), rel=0.01)


def test_reruns_measure_the_same_lambda_at_the_same_steps(ip, run, chunks_seen):
    mlp_data(ip, 21)
    line = f"{MLP_LINE} --eta 0.05 --jit off --steps 1500 --sharpness 100 --no-widgets"
    runs = [run("descend", line, MLP) for _ in range(3)]
    assert runs[1].engine.reused and runs[2].engine.reused
    for again in runs[1:]:
        same_run(again, runs[0])
    assert len(chunks_seen) < 3 * 15


@pytest.mark.parametrize("jit,stop_after", [("off", 1), ("on", 2), ("auto", 1)])
def test_a_run_stopped_mid_way_and_played_on_measures_every_multiple(ip, run, jit, stop_after):
    res = run("descend", f"a=-1.5 b=2.0 --eta 0.0004 --jit {jit} --steps 1 --sharpness 30 --no-widgets", ROSENBROCK)
    engine = res.engine
    engine.reset()
    chunks = engine.run_chunks(2000, chunk_seconds=0.02)
    for _ in range(stop_after):
        next(chunks)
    engine.request_stop("paused")
    drain(chunks)
    assert engine.status == "paused" and 0 < engine.steps < 2000
    paused_at = engine.steps
    assert list(res.sharpness["step"]) == list(range(0, paused_at + 1, 30))
    drain(engine.run_chunks(700))  # (Play: on from where it paused)
    h = res.history
    rows = np.flatnonzero(np.isfinite(h["sharpness"]))
    assert list(h["step"][rows]) == list(range(0, engine.steps, 30))
    assert list(res.sharpness["step"]) == list(range(0, engine.steps + 1, 30))
    for a, b, lam in zip(h["a"][rows], h["b"][rows], h["sharpness"][rows]):
        assert lam == pytest.approx(rosenbrock_top(a, b), rel=0.01)


@pytest.mark.parametrize("back_to,jit", [(155, "off"), (200, "off"), (333, "on"), (7, "auto")])
def test_a_rewind_across_measurements_measures_the_branch_again(ip, run, back_to, jit):
    mlp_data(ip, back_to)
    line = f"{MLP_LINE} --eta 0.05 --jit {jit} --steps 600 --sharpness 50 --no-widgets"
    first = run("descend", line, MLP)
    before = dict(zip(first.sharpness["step"], first.sharpness["sharpness"]))
    engine = first.engine
    engine.rewind(back_to)
    assert list(first.sharpness["step"]) == list(range(0, back_to + 1, 50))
    drain(engine.run_chunks(600 - back_to))  # the same eta: the branch repeats the run exactly
    assert engine.steps == 600
    assert list(first.sharpness["step"]) == list(range(0, 601, 50))
    again = dict(zip(first.sharpness["step"], first.sharpness["sharpness"]))
    for step, lam in before.items():  # (its Lanczos starts from another vector after the rewind: within its tolerance)
        assert again[step] == pytest.approx(lam, rel=3e-3)


@pytest.mark.parametrize("interrupted_at", [2, 3, 5])
def test_an_interrupt_while_lambda_is_measured_on_a_copy_leaves_the_runs_own_values(ip, run, monkeypatch, interrupted_at):
    measured, calls = sharpness.Lanczos.largest, []

    def largest(self, afresh=False):  # (Ctrl-C arriving while a copy of an earlier step is in the variables)
        calls.append(afresh)
        if len(calls) == interrupted_at:
            raise KeyboardInterrupt
        return measured(self, afresh)

    line = "a=-1.5 b=2.0 --eta 0.0004 --jit off --steps 3000 --no-widgets"
    with monkeypatch.context() as m:
        m.setattr(sharpness.Lanczos, "largest", largest)
        stopped = run("descend", line + " --sharpness 10", ROSENBROCK)
        now = {n: ip.user_ns[n].numpy().tobytes() for n in "ab"}
    assert stopped.status == "interrupted" and 0 < stopped.steps < 3000
    assert list(stopped.sharpness["step"]) == list(range(0, 10 * (interrupted_at - 1), 10))
    plain = run("descend", line.replace("3000", str(stopped.steps)), ROSENBROCK)  # (the same steps, bit for bit)
    assert now == {n: ip.user_ns[n].numpy().tobytes() for n in "ab"}
    assert {n: v.tobytes() for n, v in stopped.values.items()} == {n: v.tobytes() for n, v in plain.values.items()}


@pytest.mark.parametrize("every,steps", [(50_000, 300_000), (70_001, 250_000)])
def test_multiples_further_apart_than_a_chunks_rows_are_all_measured(ip, run, every, steps):
    res = run("descend", f"x=10.0 --eta 1e-6 --steps {steps} --sharpness {every} --no-widgets", "y = x**2 - 4*x + 4")
    assert list(res.sharpness["step"]) == list(range(0, steps + 1, every))
    assert res.sharpness["sharpness"] == pytest.approx(np.full(len(res.sharpness["step"]), 2.0), rel=0.01)
