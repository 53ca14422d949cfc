"""The live panel without a browser: set widget traits, run the event loop, check the engine."""

import asyncio
import threading
import time

import numpy as np
import pytest

from tfmagic.runtime import devices
from tfmagic.kernel.runner import LiveRunner
from tfmagic.descent.loss_grid import loss_grid_for
from tfmagic.widgets.panel import DescentPanel

COURSE = "y = (x - 2.0) ** 2"


def make_panel(ip, run, line="x=10.0 --eta 0.0001", cell=COURSE, steps=10**8):
    res = run("descend", line + " --steps 1 --no-widgets", cell)
    engine = res.engine
    engine.reset()
    tf = ip.user_ns["tf"]
    curve, surface = loss_grid_for(tf, engine)
    names = {devices.short(n): n for n in devices.available(tf)}
    runner = LiveRunner(engine)
    panel = DescentPanel(runner, res, steps, names, curve=curve, surface=surface)
    return res, runner, panel


async def until(predicate, timeout=10.0):
    for _ in range(int(timeout / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("timed out")


def test_slider_and_stop_drive_a_running_engine(ip, run, loop):
    async def scenario():
        res, runner, panel = make_panel(ip, run)
        task = asyncio.ensure_future(runner.run(10**8))
        await until(lambda: res.steps > 1000)
        panel.eta_slider.value = 0.0002
        await until(lambda: res.engine.eta == pytest.approx(0.0002))
        steps_at_change = res.steps
        await until(lambda: res.steps > steps_at_change + 2000)
        await until(lambda: "eta 0.0002" in panel.status.value, timeout=1)  # redrawn within 1/STATUS_RATE s
        assert "running" in panel.status.value
        panel.stop.click()
        status = await asyncio.wait_for(task, 10)
        return res, panel, status, steps_at_change

    res, panel, status, steps_at_change = loop.run_until_complete(scenario())
    assert status == "stopped" and "stopped" in panel.status.value
    eta = res.history["eta"]
    assert eta[0] == np.float32(0.0001) and eta[-1] == np.float32(0.0002)
    first_new = int(np.argmax(eta > 0.00015))
    assert 0 < first_new <= steps_at_change + 50_000  # applied from the next chunk on
    assert panel.eta_text.value == pytest.approx(0.0002)
    assert panel.play.description == "Play" and panel.stop.disabled


def test_invalid_eta_text_is_refused(ip, run, loop):
    async def scenario():
        res, runner, panel = make_panel(ip, run)
        panel.eta_text.value = -1.0
        await until(lambda: "positive" in panel.status.value, timeout=1)  # redrawn within 1/STATUS_RATE s
        return res, panel

    res, panel = loop.run_until_complete(scenario())
    assert res.engine.eta == pytest.approx(0.0001)
    assert panel.eta_text.value == pytest.approx(0.0001)
    assert "positive" in panel.status.value


def test_exact_eta_entry_moves_the_slider(ip, run, loop):
    async def scenario():
        res, runner, panel = make_panel(ip, run)
        panel.eta_text.value = 0.37
        await until(lambda: res.engine.eta == pytest.approx(0.37))
        return panel

    panel = loop.run_until_complete(scenario())
    assert panel.eta_slider.value == pytest.approx(0.37)


def test_pause_play_step_reset(ip, run, loop):
    async def scenario():
        res, runner, panel = make_panel(ip, run, line="x=10.0 --eta 0.001", steps=10**8)
        task = asyncio.ensure_future(runner.run(10**8))
        await until(lambda: res.steps > 500)
        panel.play.click()  # Pause
        assert await asyncio.wait_for(task, 10) == "paused"
        paused_at = res.steps
        panel.step.click()
        await until(lambda: res.steps == paused_at + 1)
        x_after_step = float(ip.user_ns["x"].numpy())
        panel.steps.value = 300
        panel.play.click()  # Play: continues in the background from where it stopped
        await until(lambda: not runner.running and res.steps == paused_at + 301)
        assert res.status == "max_steps"
        panel.reset.click()
        await until(lambda: res.steps == 0)
        return res, panel, x_after_step

    res, panel, x_after_step = loop.run_until_complete(scenario())
    assert 2.0 < x_after_step < 10.0
    assert float(ip.user_ns["x"].numpy()) == 10.0 and len(res.history["loss"]) == 0
    assert len(panel.charts.loss_line.x) == 0


def test_optimizer_switch_mid_run(ip, run, loop):
    async def scenario():
        res, runner, panel = make_panel(ip, run)
        task = asyncio.ensure_future(runner.run(10**8))
        await until(lambda: res.steps > 500)
        panel.optimizer.value = "adam"
        await until(lambda: res.engine.optimizer_name == "adam")
        steps = res.steps
        await until(lambda: res.steps > steps + 500)
        panel.stop.click()
        await asyncio.wait_for(task, 10)
        return res

    res = loop.run_until_complete(scenario())
    assert res.optimizer == "adam" and res.status == "stopped"


def test_device_takes_effect_on_reset(ip, run, loop):
    async def scenario():
        res, runner, panel = make_panel(ip, run)
        panel.device.value = "CPU:1"
        await asyncio.sleep(0.05)
        assert res.engine.device in (None, "") or res.engine.device.endswith("CPU:0")
        panel.reset.click()
        await until(lambda: (res.engine.device or "").endswith("CPU:1"))
        await runner.run(100)
        return res, panel

    res, panel = loop.run_until_complete(scenario())
    assert res.steps == 100 and "CPU:1" in panel.status.value


def test_charts_get_decimated_float32_data(ip, run, loop):
    async def scenario():
        res, runner, panel = make_panel(ip, run, line="x=10.0 --eta 0.001")
        await runner.run(30_000)
        # The curve is drawn within its budget (a share of the panel's time on screen): on a
        # loaded machine only the idle redraws after the run can afford it.
        await until(lambda: len(panel.charts.picture.curve_line.x) > 10, timeout=20.0)
        return res, panel

    res, panel = loop.run_until_complete(scenario())
    line = panel.charts.loss_line
    assert res.steps == 30_000
    assert 100 < len(line.y) <= 2000 and line.y.dtype == np.float32
    assert line.y[-1] == pytest.approx(res.history["loss"][-1])
    assert panel.charts.picture.curve_line is not None and len(panel.charts.picture.curve_line.x) > 10


def test_chart_pushes_are_throttled(ip, run, loop, monkeypatch):
    pushes, chunks = [], []

    async def scenario():
        res, runner, panel = make_panel(ip, run)
        real = panel.charts.update
        monkeypatch.setattr(panel.charts, "update", lambda *a, **k: (pushes.append(1), real(*a, **k)))
        res.engine.observe(lambda engine, chunk: chunks.append(1))
        t0 = loop.time()
        task = asyncio.ensure_future(runner.run(10**8))
        await asyncio.sleep(1.5)
        panel.stop.click()
        await asyncio.wait_for(task, 10)
        return loop.time() - t0, res

    seconds, res = loop.run_until_complete(scenario())
    assert len(chunks) > len(pushes)  # not every chunk is pushed
    assert len(pushes) <= 10 * seconds + 3


def test_a_newer_run_detaches_the_older_panel(ip, run, loop):
    async def scenario():
        res1, runner1, panel1 = make_panel(ip, run)
        res2, runner2, panel2 = make_panel(ip, run)
        await asyncio.sleep(0.05)
        return runner1, panel1, panel2

    runner1, panel1, panel2 = loop.run_until_complete(scenario())
    assert runner1.detached and panel1.play.disabled and panel1.eta_slider.disabled
    assert "newer run" in panel1.status.value
    assert not panel2.play.disabled


def _count_sends(monkeypatch):
    """Every message a widget sends to the front end, as (time, widget class, thread)."""
    import ipywidgets as W

    sent = []
    real = W.Widget._send

    def send(self, *args, **kwargs):
        sent.append((time.perf_counter(), type(self).__name__, threading.get_ident()))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(W.Widget, "_send", send)
    return sent


def test_a_burst_of_eta_changes_from_both_views_settles_on_the_last(ip, run, loop, monkeypatch):
    """A drag sends dozens of changes, arrow keys more, typed values in between: the two
    views of eta must not reset each other (they did, forever), and the last one wins."""
    sent = _count_sends(monkeypatch)

    async def scenario():
        res, runner, panel = make_panel(ip, run, line="x=10.0 --eta 0.0001 --jit off")  # (XLA ends 1e8 steps in 1 s)
        task = asyncio.ensure_future(runner.run(10**8))
        await until(lambda: res.steps > 500)
        changes = []
        for w in (panel.eta_slider, panel.eta_text):
            w.observe(lambda ch: changes.append(ch["new"]), names="value")

        def browser():  # the subshell thread delivers the front end's messages
            for burst in range(6):
                for i in range(50):  # a drag, back and forth, without waiting for the kernel
                    panel.eta_slider.value = 10 ** (-4 + abs(25 - i) * 0.01 + burst * 0.05)
                time.sleep(0.05)  # (a person takes far longer to move to the entry)
                panel.eta_text.value = 0.0001 * (1 + burst / 10)
                time.sleep(0.05)
            panel.eta_slider.value = 10 ** -3.5  # where the user lets go

        t0, kernel = time.perf_counter(), threading.get_ident()
        await asyncio.get_running_loop().run_in_executor(None, browser)
        await until(lambda: res.engine.eta == pytest.approx(10 ** -3.5, rel=1e-5))
        await asyncio.sleep(0.5)
        settled = len(changes)
        await asyncio.sleep(0.5)
        quiet = len(changes) == settled  # nothing echoes back and forth
        # The panel's own messages (a test thread's sets stand for the browser's changes).
        rate = sum(1 for t, _, thread in sent if t >= t0 and thread == kernel) / (time.perf_counter() - t0)
        panel.stop.click()
        await asyncio.wait_for(task, 10)
        return res, panel, quiet, rate

    res, panel, quiet, rate = loop.run_until_complete(scenario())
    assert quiet
    want = float(f"{10 ** -3.5:.6g}")
    assert res.engine.eta == want and panel.eta_text.value == want
    assert panel.eta_slider.value == pytest.approx(10 ** -3.5)
    assert f"eta {want:g}" in panel.status.value
    assert res.status == "stopped" and res.history["eta"][-1] == np.float32(want)
    # Status and entry <= 10 redraws/s, charts <= 5 pushes/s of about 7 messages each.
    assert rate < 80, rate


def test_a_paced_run_goes_at_its_pace_and_stops_at_once(ip, run, loop):
    async def scenario():
        res, runner, panel = make_panel(ip, run, line="x=10.0 --eta 0.01")
        runner.pace = 100
        t0 = loop.time()
        await runner.run(40)
        seconds = loop.time() - t0
        assert "paced at 100 steps/s" in panel.status.value
        task = asyncio.ensure_future(runner.run(10**6))
        await asyncio.sleep(0.3)
        steps_at_stop = res.steps
        t1 = loop.time()
        panel.stop.click()
        await asyncio.wait_for(task, 5)
        stop_seconds = loop.time() - t1
        stopped_at = res.steps
        assert res.status == "stopped" and stopped_at - steps_at_stop <= 5  # no chunk run after the Stop
        panel.steps.value = 20
        t2 = loop.time()
        panel.play.click()  # Play on a finished panel continues at the same pace
        await until(lambda: not runner.running and res.steps == stopped_at + 20)
        return res, seconds, steps_at_stop, stop_seconds, loop.time() - t2

    res, seconds, steps_at_stop, stop_seconds, play_seconds = loop.run_until_complete(scenario())
    assert 0.18 <= play_seconds < 1.0, play_seconds
    assert 0.38 <= seconds < 1.5, seconds  # 40 steps at 100 steps/s
    assert 20 <= steps_at_stop - 40 <= 40, steps_at_stop  # ~30 steps in 0.3 s
    assert stop_seconds < 0.2, stop_seconds
    assert res.status == "max_steps"


def test_the_chart_probe_never_moves_the_users_variables(ip, run, loop):
    """A loss that raises in part of the chart's window (log of x <= 0, checked) leaves a gap
    in the curve; it used to end the cell with a traceback and x at a grid point."""
    cell = "tf.debugging.check_numerics(tf.math.log(x), 'log of x')\ny = (x - 6.0) ** 2"

    async def scenario():
        ip.run_cell("x = tf.Variable(7.0)")
        res, runner, panel = make_panel(ip, run, line="x --eta 0.1", cell=cell)
        assert float(ip.user_ns["x"].numpy()) == 7.0  # the panel drew its curve (if 10 ms allowed it): x is untouched
        curve = panel.charts.picture.curve_line
        await runner.run(10)
        x_after = float(ip.user_ns["x"].numpy())
        # (on a loaded machine the first 10 ms draw nothing: the curve comes when the kernel is idle)
        await until(lambda: np.asarray(curve.x).size > 0, timeout=30.0)
        assert float(ip.user_ns["x"].numpy()) == x_after  # ... and x stays where the run left it
        return res, np.asarray(curve.x), np.asarray(curve.y)

    res, xs, ys = loop.run_until_complete(scenario())
    assert xs.min() < 0 < xs.max()
    assert np.isnan(ys[xs <= 0]).all() and np.isfinite(ys[xs > 0.1]).all()  # a gap where log fails
    assert res.status == "max_steps" and 6.0 < float(ip.user_ns["x"].numpy()) < 7.0


def test_the_surface_is_sized_by_what_the_loss_costs(ip, run, loop):
    """Before the first step the surface gets what FIRST_DRAW_SECONDS allow: a cheap loss a
    coarse grid at once, then the full 60x60 once the kernel is idle after the run; a costly
    one (a 1000x1000 matmul took 15 s at 60x60 before the first step; here a 400x400 one,
    ~0.3 ms a point, so that an 8x8 grid fits DRAW_SECONDS on a loaded machine too) starts
    empty or coarse and gets finer as the run goes on. The drawing never takes more than a
    tenth of the time since the panel was made."""
    from tfmagic.widgets import picture as charts

    ip.run_cell("big = tf.random.uniform((400, 400), seed=1)\np, q = tf.Variable(1.0), tf.Variable(2.0)")

    async def scenario(cell, seconds, idle_until_full=False):
        res, runner, panel = make_panel(ip, run, line="p q --eta 1e-3", cell=cell)
        surface = panel.charts.picture.resolution
        first = surface.n
        t0 = time.perf_counter()
        while True:  # (runs until the picture is seconds old and, for a costly loss, got finer:
            await runner.run(100)  # 64 points of it take ~0.3 s, ~1.2 s on a loaded machine)
            waited = time.perf_counter() - t0
            if waited > seconds and (not seconds or surface.n > first or waited > 60):
                break
        if idle_until_full:  # nothing is asked of the panel: it redraws by itself
            # (the idle redraws go on for ~64 s, each within its budget: a loaded machine needs more of them)
            await until(lambda: surface.n == charts.GRID, timeout=70.0)
        else:
            panel.charts.update(res.engine.history, None)
        lifetime = time.perf_counter() - surface.t0
        return first, surface.n, len(panel.charts.picture.heatmap.x), surface.spent, lifetime

    first, n, drawn, spent, lifetime = loop.run_until_complete(
        scenario("loss = (p - 1.0) ** 2 + (q + 1.0) ** 2", 0, idle_until_full=True))
    # (coarse here: ~30x30 at first; nothing where the machine is so loaded that 10 ms draw no 8x8)
    assert (first == 0 or 8 <= first <= charts.GRID) and n == drawn == charts.GRID
    assert spent <= charts.PROBE_SHARE * lifetime + charts.FIRST_DRAW_SECONDS + 0.05
    first, n, drawn, spent, lifetime = loop.run_until_complete(scenario(
        "loss = tf.reduce_mean(tf.square(p * tf.matmul(big, big) / 150.0 - q))", 6))
    assert first < 20 and first < n == drawn
    assert spent <= charts.PROBE_SHARE * lifetime + charts.FIRST_DRAW_SECONDS + 0.05


def test_the_outcome_is_said_once_by_the_result_then_by_the_panel(ip, run, loop):
    """The divergence paragraph stood twice, in the panel and in the result under it. The
    cell's run leaves it to the result; a run from the panel's buttons says it in the panel."""

    async def scenario():
        res, runner, panel = make_panel(ip, run, line="x=10.0 --eta 1.5")
        await runner.run(100)
        panel._update_status()
        after_cell = panel.status.value
        panel.reset.click()
        await until(lambda: not runner.running and res.engine.status == "ready")
        panel.play.click()
        await until(lambda: res.engine.status == "diverged" and not runner.running)
        panel._update_status()
        return res, after_cell, panel.status.value

    res, after_cell, after_play = loop.run_until_complete(scenario())
    assert res.status == "diverged" and "too large" in res.message
    assert ">diverged<" in after_cell and "too large" not in after_cell
    assert "too large" in after_play


@pytest.mark.parametrize("validate", [True, False])
def test_a_data_run_shows_its_epochs_in_the_status_and_on_the_loss_chart(ip, run, loop, validate):
    """Without --validate: no validation in the legend, and no marker at a NaN height (each one was
    an SVG 'translate(x,NaN)' error in the page, and a red mark at the chart's corner)."""
    ip.run_cell(
        "import numpy as np\nrng = np.random.default_rng(0)\n"
        "X = rng.normal(size=(96, 1)).astype('float32'); Y = 3 * X[:, 0] - 1\nXv, Yv = X[:20], Y[:20]")

    async def scenario():
        line = "w=0.0 b=0.0 --data X,Y --batch-size 32" + (" --validate Xv,Yv" if validate else "")
        res, runner, panel = make_panel(ip, run, line=line,
                                        cell="loss = tf.reduce_mean(tf.square(X[:, 0] * w + b - Y))", steps=12)
        await runner.run(12)
        panel.refresh()
        return res, panel

    res, panel = loop.run_until_complete(scenario())
    assert list(res.epochs["epoch"]) == [1, 2, 3, 4]
    smooth, train, val = panel.charts._epoch_marks[panel.charts.log_toggle.value]
    assert list(train.x) == [2, 5, 8, 11] and np.allclose(train.y, res.epochs["loss"])
    # (the smoothed line is of the steps' losses; the loss line ends at the point after the last step)
    assert len(smooth.y) == len(panel.charts.loss_line.y) - 1
    assert "epoch <b>4</b>/4" in panel.status.value
    legend = panel.charts.loss_box.children[1].value
    if validate:
        assert np.allclose(val.y, res.epochs["val_loss"]) and list(val.x) == [2, 5, 8, 11]
        assert "val_loss" in panel.status.value and "validation" in legend
    else:
        assert np.isnan(res.epochs["val_loss"]).all() and len(val.x) == len(val.y) == 0
        assert "validation" not in legend and "epoch mean" in legend
    for mark in (train, val):
        assert np.isfinite(np.asarray(mark.y, np.float64)).all()


def test_find_eta_puts_the_suggestion_into_the_eta_control(ip, run, loop):
    async def scenario():
        res, runner, panel = make_panel(ip, run, line="x=10.0 --eta 0.0001", cell=COURSE)
        panel.find_eta.click()
        await until(lambda: runner.running)
        assert panel.find_eta.disabled
        await until(lambda: not runner.running and "find eta:" in panel.status.value, timeout=30)
        return res, runner, panel

    res, runner, panel = loop.run_until_complete(scenario())
    eta = res.engine.eta
    assert 1e-3 < eta < 1.0  # (x - 2)^2: sgd diverges above 2/λ = 1
    assert panel.eta_text.value == pytest.approx(eta) and panel.eta_slider.value == pytest.approx(eta, rel=0.05)
    assert "now in the eta control" in panel.status.value and "diverges above ≈ 1" in panel.status.value
    assert res.steps == 0 and float(ip.user_ns["x"].numpy()) == 10.0  # back at the start
    assert not panel.find_eta.disabled and runner.error is None


def test_idle_redraws_keep_out_of_other_runs_and_do_not_pile_up(ip, run, loop):
    """After a run the picture is drawn finer while the kernel is idle; not between the chunks
    of another panel's run (a drawing can take 0.5 s), and one chain of redraws per panel
    however many runs ended (found in review: 6 short runs gave 10 redraws)."""
    ip.run_cell("big = tf.random.uniform((300, 300), seed=1)")

    async def scenario():
        res, runner, panel = make_panel(ip, run, line="p=1.0 q=2.0 --eta 1e-3",
                                        cell="loss = tf.reduce_mean(tf.square(p * tf.matmul(big, big) / 250.0 - q))")
        redraws = []
        real = panel.refresh
        panel.refresh = lambda: (redraws.append(time.perf_counter()), real())[1]
        for _ in range(4):
            await runner.run(5)
        redraws.clear()  # (those were the runs' own)
        await asyncio.sleep(1.0)  # redraws at 0.25 and 0.75 s after the last end
        piled = len(redraws)
        assert panel.charts.picture.may_get_finer  # (this loss is costly: still coarse)
        _, other, _ = make_panel(ip, run, line="x=10.0 --eta 1e-5", cell="y = (x - 2.0) ** 2")
        task = asyncio.ensure_future(other.run(10**9))
        await asyncio.sleep(1.5)
        during = len(redraws) - piled
        other.stop()
        await task
        await until(lambda: len(redraws) > piled + during, timeout=4.0)  # the chain goes on after it
        return piled, during

    piled, during = loop.run_until_complete(scenario())
    assert piled <= 2 and during == 0
