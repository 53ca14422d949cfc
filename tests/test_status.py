"""One vocabulary (descent/status.py): every way a run can end is a Status, the same word in
`run.status`, the result, the panel's badge and the README's table; its groups say what the
engine does with a run in that status; no status word is spelt anywhere else."""

import ast
import pathlib
import re
import tokenize

import numpy as np
import pytest

from tfmagic.descent.status import CUT_SHORT, DATA_STOPS, ESCAPED, NO_END_YET, NOT_FINAL, Note, Retrace, Status, Whose
from tfmagic.errors import TfmagicError
from tfmagic.present import messages

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _stop_at_first_chunk(how):
    def observer(engine, chunk):
        if how is KeyboardInterrupt:
            raise KeyboardInterrupt
        engine.request_stop(how)
    return observer


def _ended_by_panel(ip, run, how):
    """A run the panel's buttons (or Ctrl-C) end after its first chunk."""
    res = run("descend", "x=10.0 --eta 0.001 --steps 5 --no-widgets", "y = x * x")
    res.engine.observe(_stop_at_first_chunk(how))
    res.engine.run(100000)
    return res


def _error(ip, run):
    with pytest.raises(TfmagicError):
        run("descend", "x=0.0 --eta 1.0 --steps 10 --no-widgets -o out", "tf.debugging.assert_less(x, 3.0)\ny = -x")
    return ip.user_ns["out"]


def _dataset(ip, run, bad):
    """A generator of 5 batches (its length unknown to TensorFlow), one with a NaN if `bad`."""
    ip.run_cell("import numpy as np\nX = np.linspace(-1, 1, 40, dtype='float32')\n" + ("X[20] = np.nan\n" if bad else "")
                + "def gen():\n    for i in range(5):\n        yield X[8 * i:8 * i + 8]\n"
                "ds = tf.data.Dataset.from_generator(gen, output_signature=tf.TensorSpec([None]))")
    return run("descend", "w=1.0 --data xb=ds --steps 50 --no-widgets", "loss = tf.reduce_mean((w * xb - 1.0) ** 2)")


def _reset(ip, run):
    res = run("descend", "x=10.0 --eta 0.1 --steps 5 --no-widgets", "y = x * x")
    res.engine.reset()
    return res


CASES = {  # a way a user ends a run -> (how, the status it ends in)
    "all its steps": (lambda ip, run: run("descend", "x=10.0 --eta 0.1 --steps 7 --no-widgets", "y = x * x"),
                      Status.MAX_STEPS),
    "|grad| < tol": (lambda ip, run: run("descend", "x=10.0 --eta 0.1 --steps 500 --tol 0.01 --no-widgets", "y = x * x"),
                     Status.CONVERGED),
    "eta too large": (lambda ip, run: run("descend", "x=10.0 --eta 1.5 --steps 500 --no-widgets", "y = x * x"),
                      Status.DIVERGED),
    "not finite at the start": (lambda ip, run: run("descend", "x=-1.0 --steps 5 --no-widgets", "y = tf.math.log(x)"),
                                Status.DIVERGED),
    "sqrt of a negative": (lambda ip, run: run("descend", "x=4.0 --eta 0.3 --steps 40 --no-widgets", "y = tf.sqrt(x)"),
                           Status.UNDEFINED),
    "Stop": (lambda ip, run: _ended_by_panel(ip, run, Status.STOPPED), Status.STOPPED),
    "Pause": (lambda ip, run: _ended_by_panel(ip, run, Status.PAUSED), Status.PAUSED),
    "Ctrl-C": (lambda ip, run: _ended_by_panel(ip, run, KeyboardInterrupt), Status.INTERRUPTED),
    "the cell raised": (_error, Status.ERROR),
    "the dataset ended": (lambda ip, run: _dataset(ip, run, bad=False), Status.OUT_OF_DATA),
    "a NaN in a batch": (lambda ip, run: _dataset(ip, run, bad=True), Status.BAD_DATA),
    "reset": (_reset, Status.READY),
}


def test_every_status_is_reached_by_some_case():
    """A new Status needs a case here (and a row in the README's table)."""
    assert {status for _, status in CASES.values()} | {Status.RUNNING} == set(Status)


@pytest.mark.parametrize("case", list(CASES))
def test_a_run_ends_in_its_status_and_the_groups_say_what_the_engine_did(ip, run, case):
    how, expected = CASES[case]
    res = how(ip, run)
    status = res.engine.status
    assert status is expected and res.status is expected
    # The word: equal to the string users compare with, and what str() and format() show.
    assert status == expected.value and str(status) == f"{status}" == expected.value
    assert isinstance(status, str) and hash(status) == hash(expected.value)
    if status not in NO_END_YET:
        assert repr(res).startswith(f"{expected.value}:")
    # escaped: the message explains a blow-up, and the variables hold finite values
    said = messages.outcome(res.engine)
    assert status.escaped == (status in ESCAPED) == said.startswith(("diverged", "undefined"))
    if status.escaped:
        assert all(np.all(np.isfinite(v)) for v in res.values.values())
    # a data stop: the engine holds what the data did
    assert (status in DATA_STOPS) == (res.engine.data_stop is not None and res.engine.data_stop.status is status)
    # cut short: said as an interruption or an error
    assert (status in CUT_SHORT) == said.startswith(("interrupted", "stopped by an error", "stopped after"))
    # final: the result keeps its values whatever later moves the variables; not final, it follows them
    before = {n: v.copy() for n, v in res.values.items()}
    name = next(iter(res.engine.variables))
    res.engine.variables[name].assign(res.engine.variables[name] + 123.0)
    moved = not np.allclose(res.values[name], before[name])
    assert status.final == (status not in NOT_FINAL) == (not moved)


def test_a_chunk_in_the_middle_of_a_run_is_running(ip, run):
    res = run("descend", "x=10.0 --eta 0.001 --steps 5 --no-widgets", "y = x * x")
    seen = []
    res.engine.observe(lambda engine, chunk: seen.append((chunk.status, engine.status)))
    res.engine.run(3000)
    assert all(c is e is Status.RUNNING for c, e in seen[:-1]) and len(seen) > 1
    assert seen[-1] == (Status.MAX_STEPS, Status.MAX_STEPS) and not Status.RUNNING.final


def test_request_stop_takes_only_what_a_stop_can_be(ip, run):
    res = run("descend", "x=10.0 --steps 5 --no-widgets", "y = x * x")
    with pytest.raises(ValueError):
        res.engine.request_stop("halted")
    res.engine.request_stop("paused")  # (a word works as its Status)
    assert res.engine.stop_requested


def test_the_readme_status_table_is_the_one_in_messages():
    readme = (ROOT / "README.md").read_text()
    assert messages.status_table() in readme
    rows = [line for line in readme.splitlines() if re.match(r"\| `[a-z_]+`( / `[a-z_]+`)* \| ", line)]
    assert len(rows) == len(messages.STATUS_MEANINGS)  # (no second, hand-made table elsewhere)
    explained = [s for statuses, _ in messages.STATUS_MEANINGS for s in statuses]
    # Every way a run ends is explained once; READY and RUNNING are not ends.
    assert sorted(explained) == sorted(set(Status) - NO_END_YET)


def _note_cases():
    yield Note.NO_XLA_FOR_CHECKS
    yield Note.XLA_DROPS_CHECKS
    yield Note.XLA_FAILED.with_detail("InvalidArgumentError")
    for whose in Whose:
        yield Note.REUSED.with_detail(whose)
    for reason in Retrace:  # (three name what they are about)
        named = ("W_1",) if reason in (Retrace.HELD, Retrace.UNCHECKED, Retrace.RANDOM_OPS) else ()
        yield Note.TRACED_AGAIN.with_detail(reason, *named)


def test_every_note_with_every_detail_has_its_sentence():
    codes = set()
    for noted in _note_cases():
        codes.add(noted.code)
        sentence = messages.note(noted)
        assert sentence and "{" not in sentence and sentence[0].isupper()
        for part in noted.detail:
            if not isinstance(part, (Whose, Retrace)):
                assert part in sentence
    assert codes == set(Note)
    assert Note.XLA_FAILED.with_detail("E") == Note.XLA_FAILED.with_detail("E")  # (notes compare by value)


def _literals(path):
    with open(path) as f:
        for tok in tokenize.generate_tokens(f.readline):
            if tok.type == tokenize.STRING:
                try:
                    value = ast.literal_eval(tok.string)
                except (ValueError, SyntaxError):
                    continue  # (an f-string)
                yield tok.start[0], value


def test_no_status_word_is_spelt_outside_the_vocabulary():
    """The status words, the note codes and the panel's own states: in status.py and
    widgets/badges.py only (else a new status or a renamed one misses a place)."""
    from tfmagic.widgets.badges import BADGES, DETACHED

    words = {s.value for s in Status} | {n.value for n in Note} | {DETACHED}
    homes = {ROOT / "tfmagic/descent/status.py", ROOT / "widgets/badges.py"}
    found = []
    for path in sorted((ROOT / "tfmagic").rglob("*.py")) + sorted((ROOT / "widgets").rglob("*.py")):
        if "widgets" in path.parts and path.parts[-3] == "tfmagic" or path.resolve() in homes:
            continue  # (tfmagic/widgets is a link to widgets/)
        found += [f"{path.relative_to(ROOT)}:{line} {value!r}" for line, value in _literals(path) if value in words]
    assert not found
    # ... and nothing parses a note back
    for path in (ROOT / "tfmagic").rglob("*.py"):
        assert not re.search(r"\.startswith\(\(?NOTE_", path.read_text()), path
    assert set(BADGES) == set(Status) | {DETACHED} and DETACHED not in {s.value for s in Status}
