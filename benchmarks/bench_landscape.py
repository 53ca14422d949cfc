#!/usr/bin/env python
"""What --landscape costs: the time to its 11x11 preview and to its 41x41 grid, from a fresh
Landscape (traced and compiled anew, as in a new cell), for 64-h-h-10 MLPs of about 10 000,
50 000 and 100 000 parameters, the loss on 512 samples (full batch). Baseline in the same
process, interleaved: a hand-written loop over the same points, assigning the variables from
numpy and calling the cell's loss compiled (tf.function), as one would write it; medians.

    python benchmarks/bench_landscape.py [--repeats R]
"""

import argparse
import statistics
import time

import numpy as np
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

WIDTHS = (69, 189, 280)  # hidden widths: 10 015, 50 095 and 99 690 parameters
CELL = "loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(Y, model(X), from_logits=True))"


def hand_loop(tf, land, n):
    """The grid by hand: each point's variables assigned from numpy, the loss compiled."""
    variables = list(land.engine.variables.values())
    loss = tf.function(land.engine.full_loss_fn)
    ax = land.axis(n)
    out = np.empty((n, n), np.float32)
    saved = [v.numpy() for v in variables]
    for i, b in enumerate(ax):
        for j, a in enumerate(ax):
            for v, s, x, y in zip(variables, land.start, land.d1, land.d2):
                v.assign(s + a * x + b * y)
            out[i, j] = loss().numpy()
    for v, s in zip(variables, saved):
        v.assign(s)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "tfmagic")
    from tfmagic.descent.landscape import FINE, PREVIEW, Landscape
    from tfmagic.runtime.tfimport import tensorflow

    tf = tensorflow()
    print("| model (parameters) | 11x11, s | 41x41, s | hand loop 11x11 / 41x41, s | ratio 41x41 to the hand loop |")
    print("|---|---|---|---|---|")
    for h in WIDTHS:
        ip.run_cell(f"import numpy as np, keras\nkeras.utils.set_random_seed(0)\n"
                    "X = np.random.default_rng(0).normal(size=(512, 64)).astype('float32')\n"
                    "Y = np.random.default_rng(1).integers(0, 10, 512)\n"
                    f"model = keras.Sequential([keras.Input((64,)), keras.layers.Dense({h}, activation='relu'), "
                    f"keras.layers.Dense({h}, activation='relu'), keras.layers.Dense(10)])")
        with capture_output():
            res = ip.run_cell_magic("descend", "model --steps 1 --no-widgets", CELL)
        engine = res.engine
        times = {"preview": [], "fine": [], "hand preview": [], "hand fine": []}
        for r in range(args.repeats):
            t0 = time.perf_counter()
            land = Landscape(tf, engine, seed=r)
            land.grid(PREVIEW)
            times["preview"].append(time.perf_counter() - t0)
            land.grid(FINE)
            times["fine"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            hand_loop(tf, land, PREVIEW)
            times["hand preview"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            hand = hand_loop(tf, land, FINE)
            times["hand fine"].append(time.perf_counter() - t0)
            np.testing.assert_allclose(land.grids[FINE], hand, rtol=1e-3)  # (the same numbers)
        m = {k: statistics.median(v) for k, v in times.items()}
        print(f"| 64-{h}-{h}-10 ({land.parameters:,}) | {m['preview']:.2f} | {m['fine']:.2f} | "
              f"{m['hand preview']:.2f} / {m['hand fine']:.2f} | {m['fine'] / m['hand fine']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
