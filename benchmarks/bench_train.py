#!/usr/bin/env python
"""Training on mini-batches: `%%descend --data` against Keras's `model.fit`, in one process.

The same model (a 64-64-10 MLP on scikit-learn's digits, 1 437 training images), batch 64,
adam 1e-3, 5 epochs. Every way starts from the same weights.

  steady    steps/s of 50 more epochs once everything is compiled
  end2end   wall seconds of 5 epochs from a fresh start (tracing and compiling paid):
            %%descend through IPython (parse, set-up, run, result) or compile() + fit()

Ways: descend (text mode), and model.fit with steps_per_execution 1 (Keras's default) or 100,
each with jit_compile True and False. Medians of --repeats interleaved runs.

Goals (issue 15): steady >= 5x fit's default and >= 1.5x fit's best; end to end >= 1.5x the best fit.

    python benchmarks/bench_train.py [--repeats R]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from IPython.core.interactiveshell import InteractiveShell  # noqa: E402

from tfmagic.runtime.tfimport import tensorflow  # noqa: E402

tf = tensorflow()
import keras  # noqa: E402

EPOCHS, BATCH = 5, 64
STEADY_EPOCHS = 50  # "steady": this many more epochs once compiled
CELL = "loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(Y, model(X), from_logits=True))"


def data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X, _, Y, _ = train_test_split(digits.data / 16.0, digits.target, test_size=0.2, random_state=0)
    return X.astype("float32"), Y


def new_model(weights=None):
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
    if weights is not None:
        model.set_weights(weights)
    return model


def fit_way(X, Y, weights, spe, jit):
    def end2end():
        model = new_model(weights)
        t0 = time.perf_counter()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=spe, jit_compile=jit,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(X, Y, batch_size=BATCH, epochs=EPOCHS, verbose=0, shuffle=True)
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.fit(X, Y, batch_size=BATCH, epochs=STEADY_EPOCHS, verbose=0, shuffle=True)
        return seconds, time.perf_counter() - t0

    return end2end


def descend_way(shell, weights):
    def end2end():
        shell.user_ns["model"] = new_model(weights)
        t0 = time.perf_counter()
        fit = shell.run_cell_magic(
            "descend", f"model --data X,Y --batch-size {BATCH} --epochs {EPOCHS} --optimizer adam --eta 1e-3 --no-widgets",
            CELL)
        seconds = time.perf_counter() - t0
        engine = fit.engine
        engine.run(STEADY_EPOCHS * engine.epoch_steps)  # (a run this long builds its longer-run loop once)
        t0 = time.perf_counter()
        engine.run(STEADY_EPOCHS * engine.epoch_steps)
        return seconds, time.perf_counter() - t0

    return end2end


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    X, Y = data()
    steps = EPOCHS * -(-len(X) // BATCH)
    weights = new_model().get_weights()
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "tfmagic")
    shell.user_ns.update(tf=tf, X=X, Y=Y)
    import contextlib
    import io

    ways = {"descend --data": descend_way(shell, weights)}
    for spe in (1, 100):
        for jit in (False, True):
            ways[f"model.fit spe={spe} jit={'on' if jit else 'off'}"] = fit_way(X, Y, weights, spe, jit)
    times = {name: [] for name in ways}
    for _ in range(args.repeats):  # interleaved: drift in machine load hits every way
        for name, way in ways.items():
            with contextlib.redirect_stdout(io.StringIO()):
                times[name].append(way())
    rows = {name: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)) for name, ts in times.items()}
    default = rows["model.fit spe=1 jit=on"]
    best_steady = min(r[1] for n, r in rows.items() if n.startswith("model.fit"))
    best_e2e = min(r[0] for n, r in rows.items() if n.startswith("model.fit"))
    print(f"{len(X)} images, batch {BATCH}, {EPOCHS} epochs = {steps} steps; medians of {args.repeats}")
    print("| way | end to end, s | steady steps/s |")
    print("|---|---|---|")
    steady_steps = STEADY_EPOCHS * steps // EPOCHS
    for name, (e2e, steady) in rows.items():
        print(f"| {name} | {e2e:.2f} | {steady_steps / steady:,.0f} |")
    d = rows["descend --data"]
    print(f"steady: descend / fit default = {default[1] / d[1]:.1f}x (goal >= 5), "
          f"/ best fit = {best_steady / d[1]:.2f}x (goal >= 1.5); "
          f"end to end: best fit / descend = {best_e2e / d[0]:.2f}x (goal >= 1.5)")


if __name__ == "__main__":
    main()
