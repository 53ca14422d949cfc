#!/usr/bin/env python
"""What --sharpness K costs a run: the same %%descend cell with and without it.

The examples' MLPs (and the sharpness lesson's), each cell run through IPython with
--no-widgets, re-runs (each timed cell was run once before), interleaved in one process:
  plain   `%%descend model ... --steps N --no-widgets`
  sharp   the same with `--sharpness K` (K = 100 unless --every)
Two ways: each cell on a new model (the steps and λ's Lanczos both traced again), and re-runs of
the cell on the same model put back to its first weights (the tweak-and-re-run loop: both reuse
what they compiled). Reports the medians of REPEATS pairs and the overhead sharp/plain - 1
(target: <= 10 % at K = 100), and the Hessian-vector products each measurement took.

    PYTHONPATH=. python benchmarks/bench_sharpness.py [--repeats 5] [--every 100]
"""

import argparse
import contextlib
import io
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SETUP = """
import numpy as np, keras, tensorflow as tf
from sklearn.datasets import load_digits
digits = load_digits()
rng = np.random.default_rng(0)
t = rng.uniform(0, np.pi, 400)
moons = np.concatenate([np.stack([np.cos(t), np.sin(t)], 1), np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1)])
Xm = (moons + rng.normal(0, 0.1, moons.shape)).astype('float32')
Ym = np.concatenate([np.zeros(400), np.ones(400)]).astype('float32')[:, None]
Xd, Yd = (digits.data / 16.0).astype('float32'), digits.target
X5 = Xd[:500]; Y5 = np.eye(10, dtype='float32')[Yd[:500]]
"""

MODELS = {
    "moons": "keras.Sequential([keras.Input((2,)), keras.layers.Dense(16, activation='tanh'), "
             "keras.layers.Dense(16, activation='tanh'), keras.layers.Dense(1)])",
    "digits": "keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation='relu'), "
              "keras.layers.Dense(64, activation='relu'), keras.layers.Dense(10)])",
    "lesson": "keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation='tanh'), keras.layers.Dense(10)])",
}

# (name, model, the line after the names, the cell): first_network.ipynb, train_digits.ipynb, sharpness.ipynb
PROBLEMS = [
    ("first_network: 2-16-16-1 tanh, 800 points, adam", "moons", "--optimizer adam --eta 0.01 --steps 1500",
     "loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=Ym, logits=model(Xm)))"),
    ("train_digits: 64-64-64-10 relu, --data batch 64, adam", "digits",
     "--data Xd,Yd --batch-size 64 --optimizer adam --eta 0.001 --steps 2000 --seed 0",
     "loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(Yd, model(Xd), from_logits=True))"),
    ("sharpness lesson: 64-32-10 tanh, 500 digits, sgd", "lesson", "--eta 0.05 --steps 3000",
     "loss = tf.reduce_mean(tf.reduce_sum((model(X5) - Y5) ** 2, axis=1)) / 2"),
]


def timed(ip, model, line, cell, fresh=True):
    """One cell run, seconds: on a new model (fresh: everything traced again), or the same model put
    back to its first weights (a re-run of the cell: its compiled steps, and λ's, reused)."""
    if fresh or "model" not in ip.user_ns:
        ip.run_cell(f"keras.utils.set_random_seed(0)\nmodel = {MODELS[model]}\nweights0 = model.get_weights()")
    else:
        ip.run_cell("model.set_weights(weights0)")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        t0 = time.perf_counter()
        ip.run_cell_magic("descend", f"model {line} --no-widgets -o bench_run", cell)
        seconds = time.perf_counter() - t0
    return seconds, ip.user_ns["bench_run"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--every", type=int, default=100)
    args = parser.parse_args()
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "tfmagic")
    ip.run_cell(SETUP)
    print(f"--sharpness {args.every}: medians of {args.repeats} interleaved pairs, seconds")
    print("| problem | steps | cell on a new model: plain / sharp / overhead | re-run of the cell: plain / sharp / "
          "overhead | products per measurement |")
    print("|---|---|---|---|---|")
    for label, model, line, cell in PROBLEMS:
        sharp_line = f"{line} --sharpness {args.every}"
        row = []
        for fresh in (True, False):
            ip.user_ns.pop("model", None)
            timed(ip, model, line, cell, fresh), timed(ip, model, sharp_line, cell, fresh)  # (the first runs trace)
            plain, sharp, ratios = [], [], []
            for _ in range(args.repeats):
                a, _ = timed(ip, model, line, cell, fresh)
                b, run = timed(ip, model, sharp_line, cell, fresh)
                plain.append(a), sharp.append(b), ratios.append(b / a)
            row.append(f"{statistics.median(plain):.3f} / {statistics.median(sharp):.3f} / "
                       f"{100 * (statistics.median(ratios) - 1):+.1f} %")
        log = run.sharpness_log
        per = log.products / max(len(log.steps), 1)
        print(f"| {label} | {run.steps} | {row[0]} | {row[1]} | {per:.1f} |", flush=True)


if __name__ == "__main__":
    main()
