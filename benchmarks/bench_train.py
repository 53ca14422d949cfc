#!/usr/bin/env python
"""Training on mini-batches: `%%descend --data` against Keras's `model.fit` and a hand-written XLA
loop, in one process, interleaved.

Problems (Adam 1e-3, the same starting weights for every way):
  cancer  scikit-learn's breast cancer, 441 training rows, a 30-64-2 MLP, batch 32 (a short last batch)
  digits  scikit-learn's digits, 1 437 training images, a 64-64-10 MLP, batch 64 (a short last batch)
  cnn     the digits as 8x8 images, Conv2D(16, 3) + Dense(10), batch 64
  wide    20 480 synthetic samples, a 784-256-256-10 MLP, batch 128 (compute per step dominates)

Measures:
  steady   steps/s between runs of A and 3A steps (A = --steady), once everything is compiled:
           the marginal rate, without the fixed costs of a call
  end2end  wall seconds of 5 epochs with validation from a fresh model, tracing and compiling paid:
           %%descend through IPython (parse, set-up, run, result), or compile() + fit()

Ways:
  descend            %%descend --data (--jit auto), and --jit on
  fit best           model.fit on a repeated, shuffled tf.data.Dataset, steps_per_execution=100,
                     the faster of jit_compile on and off (end to end: the best of the four fits)
  fit default        model.fit(X, Y), steps_per_execution=1, jit_compile on
  hand XLA           a tf.function(jit_compile=True) while loop gathering each batch in-graph (no
                     shuffling, no history): the machine's speed for these steps
  hand XLA + duties  the same loop doing what model.fit and %%descend do besides the steps: the
                     order shuffled each epoch (an argsort of random keys, as a hand-writer would;
                     the epoch's N mod B left-over samples dropped) and each step's loss kept in a
                     row (a fairness figure: how far the bare loop is from a loop that takes that care)

Medians of --repeats interleaved rounds, and of the per-round ratios.

    python benchmarks/bench_train.py [--repeats R] [--problems cancer,digits] [--quick] [--cpu]
"""

import argparse
import contextlib
import io
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402

from tfmagic.runtime.tfimport import tensorflow  # noqa: E402

tf = tensorflow()
import keras  # noqa: E402

EPOCHS = 5
MODES = {}  # "rows jit" -> the loop each round's steady runs ended in ("xla", "plain")
CELL = "loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(Y, model(X), from_logits=True))"


def problem(name):
    """(X, Y, Xv, Yv, batch, new_model(weights=None))"""
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(0)
    if name == "cancer":
        d = load_breast_cancer()
        X = ((d.data - d.data.mean(0)) / d.data.std(0)).astype("float32")
        X, Xv, Y, Yv = train_test_split(X, d.target, train_size=441, random_state=0)
        layers, shape, batch = [keras.layers.Dense(64, activation="relu"), keras.layers.Dense(2)], (30,), 32
    elif name in ("digits", "cnn"):
        d = load_digits()
        X, Xv, Y, Yv = train_test_split((d.data / 16.0).astype("float32"), d.target, test_size=0.2, random_state=0)
        batch = 64
        if name == "digits":
            layers, shape = [keras.layers.Dense(64, activation="relu"), keras.layers.Dense(64, activation="relu"),
                             keras.layers.Dense(10)], (64,)
        else:
            X, Xv = X.reshape(-1, 8, 8, 1), Xv.reshape(-1, 8, 8, 1)
            layers, shape = [keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.Flatten(),
                             keras.layers.Dense(10)], (8, 8, 1)
    else:
        W = rng.normal(size=(784, 10)).astype("float32")
        X = rng.normal(size=(20480 + 2048, 784)).astype("float32")
        Y = np.argmax(X @ W + rng.normal(size=(len(X), 10)), axis=1)
        X, Xv, Y, Yv = X[:20480], X[20480:], Y[:20480], Y[20480:]
        layers, shape, batch = [keras.layers.Dense(256, activation="relu"), keras.layers.Dense(256, activation="relu"),
                                keras.layers.Dense(10)], (784,), 128

    def new_model(weights=None):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input(shape)] + [type(la).from_config(la.get_config()) for la in layers])
        if weights is not None:
            model.set_weights(weights)
        return model

    return X, Y.astype("int64"), Xv, Yv.astype("int64"), batch, new_model


CLOCK = [time.perf_counter]  # --cpu: the process's CPU time (less swayed by other processes' load)


def marginal(run, steady):
    """steps/s between a run of `steady` steps and one of 3x as many."""
    clock = CLOCK[0]
    t0 = clock()
    run(steady)
    a = clock() - t0
    t0 = clock()
    run(3 * steady)
    return 2 * steady / max(clock() - t0 - a, 1e-9)


def descend_way(shell, prob, weights, jit, steady):
    X, Y, Xv, Yv, batch, new_model = prob
    line = f"model --data X,Y --batch-size {batch} --optimizer adam --eta 1e-3 --no-widgets --jit {jit}"

    def go():
        shell.user_ns.update(X=X, Y=Y, Xv=Xv, Yv=Yv, model=new_model(weights))
        t0 = time.perf_counter()
        shell.run_cell_magic("descend", f"{line} --epochs {EPOCHS} --validate Xv,Yv", CELL)
        e2e = time.perf_counter() - t0
        engine = shell.run_cell_magic("descend", f"{line} --steps {steady}", CELL).engine  # (no validation)
        rate = marginal(engine.run, steady)
        MODES.setdefault(f"{len(X)} {jit}", []).append(engine._compiled.policy.mode)  # (auto: XLA's verdict)
        return e2e, rate

    return go


def fit_way(prob, weights, spe, jit, steady):
    X, Y, Xv, Yv, batch, new_model = prob

    def go():
        model = new_model(weights)
        t0 = time.perf_counter()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=spe, jit_compile=jit,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(X, Y, batch_size=batch, epochs=EPOCHS, validation_data=(Xv, Yv), verbose=0, shuffle=True)
        e2e = time.perf_counter() - t0
        data = tf.data.Dataset.from_tensor_slices((X, Y)).shuffle(len(X), seed=0).batch(batch).repeat()
        model.fit(data, steps_per_epoch=spe * 3, epochs=1, verbose=0, shuffle=False)  # (warm)
        return e2e, marginal(lambda n: model.fit(data, steps_per_epoch=n, epochs=1, verbose=0, shuffle=False), steady)

    return go


def hand_step(prob, weights):
    """(batch, n, step(index) -> loss): one Adam step on the rows `index`, as a hand-writer writes it."""
    X, Y, _, _, batch, new_model = prob
    model = new_model(weights)
    opt = keras.optimizers.Adam(1e-3)
    opt.build(model.trainable_variables)
    Xd, Yd = tf.constant(X), tf.constant(Y)

    def step(index):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                tf.gather(Yd, index), model(tf.gather(Xd, index)), from_logits=True))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    return batch, len(X), step


def hand_way(prob, weights, steady):
    batch, n, step = hand_step(prob, weights)

    @tf.function(jit_compile=True)
    def loop(steps, start):
        def body(i):
            step((tf.range(batch) + i * batch) % n)
            return (i + 1,)
        return tf.while_loop(lambda i: i < start + steps, body, [start])

    loop(tf.constant(10), tf.constant(0))
    return lambda: (float("nan"), marginal(lambda k: loop(tf.constant(k), tf.constant(0)), steady))


def hand_duties_way(prob, weights, steady):
    """hand_way's loop, shuffling each epoch and keeping each step's loss."""
    batch, n, step = hand_step(prob, weights)
    full = n // batch  # full batches an epoch
    losses = tf.Variable(tf.zeros([1 << 16]))

    @tf.function(jit_compile=True)
    def loop(steps):
        def epoch(i, e):
            order = tf.argsort(tf.random.stateless_uniform([n], tf.stack([0, e])))

            def body(i, k):
                loss = step(tf.gather(order, tf.range(batch) + k * batch))
                losses.scatter_nd_update(tf.reshape(i % (1 << 16), [1, 1]), tf.reshape(loss, [1]))
                return i + 1, k + 1
            i, _ = tf.while_loop(lambda i, k: (k < full) & (i < steps), body, [i, tf.constant(0)])
            return i, e + 1
        return tf.while_loop(lambda i, e: i < steps, epoch, [tf.constant(0), tf.constant(0)])

    loop(tf.constant(10))
    return lambda: (float("nan"), marginal(lambda k: loop(tf.constant(k)), steady))


def bench(name, repeats, steady, shell):
    prob = problem(name)
    weights = prob[5]().get_weights()
    ways = {"descend": descend_way(shell, prob, weights, "auto", steady),
            "descend --jit on": descend_way(shell, prob, weights, "on", steady),
            "hand XLA": hand_way(prob, weights, steady), "hand XLA + duties": hand_duties_way(prob, weights, steady)}
    for spe in (1, 100):
        for jit in (False, True):
            ways[f"fit spe={spe} jit={'on' if jit else 'off'}"] = fit_way(prob, weights, spe, jit, steady)
    got = {w: [] for w in ways}
    for _ in range(repeats):  # interleaved: drift in machine load hits every way
        for way, go in ways.items():
            with contextlib.redirect_stdout(io.StringIO()):
                got[way].append(go())
    med = {w: (statistics.median(e for e, _ in v), statistics.median(s for _, s in v)) for w, v in got.items()}

    def best_fit(i, per_round=False):
        fits = [w for w in got if w.startswith("fit spe=100")]
        if per_round:
            return [max(got[w][r][1] for w in fits) for r in range(repeats)]
        return max(med[w][i] for w in fits)

    fit_best = best_fit(1, per_round=True)
    hand = [s for _, s in got["hand XLA"]]
    best_e2e = min(med[w][0] for w in got if w.startswith("fit"))
    print(f"\n## {name}: {len(prob[0])} samples, batch {prob[4]}, medians of {repeats}")
    print("| way | 5 epochs + validation, s | steady steps/s |")
    print("|---|---|---|")
    for w, (e2e, s) in med.items():
        print(f"| {w} | {'' if np.isnan(e2e) else f'{e2e:.2f}'} | {s:,.0f} |")
    print("loops the steady runs ended in:", {k: v for k, v in MODES.items() if k.startswith(f"{len(prob[0])} ")})
    duties = [s for _, s in got["hand XLA + duties"]]
    print(f"hand XLA + duties / hand XLA = {statistics.median(d / h for d, h in zip(duties, hand)):.2f}")
    for w in ("descend", "descend --jit on"):
        mine = [s for _, s in got[w]]
        print(f"{w}: steady / hand XLA + duties = {statistics.median(m / d for m, d in zip(mine, duties)):.2f}")
        print(f"{w}: steady / hand XLA = {statistics.median(m / h for m, h in zip(mine, hand)):.2f} (goal >= 0.8), "
              f"/ fit best = {statistics.median(m / f for m, f in zip(mine, fit_best)):.1f}x (goal >= 3); "
              f"end to end: fit best / descend = {best_e2e / med[w][0]:.2f}x (goal >= 2)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--problems", default="cancer,digits,cnn,wide")
    parser.add_argument("--quick", action="store_true", help="shorter steady runs (noisier)")
    parser.add_argument("--cpu", action="store_true", help="steady rates in the process's CPU time (fair to the "
                        "single-threaded XLA loops; fit's threads count in full)")
    args = parser.parse_args()
    if args.cpu:
        CLOCK[0] = time.process_time
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "tfmagic")
    shell.user_ns.update(tf=tf, keras=keras)
    for name in args.problems.split(","):
        steady = {"wide": 300}.get(name, 2000)
        bench(name, args.repeats, steady // 2 if args.quick else steady, shell)


if __name__ == "__main__":
    main()
