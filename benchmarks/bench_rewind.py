#!/usr/bin/env python
"""What `engine.rewind(k)` costs (descent/rewind.py), against running those k steps.

A rewind restores the last snapshot kept at or before k (one per chunk start, thinned to a memory
budget) and replays the recorded chunks from there. One process; for each problem a run of N steps,
then rewind(k) for k across the run, interleaved with runs of k steps from the start (the
baseline: what replaying from step 0 would cost); medians of REPEATS. Reports seconds and the
ratio rewind / run of k steps, and the snapshots kept.

    PYTHONPATH=. python benchmarks/bench_rewind.py [--repeats 5]
"""

import argparse
import contextlib
import io
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROBLEMS = {
    "course parabola, sgd (P1)": ("x=10.0 --eta 0.0001", "y = tf.pow(x, 2.0) - 4.0 * x + 4.0", 200_000, ""),
    "Rosenbrock 2-D, adam (P2)": ("x=-1.5 y=2.0 --eta 0.001 --optimizer adam",
                                  "f = (1 - x)**2 + 100.0 * (y - x**2)**2", 200_000, ""),
    "2-64-64-1 tanh MLP on 1024 points, adam, --data batch 64 (P4)": (
        "model --eta 0.001 --optimizer adam --data X,Y --batch-size 64 --seed 1",
        "loss = tf.reduce_mean(tf.square(model(X)[:, 0] - Y))", 5_000,
        "keras.utils.set_random_seed(0)\nmodel = keras.Sequential([keras.Input((2,)), keras.layers.Dense(64, "
        "activation='tanh'), keras.layers.Dense(64, activation='tanh'), keras.layers.Dense(1)])"),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import numpy as np
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "tfmagic")
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (1024, 2)).astype(np.float32)
    ip.user_ns.update(tf=tf, keras=keras, X=X, Y=np.sin(3 * X[:, 0]) * X[:, 1])
    print(f"{'problem':64s} {'k':>8s} {'rewind s':>9s} {'run k s':>9s} {'ratio':>6s}")
    for name, (line, cell, n, setup) in PROBLEMS.items():
        if setup:
            ip.run_cell(setup)
        with contextlib.redirect_stdout(io.StringIO()):
            res = ip.run_cell_magic("descend", f"{line} --steps {n} --no-widgets", cell)
            engine = res.engine
            kept = sum(s.saved is not None for s in engine.timeline.segments)
            chunks = len(engine.timeline.segments)
            for k in (n // 10, n // 4, n // 2, 3 * n // 4, n - 1):
                back, ahead = [], []
                for _ in range(args.repeats):
                    engine.rewind(n)  # (back at the end: each rewind replays from its snapshot)
                    t = time.perf_counter()
                    engine.rewind(k)
                    back.append(time.perf_counter() - t)
                    engine.run(n - k)
                    engine.reset()  # the baseline: k steps from the start (the same compiled steps)
                    t = time.perf_counter()
                    engine.run(k)
                    ahead.append(time.perf_counter() - t)
                    engine.run(n - k)
                b, a = statistics.median(back), statistics.median(ahead)
                print(f"{name:64s} {k:8d} {b:9.4f} {a:9.4f} {b / a:6.3f}", file=__import__("sys").__stdout__, flush=True)
        print(f"  {chunks} chunks, {kept} snapshots kept")


if __name__ == "__main__":
    main()
