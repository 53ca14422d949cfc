"""--compare and --restarts: every run in the legend is drawn, to the point it ended at, and
the sentence under the table is never one its rows contradict.

Found in JupyterLab: a run that converged in 1 step was in the legend and nowhere in the
charts; a diverged run was a triangle at its first step and one straight line; two runs on
top of each other hid one; "diverges above eta ≈ 2/λ = 0.00096" sat under a Rosenbrock table
where eta = 0.001 and 0.002 did not diverge."""

import re

import bqplot as bq
import numpy as np
import pytest

from tfmagic.descent.loss_grid import loss_grid_for
from tfmagic.widgets.compare import CompareView
from tfmagic.widgets.figures import COLORS

COURSE = "y = tf.pow(x, 2.0) - 4.0 * x + 4.0"
ROSENBROCK = "f = (1 - x)**2 + 100*(y - x**2)**2"
HIMMELBLAU = "f = (x**2 + y - 11)**2 + (x + y**2 - 7)**2"
TWO_MINIMA = "y = (x * x - 4.0) ** 2 + 0.5 * x"

SERIES = [
    ("x=10.0 --steps 200 --compare eta=0.01,0.1,0.5,0.9,1.1", COURSE),  # 1 step, equal losses, diverged
    ("x=10.0 --steps 60 --compare eta=0.5,0.25,1.0,2.5", COURSE),  # 1 step, on the bound, diverged at once
    ("x=10.0 --steps 300 --compare optimizer=sgd,momentum,adam,rmsprop", COURSE),
    ("x=2.0 --steps 50 --compare eta=0.1,0.2,0.3", COURSE),  # at the minimum from the start: no step
    ("x=-1.5 y=2.0 --steps 3000 --compare eta=0.0005,0.001,0.002,0.004", ROSENBROCK),
    ("x=0.0 y=0.0 --steps 300 --compare eta=0.005,0.01,0.02,0.03,0.05", HIMMELBLAU),
    ("x=-5:5 y=-5:5 --restarts 8 --seed 1 --eta 0.01 --steps 300", HIMMELBLAU),
    ("x=-5:5 y=-5:5 --restarts 6 --seed 2 --eta 0.03 --steps 200", HIMMELBLAU),  # some diverge
    ("x=-3:3 --restarts 5 --seed 1 --steps 300 --eta 0.01", TWO_MINIMA),  # losses below 0: linear
    ("x=-2:5 --restarts 6 --seed 0 --steps 100 --eta 0.05", "y = tf.sqrt(x) + (x - 2.0) ** 2"),  # some start where sqrt is NaN
]


def figures_of(view):
    """The loss figure on each scale and the paths figure (if any)."""
    figs = [view.loss_figs[view.log_toggle.value]]
    if not view.log_toggle.disabled:
        view.log_toggle.value = not view.log_toggle.value
        figs.append(view.loss_figs[view.log_toggle.value])
    for child in view.widget.children[1].children[1:]:
        figs.append(child if isinstance(child, bq.Figure) else child.children[0])
    return figs


def marks_of_run(fig, i):
    return [m for m in fig.marks if not isinstance(m, bq.HeatMap) and list(m.colors) == [COLORS[i]]]


def in_plot(x, y, scales):
    sx, sy = scales["x"], scales["y"]
    tol = lambda s: 1e-4 * (s.max - s.min)
    return (np.isfinite(x) & np.isfinite(y) & (x >= sx.min - tol(sx)) & (x <= sx.max + tol(sx))
            & (y >= sy.min - tol(sy)) & (y <= sy.max + tol(sy)))


def check_visible(fig, i, run):
    """Run i has a mark that shows inside the plot: a line with two distinct points, or markers."""
    shown = False
    for m in marks_of_run(fig, i):
        x, y = np.asarray(m.x, np.float64), np.asarray(m.y, np.float64)
        inside = in_plot(x, y, m.scales)
        if isinstance(m, bq.Scatter) or getattr(m, "marker", None):
            shown |= bool(inside.any())
        else:
            pts = {(a, b) for a, b in zip(x[inside], y[inside])}
            shown |= len(pts) >= 2
    assert shown, (fig.title, run.label, run.status, run.steps)


def check_ends(fig, i, run, names, floor=None):
    """Run i's line ends at where it ended (its final loss and values), or, for an escaped
    run cut at the plot's edge, at a triangle there."""
    lines = [m for m in marks_of_run(fig, i) if isinstance(m, bq.Lines)]
    assert len(lines) == 1, (fig.title, run.label)
    line = lines[0]
    triangles = [m for m in marks_of_run(fig, i) if getattr(m, "marker", None) == "triangle-up"]
    if triangles:
        assert run.status in ("diverged", "undefined")
        assert (line.x[-1], line.y[-1]) == (triangles[0].x[0], triangles[0].y[0])
        sx, sy = line.scales["x"], line.scales["y"]
        edges = [(line.x[-1], sx.min), (line.x[-1], sx.max), (line.y[-1], sy.min), (line.y[-1], sy.max)]
        assert any(abs(v - e) <= 1e-4 * abs(s.max - s.min) for (v, e), s in zip(edges, (sx, sx, sy, sy))), fig.title
        return
    if fig.axes[0].label == "iteration":
        want = [run.steps, run.final_loss]
    else:
        want = [float(np.ravel(run.values[n])[0]) for n in names]
        if len(names) == 1:
            want.append(run.final_loss)
    got = [float(line.x[-1]), float(line.y[-1])]
    for g, w in zip(got, want):
        if w is None or not np.isfinite(w):
            continue  # (a loss not finite at the start: drawn where the plot's floor is)
        w, rel = float(np.float32(w)), 1e-6
        if floor is not None and w <= 0:
            w, rel = floor, 0.05  # (as the title says it, to two digits)
        assert g == pytest.approx(w, rel=rel, abs=1e-30), (fig.title, run.label, got, want)


@pytest.mark.parametrize("line,cell", SERIES, ids=[s[0][:40] for s in SERIES])
def test_every_run_in_the_legend_is_drawn_to_where_it_ended(ip, run, line, cell):
    res = run("descend", line + " --no-widgets", cell)
    curve, surface = loss_grid_for(ip.user_ns["tf"], res.engine)
    view = CompareView(res, curve=curve, surface=surface)
    runs = list(res.runs.values())
    names = list(res.engine.variables)
    for fig in figures_of(view):
        floor = None
        if "drawn at" in fig.title:
            floor = float(re.search(r"drawn at ([0-9.e+-]+)\)", fig.title).group(1))
        for i, r in enumerate(runs):
            if r.label in view.legend.value:
                check_visible(fig, i, r)
            check_ends(fig, i, r, names, floor)


def test_runs_on_top_of_each_other_stay_told_apart(ip, run):
    """eta=0.1 and eta=0.9 have the same loss at every step (|1 - 2 eta| = 0.8): the one drawn
    first is wider, so the one on top does not hide it."""
    res = run("descend", "x=10.0 --steps 200 --compare eta=0.1,0.01,0.03,0.05,0.9 --no-widgets", COURSE)
    view = CompareView(res)
    fig = view.loss_figs[view.log_toggle.value]
    first, last = marks_of_run(fig, 0)[0], marks_of_run(fig, 4)[0]
    assert np.allclose(first.y, last.y, rtol=1e-5, atol=1e-6)  # the same points (to float32's rounding)
    assert first.stroke_width > last.stroke_width
    others = [marks_of_run(fig, i)[0].stroke_width for i in (1, 2, 3)]
    assert all(w == last.stroke_width for w in others)  # (only where runs overlap)
    # two runs of one point each (at the minimum from the start): the one under is the larger marker
    res = run("descend", "x=2.0 --steps 50 --compare eta=0.1,0.2 --no-widgets", COURSE)
    fig = CompareView(res).loss_figs[False]
    under, over = marks_of_run(fig, 0)[0], marks_of_run(fig, 1)[0]
    assert (under.x[0], under.y[0]) == (over.x[0], over.y[0]) and under.marker_size > over.marker_size


def test_a_diverged_run_shows_its_growing_oscillation_before_it_leaves(ip, run):
    res = run("descend", "x=10.0 --steps 200 --compare eta=0.01,0.1,0.9,1.1 --no-widgets", COURSE)
    curve, _ = loss_grid_for(ip.user_ns["tf"], res.engine)
    view = CompareView(res, curve=curve)
    paths = view.widget.children[1].children[1]
    line = marks_of_run(paths, 3)[0]
    inside = in_plot(np.asarray(line.x, np.float64), np.asarray(line.y, np.float64), line.scales)
    side = np.sign(np.asarray(line.x[inside]) - 2.0)
    assert inside.sum() >= 4 and np.all(side[1:] != side[:-1])  # it crosses the minimum each step, in view
    assert np.all(np.diff(np.abs(np.asarray(line.x[inside]) - 2.0))[:-1] > 0)  # further each time
    loss = view.loss_figs[view.log_toggle.value]
    rising = marks_of_run(loss, 3)[0]
    assert np.sum(in_plot(np.asarray(rising.x, np.float64), np.asarray(rising.y, np.float64), rising.scales)) >= 4


def sgd_violations(res, bound):
    """The runs a plain 'diverges above eta ≈ bound' would be wrong about."""
    out = []
    for r in res.runs.values():
        if not r.steps or r.status in ("undefined", "error", "interrupted"):
            continue
        eta = float(r.history["eta"][0])
        if (eta > bound * 1.001 and r.status != "diverged") or (eta < bound * 0.999 and r.status == "diverged"):
            out.append(r.label)
    return out


CURVATURE = [
    ("x=10.0 --steps 200 --compare eta=0.01,0.1,0.9,1.1", COURSE),
    ("x=3.0 --steps 300 --compare eta=0.05,0.15,0.3,0.34,0.4", "y = 3.0 * (x - 1.0) ** 2"),  # 2/λ = 1/3
    ("x=3.0 --steps 12 --compare eta=0.1,0.34,0.36", "y = 3.0 * (x - 1.0) ** 2"),  # above, too few steps to blow up
    ("x=-1.5 y=2.0 --steps 3000 --compare eta=0.0005,0.001,0.002,0.004", ROSENBROCK),
    ("x=-1.2 y=1.0 --steps 2000 --compare eta=0.0002,0.0008,0.0015", ROSENBROCK),
    ("x=0.0 y=0.0 --steps 300 --compare eta=0.005,0.01,0.02,0.03,0.05", HIMMELBLAU),
    ("x=-2.0 y=-2.0 --steps 300 --compare eta=0.01,0.03,0.05,0.09", HIMMELBLAU),  # diverges below 2/λ
    ("x=0.0 y=0.0 --steps 3000 --compare eta=0.002,0.0097,0.0105", ROSENBROCK),
    ("x=1.0 --steps 200 --compare eta=0.01,0.05,0.2", "y = x ** 4"),
    ("W --steps 300 --compare eta=0.01,0.1,0.5,1.0", "loss = tf.reduce_mean(tf.square(tf.tanh(Xs @ W) @ V - Ys))"),
]


@pytest.mark.parametrize("line,cell", CURVATURE, ids=[c[0][:40] for c in CURVATURE])
def test_the_sentence_on_2_over_lambda_agrees_with_the_table_beside_it(ip, run, line, cell):
    ip.run_cell("import numpy as np\nrng = np.random.default_rng(0)\n"
                "Xs = tf.constant(rng.normal(size=(64, 3)).astype('float32'))\n"
                "Ys = tf.constant(rng.normal(size=(64, 1)).astype('float32'))\n"
                "W = tf.Variable(rng.normal(size=(3, 8)).astype('float32'))\n"
                "V = tf.constant(rng.normal(size=(8, 1)).astype('float32'))")
    res = run("descend", line + " --no-widgets", cell)
    text = repr(res)
    said = re.search(r"diverges above eta ≈ 2/λ = ([0-9.e+-]+)(.*)", text)
    lam = res.engine.curvature()
    if not lam:
        assert said is None
        return
    assert said, text
    bound, rest = float(said.group(1).rstrip(".")), said.group(2)
    assert bound == pytest.approx(2 / lam, rel=1e-3)
    wrong = sgd_violations(res, bound)
    for label in res.runs:
        # every run the plain sentence would be wrong about is named after it, and no other
        assert (re.search(rf"\b{re.escape(label)}\b", rest) is not None) == (label in wrong), (label, wrong, text)
    assert res._repr_html_().count("2/λ") == 1 and "2/λ" in res._repr_html_()


@pytest.mark.parametrize("line,cell", [("x=0.0 y=0.0 --eta 0.0097 --steps 3000", ROSENBROCK),
                                       ("x=-2.0 y=-2.0 --eta 0.042 --steps 300", HIMMELBLAU)])
def test_a_diverged_run_below_2_over_lambda_at_the_start_says_lambda_where_it_blew_up(ip, run, line, cell):
    """Below 2/λ at the start, these runs diverge further along, where the curvature is larger:
    'diverges above eta ≈ 2/λ' would be contradicted by the run it explains."""
    res = run("descend", line + " --no-widgets", cell)
    bound = res.engine.suggested_eta()
    assert res.status == "diverged" and res.eta < bound
    assert "diverges above eta ≈" not in res.message
    assert f"2/λ = {bound:.4g} is above this eta" in res.message
    lam = float(re.search(r"where it blew up λ ≈ ([0-9.e+]+)", res.message).group(1))
    assert lam > 2 / bound  # the curvature grew along the path


def test_the_undefined_message_gives_the_values_where_they_are_said(ip, run):
    """'Look at the values of x below' stood under the values (text, HTML) and in the panel."""
    res = run("descend", "x=4.0 --eta 0.3 --steps 40 --no-widgets", "y = tf.sqrt(x)")
    assert res.status == "undefined"
    x = float(res.values["x"])
    for shown in (repr(res), res._repr_html_(), res.message):
        assert "below" not in shown and "above" not in shown
    assert f"x = {x:.6g}" in res.message
    two = run("descend", "a=4.0 b=1.0 --eta 0.3 --steps 40 --no-widgets", "y = tf.sqrt(a) + b ** 2")
    assert two.status == "undefined"
    assert f"a = {float(two.values['a']):.6g}, b = {float(two.values['b']):.6g}" in two.message


def test_a_rate_is_shown_only_when_measured_on_enough_steps(ip, run, capsys):
    """Step showed '299 steps/s' after one step."""
    from tfmagic.present.progress import rate_text

    res = run("descend", "x=10.0 --eta 0.001 --steps 100000 --no-widgets", COURSE)
    assert re.search(r"[0-9,]+ steps/s", rate_text(res.engine, False))
    for steps in (1, 3):
        res.engine.run(steps)
        assert res.engine.steps_per_second > 0  # (the engine timed it ...)
        assert rate_text(res.engine, False) == ""  # (... on too few steps to say)
    capsys.readouterr()
    run("descend", "x=10.0 --eta 0.001 --steps 2 --no-widgets", COURSE)
    assert "steps/s" not in capsys.readouterr().out


def test_the_colour_key_writes_the_loss_where_its_colours_are(ip, run):
    """The restarts' key said 'log scale' beside -0.93 … 2.78: a log scale of what?"""
    from tfmagic.widgets.figures import colour_key
    from tfmagic.widgets.picture import surface_colors

    for lo, hi in ((-0.93, 2.78), (0.0248, 2.28e4), (0.0, 400.0), (1e-3, 1.5e-3)):
        key = colour_key(lo, hi)
        assert "the loss above its lowest, on a log scale" in key
        assert f"<span>loss</span><span>{lo:.3g}</span>" in key and f"<span>{hi:.3g}</span>" in key  # the ends
        ticks = [(float(p), float(v)) for p, v in re.findall(r"left:([0-9.]+)%;top:13px[^>]*>([^<]+)</span>", key)]
        assert ticks and len({v for _, v in ticks} | {lo, hi}) == len(ticks) + 2  # (each tells its loss apart)
        colours = surface_colors(np.array([lo, hi] + [v for _, v in ticks]))
        for (where, _), c in zip(ticks, colours[2:]):  # each label sits where its loss's colour is
            assert where / 100 == pytest.approx((c - colours[0]) / (colours[1] - colours[0]), abs=0.01)
    res = run("descend", "x=-3:3 y=-3:3 --restarts 3 --seed 1 --steps 50 --eta 0.01 --no-widgets",
              "f = (x**2 + y - 11)**2 + (x + y**2 - 7)**2 - 50.0")
    _, surface = loss_grid_for(ip.user_ns["tf"], res.engine)
    view = CompareView(res, surface=surface)
    key = view.widget.children[1].children[1].children[1].value
    assert "the loss above its lowest" in key and re.search(r"<span>loss</span><span>-[0-9.]+</span>", key)
