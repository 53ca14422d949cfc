#!/usr/bin/env python
"""What a cell's first run costs: the whole %%descend cell against a hand-written cell that
records the loss every step, both from a fresh start (issue 14, item 2).

One process, interleaved, medians of REPEATS runs, for each problem and step count:
  descend   the whole `%%descend NAMES --steps N --no-widgets` cell through IPython (parse,
            set-up, trace, run, publish, the printed summary), its text changed each time so
            nothing is reused from an earlier run (descent/reuse.py)
  recorded  a new tf.function that runs N steps in a graph loop and writes each step's loss to
            a TensorArray, as a person would write it to plot the loss; the faster of with and
            without XLA (jit_compile), each traced and compiled afresh
Target: descend <= 1.5x recorded at 50, 1 000 and 200 000 steps.

    python benchmarks/bench_first_run.py [--quick]     (~4 minutes; --quick P1 and P5, ~1)
"""

import itertools
import os
import statistics
import sys
import time
from contextlib import redirect_stdout
from io import StringIO

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, os.path.dirname(__file__))
from bench_descent import tf  # noqa: E402
from bench_rerun import run_plan, shell_for  # noqa: E402

REPEATS = 3
TARGET = 1.5
_fresh = itertools.count()


def recorded_run(p, n, jit):
    """A fresh hand-written loop that records the loss each step; seconds, the loss array read back."""
    t0 = time.perf_counter()
    vs = list(p.make_vars().values())
    loss = p.loss_fn(dict(zip(p.init, vs)))

    @tf.function(jit_compile=jit)
    def loop(n):
        losses = tf.TensorArray(tf.float32, size=n)
        for i in tf.range(n):
            with tf.GradientTape() as tape:
                y = loss()
            losses = losses.write(i, y)
            for v, g in zip(vs, tape.gradient(y, vs)):
                v.assign_sub(p.eta * g)
        return losses.stack()

    loop(tf.constant(n)).numpy()
    [v.numpy() for v in vs]
    return time.perf_counter() - t0


def bench(p, sizes):
    ip = shell_for(p)
    rows = []
    for n in sizes:
        d, plain, xla = [], [], []
        for _ in range(REPEATS):
            cell = p.cell + "\n" + "#" * (1 + next(_fresh) % 50) + f" {next(_fresh)}"  # a new cell each time
            line = f"{' '.join(p.specs)} --eta {p.eta:g} --steps {n} --no-widgets"
            t0 = time.perf_counter()
            with redirect_stdout(StringIO()):
                res = ip.run_cell_magic("descend", line, cell)
            d.append(time.perf_counter() - t0)
            assert not res.engine.reused
            plain.append(recorded_run(p, n, False))
            xla.append(recorded_run(p, n, True))
        best = min((statistics.median(plain), "graph"), (statistics.median(xla), "graph, XLA"))
        rows.append(dict(problem=p.key, steps=n, descend=statistics.median(d), recorded=best[0], way=best[1]))
        r = rows[-1]
        print(f"  {p.key} {n:>7,}: descend {r['descend'] * 1e3:7.1f} ms, recorded ({r['way']}) "
              f"{r['recorded'] * 1e3:7.1f} ms, ratio {r['descend'] / r['recorded']:.2f}", file=sys.stderr, flush=True)
    return rows


def main(argv=None):
    rows = run_plan(bench, argv, (50, 1000, 20_000))
    print(f"\n| problem | steps | whole `%%descend` cell, ms | hand-written recording loop, ms | ratio (target ≤ {TARGET}) |")
    print("|---|---|---|---|---|")
    for r in rows:
        flag = "" if r["descend"] / r["recorded"] <= TARGET else " **miss**"
        print(f"| {r['problem']} | {r['steps']:,} | {r['descend'] * 1e3:.1f} | {r['recorded'] * 1e3:.1f} ({r['way']}) | "
              f"{r['descend'] / r['recorded']:.2f}{flag} |")
    print(f"\nMedians of {REPEATS} fresh runs each, interleaved.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
