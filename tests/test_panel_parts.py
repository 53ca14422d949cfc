"""The panel's parts (its controls, its status line) built and driven on their own, and Step
through the runner's one channel: a Step pressed mid-run is queued there, run on the loop's
thread after the run paused, never in the thread that delivered the click."""

import asyncio
import threading

import numpy as np
import pytest

from tfmagic.kernel.runner import LiveRunner
from tfmagic.runtime import devices
from tfmagic.widgets.controls import ETA_STEP, Controls, entry
from tfmagic.widgets.status_line import STATUS_RATE, StatusLine

from test_panel import make_panel, until

COURSE = "y = (x - 2.0) ** 2"


def _engine(ip, run, line="x=10.0 --eta 0.0001"):
    res = run("descend", line + " --steps 1 --no-widgets", COURSE)
    res.engine.reset()
    return res


def _chunks_seen(engine):
    """(thread, status, steps after it) of each chunk the engine runs."""
    seen = []
    engine.observe(lambda e, chunk: seen.append((threading.get_ident(), chunk.status, e.steps)))
    return seen


@pytest.mark.parametrize("presses", [1, 2, 5])
def test_steps_pressed_mid_run_pause_it_then_step_once_each_on_the_loops_thread(ip, run, loop, presses):
    async def scenario():
        res, runner, panel = make_panel(ip, run, line="x=10.0 --eta 0.001")
        through_runner = []
        real_step = runner.step
        runner.step = lambda done: (through_runner.append(threading.get_ident()), real_step(done))[1]
        seen = _chunks_seen(res.engine)
        task = asyncio.ensure_future(runner.run(10**8))
        await until(lambda: res.steps > 500)

        def browser():  # the subshell thread delivers the front end's clicks
            for _ in range(presses):
                panel.step.click()
            return threading.get_ident()

        browser_thread = await asyncio.get_running_loop().run_in_executor(None, browser)
        await asyncio.wait_for(task, 10)  # (the Steps queued behind the run follow its end at once)
        await asyncio.sleep(0.1)
        return res, panel, through_runner, seen, browser_thread

    res, panel, through_runner, seen, browser_thread = loop.run_until_complete(scenario())
    paused = next(i for i, (_, status, _) in enumerate(seen) if status != "running")
    paused_at = seen[paused][2]
    assert seen[paused][1] == "paused" and res.steps == paused_at + presses and res.status == "paused"
    assert [steps for _, _, steps in seen[paused + 1:]] == list(range(paused_at + 1, paused_at + presses + 1))
    assert len(through_runner) == presses and browser_thread not in through_runner
    assert {thread for thread, _, _ in seen} == {through_runner[0]}  # every step on the loop's thread
    assert f"iteration <b>{paused_at + presses}</b>" in panel.status.value and ">paused<" in panel.status.value
    assert panel.play.description == "Play"


def test_runner_step_without_a_panel(ip, run, loop):
    """runner.step: on an idle run one step at once; mid-run after the run pauses; then done()."""

    async def scenario():
        res = _engine(ip, run)
        runner, done = LiveRunner(res.engine), []
        runner.step(lambda: done.append(res.steps))
        first = (res.steps, res.status, list(done))
        task = asyncio.ensure_future(runner.run(10**8))
        await until(lambda: res.steps > 200)
        runner.call(runner.step, lambda: done.append(res.steps))
        status = await asyncio.wait_for(task, 10)
        await until(lambda: len(done) == 2)
        return res, first, status, done

    res, first, status, done = loop.run_until_complete(scenario())
    assert first == (1, "paused", [1])
    assert status == "paused" and done[1] == res.steps and res.status == "paused"
    assert res.history["step"][-1] == res.steps - 1  # the Step's row is the run's last


def test_runner_reset_without_a_panel_stops_the_run_first(ip, run, loop):
    async def scenario():
        res = _engine(ip, run)
        runner, done, seen = LiveRunner(res.engine), [], _chunks_seen(res.engine)
        task = asyncio.ensure_future(runner.run(10**8))
        await until(lambda: res.steps > 200)
        runner.call(runner.reset, res.engine.device, lambda: done.append((res.steps, runner.running)))
        await asyncio.wait_for(task, 10)
        await until(lambda: done)
        return res, seen, done

    res, seen, done = loop.run_until_complete(scenario())
    assert seen[-1][1] == "stopped" and seen[-1][2] > 200 and done == [(0, False)]
    assert float(ip.user_ns["x"].numpy()) == 10.0 and res.engine.status == "ready"


def _controls(ip, run, steps=300):
    res = _engine(ip, run)
    names = {devices.short(n): n for n in devices.available(ip.user_ns["tf"])}
    return res, Controls(res.engine, steps, names, eta_max=1.0)


def test_controls_on_their_own_coalesce_a_burst_into_the_latest_value_of_each(ip, run):
    res, controls = _controls(ip, run)
    posted, applied = [], []
    controls.listen(posted.append, applied.append)

    def browser():
        for i in range(40):
            controls.eta_slider.value = 10 ** (-4 + i * 0.01)
            if i == 10:
                controls.optimizer.value = "adam"
        controls.eta_text.value = 0.5
        controls.optimizer.value = "momentum"

    t = threading.Thread(target=browser)
    t.start()
    t.join()
    assert len(posted) == 1  # one request to the main loop for the whole burst
    posted[0]()
    assert applied == [{"eta_slider": pytest.approx(10 ** -3.61), "eta_text": 0.5, "optimizer": "momentum"}]
    assert list(applied[0]) == ["eta_slider", "eta_text", "optimizer"]  # in the order of the last changes
    controls.show("eta_text", 0.25)  # the panel showing a value: not a change
    controls.follow_eta(0.125)
    assert controls.eta_text.value == 0.125 and len(posted) == 1
    controls.eta_slider.value = 0.01
    assert controls.pending("eta_slider") and len(posted) == 2
    assert res.engine.eta == pytest.approx(0.0001)  # nothing reaches the engine from the controls


@pytest.mark.parametrize("eta", [1e-9, 3e-3, 42.0, 1e6])
def test_controls_show_a_typed_eta_on_a_slider_widened_to_hold_it(ip, run, eta):
    res, controls = _controls(ip, run)
    controls.listen(lambda fn: None, lambda inbox: None)
    controls.show_eta(eta)
    slider = controls.eta_slider
    assert 10 ** slider.min <= eta <= 10 ** slider.max
    assert slider.value == pytest.approx(eta, rel=0.03) and not controls.pending("eta_slider")


@pytest.mark.parametrize("running,locked", [(False, False), (True, False), (False, True), (True, True)])
def test_controls_buttons_follow_the_run(ip, run, running, locked):
    res, controls = _controls(ip, run)
    controls.update_buttons(running, locked)
    assert controls.play.description == ("Pause" if running else "Play")
    assert controls.stop.disabled == (locked or not running)
    assert controls.find_eta.disabled == (locked or running)
    assert controls.step.disabled == controls.eta_slider.disabled == controls.device.disabled == locked
    assert controls.device_name in devices.available(ip.user_ns["tf"])


def test_status_line_on_its_own_says_where_the_run_is(ip, run, loop):
    async def scenario():
        res = _engine(ip, run, line="x=10.0 --eta 1.5")
        runner = LiveRunner(res.engine)
        controls = Controls(res.engine, 100, {"CPU:0": res.engine.device}, eta_max=1.0)
        line = StatusLine(runner, res, controls.steps, eta_max=1.0)
        line.update()
        before = line.widget.value
        await runner.run(100)
        line.update()
        said_by_result = line.widget.value
        line.result_says_outcome, line.warning = False, "a warning & more"
        line.update()
        return res, before, said_by_result, line.widget.value

    res, before, said_by_result, after = loop.run_until_complete(scenario())
    assert ">ready<" in before and "iteration <b>0</b>" in before and "eta 1.5" in before
    assert "sgd diverges above ≈ 1 near the start" in before
    assert res.status == "diverged" and ">diverged<" in said_by_result and "too large" not in said_by_result
    assert "too large" in after and "a warning &amp; more" in after


def test_status_line_redraws_at_most_status_rate_times_a_second(ip, run, loop):
    async def scenario():
        res = _engine(ip, run)
        runner = LiveRunner(res.engine)
        line = StatusLine(runner, res, None, eta_max=None)
        redraws = []

        def redraw():
            redraws.append(loop.time())
            line.update()

        t0 = loop.time()
        while loop.time() - t0 < 0.5:
            line.show_soon(redraw)
            await asyncio.sleep(0.001)
        await asyncio.sleep(2 / STATUS_RATE)
        return redraws, loop.time() - t0

    redraws, seconds = loop.run_until_complete(scenario())
    # ~500 requests; a timer that fires late may let one redraw follow another at once
    assert STATUS_RATE * 0.5 * 0.5 <= len(redraws) <= STATUS_RATE * seconds + 2, redraws


ETAS = [float(e) for e in 10 ** np.random.default_rng(7).uniform(-6, 2, 12)] + [0.9, 0.5, 1e-5]


@pytest.mark.parametrize("eta", ETAS)
def test_the_slider_follows_an_eta_set_from_code_and_its_echo_changes_nothing(ip, run, loop, eta):
    """eta set from code (run.engine.eta = 0.9) showed in the entry while the handle stayed at the
    cell's eta. Now the handle goes to the grid position nearest eta; the browser's answer (the
    value snapped, in its own floats) leaves the engine's exact eta alone; a move applies."""
    res, runner, panel = make_panel(ip, run, line="x=10.0 --eta 0.01 --steps 20")
    controls, slider = panel.controls, panel.controls.eta_slider
    loop.run_until_complete(runner.run(20))
    res.engine.eta = eta
    panel.refresh()
    assert controls.eta_text.value == entry(eta)
    assert 10 ** slider.min <= slider.value <= 10 ** slider.max
    assert abs(np.log10(slider.value) - np.log10(eta)) <= ETA_STEP / 2 + 1e-9
    slider.value = slider.value * (1 + 3e-16)  # (the browser's echo: the same position, other last bits)
    controls._apply_inbox()
    panel.refresh()
    assert res.engine.eta == eta
    up = slider.value * 10 ** 0.37  # the user's move, to a position the panel never showed
    moved = up if up <= 10 ** slider.max else slider.value / 10 ** 0.37
    slider.value = moved
    controls._apply_inbox()
    panel.refresh()
    assert slider.value == moved and res.engine.eta == pytest.approx(moved, rel=1e-5)


def test_late_echoes_of_etas_set_in_a_loop_leave_the_last_one(ip, run, loop, monkeypatch):
    """The time-travel lesson sets eta 0.01, 0.1, 0.5, 0.9 from code, one after another; the browser's
    answers to the handle's moves come back after eta moved on: none of them is a move. Once
    ECHO_S has passed, the user's move to one of those positions is one."""
    import tfmagic.widgets.controls as controls_module

    res, runner, panel = make_panel(ip, run, line="x=10.0 --eta 0.01 --steps 20")
    controls, slider = panel.controls, panel.controls.eta_slider
    shown = []
    for eta in (0.1, 0.5, 0.9):
        res.engine.eta = eta
        panel.refresh()
        shown.append(slider.value)
    for value in shown:  # (each snapped, in the browser's order)
        slider.value = value * (1 - 2e-16)
        controls._apply_inbox()
    panel.refresh()
    assert res.engine.eta == 0.9 and controls.eta_text.value == 0.9
    assert shown[0] != slider.value
    clock = [controls_module.time.monotonic() + controls_module.ECHO_S + 1]
    monkeypatch.setattr(controls_module.time, "monotonic", lambda: clock[0])
    res.engine.eta = 0.1
    panel.refresh()
    slider.value = shown[1]  # 0.5's position, long after the panel showed it: the user put it there
    controls._apply_inbox()
    assert res.engine.eta == pytest.approx(0.5, rel=0.012)


@pytest.mark.parametrize("etas", [200, 2000])
def test_the_positions_remembered_as_the_panels_own_are_only_those_that_can_still_echo(ip, run, monkeypatch, etas):
    """A schedule sets eta every chunk for hours: what the slider remembers stays bounded by what
    was shown within ECHO_S, however many etas were shown before."""
    import tfmagic.widgets.controls as controls_module

    res, controls = _controls(ip, run)
    clock = [0.0]
    monkeypatch.setattr(controls_module.time, "monotonic", lambda: clock[0])
    rng = np.random.default_rng(etas)
    for eta in 10 ** rng.uniform(-4, 0, etas):
        clock[0] += 0.05
        controls.show_eta(float(eta))
    window = int(controls_module.ECHO_S / 0.05)
    assert len(controls._shown) <= window
    assert all(clock[0] - t < controls_module.ECHO_S for t in controls._shown.values())
