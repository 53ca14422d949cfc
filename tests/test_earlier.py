"""Earlier runs of a cell (issue 26 §1): a cell run again keeps its earlier runs in this
kernel (run.earlier, newest first, at most 10), each labelled by exactly what changed; its
static record draws them faint with a table; its panel draws them faint behind the loss and on
the picture, with a legend and the table. A changed loss starts a new series; memory is bounded."""

import random
import re

import numpy as np
import pytest
from IPython.core.error import UsageError

from tfmagic.errors import TfmagicError
from tfmagic.descent.status import Status

COURSE = "y = tf.pow(x, 2.0) - 4.0 * x + 4.0"
BOWL = "L = (a - 1.0) ** 2 + 3.0 * (b + 0.5) ** 2"
ETAS, OPTIMIZERS, STEPS, STARTS, TOLS = (0.01, 0.03, 0.1, 0.3), ("sgd", "momentum", "adam"), (5, 10, 20), \
    ("3.0", "-2.0", "10.0"), (None, 0.001)


def line_of(s):
    tol = f" --tol {s['tol']}" if s["tol"] is not None else ""
    return f"x={s['x']} --eta {s['eta']} --optimizer {s['optimizer']} --steps {s['steps']}{tol} --no-widgets -o r"


def expected_label(before, now):
    """What the label must say: each change, in the order eta, optimizer, steps, start, tol."""
    if before is None:
        return f"first run ({now['optimizer']}, eta {now['eta']:g})"
    parts = []
    if before["eta"] != now["eta"]:
        parts.append(f"eta {before['eta']:g} → {now['eta']:g}")
    if before["optimizer"] != now["optimizer"]:
        parts.append(f"{before['optimizer']} → {now['optimizer']}")
    if before["steps"] != now["steps"]:
        parts.append(f"steps {before['steps']} → {now['steps']}")
    if before["x"] != now["x"]:
        parts.append(f"x={before['x']} → {now['x']}")
    if before["tol"] != now["tol"]:
        say = lambda t: "none" if t is None else f"{t:g}"  # noqa: E731
        parts.append(f"tol {say(before['tol'])} → {say(now['tol'])}")
    return ", ".join(parts) or "same settings"


def faint_lines(html):
    """(label, last x, last y) of each faint polyline of the result's loss chart, in drawing order."""
    svg = re.search(r"<svg class='tfmagic-loss-svg'.*?</svg>", html, re.S).group(0)
    return [(re.search(r"data-label='([^']*)'", t).group(1), float(re.search(r"data-last-x='([^']*)'", t).group(1)),
             float(re.search(r"data-last-y='([^']*)'", t).group(1)))
            for t in re.findall(r"<polyline [^>]*class='tfmagic-earlier'[^>]*>", svg)], svg


@pytest.mark.parametrize("seed", range(6))
def test_a_series_of_reruns_with_random_changes(ip, seed):
    rng = random.Random(seed)
    settings = dict(eta=0.1, optimizer="sgd", steps=10, x="3.0", tol=None)
    results, before = [], None
    for i in range(13 if seed < 2 else 6):
        if i:  # change 0-3 settings at random (sometimes nothing)
            settings = dict(settings)
            for key in rng.sample(["eta", "optimizer", "steps", "x", "tol"], rng.randint(0, 3)):
                settings[key] = rng.choice({"eta": ETAS, "optimizer": OPTIMIZERS, "steps": STEPS, "x": STARTS,
                                            "tol": TOLS}[key])
        ip.run_cell_magic("descend", line_of(settings), COURSE)
        r = ip.user_ns["r"]
        where = (seed, i, settings)
        assert r.this_run.number == i + 1
        from tfmagic.present.messages import earlier_label
        assert earlier_label(r.this_run) == expected_label(before, settings), where
        # newest first, at most 10, each as its own run ended
        assert [e.number for e in r.earlier] == list(range(i, max(i - 10, 0), -1)), where
        for e in r.earlier:
            old = results[e.number - 1]
            assert (e.status, e.steps, e.final_loss) == (old.status, old.steps, old.final_loss), where
            assert e.label == earlier_label(old.this_run)
            assert e.history["step"][-1] == old.steps and e.history["loss"][-1] == np.float32(old.final_loss)
        # the static record: one faint line per earlier run, ending at its final loss, labelled
        lines, svg = faint_lines(r._repr_html_())
        assert len(lines) == len(r.earlier), where
        for (label, last_x, last_y), e in zip(lines, r.earlier):
            assert label == f"run {e.number}: {e.label}"
            assert last_x == e.steps and last_y == pytest.approx(e.final_loss, rel=1e-6, abs=1e-12), where
        if r.earlier:  # drawn behind: every faint line before the current one
            drawn = re.findall(r"<polyline [^>]*>", svg)
            assert f"data-label='this run, run {i + 1}:" in drawn[-1] and "tfmagic-earlier" not in drawn[-1]
            assert f"<td>{r.earlier[0].number}</td>" in r._repr_html_()
            text = repr(r)
            assert "earlier runs of this cell, newest first" in text
            assert re.search(rf"^\s+{i + 1} \(this run\)\s+{re.escape(earlier_label(r.this_run))}\s+{r.steps}\s", text,
                             re.M), text
        else:
            assert "earlier runs" not in repr(r) and "tfmagic-earlier" not in r._repr_html_()
        results.append(r)
        before = settings


def test_a_changed_loss_starts_a_new_series_and_layout_does_not(ip, run):
    run("descend", "x=10.0 --eta 0.1 --steps 5 --no-widgets -o a1", COURSE)
    run("descend", "x=10.0 --eta 0.3 --steps 5 --no-widgets -o a2", COURSE)
    b = run("descend", "x=10.0 --eta 0.3 --steps 5 --no-widgets -o b1", "y = tf.pow(x, 2.0) - 2.0 * x")
    assert b.earlier == () and b.this_run.number == 1
    # the same statements, spaced and commented otherwise: the same cell
    a3 = run("descend", "x=10.0 --eta 1.0 --steps 5 --no-widgets",
             "# the course's loss\ny = tf.pow(x,2.0)-4.0*x + 4.0   # a parabola\n")
    assert [e.number for e in a3.earlier] == [2, 1]
    assert a3.earlier[0].label == "eta 0.1 → 0.3" and a3.this_run.changes == (("eta", 0.3, 1.0),)
    # another variable name is another cell
    z = run("descend", "z=10.0 --eta 0.1 --steps 5 --no-widgets", "y = tf.pow(z, 2.0) - 4.0 * z + 4.0")
    assert z.earlier == ()


def test_what_else_changed_is_named(ip, run):
    ip.run_cell("k = 1.0")
    cell = "y = k * (x - 2.0) ** 2"
    run("descend", "x=10.0 --steps 5 --no-widgets", cell)
    ip.run_cell("k = 2.0")
    r = run("descend", "x=10.0 --steps 5 --no-widgets", cell)
    assert r.earlier[0].final_loss != r.final_loss
    from tfmagic.present.messages import earlier_label
    assert earlier_label(r.this_run) == "k 1 → 2"
    r = run("descend", "x=10.0 --steps 5 --jit off --device CPU:1 --no-widgets", cell)
    assert earlier_label(r.this_run) == "device CPU:0 → CPU:1, jit auto → off"
    r = run("descend", "x=10.0 --steps 5 --jit off --device CPU:1 --no-widgets", cell)
    assert earlier_label(r.this_run) == "same settings"


def test_a_refused_run_is_not_a_run_of_the_series(ip, run):
    run("descend", "x=10.0 --eta 0.1 --steps 5 --no-widgets", COURSE)
    with pytest.raises(UsageError):
        run("descend", "x=10.0 --eta -1 --steps 5 --no-widgets", COURSE)
    with pytest.raises(TfmagicError):
        run("descend", "x=undefined_name --eta 0.2 --steps 5 --no-widgets", COURSE)
    r = run("descend", "x=10.0 --eta 0.3 --steps 5 --no-widgets", COURSE)
    assert [e.number for e in r.earlier] == [1] and r.this_run.changes == (("eta", 0.1, 0.3),)


def test_a_diverged_and_an_error_run_are_kept_with_their_status(ip, run):
    run("descend", "x=10.0 --eta 1.5 --steps 200 --no-widgets", COURSE)
    r = run("descend", "x=10.0 --eta 0.1 --steps 20 --no-widgets", COURSE)
    e = r.earlier[0]
    assert e.status == Status.DIVERGED and e.steps < 200 and np.isfinite(e.history["loss"]).all()
    lines, _ = faint_lines(r._repr_html_())
    assert lines[0][1] == e.steps
    assert "diverged" in repr(r)
    cell = "y = x * x + tf.debugging.check_numerics(tf.math.log(x - 1.5), 'log')"
    with pytest.raises(TfmagicError):
        run("descend", "x=3.0 --eta 0.5 --steps 20 --no-widgets -o bad", cell)
    bad = ip.user_ns["bad"]
    r = run("descend", "x=3.0 --eta 0.01 --steps 20 --no-widgets", cell)
    assert (r.earlier[0].status, r.earlier[0].steps) == (Status.ERROR, bad.steps)
    assert r.earlier[0].label == "first run (sgd, eta 0.5)" and r.this_run.changes == (("eta", 0.5, 0.01),)


def test_compare_restarts_and_find_eta_neither_join_nor_show_a_series(ip, run):
    run("descend", "x=10.0 --eta 0.1 --steps 5 --no-widgets", COURSE)
    multi = run("descend", "x=10.0 --steps 5 --compare eta=0.1,0.3 --no-widgets", COURSE)
    assert not hasattr(multi, "this_run") and "earlier runs" not in repr(multi)
    run("descend", "x=-5:5 --steps 5 --restarts 2 --no-widgets", COURSE)
    run("descend", "x=10.0 --find-eta --no-widgets", COURSE)
    r = run("descend", "x=10.0 --eta 0.2 --steps 5 --no-widgets", COURSE)
    assert [e.number for e in r.earlier] == [1] and r.this_run.changes == (("eta", 0.1, 0.2),)


def test_steps_taken_after_the_cell_update_its_entry(ip, run):
    """Play (or Step) in the panel after the cell ended runs the same engine: its entry follows."""
    first = run("descend", "x=10.0 --eta 0.01 --steps 5 --no-widgets -o first", COURSE)
    first.engine.run(20)  # (what the panel's Play runs, through its runner)
    assert first.steps == 25
    r = run("descend", "x=10.0 --eta 0.01 --steps 5 --no-widgets", COURSE)
    e = r.earlier[0]
    assert (e.steps, e.final_loss, e.history["step"][-1]) == (25, first.final_loss, 25)


def test_reset_forgets(ip, run):
    run("descend", "x=10.0 --steps 5 --no-widgets", COURSE)
    assert len(run("descend", "x=10.0 --steps 5 --no-widgets", COURSE).earlier) == 1
    ip.run_line_magic("reset", "-f")
    ip.user_ns["tf"] = __import__("tensorflow")
    assert run("descend", "x=10.0 --steps 5 --no-widgets", COURSE).earlier == ()


def test_memory_is_bounded(ip, run):
    from tfmagic.descent import earlier as facts

    facts.EARLIER.clear()
    for i in range(facts.MAX_EARLIER + 4):  # long runs of a 2-D path
        r = run("descend", f"a=2.0 b=1.0 --eta 0.0{1 + i % 5} --steps 5000 --jit off --no-widgets", BOWL)
    assert len(r.earlier) == facts.MAX_EARLIER
    assert len(r._repr_html_().encode()) < 25_000  # (a saved record: each earlier run drawn at 100 points)
    for e in r.earlier:
        assert set(e.history) == {"step", "loss", "a", "b"}
        assert all(len(v) <= facts.POINTS for v in e.history.values()) and e.history["step"][-1] == 5000
    for i in range(facts.MAX_SERIES + 3):  # more cells than are kept
        run("descend", "a=2.0 b=1.0 --steps 3000 --jit off --no-widgets", BOWL + f" + {i}.0")
        run("descend", "a=2.0 b=1.0 --steps 3000 --jit off --no-widgets", BOWL + f" + {i}.0")
    assert len(facts.EARLIER) == facts.MAX_SERIES
    assert 0 < facts.EARLIER.nbytes <= facts.MAX_BYTES
    assert facts.RUN_BYTES * (facts.MAX_EARLIER + 1) * facts.MAX_SERIES == facts.MAX_BYTES
    # a model's run keeps its loss only (no path: its variables are not drawn)
    r = run("descend", "W=tf.ones([30, 30]) --steps 5 --no-widgets", "L = tf.reduce_sum(W ** 2)")
    r = run("descend", "W=tf.ones([30, 30]) --steps 5 --no-widgets", "L = tf.reduce_sum(W ** 2)")
    assert set(r.earlier[0].history) == {"step", "loss"}


def _panel(ip, res):
    from tfmagic.descent.loss_grid import loss_grid_for
    from tfmagic.kernel.runner import LiveRunner
    from tfmagic.widgets.panel import DescentPanel

    curve, surface = loss_grid_for(ip.user_ns["tf"], res.engine)
    return DescentPanel(LiveRunner(res.engine), res, 50, {"CPU:0": "CPU:0"}, curve=curve, surface=surface)


def _rows_last(x, y):
    """The last drawn (x, y) of each row of a padded mark."""
    out = []
    for xs, ys in zip(np.atleast_2d(x), np.atleast_2d(y)):
        keep = np.isfinite(xs) & np.isfinite(ys)
        out.append((float(xs[keep][-1]), float(ys[keep][-1])))
    return out


@pytest.mark.parametrize("cell,line,names", [
    (COURSE, "x=10.0", ("x",)),
    (BOWL, "a=2.0 b=1.0", ("a", "b")),
    ("L = tf.reduce_sum((W - 2.0) ** 2)", "W=tf.ones([3, 4])", ()),
])
def test_the_panel_draws_earlier_runs_faint_with_legend_and_table(ip, run, cell, line, names):
    lines = [f"{line} --eta 0.1 --steps 30", f"{line} --eta 0.3 --steps 80", f"{line} --eta 0.2 --steps 20"]
    for ln in lines:
        r = run("descend", ln + " --no-widgets", cell)
    panel = _panel(ip, r)
    view = panel.earlier
    marks = list(view.marks.values())
    assert len(marks) == 2 and panel.charts.loss_fig.marks[:2] == marks  # (linear and log, behind the loss)
    shown = [m for m in marks if m.visible]
    assert len(shown) == 1 and all(o < 1 for o in shown[0].opacities)
    ends = _rows_last(shown[0].x, shown[0].y)
    assert ends == [(e.steps, pytest.approx(e.final_loss, rel=1e-6)) for e in r.earlier]
    assert panel.charts._iter_scale.max >= 80  # the longest earlier run fits
    legend = view.legend.value
    assert "this run, run 3: eta 0.3 → 0.2, steps 80 → 20" in legend
    assert "run 2: eta 0.1 → 0.3, steps 30 → 80" in legend and "run 1: first run (sgd, eta 0.1)" in legend
    table = view.widget.value
    assert view.widget.layout.display != "none"
    assert re.search(r"<td>2</td><td>eta 0.1 → 0.3, steps 30 → 80</td><td>80</td>", table)
    assert "<td>3 (this run)</td>" in table
    panel.charts.log_toggle.value = not panel.charts.log_toggle.value  # the faint lines follow the toggle
    assert [m for m in marks if m.visible] == [m for m in marks if m is not shown[0]]
    if names:  # the earlier paths on the 1-D curve / 2-D surface, ending where each run ended
        path = view.path
        assert path in panel.charts.picture.fig.marks
        got = _rows_last(path.x, path.y)
        for (px, py), e in zip(got, r.earlier):
            values = e.history
            want = (values[names[0]][-1], values["loss"][-1] if len(names) == 1 else values[names[1]][-1])
            assert (px, py) == pytest.approx(want, rel=1e-6)
    else:
        assert view.path is None


def test_a_first_run_panel_shows_no_earlier_runs(ip, run):
    r = run("descend", "x=10.0 --steps 5 --no-widgets", COURSE)
    panel = _panel(ip, r)
    assert panel.earlier.widget.layout.display == "none"
    scrub = [m for pair in panel.timeline._marks.values() for m in pair]  # (the timeline's point and branch marks)
    assert panel.earlier.marks == {} and len([m for m in panel.charts.loss_fig.marks if m not in scrub]) == 2


def _label_cases(rng):
    """(what is set before the first run, its line and cell; what is set before the second, its line; the
    label the second must have): each way a run's start or what the cell reads can change, or seem to."""
    a, b = (float(v) for v in rng.choice([-4.0, -1.5, 0.5, 2.0, 7.25], 2, replace=False))
    f32 = lambda v: str(np.float32(v))  # noqa: E731  (a float32 start as it prints)
    flag = "y = (u - 2.0) ** 2 + (10.0 * u ** 2 if flag else 0.0)"
    return [
        ("s0 = %r" % a, "z=s0", "y = (z - 2.0) ** 2", "", f"z={a!r}", "same settings"),  # one start, two spellings
        ("s0 = %r" % a, "z=s0", "y = (z - 2.0) ** 2", "s0 = %r" % b, "z=s0", f"z={f32(a)} → {f32(b)}"),
        ("x = tf.Variable(%r)" % a, "x --steps 1", "y = (x - 2.0) ** 2", "x.assign(%r)" % b, "x --steps 1",
         f"x={f32(a)} → {f32(b)}"),  # (where each run began)
        ("T = np.array([%r, 1.0], np.float32)" % a, "p=3.0", "y = tf.reduce_sum((p - T) ** 2)",
         "T = np.array([%r, 1.0], np.float32)" % b, "p=3.0", "T: other values"),
        ("T = np.array([%r, 1.0], np.float32)" % a, "p=3.0", "y = tf.reduce_sum((p - T) ** 2)",
         "T = np.array([%r, 1.0], np.float32)" % a, "p=3.0", "same settings"),  # a new array, the same values
        ("flag = False", "u=3.0", flag, "flag = True", "u=3.0", "flag False → True"),
        ("flag = True", "u=3.0", flag, "flag = 1", "u=3.0", "flag True → 1"),
        ("k = float('nan')", "v=3.0", "y = (v - 2.0) ** 2 + (0.0 if k != k else k)", "", "v=3.0", "same settings"),
        ("", f"m={a!r} --eta 0.1", "y = (m - 2.0) ** 2", "", f"m={a!r} --eta 0.1000001", "eta 0.1 → 0.1000001"),
        ("", "w=tf.fill([3], %r)" % a, "y = tf.reduce_sum((w - 2.0) ** 2)", "", "w=tf.fill([3], %r)" % b,
         "w: another start"),
        ("", "w=tf.fill([3], %r)" % a, "y = tf.reduce_sum((w - 2.0) ** 2)", "", "w=tf.fill([3], %r)" % a,
         "same settings"),
    ]


@pytest.mark.parametrize("seed", range(3))
def test_a_label_says_what_changed_however_it_was_written(ip, seed):
    from tfmagic.present.messages import earlier_label

    for i, (before, line, cell, between, line2, want) in enumerate(_label_cases(np.random.default_rng(seed))):
        cell = f"{cell} + 0.0 * {seed * 100 + i}"  # (a series of its own)
        ip.run_cell("import tensorflow as tf, numpy as np\n" + before)
        ip.run_cell_magic("descend", f"{line} --no-widgets" + " --steps 1" * ("--steps" not in line), cell)
        ip.run_cell(between)
        r = ip.run_cell_magic("descend", f"{line2} --no-widgets" + " --steps 1" * ("--steps" not in line2), cell)
        assert earlier_label(r.this_run) == want, (i, before, line, between, line2)


def test_a_models_new_weights_are_one_phrase(ip):
    from tfmagic.present.messages import earlier_label

    ip.run_cell("import keras, tensorflow as tf\nkeras.utils.set_random_seed(1)\n"
                "model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3), keras.layers.Dense(1)])")
    cell = "loss = tf.reduce_mean(model(tf.ones([4, 2])) ** 2)"
    ip.run_cell_magic("descend", "--steps 3 --eta 0.01 --no-widgets", cell)
    r = ip.run_cell_magic("descend", "--steps 3 --eta 0.01 --no-widgets", cell)  # (from where the first ended)
    assert re.fullmatch(r"another start: model/(dense_?\d*)/kernel, model/\1/bias, model/dense_?\d*/kernel and 1 more",
                        earlier_label(r.this_run)), earlier_label(r.this_run)
