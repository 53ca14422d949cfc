#!/usr/bin/env python
"""What the click-to-start marker and the optimizer's arrows (issue 26 §3, §4) add to one
live chart push: the panel's refresh (every chart, the status line), each message serialised
as a kernel comm would (bench_ui's stand-in comm), with and without them, interleaved in one
process; the run advances a few steps between pushes, so the arrows move and are sent.

    python benchmarks/bench_picture_push.py [--pushes N]
"""

import argparse
import asyncio
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import bench_ui  # noqa: E402  (replaces the comm first)

from tfmagic.descent.engine import Descent  # noqa: E402
from tfmagic.kernel.runner import LiveRunner  # noqa: E402

tf = bench_ui.tf


def problems():
    x = tf.Variable(10.0)
    yield "P1 x^2-4x+4 (curve), sgd", (lambda: x * x - 4.0 * x + 4.0), {"x": x}, 0.001, "sgd"
    for optimizer in ("sgd", "momentum", "adam"):
        a, b = tf.Variable(-1.5), tf.Variable(2.0)
        yield (f"P2 Rosenbrock (surface), {optimizer}", (lambda a=a, b=b: (1.0 - a) ** 2 + 100.0 * (b - a * a) ** 2),
               {"a": a, "b": b}, 1e-4, optimizer)


async def measure(engine, pushes):
    runner = LiveRunner(engine)
    panel = bench_ui.make_panel(engine, runner)
    engine.unobserve(panel._on_chunk)  # (pushed here, one at a time)
    extras = panel.start_clicks, panel.arrows
    engine.run(50)
    panel.refresh()
    times = {False: [], True: []}
    for i in range(2 * pushes):
        with_extras = bool(i % 2)
        panel.start_clicks, panel.arrows = extras if with_extras else (None, None)
        engine.run(3)
        t0 = time.perf_counter()
        panel.refresh()
        times[with_extras].append(time.perf_counter() - t0)
    runner.detach()
    return statistics.median(times[False]), statistics.median(times[True])


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=200)
    args = parser.parse_args()
    print("| problem | push without (ms) | with marker and arrows (ms) | ratio |")
    print("|---|---|---|---|")
    for label, loss_fn, variables, eta, optimizer in problems():
        engine = Descent(tf, loss_fn, variables, eta=eta, optimizer=optimizer)
        before, after = await measure(engine, args.pushes)
        print(f"| {label} | {1e3 * before:.2f} | {1e3 * after:.2f} | {after / before:.2f} |")
    print(f"(medians of {args.pushes} interleaved pushes each)")


if __name__ == "__main__":
    asyncio.run(main())
