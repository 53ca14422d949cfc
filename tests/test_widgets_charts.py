"""HistoryCharts without a browser: what reaches the marks, and when the
expensive curve/surface callables run."""

import numpy as np
import pytest
from bqplot import LinearScale, LogScale

from tfmagic.widgets.charts import HistoryCharts, decimate

N = 100_000
MAX = 2000


def history(n, names, loss=None, values=None):
    """A synthetic history like the engine's: float32 columns of one (n, k) array."""
    t = np.arange(n, dtype=np.float64)
    cols = ["loss", "eta", "grad_norm"] + names
    rows = np.zeros((n, len(cols)), np.float32)
    rows[:, 0] = 50 * np.exp(-t / max(n / 8, 1)) if loss is None else loss
    rows[:, 1] = 0.1
    rows[:, 2] = 3 * np.exp(-t / max(n / 8, 1))
    for i in range(len(names)):
        rows[:, 3 + i] = (10 - 8 * (1 - np.exp(-t / max(n / 8, 1))) + i) if values is None else values[i]
    return {c: rows[:, i] for i, c in enumerate(cols)}


class Counter:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


def parabola(xs):
    return xs**2 - 4 * xs + 4


def rosenbrock(xs, ys):
    X, Y = np.meshgrid(xs, ys)
    return (1 - X) ** 2 + 100 * (Y - X**2) ** 2


def marks_of(charts):
    marks = [charts.loss_line, charts.vars_line]
    for name in ("curve_line", "trail", "point", "path"):
        if hasattr(charts.picture, name):
            marks.append(getattr(charts.picture, name))
    return marks


def check_pushed(mark, charts=None):
    for attr in ("x", "y"):
        a = getattr(mark, attr)
        assert a.dtype == np.float32, (mark, attr)
        assert a.shape[-1] <= MAX, (mark, attr, a.shape)


def test_decimate():
    assert np.array_equal(decimate(5), np.arange(5))
    assert np.array_equal(decimate(MAX), np.arange(MAX))
    idx = decimate(N, MAX)
    assert len(idx) == MAX and idx[0] == 0 and idx[-1] == N - 1
    assert np.all(np.diff(idx) > 0)
    assert len(decimate(0)) == 0


def test_one_scalar_with_curve():
    curve = Counter(parabola)
    c = HistoryCharts({"x": ()}, curve=curve)
    h = history(N, ["x"])
    now = {"x": 2.0}
    c.update(h, now)

    for mark in marks_of(c):
        check_pushed(mark)
    assert c.loss_line.y[-1] == h["loss"][-1]
    assert c.loss_line.x[-1] == N - 1
    # bqplot squeezes a single line's (1, n) y to (n,).
    assert c.vars_line.y[-1] == h["x"][-1]
    assert c.picture.trail.x[-1] == h["x"][-1] and c.picture.trail.y[-1] == h["loss"][-1]
    # The current point sits on the curve at the present value.
    assert c.picture.point.x[0] == 2.0 and c.picture.point.y[0] == pytest.approx(0.0, abs=0.05)
    # Initial range: centred on the start value x0 = 10, half-width 1.2 * |x0|.
    assert c.picture.curve_line.x[0] == pytest.approx(-2.0) and c.picture.curve_line.x[-1] == pytest.approx(22.0)

    # Many updates inside the drawn range: the curve is not recomputed.
    for n in range(1000, N, 1000):
        c.update({k: v[:n] for k, v in h.items()}, {"x": float(h["x"][n])})
    assert curve.calls == 1


def test_figures_have_css_classes():
    c = HistoryCharts({"x": ()}, curve=parabola)
    assert "tfmagic-loss-chart" in c.loss_fig._dom_classes
    assert "tfmagic-vars-chart" in c.vars_fig._dom_classes
    assert "tfmagic-curve-chart" in c.picture.fig._dom_classes
    assert "tfmagic-logscale" in c.log_toggle._dom_classes
    s = HistoryCharts({"a": (), "b": ()}, surface=rosenbrock)
    assert "tfmagic-surface-chart" in s.picture.fig._dom_classes
    for fig in (c.loss_fig, c.vars_fig, c.picture.fig, s.picture.fig):
        assert fig.animation_duration == 0 and fig.title
        assert all(axis.label for axis in fig.axes)


def test_curve_range_grows_when_the_trail_leaves_it():
    curve = Counter(parabola)
    c = HistoryCharts({"x": ()}, curve=curve)
    c.update(history(10, ["x"], values=[np.linspace(10, 12, 10)]), {"x": 12.0})
    assert curve.calls == 1
    lo = c.picture.curve_line.x[0]
    c.update(history(20, ["x"], values=[np.linspace(10, 40, 20)]), {"x": 45.0})
    assert curve.calls == 2
    assert c.picture.curve_line.x[0] <= lo and c.picture.curve_line.x[-1] > 45.0
    assert c.picture.curve_line.x.dtype == np.float32
    # Back inside: no new call.
    c.update(history(21, ["x"], values=[np.linspace(10, 40, 21)]), {"x": 41.0})
    assert curve.calls == 2


def test_log_toggle_switches_the_scale_and_clips_non_positive_losses():
    c = HistoryCharts({"W": (3, 4)})
    # Spans one decade: linear by default.
    c.update(history(100, ["W"], loss=np.linspace(10, 1, 100)))
    assert not c.log_toggle.value
    assert isinstance(c.loss_line.scales["y"], LinearScale)
    # Spans many decades: log by default.
    c.update(history(100, ["W"], loss=np.logspace(2, -6, 100)))
    assert c.log_toggle.value
    assert isinstance(c.loss_line.scales["y"], LogScale)
    shown = [m for m in c.loss_fig.marks if m.visible]
    assert shown == [c.loss_line]
    assert [a.scale for a in c.loss_fig.axes if a.visible][1] is c.loss_line.scales["y"]

    # A loss that goes negative: linear by default, unclipped.
    loss = np.linspace(5, -1, 100)
    c.update(history(100, ["W"], loss=loss))
    assert not c.log_toggle.value
    assert c.loss_line.y.min() == np.float32(-1)
    # The user turns log on: non-positive values drawn at a positive floor.
    c.log_toggle.value = True
    assert isinstance(c.loss_line.scales["y"], LogScale)
    y = c.loss_line.y
    assert y.dtype == np.float32 and (y > 0).all()
    floor = loss[loss > 0].min() / 10
    assert y.min() == pytest.approx(floor, rel=1e-5)
    assert "≤ 0" in c.loss_fig.title
    # The user's choice sticks across updates.
    c.update(history(100, ["W"], loss=np.linspace(10, 1, 100)))
    assert c.log_toggle.value and "≤ 0" not in c.loss_fig.title
    c.log_toggle.value = False
    c.update(history(100, ["W"], loss=np.logspace(2, -6, 100)))
    assert not c.log_toggle.value


def test_all_non_positive_loss_under_log_uses_a_tiny_floor():
    c = HistoryCharts({"x": ()})
    c.log_toggle.value = True
    c.update(history(10, ["x"], loss=np.zeros(10)))
    assert (c.loss_line.y > 0).all()


def test_non_finite_values_become_gaps():
    c = HistoryCharts({"x": ()}, curve=parabola)
    loss = np.linspace(1, 100, 50)
    loss[-1] = np.inf
    c.update(history(50, ["x"], loss=loss))
    assert np.isnan(c.loss_line.y[-1]) and np.isfinite(c.loss_line.y[:-1]).all()


def test_each_mark_gets_one_message_per_update(monkeypatch):
    c = HistoryCharts({"x": ()}, curve=parabola)
    c.update(history(100, ["x"]), {"x": 3.0})
    sent = {}
    for mark in marks_of(c):
        monkeypatch.setattr(mark, "_send", lambda msg, buffers=None, m=mark: sent.setdefault(m, []).append(msg))
    c.update(history(200, ["x"]), {"x": 2.5})
    for mark in (c.loss_line, c.vars_line, c.picture.trail, c.picture.point):
        assert len(sent[mark]) == 1, mark
        assert {"x", "y"} <= set(sent[mark][0]["state"])


def test_reset_clears_the_lines_and_recentres_the_curve():
    curve = Counter(parabola)
    c = HistoryCharts({"x": ()}, curve=curve)
    c.update(history(500, ["x"]), {"x": 2.0})
    c.reset()
    for mark in marks_of(c):
        assert mark.x.shape[-1] == 0 and mark.y.shape[-1] == 0
    assert curve.calls == 1
    c.update(history(5, ["x"], values=[np.linspace(-30, -29, 5)]), {"x": -29.0})
    assert curve.calls == 2
    assert np.mean(c.picture.curve_line.x[[0, -1]]) == pytest.approx(-30, abs=1e-3)


def test_two_scalars_with_surface():
    surface = Counter(rosenbrock)
    c = HistoryCharts({"a": (), "b": ()}, surface=surface)
    t = np.linspace(0, 1, N)
    h = history(N, ["a", "b"], values=[-1.5 + 2.4 * t, 2.0 - 1.1 * t])
    now = {"a": 0.95, "b": 0.92}
    c.update({k: v[:1000] for k, v in h.items()}, now)
    # The grid around the start, (-3.5, 0.5) x (-0.4, 4.4), grew once to take in a = 0.95.
    assert surface.calls == 2
    for n in range(10_000, N + 1, 10_000):
        c.update({k: v[:n] for k, v in h.items()}, {**now, "step": n, "loss": 0.01})
    assert surface.calls == 2

    hm = c.picture.heatmap
    assert hm.color.shape == (60, 60) and hm.color.dtype == np.float32
    assert np.isfinite(hm.color).all()
    assert hm.x[0] <= -1.5 and hm.x[-1] >= 0.95
    for mark in marks_of(c):
        check_pushed(mark)
    # The path ends at the present point, after the last history value.
    assert c.picture.path.x[-2] == h["a"][-1] and c.picture.path.y[-2] == h["b"][-1]
    assert c.picture.path.x[-1] == np.float32(0.95) and c.picture.point.y[0] == np.float32(0.92)
    assert c.loss_line.x[-1] == N and c.loss_line.y[-1] == np.float32(0.01)
    assert c.vars_line.y.shape == (2, MAX)
    assert [a.label for a in c.picture.fig.axes] == ["a", "b"]
    # the colour key under the surface names the loss at both ends of the colours
    z = rosenbrock(c.picture.heatmap.x, c.picture.heatmap.y)
    assert f"<span>{z.min():.3g}</span>" in c.picture.key.value and f"<span>{z.max():.3g}</span>" in c.picture.key.value

    # The path leaves the grid: it is recomputed once, and covers the path.
    far = {k: v.copy() for k, v in h.items()}
    far["b"][-1] = 9.0
    c.update(far, {**now, "step": N, "loss": 0.01})
    assert surface.calls == 3
    assert hm.y[-1] >= 9.0


def test_matrix_variable_shows_norms():
    c = HistoryCharts({"W": (4, 3)}, curve=parabola, surface=rosenbrock)
    h = history(N, ["W"])
    c.update(h)
    assert c.picture is None
    assert "norms" in c.vars_fig.title
    assert list(c.vars_line.labels) == ["‖W‖", "‖gradient‖"]
    assert c.vars_line.y.shape == (2, MAX) and c.vars_line.y.dtype == np.float32
    assert c.vars_line.y[0, -1] == h["W"][-1] and c.vars_line.y[1, -1] == h["grad_norm"][-1]
    for mark in marks_of(c):
        check_pushed(mark)


def test_scalar_and_matrix_together():
    c = HistoryCharts({"W": (4, 3), "b": ()})
    c.update(history(10, ["W", "b"]))
    assert list(c.vars_line.labels) == ["‖W‖", "b", "‖gradient‖"]


def test_update_before_any_step():
    c = HistoryCharts({"x": ()}, curve=parabola)
    c.update(history(0, ["x"]), {"x": 10.0})
    assert c.loss_line.x.shape == (0,)
    assert c.picture.point.x[0] == 10.0 and len(c.picture.curve_line.x) > 0


def test_the_iteration_axis_is_exact_past_float32s_whole_numbers():
    """float32 holds every whole number only up to 2^24: a run of 10^8 steps (the panel's
    Play) would end its iteration axis at a step it did not take."""
    h = history(1000, ["x"])
    h["step"] = np.arange(1000, dtype=np.int64) * 100_003
    c = HistoryCharts({"x": ()})
    c.update(h, {"step": 100_000_001, "loss": 0.5, "x": 2.0})
    assert c.loss_line.x[-1] == 100_000_001 and c.vars_line.x[-1] == 100_000_001 and c.loss_line.y[-1] == 0.5


def test_the_iteration_axis_counts_steps_when_rows_are_strided():
    """A long (or XLA-blocked) run keeps every k-th step: the axis showed row numbers,
    half or 1/256 of the iteration the status line showed."""
    h = history(1000, ["x"])
    h["step"] = np.arange(1000, dtype=np.int64) * 256
    c = HistoryCharts({"x": ()})
    c.update(h)
    assert c.loss_line.x[-1] == 999 * 256 and c.vars_line.x[-1] == 999 * 256
    assert c._iter_scale.max == 999 * 256


@pytest.mark.parametrize("dims", [1, 2])
def test_a_diverging_path_leaves_the_window_instead_of_stretching_it(dims):
    """After a divergence the picture keeps its window (it used to stretch to the escaped
    point: a blank surface with one red dot, a curve squashed flat under a loss axis up to
    3.5e7) and marks where the path left it: a triangle on its edge, the step in its title.
    The path and the present point are still the run's own (drawn outside are clipped)."""
    names = ["a", "b"][:dims]
    fn = {"curve": parabola} if dims == 1 else {"surface": rosenbrock}
    c = HistoryCharts({k: () for k in names}, **fn)
    n = 40
    zigzag = 2 + 3 * (-1.6) ** np.arange(n + 1)  # |x - 2| grows 1.6x a step: the window fits steps 0..~7
    h = history(n, names, loss=(zigzag[:-1] - 2) ** 2, values=[zigzag[:-1]] * dims)
    end = {"step": n, "loss": float((zigzag[-1] - 2) ** 2), **{k: float(zigzag[-1]) for k in names}}
    c.update(h, end)
    p = c.picture
    lo, hi = p.window[:2]
    assert hi - lo < 10 * (2 * max(1.2 * 5, 2.0))  # within GROW_LIMIT of the first window
    step = int(np.argmax((zigzag < lo) | (zigzag > hi)))
    assert 0 < step < n - 1 and p.fig.title.endswith(f"path left this window at step {step}")
    # the triangle sits on the plot's edge, on the line from the last point inside to the first outside
    ex, ey = float(p.exit.x[0]), float(p.exit.y[0])
    ranges = [(lo, hi), (p._py.min, p._py.max)] if dims == 1 else [(lo, hi), p.window[2:]]
    inside = np.array([zigzag[step - 1], h["loss"][step - 1] if dims == 1 else zigzag[step - 1]])
    outside = np.array([zigzag[step], h["loss"][step] if dims == 1 else zigzag[step]])
    t = (ex - inside[0]) / (outside[0] - inside[0])
    assert 0 <= t <= 1 and ey == pytest.approx(inside[1] + t * (outside[1] - inside[1]), rel=1e-3)
    assert any(v == pytest.approx(edge, abs=1e-3 * (b - a)) for v, (a, b) in zip((ex, ey), ranges) for edge in (a, b))
    assert p.point.x[0] == np.float32(zigzag[-1])  # the run's last point (off the window: clipped)
    if dims == 1:
        ys = p.curve_line.y[np.isfinite(p.curve_line.y)]
        sy = p.curve_line.scales["y"]
        assert sy.max < 1.2 * ys.max() and sy.min <= ys.min()  # the curve's range, not the runaway path's
        assert p.point.y[0] == np.float32(end["loss"]) and p.trail.x[-1] == np.float32(zigzag[-1])
    else:
        assert np.isfinite(p.heatmap.color).mean() > 0.9
        assert p.path.x[-1] == np.float32(zigzag[-1])
    c.reset()
    assert "left" not in p.fig.title and len(p.exit.x) == 0


def test_a_models_norms_legend_is_short_and_beside_the_chart():
    """first_network's legend read 'ntial/dense/kernel‖', clipped and over the curves."""
    names = ["model.sequential/dense_1/kernel", "model.sequential/dense_1/bias", "model.sequential/dense_2/kernel"]
    c = HistoryCharts({names[0]: (4, 8), names[1]: (8,), names[2]: (8, 1)})
    assert not c.vars_line.display_legend  # no legend drawn over the plot
    html = c.vars_legend.value
    for label in ("‖dense_1/kernel‖", "‖dense_1/bias‖", "‖dense_2/kernel‖", "‖gradient‖"):
        assert label in html
    assert "model.sequential" not in html and c.vars_legend in c.vars_box.children


@pytest.mark.parametrize("where", [-3.0, -0.5, 0.0, 0.5, 4.0, 40.0])
@pytest.mark.parametrize("end_loss", [float("nan"), float("inf"), 1.0])
def test_the_current_point_is_never_sent_at_a_nan_height(where, end_loss):
    """A loss with no value at the point (log of x <= 0 here; or a curve not drawn yet) and a
    reported loss that is not finite: the point is left out, never sent at NaN (in the page each
    such point was an SVG 'translate(x,NaN)' error, thousands a run)."""
    curve = Counter(lambda xs: np.where(xs > 0, np.log(np.abs(xs) + 1e-30), np.nan))
    c = HistoryCharts({"x": ()}, curve=curve)
    before = (history(0, ["x"]), {"x": where})  # before a run: where the variables are
    after = (history(5, ["x"], values=[np.linspace(1.0, where, 5)]), {"x": where, "loss": end_loss})
    for rows, end in (before, after):
        c.update(rows, end)
        x, y = np.asarray(c.picture.point.x, np.float64), np.asarray(c.picture.point.y, np.float64)
        assert len(x) == len(y) and np.isfinite(x).all() and np.isfinite(y).all(), (x, y)
        if len(y):
            assert where > 0 or np.isfinite(end_loss)  # (shown only where the curve or the run gives a height)


@pytest.mark.parametrize("n", [0, 1, 4, 5, 37, 1999, 2000, 2001, 12_345, 200_001])
def test_the_smoothed_loss_is_the_moving_average_of_the_steps_where_it_is_drawn(n):
    """A --data run's smoothed line: at each step drawn, the mean of the last 5 % of the run's
    losses (NaN counted as 0; the first steps: the mean of what there is), with thinned steps."""
    rng = np.random.default_rng(n)
    loss = rng.lognormal(size=n).astype(np.float32)
    loss[rng.integers(0, max(n, 1), size=max(1, n // 500) * (n > 0))] = np.nan
    h = history(n, ["x"], loss=loss)
    h["step"] = np.arange(n) * 3  # (a thinned history: a row every 3 steps)
    c = HistoryCharts({"x": ()}, epochs=True, max_points=1000)
    c.update(h, epochs=(np.array([n - 1]), np.array([1.0]), np.array([np.nan])))
    smooth = c._epoch_marks[c.log_toggle.value][0]
    w = max(1, min(n, max(5, n // 20)))
    x = np.nan_to_num(loss.astype(np.float64))
    rows = (np.asarray(smooth.x) / 3).astype(np.int64)
    want = np.array([x[max(0, i + 1 - w): i + 1].mean() for i in rows])
    assert len(rows) == min(n, 1000) and list(rows[:1]) == [0][:n] and list(rows[-1:]) == [n - 1][:n]
    np.testing.assert_allclose(np.asarray(smooth.y, np.float64), want, rtol=1e-5, atol=1e-6)
