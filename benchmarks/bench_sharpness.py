#!/usr/bin/env python
"""What --sharpness K costs a run: the same %%descend cell with and without it.

The examples' MLPs (and the sharpness lesson's), each cell run through IPython with
--no-widgets, interleaved in one process (each arm run once before the timed ones):
  plain   `%%descend model ... --steps N --no-widgets`
  sharp   the same with `--sharpness K` (K = 100 unless --every)
  ends    the same, its measurements skipped (Lanczos.largest returns at once): what the copies of
          the variables at each multiple of K cost alone (the loops' copies, descent/marks.py, and
          the swaps in and out around each measurement; a chunk end where a loop cannot copy)
Two ways: each cell on a new model (the steps and λ's product both traced again), and re-runs of
the cell on the same model put back to its first weights (the tweak-and-re-run loop: both reuse
what they compiled). Reports the medians of REPEATS triples: the overheads sharp/plain - 1
(target: <= 10 % at K = 100) and ends/plain - 1, in wall time and in the process's CPU time;
the seconds spent measuring λ (Lanczos.largest) against the plain run's; the Hessian-vector
products each measurement took; how many of a new model's runs the chunk policy switched to
XLA; and the load average before and after (the machine may be shared).

    PYTHONPATH=. python benchmarks/bench_sharpness.py [--repeats 5] [--every 100]

With --rows: how far λ of the loss on S fixed rows is from λ of all 1 437 rows along a
train_digits run (adam 0.001, batch 64, 2000 steps, measured every 100), and what a product
costs, for S = 128 ... 1024 (the rows of seed 0, as a run takes them, and of seeds 0-5).
With --accuracy: λ as recorded at each mark of the examples' runs against a cold, tightly converged λ
(ARPACK) of all rows and of the rows λ is of. With --lambda-ab: measuring λ alone at each mark, as a
re-run measures it, as main at 5b4069b did (default executor, warm TOL 0.03, a cold first λ) and now,
interleaved on the same points.
"""

import argparse
import contextlib
import io
import os
import statistics
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SETUP = """
import numpy as np, keras, tensorflow as tf
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
digits = load_digits()
rng = np.random.default_rng(0)
t = rng.uniform(0, np.pi, 400)
moons = np.concatenate([np.stack([np.cos(t), np.sin(t)], 1), np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1)])
Xm = (moons + rng.normal(0, 0.1, moons.shape)).astype('float32')
Ym = np.concatenate([np.zeros(400), np.ones(400)]).astype('float32')[:, None]
Xd, _, Yd, _ = train_test_split(digits.data / 16.0, digits.target, test_size=0.2, random_state=0)  # (train_digits')
Xd = Xd.astype('float32')
X5 = (digits.data[:500] / 16.0).astype('float32'); Y5 = np.eye(10, dtype='float32')[digits.target[:500]]
"""

MODELS = {
    "moons": "keras.Sequential([keras.Input((2,)), keras.layers.Dense(16, activation='tanh'), "
             "keras.layers.Dense(16, activation='tanh'), keras.layers.Dense(1)])",
    "digits": "keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation='relu'), "
              "keras.layers.Dense(64, activation='relu'), keras.layers.Dense(10)])",
    "lesson": "keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation='tanh'), "
              "keras.layers.Dense(64, activation='tanh'), keras.layers.Dense(10)])",
}

# (name, model, the line after the names, the cell): first_network.ipynb, train_digits.ipynb, sharpness.ipynb
PROBLEMS = [
    ("first_network: 2-16-16-1 tanh, 800 points, adam", "moons", "--optimizer adam --eta 0.01 --steps 1500",
     "loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=Ym, logits=model(Xm)))"),
    ("train_digits: 64-64-64-10 relu, --data 1437 rows, batch 64, adam", "digits",
     "--data Xd,Yd --batch-size 64 --optimizer adam --eta 0.001 --steps 2000 --seed 0",
     "loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(Yd, model(Xd), from_logits=True))"),
    ("sharpness lesson: 64-64-64-10 tanh, 500 digits, sgd", "lesson", "--eta 0.05 --steps 3000",
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
        t0, c0 = time.perf_counter(), time.process_time()
        ip.run_cell_magic("descend", f"model {line} --no-widgets -o bench_run", cell)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return (seconds, cpu), ip.user_ns["bench_run"]


def over(took, arm, k):
    """The median of the ratios of `arm`'s times to each triple's plain run (k: 0 wall, 1 CPU), as a percentage."""
    return f"{100 * (statistics.median(t[k] / p[k] for p, t in zip(took['plain'], took[arm])) - 1):+.1f} %"


def rows_table(sizes=(128, 256, 512, 768, 1024), seeds=range(6)):
    import keras
    import numpy as np
    import tensorflow as tf

    from tfmagic.descent.sharpness import Lanczos

    space = {}
    exec(SETUP, space)
    X, Y = tf.constant(space["Xd"]), tf.constant(space["Yd"])
    n = int(X.shape[0])
    keras.utils.set_random_seed(0)
    model = eval(MODELS["digits"], {"keras": keras})
    optimizer = keras.optimizers.Adam(0.001)

    def loss_on(rows):
        x, y = tf.gather(X, rows), tf.gather(Y, rows)
        return lambda: tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True))

    lanczos = {(s, seed): Lanczos(tf, loss_on(np.sort(np.random.default_rng(seed).choice(n, s, replace=False))),
                                  model.trainable_variables) for s in sizes for seed in seeds}
    whole = Lanczos(tf, loss_on(np.arange(n)), model.trainable_variables)

    @tf.function
    def step(rows):
        with tf.GradientTape() as tape:
            loss = loss_on(rows)()
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    rng, off, done = np.random.default_rng(0), {k: [] for k in lanczos}, 0
    for at in range(0, 2001, 100):
        while done < at:
            order = rng.permutation(n)
            for i in range(0, n, 64):
                if done < at:
                    step(tf.constant(order[i:i + 64]))
                    done += 1
        lam = whole.largest(afresh=True)[0]
        for k, each in lanczos.items():
            off[k].append(each.largest(afresh=True)[0] / lam - 1)

    def per_product(each):  # (ms, median of 60 calls)
        vector, took = tf.constant(each._start, tf.float32), []
        for _ in range(61):
            t0 = time.perf_counter()
            each._product(vector).numpy()
            took.append(time.perf_counter() - t0)
        return statistics.median(took[1:]) * 1e3

    print(f"λ of S fixed rows against λ of all {n} rows along a train_digits run (every 100 steps to 2000):")
    print("| rows S | seed 0's rows: median, max | rows of seeds 0-5: median, max | a product |")
    print("|---|---|---|---|")
    for s in sizes:
        first, every = np.abs(off[(s, 0)]), np.abs([off[(s, seed)] for seed in seeds])
        print(f"| {s} | {100 * np.median(first):.1f} %, {100 * first.max():.1f} % | {100 * np.median(every):.1f} %, "
              f"{100 * every.max():.1f} % | {per_product(lanczos[(s, 0)]):.2f} ms |")
    print(f"| all {n} | | | {per_product(whole):.2f} ms |")


def reference_lambda(tf, loss_fn, variables):
    """λ of `loss_fn` at the variables' values, converged tightly from a cold start (scipy's ARPACK on
    the same Hessian-vector product, tol 1e-9): the yardstick of --accuracy."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    from tfmagic.descent.sharpness import Lanczos

    hvp = Lanczos(tf, loss_fn, variables)
    product = tf.function(hvp._hvp)
    apply = lambda v: product(tf.constant(np.ravel(v), tf.float32)).numpy().astype(np.float64)  # noqa: E731
    operator = LinearOperator((hvp.dim, hvp.dim), matvec=apply, dtype=np.float64)
    return float(eigsh(operator, k=1, which="LA", tol=1e-9, v0=np.ones(hvp.dim))[0][0])


ACCURACY_RUNS = PROBLEMS + [("sharpness lesson, eta 0.02", "lesson", "--eta 0.02 --steps 3000", PROBLEMS[2][3])]


def run_with_points(ip, model, line, cell, every):
    """A --sharpness `every` run of the cell on a new model, and the values of its variables at each λ it
    recorded (the copy a loop kept, or where the run was), in order."""
    from tfmagic.descent import sharpness

    measure, points = sharpness.Sharpness._measure, []

    def measuring(self, engine, step=None):
        before = len(self.values)
        values = [v.numpy() for v in engine.variables.values()]
        measure(self, engine, step)
        if len(self.values) > before:
            points.append(values)

    sharpness.Sharpness._measure = measuring
    try:
        return timed(ip, model, f"{line} --sharpness {every}", cell)[1], points
    finally:
        sharpness.Sharpness._measure = measure


def accuracy_table(every):
    """λ as --sharpness records it at each mark of the examples' runs against a cold, tightly converged λ
    of the whole loss there (all rows of a --data run) and of the loss λ is of (its fixed rows)."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "tfmagic")
    ip.run_cell(SETUP)
    tf = ip.user_ns["tf"]
    print(f"{time.strftime('%Y-%m-%d %H:%M')}; --sharpness {every}: λ recorded at each mark against a cold λ "
          "converged to 1e-9 (ARPACK), |λ/λ* - 1|")
    print("| run | marks | against all rows: median, max | against the rows λ is of: median, max | "
          "products per measurement |")
    print("|---|---|---|---|---|")
    for label, model, line, cell in ACCURACY_RUNS:
        run, points = run_with_points(ip, model, line, cell, every)
        engine, log = run.engine, run.sharpness_log
        variables = list(engine.variables.values())
        now = [v.numpy() for v in variables]
        on_rows = log._lanczos.loss_fn
        off_all, off_rows = [], []
        with tf.device(engine.device):
            for values, lam in zip(points, log.values):
                for v, x in zip(variables, values):
                    v.assign(x)
                whole = reference_lambda(tf, engine.full_loss_fn, variables)
                off_all.append(abs(lam / whole - 1))
                sample = whole if on_rows is engine.full_loss_fn else reference_lambda(tf, on_rows, variables)
                off_rows.append(abs(lam / sample - 1))
        for v, x in zip(variables, now):
            v.assign(x)
        print(f"| {label.split(':')[0]}, {line} | {len(points)} | {100 * np.median(off_all):.2f} %, "
              f"{100 * np.max(off_all):.2f} % | {100 * np.median(off_rows):.3f} %, {100 * np.max(off_rows):.3f} % | "
              f"{log.products / max(len(log.steps), 1):.2f} |", flush=True)


def lambda_ab(repeats):
    """Measuring λ alone, before (main at 5b4069b: the default executor, warm TOL 0.03 for all, every run's first
    λ from a random start) and now, interleaved on the same points: each problem's marks, as a --sharpness 100 run
    kept them, measured in order as a re-run of the cell measures them (wall and CPU seconds, medians)."""
    from IPython.core.interactiveshell import InteractiveShell

    from tfmagic.descent import sharpness
    from tfmagic.descent.callopts import lean_options

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "tfmagic")
    ip.run_cell(SETUP)
    tf = ip.user_ns["tf"]
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.1f}; measuring λ at each mark of a "
          f"re-run, before / now, medians of {repeats} interleaved")
    print("| problem | marks | products before / now | wall ms before / now | CPU ms before / now | plain run, s |")
    print("|---|---|---|---|---|---|")
    for label, model, line, cell in PROBLEMS:
        run, points = run_with_points(ip, model, line, cell, 100)
        plain = [timed(ip, model, line, cell, fresh=False)[0][0] for _ in range(5)]  # (a --data cell's first
        plain = statistics.median(plain[2:])  # two re-runs trace again)
        engine, now = run.engine, run.sharpness_log._lanczos
        variables = list(engine.variables.values())
        before = sharpness.Lanczos(tf, now.loss_fn, variables, engine.device)  # (warm TOL 0.03)
        before._options, before._single_threaded = lean_options(tf, single_threaded=False), False
        took = {"before": [], "now": []}
        for round_ in range(repeats + 1):  # (round 0: before's trace and first call, not timed)
            for arm, lanczos in (("before", before), ("now", now)):
                if arm == "before":
                    lanczos._known.clear()  # (before kept none)
                wall = cpu = products = 0
                for i, values in enumerate(points):
                    for v, x in zip(variables, values):
                        v.assign(x)
                    t0, c0 = time.perf_counter(), time.process_time()
                    products += lanczos.largest(afresh=i == 0)[1]
                    wall, cpu = wall + time.perf_counter() - t0, cpu + time.process_time() - c0
                if round_:
                    took[arm].append((wall, cpu, products))
        for v, x in zip(variables, points[-1]):
            v.assign(x)
        med = {arm: [statistics.median(t[k] for t in took[arm]) for k in range(3)] for arm in took}
        print(f"| {label} | {len(points)} | {med['before'][2]:.0f} / {med['now'][2]:.0f} | "
              f"{1e3 * med['before'][0]:.1f} / {1e3 * med['now'][0]:.1f} | {1e3 * med['before'][1]:.1f} / "
              f"{1e3 * med['now'][1]:.1f} | {plain:.3f} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--only", type=int, nargs="*", help="the problems' indices (0-2) to run")
    parser.add_argument("--rows", action="store_true", help="λ of a --data run's fixed rows against all rows")
    parser.add_argument("--accuracy", action="store_true", help="λ at each mark against a converged λ")
    parser.add_argument("--lambda-ab", action="store_true", help="measuring λ alone, as before and now, interleaved")
    args = parser.parse_args()
    if args.lambda_ab:
        return lambda_ab(args.repeats)
    if args.rows:
        return rows_table()
    if args.accuracy:
        return accuracy_table(args.every)
    from IPython.core.interactiveshell import InteractiveShell

    from tfmagic.descent.sharpness import Lanczos

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "tfmagic")
    ip.run_cell(SETUP)
    measured = Lanczos.largest

    in_lambda = [0.0]  # seconds the sharp run spent measuring λ

    def measuring(self, afresh=False):
        t0 = time.perf_counter()
        try:
            return measured(self, afresh)
        finally:
            in_lambda[0] += time.perf_counter() - t0

    def timed_arm(arm, model, line, cell, fresh):
        Lanczos.largest = measuring if arm != "ends" else (lambda self, afresh=False: (0.0, 0))
        in_lambda[0] = 0.0
        try:
            return timed(ip, model, line if arm == "plain" else f"{line} --sharpness {args.every}", cell, fresh)
        finally:
            Lanczos.largest = measured

    print(f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.1f}; --sharpness {args.every}: "
          f"medians of {args.repeats} interleaved triples; wall seconds, and the overheads also in the process's CPU time")
    print("| problem | cell | plain / sharp, s | overhead: wall, CPU | seeing the points alone: wall, CPU | measuring λ | "
          "products per measurement | λ of |")
    print("|---|---|---|---|---|---|---|---|")
    for i, (label, model, line, cell) in enumerate(PROBLEMS):
        if args.only and i not in args.only:
            continue
        for fresh in (True, False):
            ip.user_ns.pop("model", None)
            for _ in range(1 if fresh else 3):  # (the first runs trace; a --data cell's first two re-runs trace again)
                for arm in ("plain", "sharp", "ends"):
                    timed_arm(arm, model, line, cell, fresh)
            took, traced_again = {"plain": [], "sharp": [], "ends": []}, 0
            share = []  # λ's measurements' seconds against the plain run's
            xla = dict.fromkeys(took, 0)  # a new model's runs that compiled XLA on their way (the policy's switch)
            for _ in range(args.repeats):
                for arm in took:
                    times, result = timed_arm(arm, model, line, cell, fresh)
                    took[arm].append(times)
                    if arm == "sharp":
                        share.append(in_lambda[0] / took["plain"][-1][0])
                    traced_again += not fresh and not result.engine.reused
                    policy = result.engine._compiled.policy
                    xla[arm] += fresh and policy.xla_ran and policy.first_mode(result.steps) != "xla"
                    if arm == "sharp":
                        run = result

            log = run.sharpness_log
            samples = getattr(log, "samples", None)
            of = "the whole loss" if samples is None else "{:,} of {:,} rows".format(*samples)
            cell_was = "new model" if fresh else "re-run" + (f" ({traced_again} traced again)" if traced_again else "")
            if any(xla.values()):
                cell_was += " (switched to XLA: {plain}, {sharp}, {ends} of each arm's runs)".format(**xla)
            print(f"| {label}, {run.steps} steps | {cell_was} | {statistics.median(t[0] for t in took['plain']):.3f} / "
                  f"{statistics.median(t[0] for t in took['sharp']):.3f} | {over(took, 'sharp', 0)}, {over(took, 'sharp', 1)} | "
                  f"{over(took, 'ends', 0)}, {over(took, 'ends', 1)} | {100 * statistics.median(share):.1f} % | "
                  f"{log.products / max(len(log.steps), 1):.1f} | {of} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
