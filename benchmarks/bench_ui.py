#!/usr/bin/env python
"""What the live panel costs the descent: steps/s with and without it, in one process.

Both runs go through the same LiveRunner (time-boxed chunks, a pause for the
frontend between them), so the ratio isolates the panel: its engine observer,
the status line, and the chart pushes, each serialised as ipywidgets would send
it to a browser (a stand-in comm does the JSON encoding; no browser is needed).

    python benchmarks/bench_ui.py [--seconds S] [--repeats R]

Target: with-panel / without >= 0.9 (the UI costs at most 10 % of steps/s); the same
ratio in steps per CPU-second of the process is printed beside it (steadier on a loaded machine).
The training problems (--data, a batch size, as bench_train.py's: breast cancer's
30-64-2 MLP and the digits' 64-64-10, Adam) run through the same runner, from a
cell run by IPython with --no-widgets (its result carries the epoch table the
panel draws). A second table times whole fixed-length runs, the panel's set-up (the
loss picture) included, on a cheap loss and on one over 1000x1000 constants.

    python benchmarks/bench_ui.py [--seconds S] [--repeats R] [--only P1,P2,P3,cancer,digits]
"""

import argparse
import asyncio
import json
import statistics
import time

import comm


class SerialisingComm(comm.DummyComm):
    """Does the encoding work a real kernel comm does, then drops the message."""

    sent_bytes = 0

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        json.dumps(data, default=str)
        SerialisingComm.sent_bytes += sum(memoryview(b).nbytes for b in (buffers or []))


comm.create_comm = lambda **kw: SerialisingComm(**kw)

import ipywidgets.widgets.widget as _widget  # noqa: E402  (after the comm is replaced)

_widget.comm.create_comm = comm.create_comm

import numpy as np  # noqa: E402

from tfmagic.runtime import devices  # noqa: E402
from tfmagic.descent.engine import Descent  # noqa: E402
from tfmagic.kernel.runner import LiveRunner  # noqa: E402
from tfmagic.descent.loss_grid import loss_grid_for  # noqa: E402
from tfmagic.runtime.tfimport import tensorflow  # noqa: E402

tf = tensorflow()


def problems():
    x = tf.Variable(10.0)
    yield "P1 x^2-4x+4 (curve)", (lambda: x * x - 4.0 * x + 4.0), {"x": x}, 0.001
    a, b = tf.Variable(-1.5), tf.Variable(2.0)
    yield "P2 Rosenbrock (surface)", (lambda: (1.0 - a) ** 2 + 100.0 * (b - a * a) ** 2), {"a": a, "b": b}, 1e-4
    rng = np.random.default_rng(0)
    A = tf.constant(rng.standard_normal((4096, 256)).astype(np.float32))
    t = tf.constant(rng.standard_normal(4096).astype(np.float32))
    w = tf.Variable(tf.zeros(256))
    yield "P3 least squares 4096x256 (norms)", (lambda: tf.reduce_mean(tf.square(tf.linalg.matvec(A, w) - t))), {"w": w}, 0.01


def fixed_problems():
    a, b = tf.Variable(-1.5), tf.Variable(2.0)
    yield "P2 Rosenbrock, 1000 steps", (lambda: (1.0 - a) ** 2 + 100.0 * (b - a * a) ** 2), {"a": a, "b": b}, 1e-4, 1000
    big = tf.random.uniform((1000, 1000), seed=1)
    p, q = tf.Variable(1.0), tf.Variable(2.0)
    yield ("P4 2 scalars, a 1000x1000 matmul, 100 steps",
           (lambda: tf.reduce_mean(tf.square(p * tf.matmul(big, big) - q))), {"p": p, "q": q}, 1e-6, 100)


def training_problems():
    """(label, the cell's result): bench_train.py's problems as %%descend --data cells."""
    import contextlib
    import io
    import sys
    from pathlib import Path

    import keras
    from IPython.core.interactiveshell import InteractiveShell

    sys.path.insert(0, str(Path(__file__).parent))
    import bench_train

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "tfmagic")
    for name, label in (("cancer", "breast cancer 30-64-2 MLP, --data batch 32"),
                        ("digits", "digits 64-64-10 MLP, --data batch 64")):
        X, Y, _, _, batch, new_model = bench_train.problem(name)
        shell.user_ns.update(tf=tf, keras=keras, X=X, Y=Y, model=new_model())
        line = f"model --data X,Y --batch-size {batch} --optimizer adam --eta 1e-3 --no-widgets --steps 3000"
        with contextlib.redirect_stdout(io.StringIO()):
            result = shell.run_cell_magic("descend", line, bench_train.CELL + f"  # {name}")
        yield label, result


def make_panel(engine, runner, result=None):
    from tfmagic.present.results import DescentResult
    from tfmagic.widgets.panel import DescentPanel

    curve, surface = loss_grid_for(tf, engine)
    names = {devices.short(n): n for n in devices.available(tf)}
    result = result or DescentResult(engine, {}, {}, "CPU:0", None)
    return DescentPanel(runner, result, 10**9, names, curve=curve, surface=surface)


async def timed_run(engine, with_panel, seconds, result=None):
    engine.reset()
    runner = LiveRunner(engine)
    panel = make_panel(engine, runner, result) if with_panel else None
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(runner.run(10**9))
    t0, c0 = loop.time(), time.process_time()
    await asyncio.sleep(seconds)
    runner.stop()
    await task
    elapsed, cpu = loop.time() - t0, time.process_time() - c0
    if panel is not None:
        engine.unobserve(panel._on_chunk)
    return engine.steps / elapsed, engine.steps / cpu


async def timed_steps(engine, with_panel, steps):
    """Wall seconds of a `steps`-step run, the panel's set-up included."""
    loop = asyncio.get_running_loop()
    engine.reset()
    t0 = loop.time()
    runner = LiveRunner(engine)
    panel = make_panel(engine, runner) if with_panel else None
    await runner.run(steps)
    elapsed = loop.time() - t0
    if panel is not None:
        engine.unobserve(panel._on_chunk)
    return elapsed


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="P1,P2,P3,cancer,digits", help="the problems to measure")
    args = parser.parse_args()
    wanted = args.only.split(",")
    runs = [(label, Descent(tf, loss_fn, variables, eta=eta), None) for label, loss_fn, variables, eta in problems()
            if label.split()[0] in wanted]
    runs += [(label, result.engine, result) for label, result in training_problems()
             if {"breast": "cancer"}.get(label.split()[0], label.split()[0]) in wanted]
    rows = []
    for label, engine, result in runs:
        await timed_run(engine, True, args.seconds, result)  # warm-up: traces, XLA verdict, chart set-up
        plain, ui = [], []
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits both
            plain.append(await timed_run(engine, False, args.seconds, result))
            ui.append(await timed_run(engine, True, args.seconds, result))
        rows.append((label, *([statistics.median(r[i] for r in runs) for i in (0, 1)] for runs in (plain, ui))))
    print("| problem | steps/s without panel | steps/s with panel | ratio | steps per CPU-second: ratio | target |")
    print("|---|---|---|---|---|---|")
    for label, plain, ui in rows:
        ratio = ui[0] / plain[0]
        print(f"| {label} | {plain[0]:,.0f} | {ui[0]:,.0f} | {ratio:.2f} | {ui[1] / plain[1]:.2f} "
              f"| >= 0.9 {'ok' if ratio >= 0.9 else 'MISS'} |")
    print(f"(medians of {args.repeats} interleaved {args.seconds:g}-second runs; "
          f"{SerialisingComm.sent_bytes / 1e6:.1f} MB of chart buffers serialised in all)")

    print()
    print("| whole run, set-up included | s without panel | s with panel | without / with | target |")
    print("|---|---|---|---|---|")
    for label, loss_fn, variables, eta, steps in fixed_problems():
        engine = Descent(tf, loss_fn, variables, eta=eta)
        await timed_steps(engine, True, steps)  # warm-up
        plain, ui = [], []
        for _ in range(args.repeats):
            plain.append(await timed_steps(engine, False, steps))
            ui.append(await timed_steps(engine, True, steps))
        ratio = statistics.median(plain) / statistics.median(ui)
        print(f"| {label} | {statistics.median(plain):.3f} | {statistics.median(ui):.3f} | {ratio:.2f} "
              f"| >= 0.9 {'ok' if ratio >= 0.9 else 'MISS'} |")


if __name__ == "__main__":
    asyncio.run(main())
