"""The engine split by job: the chunk policy (descent/policy.py), the observers with their
declared interface (descent/observers.py), the compiled steps a re-run takes over as one
object (descent/compiled.py) and the loss program the re-run cache holds (descent/program.py)."""

import io
import itertools

import numpy as np
import pytest

from tfmagic.descent import policy as P
from tfmagic.descent.observers import Observer
from tfmagic.descent.status import Status

COURSE = "y = tf.pow(x, 2.0) - 4.0 * x + 4.0"
DATA_CELL = "loss = tf.reduce_mean((w * X - Y) ** 2)"


# -- the chunk policy ------------------------------------------------------------

@pytest.mark.parametrize("jit", ["auto", "on", "off"])
@pytest.mark.parametrize("one_way", [False, True])
@pytest.mark.parametrize("unusable", [False, True])
@pytest.mark.parametrize("verdict", [None, True, False])
def test_the_first_mode_is_chosen_as_by_hand(jit, one_way, unusable, verdict):
    policy = P.ChunkPolicy(jit, one_way)
    policy.xla_unusable, policy.xla_verdict = unusable, verdict
    for steps in (1, P.STEP_MODE_STEPS, P.STEP_MODE_STEPS + 1, P.XLA_FROM_START_STEPS - 1, P.XLA_FROM_START_STEPS,
                  10 ** 7):
        mode = policy.first_mode(steps)
        short = steps <= P.STEP_MODE_STEPS
        if jit == "on" and not unusable:
            assert mode == "xla"
        elif short:  # (a dataset's steps stay in the row-keeping graph loop)
            assert mode == ("plain" if one_way else "step")
        elif jit == "auto" and not unusable and steps >= P.XLA_FROM_START_STEPS and verdict is not False:
            assert mode == "xla"
        else:
            assert mode == "plain"


@pytest.mark.parametrize("seconds_per_step", [1e-7, 1e-5, 1e-3, 0.05])
@pytest.mark.parametrize("target", [None, P.STEERED_CHUNK_SECONDS])
def test_chunks_grow_until_one_takes_its_time_and_the_next_run_starts_there(seconds_per_step, target):
    policy = P.ChunkPolicy("off")
    policy.start(10 ** 9)
    sizes = []
    for _ in range(12):
        mode, n, stride = policy.next_chunk(10 ** 9, 1)
        assert mode == "plain" and stride == 1 and n <= P.ROW_CAPACITY
        sizes.append(n)
        rate = policy.measured(mode, n, n * seconds_per_step, traced=False)
        policy.plan_next(n, n, n * seconds_per_step, rate, 10 ** 9, target)
    assert sizes[0] == P.FIRST_CHUNK
    want = (target or P.CHUNK_SECONDS) / seconds_per_step
    assert all(b <= a * P.MAX_CHUNK_GROWTH for a, b in zip(sizes, sizes[1:]))
    assert min(sizes[-1], P.ROW_CAPACITY) == pytest.approx(min(max(1, want), P.ROW_CAPACITY), rel=0.05, abs=1)
    policy.start(10 ** 9)
    assert policy.k == policy.chunk_steps["plain"]  # (kept across runs)
    assert policy.next_chunk(10 ** 9, 1)[1] == min(policy.k, P.ROW_CAPACITY)


def test_replicated_chunks_double_up_to_their_cap_whatever_their_time():
    policy = P.ChunkPolicy("off", replicated=True)
    policy.start(10 ** 6)
    sizes = []
    for seconds in (1e-5, 5.0, 1e-5, 1e-5, 1e-5, 1e-5):
        _, n, _ = policy.next_chunk(10 ** 6, 1)
        sizes.append(n)
        policy.plan_next(n, n, seconds, policy.measured("plain", n, seconds, False), 10 ** 6)
    assert sizes == [16, 32, 64, 128, 128, 128]


@pytest.mark.parametrize("xla_faster", [True, False])
def test_auto_keeps_xla_only_where_it_beats_the_plain_rate(xla_faster):
    policy = P.ChunkPolicy("auto")
    policy.start(P.XLA_FROM_START_STEPS - 1)
    assert policy.mode == "plain"
    _, n, _ = policy.next_chunk(10 ** 6, 1)
    plain = policy.measured("plain", n, 0.02, False)  # (800 steps/s: XLA pays for what is left)
    policy.plan_next(n, n, 0.02, plain, 10 ** 6)
    assert policy.mode == "xla"
    _, n, _ = policy.next_chunk(10 ** 6, 1)
    policy.measured("xla", n, 0.5, traced=True)  # (its compile says nothing of its rate)
    assert policy.xla_verdict is None
    seconds = n / plain * (0.5 if xla_faster else 2.0)
    assert seconds > P.RATE_SECONDS  # (a chunk long enough to show the rate)
    policy.measured("xla", n, seconds, False)
    assert policy.xla_verdict is xla_faster and policy.mode == ("xla" if xla_faster else "plain")
    assert policy.first_mode(10 ** 6) == ("xla" if xla_faster else "plain")
    policy.forget_rates()  # (another optimizer: other compiled steps)
    assert policy.xla_verdict is None and policy.first_mode(10 ** 6) == "xla"


def test_a_cell_xla_cannot_run_is_run_plain_from_then_on():
    policy = P.ChunkPolicy("auto")
    policy.start(10 ** 6)
    policy.mode = "xla"
    policy.without_xla()
    assert policy.mode == "plain" and all(policy.first_mode(s) in ("step", "plain") for s in (10, 10 ** 7))
    rate = policy.measured("plain", 16, 0.02, False)
    policy.plan_next(16, 16, 0.02, rate, 10 ** 7)
    assert policy.mode == "plain"


@pytest.mark.parametrize("every_step", [False, True])
def test_blocks_only_where_rows_cap_xla_and_nobody_needs_every_step(every_step):
    policy = P.ChunkPolicy("on")
    policy.start(10 ** 9)
    for _ in range(8):
        mode, n, stride = policy.next_chunk(10 ** 9, 1)
        if mode == "blocks":
            assert stride == -(-n // P.BLOCK_ROWS)
            break
        assert n <= P.ROW_CAPACITY and stride == 1
        seconds = n * 1e-8  # (P1 under XLA: 100 M steps/s)
        policy.plan_next(n, n, seconds, policy.measured(mode, n, seconds, False), 10 ** 9, every_step=lambda: every_step)
    assert (mode == "blocks") == (not every_step)


def test_a_re_run_learns_what_a_fresh_build_would_find_out():
    old = P.ChunkPolicy("auto")
    old.xla_unusable, old.xla_verdict, old.xla_ran, old.plain_rate = True, False, True, 123.0
    old.chunk_steps["plain"] = 4096
    new = P.ChunkPolicy("auto")
    new.learn_from(old)
    assert (new.xla_unusable, new.xla_verdict, new.xla_ran, new.chunk_steps) == (True, False, True, {"plain": 4096})
    assert new.plain_rate == 0.0  # (timed afresh)


# -- observers ---------------------------------------------------------------------

class Recorder(Observer):
    def __init__(self, result):
        self.result, self.calls = result, []

    def begin(self, engine, steps):
        self.calls.append(("begin", steps))

    def chunk(self, engine, chunk):
        # Whatever the order of attachment, the epoch a chunk closed is in the result already.
        table = self.result.epochs
        self.calls.append(("chunk", chunk.start, len(chunk.rows["loss"]), str(chunk.status),
                           tuple(int(r[0]) for r in chunk.epochs), 0 if table is None else len(table["epoch"])))

    def epoch(self, engine, row):
        self.calls.append(("epoch", int(row[0])))

    def end(self, engine):
        self.calls.append(("end", str(engine.status)))

    def close(self):
        self.calls.append(("close",))


@pytest.fixture
def data_run(ip, run):
    rng = np.random.default_rng(0)
    ip.user_ns.update(X=rng.normal(size=80).astype("float32"), Y=rng.normal(size=80).astype("float32"))
    return run("descend", "w=0.0 --data X,Y --batch-size 16 --epochs 1 --eta 0.05 --no-widgets", DATA_CELL)


def test_observers_hear_the_same_whatever_the_order_they_were_attached_in(data_run):
    from tfmagic.present.progress import TextProgress

    engine = data_run.engine
    seen = set()
    for order in itertools.permutations(range(3)):
        engine.reset()
        out = io.StringIO()
        recorder, calls = Recorder(data_run), []
        parts = [recorder, TextProgress(15, out, interval=0), lambda e, c, calls=calls: calls.append(tuple(int(row[0]) for row in c.epochs))]
        with engine.observers.attached(*[parts[i] for i in order]):
            engine.run(15)  # three epochs of 5 steps
        text = out.getvalue()
        lines = [line.split(" loss")[0] for line in text.replace("\r", "\n").splitlines() if line]  # (no rates)
        seen.add((tuple(recorder.calls), tuple(lines), tuple(calls)))
        assert recorder.calls[0] == ("begin", 15) and recorder.calls[-2:] == [("end", "max_steps"), ("close",)]
        epochs = [c for c in recorder.calls if c[0] == "epoch"]
        assert epochs == [("epoch", 1), ("epoch", 2), ("epoch", 3)]
        for i, call in enumerate(recorder.calls):
            if call[0] == "chunk" and call[4]:  # (a chunk that closed an epoch: the table has it, the
                assert call[5] == call[4][-1] and recorder.calls[i + 1] == ("epoch", call[4][0])  # epoch call follows)
        assert [line.split(":")[0] for line in text.splitlines() if line.startswith("epoch")] == \
            ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert len(seen) == 1


def test_find_eta_suspends_the_run_s_observers_and_its_epochs(ip, run, data_run):
    from tfmagic.descent.chunks import drain
    from tfmagic.descent.find_eta import sweep_chunks

    engine = data_run.engine
    recorder = Recorder(data_run)
    engine.observe(recorder)
    before, table = len(engine.observers), data_run.epochs
    sweep = drain(sweep_chunks(engine, 30))
    assert len(sweep.etas) > 5 and recorder.calls == [] and len(engine.observers) == before
    for column, values in data_run.epochs.items():  # (the sweep's steps closed no epoch of the run)
        np.testing.assert_array_equal(values, table[column])
    engine.run(5)
    assert [c[0] for c in recorder.calls] == ["begin", "chunk", "epoch", "end"] and len(data_run.epochs["epoch"]) == 1


def test_an_observer_attached_while_others_are_suspended_stays_and_they_come_back(ip, run):
    res = run("descend", "x=10.0 --steps 5 --no-widgets", COURSE)
    engine, heard = res.engine, []
    engine.observe(lambda e, c: heard.append("before"))
    with engine.observers.suspended(lambda e, c: heard.append("instead")):
        engine.run(2)
        engine.observe(lambda e, c: heard.append("during"))
        engine.run(2)
    engine.run(2)
    assert heard == ["instead", "instead", "during", "before", "during"]


def test_an_observer_that_needs_every_step_gets_every_row(ip, run, monkeypatch):
    from tfmagic.present.progress import IterationPrinter

    monkeypatch.setattr(P, "ROW_CAPACITY", 64)
    monkeypatch.setattr(P, "BLOCK_ROWS", 64)
    res = run("descend", "x=10.0 --eta 1e-6 --steps 5 --jit on --no-widgets", COURSE)
    out = io.StringIO()
    with res.engine.observers.attached(IterationPrinter(1000, out)):
        res.engine.run(200_000)
    assert "blocks" not in res.engine.compiled
    assert [int(line.split()[1]) for line in out.getvalue().splitlines()] == [i for i in range(5, 200_005) if i % 1000 == 0]


# -- the compiled steps, handed over as one; the loss program the cache holds -------------

def test_a_re_run_takes_over_the_compiled_steps_as_one_and_the_old_result_stays_its_own(ip, run):
    from tfmagic.descent.reuse import CELLS

    first = run("descend", "x=10.0 --eta 0.1 --steps 30 --no-widgets", COURSE)
    second = run("descend", "x=10.0 --eta 0.1 --steps 30 --no-widgets", COURSE)
    old, new = first.engine._compiled, second.engine._compiled
    assert second.engine.reused and old is not new
    assert (new.graphs, new.calls, new.optimizer, new.memo) == (old.graphs, old.calls, old.optimizer, old.memo)
    assert new.policy is second.engine._compiled.policy and new.policy is not old.policy
    np.testing.assert_array_equal(first.history["x"], second.history["x"])
    kept = [k for k in CELLS._kept.values() if k.engine is second.engine]
    assert len(kept) == 1
    program = kept[0].program  # (the engines' steps call the program the cache holds)
    assert first.engine.loss_fn.__self__ is program and second.engine.loss_fn.__self__ is program
    assert float(program.loss()) == pytest.approx(second.final_loss, rel=1e-6)  # (the loss where x ended)
    second.engine.set_optimizer("adam")
    second.engine.run(5)
    assert first.optimizer == "sgd" and second.optimizer == "adam" and first.engine.retired
    assert second.status == Status.MAX_STEPS
