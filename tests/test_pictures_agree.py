"""Every picture of a run ends at the numbers it reports: the live panel's charts (loss,
variables, the 1-D curve's point and trail, the 2-D surface's path), its status line and the
result's static chart, for runs of every kind and every way of ending. The charts drew the
history's rows, each the point *before* its step, so they stopped one step short of the
final loss and values (y = sqrt(x): the text said x = 0.0932, the chart ended at 0.46)."""

import asyncio
import math
import re

import numpy as np
import pytest

from tfmagic.descent.loss_grid import loss_grid_for
from tfmagic.kernel.runner import LiveRunner
from tfmagic.runtime import devices
from tfmagic.widgets.panel import DescentPanel

COURSE = "y = (x - 2.0) ** 2"
ROSENBROCK = "f = (1 - x)**2 + 100*(y - x**2)**2"
HIMMELBLAU = "f = (x**2 + y - 11)**2 + (x + y**2 - 7)**2"
F32 = np.float32

# (line, cell, the status the run ends with): 1-D, 2-D, matrices, every status the text runs reach
RUNS = [
    ("x=10.0 --eta 0.1 --steps 50", COURSE, "max_steps"),
    ("x=10.0 --eta 0.1 --steps 500 --tol 1e-4", COURSE, "converged"),
    ("x=2.0 --steps 10 --tol 1e-3", COURSE, "converged"),  # at the minimum already: no step
    ("x=10.0 --eta 1.1 --steps 300", COURSE, "diverged"),
    ("x=10.0 --eta 3.0 --steps 300", COURSE, "diverged"),
    ("x=4.0 --eta 0.3 --steps 40", "y = tf.sqrt(x)", "undefined"),
    ("x=-1.0 --steps 5", "y = tf.math.log(x)", "diverged"),  # not finite at the start
    ("x=3.0 --eta 0.01 --steps 400 --optimizer adam", "y = x ** 4 - 3.0 * x ** 2 + x", "max_steps"),
    ("x=10.0 --eta 1e-9 --steps 3000000", COURSE, "max_steps"),  # long: XLA blocks, a row every k steps
    ("x=-1.5 y=2.0 --eta 0.001 --steps 2000", ROSENBROCK, "max_steps"),
    ("x=-1.5 y=2.0 --eta 0.004 --steps 2000", ROSENBROCK, "diverged"),
    ("x=0.0 y=0.0 --eta 0.01 --steps 3000 --tol 1e-3", HIMMELBLAU, "converged"),
    ("x=0.0 y=0.0 --eta 0.2 --steps 3000", HIMMELBLAU, "diverged"),
    ("W=tf.ones([3,2]) --eta 0.1 --steps 60", "loss = tf.reduce_sum((W - 2.0) ** 2)", "max_steps"),
    ("W=tf.ones([3,2]) b=1.0 --eta 1.2 --steps 200", "loss = tf.reduce_sum((W - 2.0) ** 2) + (b + 1.0) ** 2", "diverged"),
    ("w=0.0 b=0.0 --data X,Y --batch-size 32 --epochs 3", "loss = tf.reduce_mean(tf.square(X[:, 0] * w + b - Y))",
     "max_steps"),
    ("x=1.0 --eta 0.5 --steps 50", "tf.debugging.assert_less(x, 5.0)\ny = -x", "error"),
]


def panel_for(ip, res, steps=100):
    """The live panel on a finished run's engine, as the cell shows it."""
    tf = ip.user_ns["tf"]
    curve, surface = loss_grid_for(tf, res.engine)
    names = {devices.short(n): n for n in devices.available(tf)}
    return DescentPanel(LiveRunner(res.engine), res, steps, names, curve=curve, surface=surface)


def finished(ip, line, cell):
    """The result of a text-mode run (kept by -o also when the run stops by an error)."""
    ip.run_cell("import numpy as np\nrng = np.random.default_rng(0)\n"
                "X = rng.normal(size=(96, 1)).astype('float32'); Y = 3 * X[:, 0] - 1")
    try:
        ip.run_cell_magic("descend", line + " --no-widgets -o r", cell)
    except Exception:
        pass  # (status "error": the result is kept as r)
    return ip.user_ns["r"]


def summary(value):
    """What the history records for a variable: its value, or its norm."""
    arr = np.asarray(value, np.float64)
    return float(arr.reshape(())) if arr.size == 1 else float(np.linalg.norm(arr))


def same(drawn, reported):
    """A drawn float32 equals the reported number (a norm is computed in the graph: to float32's precision)."""
    if reported is None or not math.isfinite(reported):
        return math.isnan(float(drawn))
    return float(drawn) == pytest.approx(float(F32(reported)), rel=2e-7, abs=1e-30)


def check_panel_ends_at(panel, steps, loss, values, where):
    """Every chart of `panel` ends at (steps, loss, values); its status line says them."""
    charts = panel.charts
    assert charts.loss_line.x[-1] == steps, where
    assert same(charts.loss_line.y[-1], loss), (where, charts.loss_line.y[-1], loss)
    y = np.atleast_2d(charts.vars_line.y)
    labels = list(charts.vars_line.labels)
    assert charts.vars_line.x[-1] == steps, where
    for name, value in values.items():
        label = next(lb for lb in labels if lb == name or (lb.startswith("‖") and name.endswith(lb.strip("‖"))))
        assert same(y[labels.index(label), -1], summary(value)), (where, name, y[labels.index(label), -1], value)
    picture = charts.picture
    if picture is not None and picture.dims == 1:
        (name, value), = values.items()
        assert same(picture.trail.x[-1], summary(value)), where
        point_y = np.asarray(picture.point.y, np.float64)
        if len(point_y):
            assert same(picture.point.x[0], summary(value)) and np.isfinite(point_y[0]), where
        else:  # (no height to draw it at: the loss undefined there, the curve too; never a point at NaN)
            assert loss is None or not np.isfinite(loss), where
        if loss is not None:
            assert same(picture.trail.y[-1], loss), where
            if np.isfinite(loss):
                assert same(picture.point.y[0], loss), where
    elif picture is not None:
        (a, va), (b, vb) = values.items()
        assert same(picture.path.x[-1], summary(va)) and same(picture.path.y[-1], summary(vb)), where
        assert same(picture.point.x[0], summary(va)) and same(picture.point.y[0], summary(vb)), where
    status = panel.status.value
    assert f"iteration <b>{steps}</b>" in status, (where, status)
    shown = "–" if loss is None else f"{loss:.4g}"
    assert re.search(rf"loss <b>{re.escape(shown)}</b>", status), (where, status)


def check_static_chart(res, where):
    html = res._repr_html_()
    svg = re.search(r"<svg class='tfmagic-loss-svg'.*?</svg>", html)
    if svg is None:
        return  # (fewer than two finite points: no chart)
    svg = svg.group(0)
    last_step = int(re.search(r"data-last-step='(\d+)'", svg).group(1))
    last_loss = float(re.search(r"data-last-loss='([^']*)'", svg).group(1))
    if res.final_loss is not None:
        assert last_step == res.steps and last_loss == pytest.approx(res.final_loss, rel=1e-12), where
        assert f"iteration {res.steps}</text>" in svg, where
        # the polyline's last point is at the right end, at the height of the final loss
        x, y = map(float, re.search(r"points='([^']*)'", svg).group(1).split()[-1].split(","))
        assert x == pytest.approx(350.0), where


@pytest.mark.parametrize("line,cell,status", RUNS, ids=[f"{s}:{c[:18]}:{ln[:22]}" for ln, c, s in RUNS])
def test_every_chart_ends_at_the_reported_final_point(ip, line, cell, status):
    res = finished(ip, line, cell)
    assert res.status == status, (res.status, res.message)
    panel = panel_for(ip, res)
    check_panel_ends_at(panel, res.steps, res.final_loss, res.values, line)
    check_static_chart(res, line)


def test_an_interrupted_run_ends_where_it_stopped(ip, run):
    res = finished(ip, "x=10.0 --eta 1e-4 --steps 10", COURSE)

    def interrupt(engine, chunk):
        if engine.steps > 300:
            raise KeyboardInterrupt

    res.engine.observe(interrupt)
    res.engine.run(10**6)
    res.engine.unobserve(interrupt)
    assert res.status == "interrupted" and res.steps > 300
    check_panel_ends_at(panel_for(ip, res), res.steps, res.final_loss, res.values, "interrupted")
    check_static_chart(res, "interrupted")


def make_live(ip, run, line, cell=COURSE, steps=10**8):
    res = run("descend", line + " --steps 1 --no-widgets", cell)
    res.engine.reset()
    return res, panel_for(ip, res, steps)


@pytest.mark.parametrize("line,cell", [("x=10.0 --eta 1e-4", COURSE), ("x=-1.5 y=2.0 --eta 1e-4", ROSENBROCK),
                                       ("W=tf.ones([3,2]) --eta 1e-4", "loss = tf.reduce_sum((W - 2.0) ** 2)")])
def test_while_running_and_after_stop_pause_and_step_the_charts_end_at_the_latest_point(ip, run, loop, line, cell):
    async def scenario():
        res, panel = make_live(ip, run, line, cell)
        runner = panel.runner
        task = asyncio.ensure_future(runner.run(10**8))
        for at in (500, 3000):
            while res.steps < at:
                await asyncio.sleep(0.005)
            panel.refresh()  # (between two chunks: nothing steps meanwhile)
            now = res.engine.now
            check_panel_ends_at(panel, res.steps, now["loss"], {n: v.numpy() for n, v in res.engine.variables.items()},
                                f"running at {res.steps}")
        panel.play.click()  # Pause
        await asyncio.wait_for(task, 10)
        check_panel_ends_at(panel, res.steps, res.final_loss, res.values, "paused")
        steps = res.steps
        panel.step.click()
        while res.steps == steps:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        check_panel_ends_at(panel, res.steps, res.final_loss, res.values, "after Step")
        panel.play.click()
        while res.steps < steps + 500:
            await asyncio.sleep(0.005)
        panel.stop.click()
        while runner.running:
            await asyncio.sleep(0.005)
        panel.refresh()
        check_panel_ends_at(panel, res.steps, res.final_loss, res.values, "stopped")
        return res

    res = loop.run_until_complete(scenario())
    assert res.status == "stopped"


def test_the_curve_stays_readable_after_a_divergence_and_marks_where_the_path_left(ip):
    """The 1-D picture's loss axis followed the path off to 3.5e7 and squashed the curve flat."""
    import time

    res = finished(ip, "x=10.0 --eta 1.1 --steps 300", COURSE)
    panel = panel_for(ip, res)
    picture = panel.charts.picture
    for _ in range(100):  # (a loaded machine times the loss as costly: drawn when its budget allows)
        if np.isfinite(picture.curve_line.y).sum() > 20:
            break
        time.sleep(0.1)
        panel.refresh()
    curve = picture.curve_line.y[np.isfinite(picture.curve_line.y)]
    scale = picture.curve_line.scales["y"]
    assert res.final_loss > 1e7 and scale.max < 1.2 * curve.max() and scale.min <= curve.min()
    lo, hi = picture.window
    assert "path left this window at step" in picture.fig.title
    ex, ey = float(picture.exit.x[0]), float(picture.exit.y[0])  # the triangle, on the plot's edge
    tol = 1e-4 * max(hi - lo, scale.max - scale.min)  # (float32 on the wire)
    assert lo - tol <= ex <= hi + tol and scale.min - tol <= ey <= scale.max + tol
    assert min(abs(ex - lo), abs(ex - hi), abs(ey - scale.max)) < tol


def test_a_mini_batch_runs_final_loss_says_which_it_is_and_gives_the_epoch_mean(ip):
    """train_digits: "final loss 0.266" was the last batch's, against an epoch mean of 0.467."""
    res = finished(ip, "w=0.0 b=0.0 --data X,Y --batch-size 32 --epochs 3",
                   "loss = tf.reduce_mean(tf.square(X[:, 0] * w + b - Y))")
    mean = res.epochs["loss"][-1]
    said = f"final loss {res.final_loss:.6g} on one mini-batch (mean over epoch 3: {mean:.6g})"
    assert said in repr(res) and said in res._repr_html_()
    status = panel_for(ip, res).status.value
    assert f"batch loss <b>{res.final_loss:.4g}</b>" in status and f"epoch 3 mean loss {mean:.4g}" in status
    plain = finished(ip, "x=10.0 --eta 0.1 --steps 5", COURSE)
    assert "mini-batch" not in repr(plain) and "batch loss" not in panel_for(ip, plain).status.value
