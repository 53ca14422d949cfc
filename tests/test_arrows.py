"""The optimizer's arrows on the 2-D loss surface (issue 26 §4): at the current point, the
negative gradient (k times, a 1-2-5 number the legend says) and, for every optimizer but plain
sgd, the step it last took (x_t - x_(t-1), measured here independently of the engine); the
checkbox hides them."""

import math

import numpy as np
import pytest

from tfmagic.descent.optimizers import OPTIMIZERS
from tfmagic.widgets import arrows as A

from test_panel import make_panel, until

CELL = "loss = (x - 0.5) ** 2 + c * (y + 0.25) ** 2 + 0.1 * x * y"


def shaft(arrows, row):
    """(x0, y0, x1, y1) of an arrow's shaft (row 0 the gradient's, 1 the step's) as the front end
    gets it; None when not drawn (the mark hidden, or all the row's points at its tail)."""
    x, y = np.asarray(arrows.mark.x)[row], np.asarray(arrows.mark.y)[row]
    if not arrows.mark.visible or (np.all(x == x[0]) and np.all(y == y[0])):
        return None
    return (x[0], y[0], x[1], y[1])


def gradient_at(ip, c):
    tf = ip.user_ns["tf"]
    x, y = ip.user_ns["x"], ip.user_ns["y"]
    with tf.GradientTape() as tape:
        loss = (x - 0.5) ** 2 + c * (y + 0.25) ** 2 + 0.1 * x * y
    return [float(g) for g in tape.gradient(loss, [x, y])]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_the_arrows_are_the_gradient_and_the_step_taken(ip, run, optimizer):
    rng = np.random.default_rng(OPTIMIZERS.index(optimizer))
    for _ in range(3):
        x0, y0 = rng.uniform(-3, 3, size=2)
        c, eta, steps = float(rng.uniform(0.5, 5)), float(10 ** rng.uniform(-3, -1.3)), int(rng.integers(2, 40))
        ip.user_ns["c"] = c
        res, runner, panel = make_panel(ip, run, line=f"x={x0:.3f} y={y0:.3f} --eta {eta} --optimizer {optimizer}",
                                        cell=CELL)
        engine = res.engine
        engine.run(steps - 1)
        before = [float(ip.user_ns[n].numpy()) for n in ("x", "y")]
        engine.run(1)
        now = [float(ip.user_ns[n].numpy()) for n in ("x", "y")]
        panel.refresh()
        arrows = panel.arrows
        window = panel.charts.picture.window
        spans = window[1] - window[0], window[3] - window[2]

        g = gradient_at(ip, c)
        k = arrows.gradient.k
        assert shaft(arrows, 0) == pytest.approx(
            (now[0], now[1], now[0] - k * g[0], now[1] - k * g[1]), rel=1e-5, abs=1e-5 * max(spans))
        assert k == A.one_two_five(k)
        assert A.FEW <= k * math.hypot(g[0] / spans[0], g[1] / spans[1]) <= A.MANY
        assert f"−gradient ×{k:g}" in arrows.legend.value

        if optimizer == "sgd":
            assert shaft(arrows, 1) is None and "step taken" not in arrows.legend.value
            continue
        s = k_s = arrows.step.k
        step = [b - a for a, b in zip(before, now)]
        assert shaft(arrows, 1) == pytest.approx(
            (now[0], now[1], now[0] + k_s * step[0], now[1] + k_s * step[1]), rel=1e-5, abs=1e-5 * max(spans))
        assert f"step taken ×{s:g}" in arrows.legend.value


def test_the_checkbox_hides_the_arrows_and_they_follow_the_run(ip, run, loop):
    ip.user_ns["c"] = 2.0

    async def scenario():
        res, runner, panel = make_panel(ip, run, line="x=-2.0 y=1.5 --eta 0.02 --optimizer momentum", cell=CELL)
        panel.refresh()
        arrows = panel.arrows
        assert shaft(arrows, 0) is None  # no point evaluated yet: nothing to draw
        res.engine.run(5)
        panel.refresh()
        first = shaft(arrows, 0)
        assert first is not None and shaft(arrows, 1) is not None
        assert arrows.mark.visible

        arrows.toggle.value = False  # (what the front end's click on the checkbox sets)
        assert not arrows.mark.visible
        assert arrows.legend.layout.visibility == "hidden"
        res.engine.run(20)
        panel.refresh()
        assert not arrows.mark.visible and tuple(np.asarray(arrows.mark.x)[0, :2]) == first[::2]  # hidden: not pushed

        arrows.toggle.value = True
        await until(lambda: shaft(arrows, 0) not in (None, first))
        assert arrows.mark.visible and arrows.legend.layout.visibility is None
        assert shaft(arrows, 0)[:2] == pytest.approx([float(ip.user_ns[n].numpy()) for n in ("x", "y")])

    loop.run_until_complete(scenario())


def test_arrow_heads_and_scales():
    for k in (1e-7, 0.003, 0.5, 1, 3.7, 9.99, 10, 4.2e5):
        r = A.one_two_five(k)
        mantissa = r / 10 ** math.floor(math.log10(r) + 1e-12)
        assert any(abs(mantissa - m) < 1e-9 for m in (1, 2, 5)), (k, r)
        assert k / 2.5 - 1e-12 < r <= k * (1 + 1e-9)
    xs, ys = A.arrow_lines((1.0, 2.0), (0.5, -0.25), (4.0, 2.0))
    assert xs.shape == ys.shape == (5,)
    assert (xs[0], ys[0], xs[1], ys[1]) == (1.0, 2.0, 1.5, 1.75)
    assert xs[3] == 1.5 and ys[3] == 1.75  # the head's sides meet at the tip
    sides = [np.hypot((xs[i] - 1.5) / 4.0, (ys[i] - 1.75) / 2.0) for i in (2, 4)]
    assert sides[0] == pytest.approx(sides[1]) and 0 < sides[0] <= A.HEAD[1] + 1e-12
