"""What a re-run never does: move a variable the user still holds, take a result's values, start
where a first run would be refused, draw other random numbers than a first run, keep what the
cell read alive after `del` or `%reset -f`; and what its notes say, in one line each."""

import gc
import weakref

import numpy as np
import pytest

from tfmagic.descent.reuse import CELLS
from tfmagic.errors import TfmagicError

COURSE = "y = tf.pow(x, 2.0) - 4.0 * x + 4.0"
RUN = "x=10.0 --steps 30 --no-widgets"
AGAIN = "x=-3.0 --eta 0.05 --steps 30 --no-widgets"


@pytest.fixture(autouse=True)
def cold_cache():
    CELLS.clear()


# (code that keeps x somewhere, an expression for what it kept)
HOLDERS = {
    "nested dict": ("kept = {'a': {'b': x}}", "kept['a']['b']"),
    "list of lists": ("kept = [[1.0], [x]]", "kept[1][0]"),
    "object attribute": ("class Box:\n    pass\nbox = Box()\nbox.v = x", "box.v"),
    "class attribute": ("class Holder:\n    v = None\nHolder.v = x", "Holder.v"),
    "slots": ("class Slot:\n    __slots__ = ('v',)\nslot = Slot()\nslot.v = x", "slot.v"),
    "checkpoint": ("ckpt = tf.train.Checkpoint(v=x)", "ckpt.v"),
    "closure": ("def keep(v):\n    return lambda: v\nget = keep(x)", "get()"),
    "default": ("def get(v=x):\n    return v", "get()"),
    "underscore name": ("_x = x", "_x"),
    "dict key": ("kept = {x.ref(): 1}", "next(iter(kept)).deref()"),
    "object array": ("import numpy as np\nkept = np.array([x, None], dtype=object)", "kept[0]"),
    "bound method": ("assign = x.assign", "assign.__self__"),
    "namespace object": ("import types\nns = types.SimpleNamespace(v=x)", "ns.v"),
    "traced tf.function": ("@tf.function\ndef double():\n    return x * 2.0\ndouble()", "double()"),
}


@pytest.mark.parametrize("holder", HOLDERS)
def test_a_variable_held_anywhere_is_never_moved(ip, run, holder):
    code, kept = HOLDERS[holder]
    run("descend", RUN, COURSE)
    assert ip.run_cell(code).success
    before = float(ip.ev(kept))
    res = run("descend", AGAIN, COURSE)
    assert not res.engine.reused and float(ip.ev(kept)) == before
    assert res.history["x"][0] == -3.0 and ip.user_ns["x"].numpy() == res.values["x"]
    assert "Traced again: the last run's x is also held elsewhere" in repr(res)


def test_a_variable_shown_in_the_out_history_is_held_there(ip, run):
    run("descend", RUN, COURSE)
    ip.run_cell("x", store_history=True)
    shown = next(v for v in ip.user_ns["Out"].values() if v is ip.user_ns["x"])
    before = float(shown.numpy())
    res = run("descend", AGAIN, COURSE)
    assert not res.engine.reused and float(shown.numpy()) == before and ip.user_ns["x"] is not shown


def test_what_holds_only_copies_or_results_does_not_stop_reuse(ip, run):
    first = run("descend", RUN + " -o r1", COURSE)
    ip.run_cell("import numpy as np\nsnap = {'x': x.numpy(), 'text': str(x)}\nvalues = [r1.values]\nhist = r1.history")
    again = run("descend", AGAIN, COURSE)
    assert again.engine.reused and first.engine.retired
    assert ip.user_ns["values"][0]["x"] == first.values["x"] != again.values["x"]


@pytest.mark.parametrize("left", ["paused", "stopped", "ready"])
def test_a_result_keeps_its_values_when_its_cell_runs_again(ip, run, left):
    first = run("descend", RUN, COURSE)
    engine = first.engine
    if left == "paused":  # as the panel's Step leaves it
        engine.run(3)
        engine.pause()
    elif left == "stopped":  # as its Stop leaves it
        engine.observe(lambda e, chunk: e.request_stop())
        engine.run(100)
    else:  # its Reset
        engine.reset()
    assert first.status == left
    held = first.values  # (what a user took: its arrays are copies, not views of the variables)
    kept = {k: v.copy() for k, v in held.items()}
    again = run("descend", AGAIN, COURSE)
    assert again.engine.reused and first.engine.retired and first.status == left
    assert first.values == kept == held and first.values["x"] != again.values["x"]


CHECKED = "y = tf.debugging.check_numerics(tf.sqrt(x), 'sqrt of x') ** 2"


@pytest.mark.parametrize("start", ["-1.0", "float('nan')"])
def test_a_rerun_that_fails_at_its_start_is_refused_like_a_first_run(ip, run, start):
    first = run("descend", "x=4.0 --steps 5 --no-widgets -o r1", CHECKED)
    x, value = ip.user_ns["x"], float(ip.user_ns["x"].numpy())
    with pytest.raises(TfmagicError) as again:
        run("descend", f"x={start} --steps 5 --no-widgets -o r2", CHECKED)
    assert ip.user_ns["x"] is x and float(x.numpy()) == value  # nothing moved
    assert "r2" not in ip.user_ns and ip.user_ns["r1"] is first  # nothing published
    assert not first.engine.retired and first.status == "max_steps"
    assert all(kept.engine.status != "running" for kept in CELLS._kept.values())
    CELLS.clear()
    ip.user_ns.pop("x")
    with pytest.raises(TfmagicError) as fresh:
        run("descend", f"x={start} --steps 5 --no-widgets -o r2", CHECKED)
    assert str(again.value) == str(fresh.value) and "sqrt of x" in str(again.value)


RANDOM_CELLS = {
    "tf.random op": "loss = tf.reduce_sum((x - tf.random.normal([2])) ** 2)",
    "tf.random.Generator": "loss = tf.reduce_sum((x - gen.normal([2])) ** 2)",
    "keras SeedGenerator": "loss = tf.reduce_sum((x - keras.random.normal((2,), seed=sg)) ** 2)",
    "numpy global": "loss = tf.reduce_sum((x - np.random.normal(size=2).astype('float32')) ** 2)",
    "python random": "loss = tf.reduce_sum((x - random.random()) ** 2)",
}


@pytest.mark.parametrize("source", RANDOM_CELLS)
def test_the_same_seed_gives_the_same_run_every_time(ip, run, source):
    ip.run_cell("import numpy as np, random, keras")
    runs = []
    for _ in range(3):
        ip.run_cell("tf.random.set_seed(5); np.random.seed(5); random.seed(5)\n"
                    "gen = tf.random.Generator.from_seed(5); sg = keras.random.SeedGenerator(5)")
        res = run("descend", "x=tf.random.normal([2]) --steps 12 --no-widgets", RANDOM_CELLS[source])
        runs.append((res.history["loss"].copy(), res.values["x"].copy(), float(np.random.uniform())))
    for loss, x, after in runs[1:]:
        np.testing.assert_array_equal(loss, runs[0][0])
        np.testing.assert_array_equal(x, runs[0][1])
        assert after == runs[0][2]  # (and what the notebook draws next)


@pytest.mark.parametrize("how", ["del A", "%reset -f"])
def test_what_the_cell_read_is_let_go_after_del_or_reset(ip, run, how):
    ip.run_cell("import numpy as np\nA = np.linspace(0.0, 1.0, 100_000, dtype=np.float32)\nX = np.ones((64, 2), np.float32)\n"
                "Y = np.zeros(64, np.float32)")
    refs = [weakref.ref(ip.user_ns[n]) for n in ("A", "X")]
    cell = "loss = (w - tf.reduce_mean(A)) ** 2 + tf.reduce_mean((tf.linalg.matvec(X, v) - Y) ** 2)"
    res = run("descend", "w=0.0 v=tf.zeros([2]) --data X,Y --batch-size 16 --steps 5 --no-widgets", cell)
    again = run("descend", "w=1.0 v=tf.zeros([2]) --data X,Y --batch-size 16 --steps 5 --no-widgets", cell)
    assert again.engine.reused
    ip.run_cell(how if how != "del A" else "del A, X")
    gc.collect()
    assert [r() for r in refs] == [None, None]
    assert res.status == again.status == "max_steps"  # (the results themselves are still there)


def test_the_notes_say_whose_compiled_steps_a_run_took(ip):
    def cell(cell_id):
        ip.run_cell(f"%%descend x=10.0 --steps 30 --no-widgets -o r\n{COURSE}", cell_id=cell_id)
        return "\n".join(ip.user_ns["r"].notes)

    assert "Reused" not in cell("a")
    assert "Reused the compiled steps of another cell with the same code" in cell("b")
    assert "Reused the compiled steps of this cell's last run" in cell("b")
    assert "another cell with the same code" in cell("a")  # (b ran last)
    # a front end that names no cell (a terminal)
    assert "Reused the compiled steps of an earlier run of the same code: the cell traced to the same graph" in cell(None)


WHY = {  # (set-up, first line, cell, what changes, the re-run's line, its note)
    "graph": ("a = 1.0", "w=0.0", "loss = (w - a) ** 2", "a = -0.0", "w=0.0",
              "Traced again: the cell traced to another graph than its last run (a value it reads has changed)."),
    "python random": ("import numpy as np\nnp.random.seed(1)", "w=0.0", "loss = (w - np.random.uniform()) ** 2",
                      "np.random.seed(1)", "w=0.0", "Traced again: the cell draws Python random numbers"),
    "random ops": ("", "w=0.0", "loss = (w - tf.random.normal([])) ** 2", "", "w=0.0",
                   "Traced again: its op RandomStandardNormal keeps its random state in the compiled steps"),
    "variables": ("", "w=tf.zeros([2])", "loss = tf.reduce_sum(w ** 2)", "", "w=tf.zeros([3])",
                  "Traced again: its variables are not its last run's"),
    "switched": ("", "w=1.0", "loss = w ** 2", "r1.engine.set_optimizer('adam')", "w=1.0",
                 "Traced again: its last run's optimizer or device was switched in its panel."),
    "constraint": ("v = tf.Variable(1.0, constraint=lambda t: tf.clip_by_value(t, -2.0, 2.0))", "v", "loss = (v - 3.0) ** 2",
                   "", "v", "Traced again: a variable has a constraint"),
    "held": ("", "w=1.0", "loss = w ** 2", "kept = [[w]]", "w=1.0",
             "Traced again: the last run's w is also held elsewhere (another name, a container, an attribute, Out), "
             "so it was not moved; w is a new variable."),
}


@pytest.mark.parametrize("why", WHY)
def test_a_rerun_that_is_not_reused_says_why_in_one_line(ip, run, why):
    setup, first, cell, change, second, note = WHY[why]
    ip.run_cell(setup)
    run("descend", first + " --steps 5 --no-widgets -o r1", cell)
    ip.run_cell(change)
    res = run("descend", second + " --steps 5 --no-widgets", cell)
    assert not res.engine.reused
    said = [n for n in res.notes if n.startswith("Traced again")]
    assert len(said) == 1 and said[0].startswith(note) and "\n" not in said[0]
    assert note in repr(res) and note.split(":")[0] in res._repr_html_()


def test_a_namespace_too_large_to_search_is_not_judged(ip, run, monkeypatch):
    from tfmagic.descent import reach

    run("descend", RUN, COURSE)
    monkeypatch.setattr(reach, "BUDGET", 3)
    ip.run_cell("many = [[i] for i in range(10)]")
    res = run("descend", AGAIN, COURSE)
    assert not res.engine.reused and "there is too much in the namespace to check that nothing else holds" in repr(res)


@pytest.mark.parametrize("collected", [False, True])
def test_a_refused_rerun_names_the_cell_line_whether_or_not_the_first_trace_is_still_alive(ip, run, collected):
    """A re-run can run the function traced from the first compile of the same cell text: its
    error named that compile's file, so the re-run's message lost "cell line 1" (seen in a full
    test run; in one process it lost it every time no garbage collection came in between)."""
    run("descend", "x=4.0 --steps 5 --no-widgets -o r1", CHECKED)
    if collected:
        gc.collect()
    with pytest.raises(TfmagicError) as again:
        run("descend", "x=float('nan') --steps 5 --no-widgets -o r2", CHECKED)
    assert "cell line 1:" in str(again.value) and "sqrt of x" in str(again.value), str(again.value)


def test_an_error_is_located_in_an_earlier_compile_only_of_the_same_code():
    from tfmagic.cell.compiler import compile_cell
    from tfmagic.cell.explain import locate

    first, now = (compile_cell("a = x * 2\ny = a + 1", {"x": 1.0}) for _ in range(2))
    other = compile_cell("b = x * 3\ny = b + 1", {"x": 1.0})
    for source, want in ((first, (1, "a = x * 2")), (now, (1, "a = x * 2")), (other, (None, None))):
        err = ValueError(f'Traceback of the op:\n  File "{source.filename}", line 2, in __tfmagic_cell__\nbad value')
        assert locate(err, now) == want, (source.filename, now.filename)
