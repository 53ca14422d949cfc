"""Click to start (issue 26 §3): a click on the 1-D loss curve or the 2-D loss surface, as the
front end sends it (bqplot's Scatter "add" interaction: the mark's x and y grow by the clicked
point), picks where the next run starts; Reset, Play and Step start there, at the variable's
dtype; a click outside the drawn window is moved onto it and the status line says so."""

import asyncio

import numpy as np
import pytest
from bqplot.traits import array_to_json

from tfmagic.descent.start_point import BadStart

from test_panel import make_panel, until

ONE = ("x=3.0 --eta 0.05", "y = (x - 1.0) ** 2")
TWO = ("x=-1.0 y=1.5 --eta 0.01", "loss = (x - 0.5) ** 2 + 3.0 * (y + 0.25) ** 2")
TWO_F64 = ("--eta 0.01", "loss = (x - 0.5) ** 2 + 3.0 * (y + 0.25) ** 2")


def front_end_click(marker, *xy):
    """What bqplot's front end sends for a click in "add" mode: x and y, each one point longer
    (a Float32Array, as the arrays it was sent), in one update message."""
    state, buffers, paths = {}, [], []
    for name, v in zip(("x", "y"), xy):
        grown = np.append(np.asarray(getattr(marker, name), np.float32), np.float32(v))
        wire = array_to_json(grown, marker)
        buffers.append(wire.pop("value"))
        paths.append([name, "value"])
        state[name] = wire
    marker._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": paths}},
                        "buffers": buffers})


def picture_point(panel, fx, fy):
    """The point at fractions (fx, fy) of the picture's drawn window (outside it beyond 0..1)."""
    w = panel.charts.picture.window
    if len(w) == 2:  # the curve: y is a loss, any
        return w[0] + fx * (w[1] - w[0]), 123.0
    return w[0] + fx * (w[1] - w[0]), w[2] + fy * (w[3] - w[2])


def expected(panel, fx, fy):
    """What the start should be: the clicked float32 point moved onto the window."""
    w, names = panel.charts.picture.window, panel.charts.picture.names
    xy = [np.float32(v) for v in picture_point(panel, fx, fy)]
    return {n: min(max(float(v), w[2 * i]), w[2 * i + 1]) for i, (n, v) in enumerate(zip(names, xy))}


@pytest.mark.parametrize("problem", [ONE, TWO], ids=["curve", "surface"])
def test_a_click_starts_the_next_run_there(ip, run, loop, problem):
    """Over generated click points (inside and outside the window), each consumed by Reset,
    Play or Step: the next run's first history row and the variables are the clicked point."""
    rng = np.random.default_rng(7)

    async def scenario():
        res, runner, panel = make_panel(ip, run, line=problem[0], cell=problem[1], steps=5)
        panel.refresh()
        marker = panel.start_clicks.marker
        for i in range(24):
            fx, fy = rng.uniform(-0.3, 1.3, size=2)
            want = expected(panel, fx, fy)
            front_end_click(marker, *picture_point(panel, fx, fy))
            await until(lambda: res.engine.start_pending)
            words = ", ".join(f"{n} = {np.float32(v):.4g}" for n, v in want.items())
            await until(lambda words=words: f"next run starts at {words}" in panel.status.value, timeout=2)
            outside = not 0 <= fx <= 1 or (len(want) == 2 and not 0 <= fy <= 1)
            assert ("moved onto the drawn range" in panel.status.value) == outside, (fx, fy, panel.status.value)
            assert len(marker.x) == 1  # the marker, at the start picked
            how = ("reset", "play", "step")[i % 3]
            getattr(panel, how).click()
            steps = {"reset": 0, "step": 1, "play": 5}[how]
            await until(lambda steps=steps: not res.engine.start_pending and not runner.running and res.steps == steps)
            for n, v in want.items():
                var = ip.user_ns[n]
                at_dtype = np.asarray(v, var.dtype.as_numpy_dtype)
                if how == "reset":
                    assert var.numpy() == at_dtype
                else:
                    assert res.history[n][0] == np.float32(at_dtype), (how, n, v)
            assert "the point clicked" in panel.status.value
            assert len(marker.x) == 0
        return res

    loop.run_until_complete(scenario())


def test_a_float64_variable_starts_at_its_own_dtype(ip, run, loop):
    ip.user_ns["x"] = ip.user_ns["tf"].Variable(-1.0, dtype="float64")
    ip.user_ns["y"] = ip.user_ns["tf"].Variable(1.5, dtype="float64")

    async def scenario():
        res, runner, panel = make_panel(ip, run, line=TWO_F64[0], cell=TWO_F64[1], steps=3)
        panel.refresh()
        want = expected(panel, 0.3141, 0.7777)
        front_end_click(panel.start_clicks.marker, *picture_point(panel, 0.3141, 0.7777))
        await until(lambda: res.engine.start_pending)
        panel.reset.click()
        await until(lambda: not res.engine.start_pending)
        return res, want

    res, want = loop.run_until_complete(scenario())
    for n, v in want.items():
        assert ip.user_ns[n].dtype.name == "float64" and ip.user_ns[n].numpy() == np.float64(v)


def test_a_click_during_a_run_waits_for_the_next_reset(ip, run, loop):
    async def scenario():
        res, runner, panel = make_panel(ip, run, line=TWO[0] + " --jit off", cell=TWO[1])
        panel.refresh()
        task = asyncio.ensure_future(runner.run(10**8))
        await until(lambda: res.steps > 200)
        want = expected(panel, 0.9, 0.1)
        front_end_click(panel.start_clicks.marker, *picture_point(panel, 0.9, 0.1))
        await until(lambda: "this run goes on" in panel.status.value, timeout=2)
        at_click = res.steps
        await until(lambda: res.steps > at_click + 200)  # it goes on, from where it was
        assert runner.running and res.history["x"][0] == np.float32(-1.0)
        panel.stop.click()
        await asyncio.wait_for(task, 10)
        assert res.engine.start_pending
        panel.reset.click()
        await until(lambda: not res.engine.start_pending and res.steps == 0)
        return res, want

    res, want = loop.run_until_complete(scenario())
    for n, v in want.items():
        assert ip.user_ns[n].numpy() == np.float32(v)


def test_a_refused_click_says_why_and_moves_nothing(ip, run, loop):
    async def scenario():
        res, runner, panel = make_panel(ip, run, line=ONE[0], cell=ONE[1], steps=5)
        panel.refresh()
        front_end_click(panel.start_clicks.marker, float("nan"), 1.0)
        await until(lambda: "no new start: x would be" in panel.status.value, timeout=2)
        return res

    res = loop.run_until_complete(scenario())
    assert not res.engine.start_pending and ip.user_ns["x"].numpy() == np.float32(3.0)


def test_the_engine_refuses_what_is_no_start(ip, run):
    res = run("descend", "x=3.0 w=[1.0, 2.0] v=[[0.5]] --steps 2 --no-widgets",
              "y = (x - 1.0) ** 2 + tf.reduce_sum(w ** 2) + tf.reduce_sum(v ** 2)")
    engine = res.engine
    for values, why in (({"z": 1.0}, "unknown"), ({"w": 1.0}, "not_scalar"), ({"x": float("inf")}, "not_finite"),
                        ({"x": "a"}, "not_finite"), ({"x": 1e39}, "not_finite")):
        with pytest.raises(BadStart) as err:
            engine.set_start(values)
        assert err.value.why == why
        assert not engine.start_pending
    assert engine.set_start({"x": 0.1}) == {"x": np.float32(0.1)}
    engine.set_start({"v": -0.25})  # a one-element variable of another shape: its own shape kept
    engine.reset()
    assert ip.user_ns["v"].shape == (1, 1) and ip.user_ns["v"].numpy()[0, 0] == -0.25
    engine.run(2)
    assert engine.history["x"][0] == np.float32(0.1) and engine.history["v"][0] == np.float32(-0.25)
    assert list(engine.history["w"])[0] == pytest.approx(np.sqrt(5.0))  # the others keep their start


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_the_runner_starts_play_and_step_at_the_picked_point(ip, run, loop, dtype):
    """Generated starts, at every scale a click can give, through the runner alone: the next
    Play or Step starts exactly at the value cast to the variable's dtype; the run picked
    before goes on unmoved until then."""
    from tfmagic.kernel.runner import LiveRunner

    tf = ip.user_ns["tf"]
    ip.user_ns["u"], ip.user_ns["v"] = tf.Variable(0.5, dtype=dtype), tf.Variable(-0.5, dtype=dtype)
    res = run("descend", "u v --eta 0.001 --steps 1 --no-widgets", "loss = (u - 0.25) ** 2 + (v + 0.125) ** 2")
    rng = np.random.default_rng({"float32": 1, "float64": 2, "float16": 3}[dtype])
    top = {"float16": 4, "float32": 30, "float64": 30}[dtype]
    picks = [(float(s * 10.0 ** e), float(t * 10.0 ** f)) for s, t, e, f in zip(
        rng.choice([-1, 1], 40) * rng.uniform(1, 10, 40), rng.choice([-1, 1], 40) * rng.uniform(1, 10, 40),
        rng.integers(-top // 2, top // 2, 40), rng.integers(-top // 2, top // 2, 40))]

    async def scenario():
        runner = LiveRunner(res.engine)
        for i, (a, b) in enumerate(picks):
            want = runner.set_start({"u": a, "v": b})
            assert want == {"u": np.asarray(a, dtype), "v": np.asarray(b, dtype)}
            if i % 2:
                runner.start(2)  # Play
                await until(lambda: not runner.running)
            else:
                done = []
                runner.step(lambda done=done: done.append(1))  # Step
                await until(lambda done=done: bool(done))
            h = res.engine.history
            assert (h["u"][0], h["v"][0]) == (np.float32(want["u"]), np.float32(want["v"])), (a, b)
            assert not res.engine.start_pending

    loop.run_until_complete(scenario())
