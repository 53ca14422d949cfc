"""--jit on never compiles per chunk or per epoch (issue 27): XLA's own count of its
compilations, read from TensorFlow's log (device_compiler's "Instantly compiling" line at
vmodule level 2) in a fresh process, is bounded and does not grow with the epochs, the chunk
sizes, a run that goes on, an eta changed between chunks, or a re-run of the same cell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from IPython.testing.globalipapp import get_ipython

    n, batch, epochs, validate = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    ip = get_ipython()
    ip.run_line_magic("load_ext", "tfmagic")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    Y = (X @ rng.normal(size=6).astype(np.float32) > 0).astype(np.int64)
    ip.user_ns.update(X=X, Y=Y, XV=X[:40], YV=Y[:40])
    ip.run_cell("import tensorflow as tf, keras\\nmodel = keras.Sequential([keras.Input((6,)), "
                "keras.layers.Dense(12, activation='relu'), keras.layers.Dense(2)])")
    line = (f"model --data X,Y --batch-size {batch} --epochs {epochs} --optimizer adam --eta 0.01 "
            f"--jit on --no-widgets --seed 0 -o r" + (" --validate XV,YV" if validate else ""))
    cell = "loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(Y, model(X), from_logits=True))"

    def mark(name):
        sys.stderr.flush()
        sys.stderr.write(f"@@{name}\\n")
        sys.stderr.flush()

    out = {}
    mark("fresh")
    r = ip.run_cell_magic("descend", line, cell)
    out["fresh"] = [r.status, r.steps]
    engine = r.engine
    mark("goes on")
    for steps in (1, 5, 3 * engine.epoch_steps + 1, 40 * engine.epoch_steps, 7):  # chunks of every size
        engine.run(steps)
    out["goes on"] = [engine.status.value, engine.steps]
    mark("eta")
    for eta in (0.02, 0.005):
        engine.eta = eta
        engine.run(2 * engine.epoch_steps + 3)
    out["eta"] = [engine.status.value, engine.steps]
    mark("re-run")
    r = ip.run_cell_magic("descend", line, cell)
    out["re-run"] = [r.status, r.steps]
    mark("end")
    print(json.dumps(out))
""")


def compilations(n, batch, epochs, validate):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "TF_CPP_VMODULE": "device_compiler=2",
           "PYTHONPATH": os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(n), str(batch), str(epochs), "1" if validate else "0"],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads(done.stdout.strip().splitlines()[-1])
    counts, segment = {}, None
    for text in done.stderr.splitlines():
        if text.startswith("@@"):
            segment = text[2:]
            counts[segment] = 0
        elif segment and "Instantly compiling" in text:
            counts[segment] += 1
    assert set(counts) == {"fresh", "goes on", "eta", "re-run", "end"}, counts  # (the log was read)
    return runs, counts


@pytest.mark.parametrize("n,batch,validate", [(441, 32, True), (100, 25, False), (37, 8, True)],
                         ids=["a short last batch, validated", "batches that divide the data", "a last batch of 5"])
def test_xla_compiles_a_bounded_number_of_times_whatever_the_epochs_and_chunks(n, batch, validate):
    runs, counts = compilations(n, batch, 2, validate)
    epoch_steps = -(-n // batch)
    assert runs["fresh"] == ["max_steps", 2 * epoch_steps] and runs["re-run"] == ["max_steps", 2 * epoch_steps], runs
    assert runs["goes on"][1] == runs["fresh"][1] + 43 * epoch_steps + 14, runs  # (43 epochs more, in chunks of every size)
    assert 1 <= counts["fresh"] <= 2, counts  # the epoch loop (and nothing per batch shape)
    assert counts["goes on"] == counts["eta"] == 0, counts  # not per chunk, per epoch, nor per eta
    assert counts["re-run"] <= counts["fresh"], counts
