#!/usr/bin/env python
"""What --logdir costs a run: the same %%descend cell through IPython (text mode, a re-run, so
its compiled steps are reused), with and without --logdir, interleaved in one process; medians.

    python benchmarks/bench_logdir.py [--repeats R]

Without --logdir nothing is attached to the engine (no code runs in the loop).
"""

import argparse
import statistics
import tempfile
import time

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

CASES = [  # (label, names, cell, steps)
    ("P1 course", "x=10.0 --eta 0.001", "y = x * x - 4.0 * x + 4.0", (50, 1000, 20_000, 200_000)),
    ("P2 Rosenbrock", "a=-1.5 b=2.0 --eta 1e-4", "f = (1.0 - a) ** 2 + 100.0 * (b - a * a) ** 2", (50, 1000, 20_000)),
    ("P3 least squares 4096x256", "w=tf.zeros([256]) --eta 0.01",
     "loss = tf.reduce_mean(tf.square(tf.linalg.matvec(A, w) - t))", (50, 1000)),
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "tfmagic")
    ip.run_cell("import numpy as np, tensorflow as tf\nrng = np.random.default_rng(0)\n"
                "A = tf.constant(rng.standard_normal((4096, 256)).astype(np.float32))\n"
                "t = tf.constant(rng.standard_normal(4096).astype(np.float32))")
    logdir = tempfile.mkdtemp()
    print("| problem | steps | without, ms | with --logdir, ms | ratio |\n|---|---|---|---|---|")
    for label, names, cell, lengths in CASES:
        for steps in lengths:
            times = {"": [], f" --logdir {logdir}": []}
            for _ in range(2):  # warm: traced, and the writer's function compiled
                for extra in times:
                    with capture_output():
                        ip.run_cell_magic("descend", f"{names} --steps {steps}{extra}", cell)
            for _ in range(args.repeats):
                for extra in times:
                    t0 = time.perf_counter()
                    with capture_output():
                        ip.run_cell_magic("descend", f"{names} --steps {steps}{extra}", cell)
                    times[extra].append(time.perf_counter() - t0)
            without, with_ = (statistics.median(v) * 1e3 for v in times.values())
            print(f"| {label} | {steps} | {without:.1f} | {with_:.1f} | {with_ / without:.2f} |", flush=True)


if __name__ == "__main__":
    main()
