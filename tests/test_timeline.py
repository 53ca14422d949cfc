"""The panel's timeline without a browser: set the slider's value, click "Go on from here" and Play as the
browser would, check what the panel shows and where the engine is. (On main the panel has no timeline.)"""

import numpy as np
import pytest

from test_panel import make_panel, until

SURFACE = "f = (1 - x)**2 + 10.0 * (y - x**2)**2"


@pytest.mark.parametrize("line,cell,optimizer", [
    ("x=10.0 --eta 0.05", "y = (x - 2.0) ** 2", "momentum"),
    ("x=-1.5 y=2.0 --eta 0.002", SURFACE, "adam"),
])
def test_scrubbing_shows_a_step_and_going_on_from_it_repeats_the_run(ip, run, loop, line, cell, optimizer):
    async def scenario():
        res, runner, panel = make_panel(ip, run, line, cell, steps=90)
        panel.optimizer.value = optimizer
        panel.play.click()
        await until(lambda: res.steps == 90 and not runner.running, timeout=60)
        engine, timeline = res.engine, panel.timeline
        original = {c: np.array(v) for c, v in engine.history.items()}
        values = {n: v.numpy().copy() for n, v in engine.variables.items()}
        assert timeline.slider.max == 90 and timeline.slider.value == 90 and not timeline.slider.disabled
        names = list(engine.variables)
        for k in (0, 37, 89, 12):  # a drag: the point, the status line and the values follow
            timeline.slider.value = k
            await until(lambda k=k: f"iteration <b>{k}</b>" in panel.status.value)
            assert f"loss <b>{original['loss'][k]:.4g}</b>" in panel.status.value
            assert f"showing step <b>{k}</b> of 90" in timeline.label.value
            assert f"{names[0]} = {original[names[0]][k]:.4g}" in timeline.label.value
            mark = timeline._marks[panel.charts.log_toggle.value][0]
            assert list(mark.x) == [k] and list(mark.y) == [pytest.approx(original["loss"][k])]
            point = panel.charts.picture.point
            want = [original[names[0]][k], original["loss"][k] if len(names) == 1 else original[names[1]][k]]
            assert [point.x[0], point.y[0]] == pytest.approx(want)
            for n, v in engine.variables.items():  # scrubbing never moves the variables
                assert np.array_equal(v.numpy(), values[n])
            assert res.steps == 90 and not timeline.go_on.disabled
        timeline.go_on.click()
        await until(lambda: res.steps == 12)
        await until(lambda: timeline.shown is None and timeline.slider.value == 12 and timeline.slider.max == 12)
        assert "iteration <b>12</b>" in panel.status.value and "branched at step 12" in timeline.label.value
        assert float(ip.user_ns[names[0]].numpy()) == pytest.approx(original[names[0]][12])
        branch_mark = timeline._marks[panel.charts.log_toggle.value][1]
        assert list(branch_mark.x) == [12]
        panel.steps.value = 78
        panel.play.click()
        await until(lambda: res.steps == 90 and not runner.running, timeout=60)
        h = engine.history
        np.testing.assert_array_equal(h["loss"], original["loss"])  # the same eta: the same run, bit for bit
        for n, v in engine.variables.items():
            assert np.array_equal(v.numpy(), values[n])
        assert engine.branches[-1] == (12, 1) and set(h["branch"][12:]) == {1} and set(h["branch"][:12]) == {0}

    loop.run_until_complete(scenario())


def test_the_timeline_waits_while_a_run_goes_and_going_on_past_the_end_says_why(ip, run, loop):
    async def scenario():
        res, runner, panel = make_panel(ip, run, "x=10.0 --eta 0.001", "y = (x - 2.0) ** 2", steps=10**8)
        timeline = panel.timeline
        assert timeline.slider.disabled and timeline.go_on.disabled  # (no step yet)
        panel.play.click()
        await until(lambda: res.steps > 500)
        panel.refresh()
        assert timeline.slider.disabled and timeline.go_on.disabled
        timeline.slider.value = 3  # (a message already on its way: ignored while running)
        await until(lambda: res.steps > 2000)
        assert timeline.shown is None and res.engine.status == "running"
        panel.play.click()  # Pause
        await until(lambda: not runner.running)
        steps = res.steps
        assert timeline.slider.max == steps and not timeline.slider.disabled
        runner.rewind(steps + 5, lambda: None)  # (as a click on a stale slider would ask)
        await until(lambda: f"cannot rewind to step {steps + 5}: this run has the steps 0 to {steps}" in panel.status.value
                    or panel.refresh() and False)
        assert res.steps == steps

    loop.run_until_complete(scenario())
