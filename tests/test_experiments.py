import numpy as np
import pytest
from IPython.core.error import UsageError

from tfmagic.errors import TfmagicError

COURSE = "y = tf.pow(x, 2.0) - 4.0 * x + 4.0"
TWO_MINIMA = "y = (x * x - 4.0) ** 2 + 0.5 * x"  # minima near -2 and +2


def test_compare_eta_answers_the_course_question(ip, run):
    res = run("descend", "x=10.0 --steps 200 --compare eta=0.01,0.1,0.9,1.1 --no-widgets", COURSE)
    runs = res.runs
    assert list(runs) == ["eta=0.01", "eta=0.1", "eta=0.9", "eta=1.1"]
    assert runs["eta=1.1"].status == "diverged"
    # a run ends where |grad| < tol (1e-3 by default), "converged", as its table row says
    assert runs["eta=0.1"].status == "converged" and runs["eta=0.1"].final_loss < 1e-6
    assert runs["eta=0.1"].steps == runs["eta=0.1"].converged_at < 200 and runs["eta=0.01"].status == "max_steps"
    assert runs["eta=0.01"].final_loss > runs["eta=0.1"].final_loss  # too small: slow
    # |1 - 2 eta| is 0.8 for both 0.1 and 0.9: as fast, but 0.9 jumps across the minimum each step
    assert runs["eta=0.1"].converged_at == runs["eta=0.9"].converged_at
    side = lambda r: np.sign(r.history["x"][:20] - 2.0)
    assert np.all(side(runs["eta=0.1"]) == 1) and np.all(side(runs["eta=0.9"])[1:] != side(runs["eta=0.9"])[:-1])
    assert all(r.start["x"] == 10.0 for r in runs.values())
    assert res.best in ("eta=0.1", "eta=0.9")
    assert abs(ip.user_ns["x"].numpy() - 2.0) < 1e-3  # the best run's values are kept
    text = repr(res)
    assert "diverged" in text and "2/λ = 1" in text
    assert "<table" in res._repr_html_()


def test_compare_optimizers(ip, run):
    res = run("descend", "x=10.0 --eta 0.1 --steps 300 --compare optimizer=sgd,momentum,adam,rmsprop --no-widgets", COURSE)
    assert list(res.runs) == ["sgd", "momentum", "adam", "rmsprop"]
    assert all(r.final_loss < 1.0 for r in res.runs.values())
    assert res.engine.optimizer_name == "sgd"  # the engine's own setting is restored


@pytest.mark.parametrize("spec", ["eta=0.1", "lr=0.1,0.2", "optimizer=sgd,foo", "eta=0.1,-1"])
def test_bad_compare_specs(ip, run, spec):
    with pytest.raises(UsageError):
        run("descend", f"x=10.0 --compare {spec} --no-widgets", COURSE)


def test_restarts_find_both_minima_reproducibly(ip, run):
    a = run("descend", "x=-4:4 --restarts 8 --seed 3 --eta 0.01 --steps 500 --no-widgets", TWO_MINIMA)
    b = run("descend", "x=-4:4 --restarts 8 --seed 3 --eta 0.01 --steps 500 --no-widgets", TWO_MINIMA)
    starts_a = [r.start["x"].item() for r in a.runs.values()]
    assert starts_a == [r.start["x"].item() for r in b.runs.values()]
    assert len(set(starts_a)) == 8 and all(-4 <= s <= 4 for s in starts_a)
    assert len(a.minima) == 2
    ends = sorted(round(float(rep[0]), 1) for rep, _ in a.minima)
    assert ends[0] < -1.5 and ends[1] > 1.5
    best_loss = min(r.final_loss for r in a.runs.values())
    assert a.runs[a.best].final_loss == best_loss
    assert float(ip.user_ns["x"].numpy()) == pytest.approx(a.runs[a.best].values["x"].item())
    assert "2 distinct minima" in repr(a)


def test_restarts_need_a_range_and_ranges_need_restarts(ip, run):
    with pytest.raises(UsageError, match="range"):
        run("descend", "x=1.0 --restarts 3 --no-widgets", COURSE)
    with pytest.raises(TfmagicError, match="--restarts"):
        run("descend", "x=-4:4 --no-widgets", COURSE)


def test_a_diverged_run_does_not_take_the_axes_of_the_compare_view(ip, run):
    """learning_rate.ipynb's lesson: eta=1.1 diverged and set the linear axis to 0-3e7 (and x to
    +-6000), leaving 0.01, 0.1 and 0.9 one flat line at 0. The ranges come from the runs that
    did not diverge, widened for the diverged one's first steps (its growing oscillation), after
    which it leaves the plot at a triangle; on the log scale every run is drawn whole."""
    from tfmagic.descent.loss_grid import loss_grid_for
    from tfmagic.widgets.compare import CompareView

    res = run("descend", "x=10.0 --steps 200 --compare eta=0.01,0.1,0.9,1.1 --no-widgets", COURSE)
    curve, _ = loss_grid_for(ip.user_ns["tf"], res.engine)
    view = CompareView(res, curve=curve)
    # eta=0.1 ends at a loss of exactly 0: a log axis would draw it at a floor, so linear first
    assert not view.log_toggle.value and not view.log_toggle.disabled
    linear = view.loss_figs[False]
    assert list(view.loss_figs) == [False] and view._loss_box.children == (linear,)
    sy = linear.marks[0].scales["y"]
    assert 64 < sy.max < 4 * 64  # the kept runs (start: 64) and the diverged run's first steps
    triangles = [m for m in linear.marks if getattr(m, "marker", None) == "triangle-up"]
    assert len(triangles) == 1 and float(triangles[0].y[0]) == pytest.approx(sy.max)
    assert float(triangles[0].x[0]) > 2  # not at its first step: its growth is seen first
    view.log_toggle.value = True  # (built when first asked for: a hidden figure logs errors)
    log = view.loss_figs[True]
    assert view._loss_box.children == (log,) and "values ≤ 0 drawn at" in log.title
    diverged = [m for m in log.marks if list(m.labels) == ["eta=1.1"]]
    assert len(diverged) == 1 and diverged[0].y[-1] == np.float32(res.runs["eta=1.1"].final_loss)  # whole
    paths = view.widget.children[1].children[1]
    assert paths.marks[0].scales["x"].max < 40  # not +-6000: the kept paths lie in [2, 10]
    assert "eta=1.1: diverged at step" in view.legend.value and "eta=0.1: converged at step" in view.legend.value
    assert all(not getattr(m, "display_legend", False) for f in (linear, log, paths) for m in f.marks)
    # eta=0.1 and 0.9 have the same loss at every step (|1 - 2 eta| = 0.8): styles tell them apart
    assert linear.marks[1].line_style != linear.marks[2].line_style


def test_no_log_scale_is_offered_for_a_loss_that_goes_negative(ip, run):
    from tfmagic.widgets.compare import CompareView

    res = run("descend", "x=-3:3 --restarts 4 --seed 1 --steps 300 --eta 0.01 --no-widgets", TWO_MINIMA)
    assert min(r.final_loss for r in res.runs.values()) < 0
    view = CompareView(res)
    assert view.log_toggle.disabled and not view.log_toggle.value and "not always positive" in view.log_toggle.tooltip


def test_restarts_count_only_converged_runs_as_minima(ip, run):
    # 20 steps of eta=0.1 from |x-2| up to 12 leave |grad| > 1e-3: no run found the minimum yet
    res = run("descend", "x=-10:10 --restarts 6 --seed 0 --steps 20 --no-widgets", COURSE)
    assert all(r.converged_at is None for r in res.runs.values())
    assert res.minima == []
    text = repr(res)
    assert "distinct minim" not in text
    assert "no minimum found: none of the 6 runs reached |grad| < 0.001" in text
    assert "6 runs did not reach |grad| < 0.001 in 20 steps: give more --steps or a larger --eta" in text
    assert float(ip.user_ns["x"].numpy()) == pytest.approx(res.runs[res.best].values["x"].item())
    # enough steps for some runs only: the others are named as not converged, not as minima
    res = run("descend", "x=-10:10 --restarts 6 --seed 0 --steps 40 --no-widgets", COURSE)
    done = [r for r in res.runs.values() if r.converged_at is not None]
    assert 0 < len(done) < 6
    assert len(res.minima) == 1 and sorted(res.minima[0][1]) == sorted(r.label for r in done)
    assert f"1 distinct minimum found by {len(done)} of 6 runs" in repr(res)
    assert f"{6 - len(done)} runs did not reach |grad| < 0.001 in 40 steps" in repr(res)


def test_compare_refuses_duplicates_and_keeps_close_values_apart(ip, run):
    for spec in ("eta=0.1,0.1,0.5", "eta=0.1,1e-1", "optimizer=sgd,adam,sgd"):
        with pytest.raises(UsageError, match="twice"):
            run("descend", f"x=10.0 --compare {spec} --no-widgets", COURSE)
    res = run("descend", "x=10.0 --steps 20 --compare eta=0.1,0.1000001,0.5 --no-widgets", COURSE)
    assert list(res.runs) == ["eta=0.1", "eta=0.1000001", "eta=0.5"]
    assert res.runs["eta=0.1000001"].label == "eta=0.1000001"
    assert "eta=0.1000001" in repr(res)


def test_compare_and_restarts_print_every(ip, run, capsys):
    from tfmagic.descent import experiments
    from tfmagic.runs import course_printer

    res = run("descend", "x=10.0 --steps 5 --no-widgets", COURSE)
    capsys.readouterr()
    before = list(res.engine._observers)  # (the run's own: its series' record of it)
    experiments.compare(res.engine, "eta", [0.1, 0.5], 4, watch=course_printer(2))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "eta=0.1:" and out[1].startswith("iteration: 0 x: 8.4 y: 64")
    assert out[3] == "eta=0.5:" and out[4].startswith("iteration: 0 x: 2 y: 64")
    assert len(out) == 5  # eta=0.5 lands on the minimum in one step: converged, no iteration 2
    experiments.restarts(res.engine, {"x": (-1.0, 1.0)}, 2, 3, seed=0, watch=course_printer(1))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "start 1:" and out[4] == "start 2:" and len(out) == 8
    assert list(res.engine._observers) == before  # the printers are removed


def test_compare_view_of_runs_whose_history_is_strided(ip, run):
    """A long run keeps every k-th step: the view indexed rows by step count (IndexError) and
    drew row numbers on its iteration axis."""
    from tfmagic.widgets.compare import CompareView

    res = run("descend", "x=10.0 --steps 400 --compare eta=0.001,0.002 --no-widgets", COURSE)
    for r in res.runs.values():  # as a thinned history holds them: every 4th step
        r.history = {k: v[::4] for k, v in r.history.items()}
    view = CompareView(res)
    loss_fig = view._loss_box.children[0]
    assert [float(m.x[-1]) for m in loss_fig.marks] == [400.0, 400.0]  # the rows' steps, then where each ended


@pytest.mark.parametrize("layers", [1, 3, 4, 6])
def test_a_compares_text_computes_curvature_only_for_a_small_model(ip, run, layers):
    """The text under a --compare of etas is shown by the display hook, where no interrupt
    reaches λ's power iteration (seconds of TensorFlow C++ on a deep model): λ is computed
    there for at most 10 variables, and used when it is already known."""
    ip.run_cell("XS = tf.random.stateless_normal([16, 4], seed=[1, 2])\n"
                f"mlp = tf.keras.Sequential([tf.keras.Input((4,))] + [tf.keras.layers.Dense(4, activation='tanh')"
                f" for _ in range({layers})] + [tf.keras.layers.Dense(1)])")
    res = run("descend", "mlp --steps 5 --compare eta=0.01,0.02 --no-widgets", "loss = tf.reduce_mean(mlp(XS) ** 2)")
    small = len(res.engine.variables) <= 10
    assert len(res.engine.variables) == 2 * (layers + 1)
    assert ("largest curvature" in repr(res)) == small
    assert hasattr(res.engine, "_curvature") == small
    lam = res.engine.curvature()  # (computed from code: the next text names it)
    assert lam and f"{lam:.4g}" in repr(res)
