"""--landscape: the loss of a model with many parameters on a slice through its start along two
filter-normalised random directions, with the run's path projected on it (Li et al. 2018).
Checked on generated models (dense, conv, with and without biases, plain variables of many
shapes) through the magic, as a user runs it."""

import re

import numpy as np
import pytest

from tfmagic.descent.landscape import FINE, PREVIEW
from tfmagic.runtime import devices

from test_panel import until

LOSS = "loss = tf.reduce_mean((f(X) - Y) ** 2)"


def _mlp(rng):
    sizes = [int(rng.integers(2, 9)) for _ in range(int(rng.integers(2, 4)))]
    bias = bool(rng.integers(0, 2))
    layers = ", ".join(f"keras.layers.Dense({n}, activation='tanh', use_bias={bias})" for n in sizes)
    return (f"keras.utils.set_random_seed({int(rng.integers(0, 1000))})\n"
            f"X = np.random.default_rng(1).normal(size=(24, {int(rng.integers(2, 6))})).astype('float32')\n"
            f"Y = np.random.default_rng(2).normal(size=(24, {sizes[-1]})).astype('float32')\n"
            f"model = keras.Sequential([keras.Input((X.shape[1],)), {layers}])\nf = model", "model")


def _conv(rng):
    filters = int(rng.integers(2, 5))
    return (f"keras.utils.set_random_seed({int(rng.integers(0, 1000))})\n"
            "X = np.random.default_rng(1).normal(size=(8, 6, 6, 2)).astype('float32')\n"
            "Y = np.random.default_rng(2).normal(size=(8, 3)).astype('float32')\n"
            f"model = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D({filters}, 3, activation='relu'),"
            " keras.layers.Flatten(), keras.layers.Dense(3)])\nf = model", "model")


def _plain(rng):
    """tf.Variables of other shapes: a matrix, a bias, a rank-3 tensor, one filter of zeros."""
    a, b, c = (int(rng.integers(2, 6)) for _ in range(3))
    return (f"X = np.random.default_rng(1).normal(size=(10, {a})).astype('float32')\n"
            f"Y = np.random.default_rng(2).normal(size=(10, {b})).astype('float32')\n"
            f"W = tf.Variable(np.random.default_rng(3).normal(size=({a}, {b})).astype('float32'))\n"
            f"W[:, 0].assign(tf.zeros({a}))\n"
            f"T = tf.Variable(np.random.default_rng(4).normal(size=({c}, {a}, {b})).astype('float32'))\n"
            f"bias = tf.Variable(np.ones({b}, 'float32'))\n"
            "f = lambda X: X @ W + tf.einsum('na,cab->nb', X, T) / 10 + bias", "W T bias")


def _vectors(rng):
    """A linear model of a vector and a scalar: no variable of 2 dimensions."""
    n = int(rng.integers(3, 8))
    return (f"X = np.random.default_rng(1).normal(size=(10, {n})).astype('float32')\n"
            "Y = np.random.default_rng(2).normal(size=(10,)).astype('float32')\n"
            f"w = tf.Variable(np.random.default_rng(3).normal(size=({n},)).astype('float32'))\n"
            "c = tf.Variable(0.5)\nf = lambda X: tf.linalg.matvec(X, w) + c", "w c")


MODELS = [(kind.__name__.strip("_"), seed, kind) for kind in (_mlp, _conv, _plain, _vectors) for seed in range(3)]


def _setup(ip, kind, seed):
    code, names = kind(np.random.default_rng(seed))
    ip.run_cell("import numpy as np, keras\n" + code)
    return names


def _values(variables):
    return [v.numpy().copy() for v in variables.values()]


@pytest.mark.parametrize("kind,seed,make", MODELS, ids=[f"{k}{s}" for k, s, _ in MODELS])
def test_slice_facts_on_generated_models(ip, run, kind, seed, make):
    names = _setup(ip, make, seed)
    res = run("descend", f"{names} --steps 30 --eta 0.05 --landscape --no-widgets -o r", LOSS)
    land = res.landscape
    start = land.start
    has_matrix = any(w.ndim >= 2 for w in start)
    for d in (land.d1, land.d2):
        for w, x in zip(start, d):
            assert x.shape == w.shape and x.dtype == np.float32
            if w.ndim >= 2:  # each filter (a slice along the last axis) has the norm of the weights' filter
                axes = tuple(range(w.ndim - 1))
                wn, dn = (np.sqrt(np.sum(np.square(v, dtype=np.float64), axis=axes)) for v in (w, x))
                np.testing.assert_allclose(dn, np.where(wn > 0, wn, 1.0), rtol=1e-5)
            elif has_matrix:  # biases: 0, as the paper's plots
                assert not x.any()
            else:  # a model of vectors and scalars: each variable is one filter
                np.testing.assert_allclose(np.linalg.norm(x), np.linalg.norm(w) or 1.0, rtol=1e-5)
    assert not np.array_equal(np.concatenate([d.ravel() for d in land.d1]),
                              np.concatenate([d.ravel() for d in land.d2]))

    variables = res.engine.variables
    after_run = _values(variables)
    grid = land.grid(PREVIEW)
    centre = grid[PREVIEW // 2, PREVIEW // 2]
    np.testing.assert_allclose(centre, res.history["loss"][0], rtol=1e-5)  # the loss at the start
    assert np.isfinite(grid).all() and grid.std() > 0
    html = res._repr_html_()  # the static record: the 41x41 grid
    assert f"data-grid='{FINE}'" in html and "tfmagic-landscape-svg" in html
    for before, now in zip(after_run, _values(variables)):  # bit for bit
        assert before.tobytes() == now.tobytes()
    # (the published names are the run's final values too)
    path = land.paths[-1]
    assert (path.steps[0], path.a[0], path.b[0]) == (0, 0.0, 0.0)
    assert path.steps[-1] == res.steps == 30
    a, b, captured = land.project(after_run)
    assert (path.a[-1], path.b[-1]) == pytest.approx((a, b))
    assert 0 < captured <= 1
    # a point on the slice is projected onto its own coordinates, all of its offset captured
    point = [s + 0.3 * x - 0.7 * y for s, x, y in zip(start, land.d1, land.d2)]
    pa, pb, pc = land.project(point)
    assert (pa, pb, pc) == pytest.approx((0.3, -0.7, 1.0), abs=1e-4)


def test_directions_are_fixed_by_the_cell(ip, run):
    """A re-run of the cell and its --compare runs share the directions; another cell does not."""
    def directions(line, cell=LOSS):
        _setup(ip, _mlp, 7)
        res = run("descend", f"model {line} --steps 5 --landscape --no-widgets -o r", cell)
        return res, np.concatenate([d.ravel() for d in res.landscape.d1 + res.landscape.d2])

    first, d = directions("--eta 0.1")
    again, d_again = directions("--eta 0.3")
    compared, d_compared = directions("--compare optimizer=sgd,adam")
    other, d_other = directions("--eta 0.1", LOSS + " * 2.0")
    assert d.tobytes() == d_again.tobytes() == d_compared.tobytes()
    assert not np.allclose(d, d_other)
    paths = compared.landscape.paths
    assert [p.label for p in paths] == ["sgd", "adam"]
    assert all((p.steps[0], p.a[0], p.b[0]) == (0, 0.0, 0.0) and p.steps[-1] == 5 for p in paths)
    assert paths[0].a[-1] != paths[1].a[-1]
    html = compared._repr_html_()
    assert re.findall(r"data-label='(\w+)'", html.split("tfmagic-landscape-svg")[1])[:2] == ["sgd", "adam"]


def test_a_loss_that_fails_on_the_slice_leaves_gaps_and_the_variables(ip, run):
    """log of a weight: NaN where the slice makes it negative; the variables stay as they were."""
    ip.run_cell("W = tf.Variable([[0.5, 2.0], [1.0, 0.2], [3.0, 1.5]])")
    res = run("descend", "W --steps 3 --eta 0.01 --landscape --no-widgets -o r",
              "loss = tf.reduce_sum(tf.math.log(W) ** 2)")
    before = res.engine.variables["W"].numpy().copy()
    grid = res.landscape.grid(FINE)
    assert np.isnan(grid).any() and np.isfinite(grid).any()
    assert res.engine.variables["W"].numpy().tobytes() == before.tobytes()
    assert np.isfinite(grid[FINE // 2, FINE // 2])


def test_two_scalars_are_told_their_surface_shows_it(ip, run, capsys):
    res = run("descend", "x=1.0 y=2.0 --steps 3 --landscape --no-widgets", "x ** 2 + y ** 2")
    assert "--landscape is for models of more than two scalars" in capsys.readouterr().out
    assert getattr(res, "landscape", None) is None


def test_three_scalars_get_a_landscape(ip, run):
    res = run("descend", "x=1.0 y=2.0 z=-1.0 --steps 20 --landscape --no-widgets -o r", "x ** 2 + 2 * y ** 2 + z ** 2")
    land = res.landscape
    assert [abs(float(d)) for d in land.d1] == pytest.approx([1.0, 2.0, 1.0])  # each scalar: its own norm
    assert land.grid(PREVIEW)[PREVIEW // 2, PREVIEW // 2] == pytest.approx(1 + 2 * 4 + 1)


def test_panel_draws_the_preview_then_the_fine_grid_and_the_path(ip, run, loop):
    from tfmagic.kernel.runner import LiveRunner
    from tfmagic.widgets.panel import DescentPanel

    _setup(ip, _mlp, 3)
    res = run("descend", "model --steps 1 --eta 0.002 --landscape --no-widgets -o r", LOSS)  # (a short path)
    land = res.landscape
    res.engine.reset()
    before = _values(res.engine.variables)
    tf = ip.user_ns["tf"]

    async def scenario():
        runner = LiveRunner(res.engine)
        panel = DescentPanel(runner, res, 200, {devices.short(n): n for n in devices.available(tf)}, landscape=land)
        view = panel.landscape
        preview = np.asarray(view.heatmap.color).shape
        assert all(b.tobytes() == v.numpy().tobytes() for b, v in zip(before, res.engine.variables.values()))
        await runner.run(200)
        await until(lambda: view.drawn_n == FINE, timeout=60.0)
        return panel, view, preview

    panel, view, preview = loop.run_until_complete(scenario())
    assert preview == (PREVIEW, PREVIEW)
    assert np.asarray(view.heatmap.color).shape == (FINE, FINE)
    assert view.box in panel.charts.widget.children[1].children
    x, y = np.asarray(view.paths.x), np.asarray(view.paths.y)
    path = land.paths[-1]
    assert (x[0], y[0]) == (0.0, 0.0) and len(x) >= 2 and path.steps[-1] == res.steps == 200
    assert (x[-1], y[-1]) == pytest.approx((path.a[-1], path.b[-1]))
    assert f"grid {FINE}x{FINE}" in view.note.value and "of the distance from the start lies in it" in view.note.value

    assert land.path_span() is not None

    async def zoom():  # the toggle, as a click sets it: the same slice around the path
        view.zoom.value = True
        await until(lambda: view.land is not land and view.drawn_n == FINE and view.land.grids, timeout=60.0)
        return view.land

    zoomed = loop.run_until_complete(zoom())
    span = land.path_span()
    assert zoomed.span == span < land.span and (view._scales[0].min, view._scales[0].max) == (-span, span)
    assert np.abs(path.a).max() <= span and np.abs(path.b).max() <= span
    centre = zoomed.grids[FINE][FINE // 2, FINE // 2]
    assert centre == land.grids[FINE][FINE // 2, FINE // 2]  # the same start, the same loss there
    assert f"zoomed to a, b in ±{span:g}" in view.note.value


def test_float64_variables_keep_their_precision_at_the_start(ip, run):
    ip.run_cell("import numpy as np\nW = tf.Variable(np.random.default_rng(0).normal(size=(3, 4)) + 1e-9)\n"
                "v = tf.Variable(np.arange(4.0) * (1 + 1e-12))")
    res = run("descend", "W v --steps 3 --eta 0.01 --landscape --no-widgets -o r",
              "loss = tf.reduce_sum(tf.sin(W) ** 2) + tf.reduce_sum(v ** 2)")
    assert res.engine.variables["W"].dtype == tf_float64(ip)
    land = res.landscape
    assert land.start[0].dtype == np.float64 and not land.d1[1].any()  # (v: a bias-like vector, 0)
    assert land.grid(PREVIEW)[PREVIEW // 2, PREVIEW // 2] == np.float32(res.history["loss"][0])


def tf_float64(ip):
    return ip.user_ns["tf"].float64


def test_find_eta_is_no_run_to_draw(ip, run):
    from IPython.core.error import UsageError

    _setup(ip, _mlp, 1)
    with pytest.raises(UsageError, match="--landscape draws a run's path: --find-eta's sweep is not one"):
        run("descend", "model --find-eta --landscape", LOSS)


def test_the_compare_view_draws_every_run_on_the_slice(ip, run, loop):
    """--compare's live view: the comparison with the slice under it, one line per run, from the start."""
    import ipywidgets as W

    from tfmagic.widgets.landscape_view import with_landscape

    _setup(ip, _conv, 0)
    res = run("descend", "model --compare eta=0.01,0.1,0.3 --steps 20 --landscape --no-widgets -o r", LOSS)

    async def scenario():  # (on a loop, as in a kernel: the fine grid comes in blocks after the preview)
        box = with_landscape(W.HTML("the comparison"), res.landscape)
        heatmap = box.children[1].children[0].marks[0]
        assert np.asarray(heatmap.color).shape == (PREVIEW, PREVIEW)
        await until(lambda: np.asarray(heatmap.color).shape == (FINE, FINE), timeout=60.0)
        return box

    box = loop.run_until_complete(scenario())
    view_box = box.children[1]
    heatmap, lines = view_box.children[0].marks[:2]
    assert np.asarray(heatmap.color).shape == (FINE, FINE)
    x, y = np.asarray(lines.x), np.asarray(lines.y)
    assert x.shape[0] == 3 and (x[:, 0] == 0).all() and (y[:, 0] == 0).all()
    ends = [(p.a[-1], p.b[-1]) for p in res.landscape.paths]
    assert [(xi[np.isfinite(xi)][-1], yi[np.isfinite(yi)][-1]) for xi, yi in zip(x, y)] == pytest.approx(ends)
    assert len(set(lines.colors)) == 3
    note = view_box.children[3].value
    assert all(f"eta={e}" in note or e in note for e in ("0.01", "0.1", "0.3")), note


def test_a_data_run_takes_a_fixed_sample_of_its_rows(ip, run):
    """--data: the grid is the loss on SAMPLES fixed rows (every point on the same ones)."""
    from tfmagic.descent.landscape import SAMPLES

    ip.run_cell("import numpy as np\nrng = np.random.default_rng(0)\nX = rng.normal(size=(3000, 4)).astype('float32')\n"
                "Y = rng.normal(size=(3000, 2)).astype('float32')\nW = tf.Variable(rng.normal(size=(4, 2)).astype('float32'))")
    res = run("descend", "W --data X,Y --batch-size 64 --steps 10 --landscape --no-widgets -o r",
              "loss = tf.reduce_mean((X @ W - Y) ** 2)")
    land = res.landscape
    assert land.samples == (SAMPLES, 3000)
    ns = ip.user_ns
    rows = np.sort(np.random.default_rng(0).choice(3000, SAMPLES, replace=False))
    start = land.start[0]
    by_hand = np.mean((ns["X"][rows] @ start - ns["Y"][rows]) ** 2)
    assert land.grid(PREVIEW)[PREVIEW // 2, PREVIEW // 2] == pytest.approx(by_hand, rel=1e-5)
    corner = start + land.d1[0] + land.d2[0]  # a = b = 1
    assert land.grid(PREVIEW)[-1, -1] == pytest.approx(np.mean((ns["X"][rows] @ corner - ns["Y"][rows]) ** 2), rel=1e-5)
    assert f"on {SAMPLES:,} of 3,000 samples" in res._repr_html_()
