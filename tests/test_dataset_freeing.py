"""Freeing the iterator of a run on a tf.data.Dataset does not freeze the kernel.

With tf.data's autotuning on, freeing an iterator waited for its tuning thread, which sleeps
longer and longer between rounds (up to a minute). The runs' iterators are freed when Python
collects them, at any later line: a test worker froze for 78 s inside a later test's tracing,
and a collection that freed 20 of them took 19 s."""

import gc
import time

import numpy as np
import pytest

CELL = "loss = tf.reduce_mean((tf.linalg.matvec(xb, w) - yb) ** 2)"
PIPELINES = {
    "shuffled, batched, prefetched": "tf.data.Dataset.from_tensor_slices((X, Y)).shuffle(64).batch(8).prefetch(2)",
    "mapped in parallel, autotuned": "tf.data.Dataset.from_tensor_slices((X, Y)).batch(8).map(lambda x, y: (2 * x, y), "
                                     "num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)",
    "a generator": "tf.data.Dataset.from_generator(lambda: ((X[8 * i:8 * i + 8], Y[8 * i:8 * i + 8]) for i in range(80)), "
                   "output_signature=(tf.TensorSpec([None, 2]), tf.TensorSpec([None])))",
}


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_iterators_left_to_the_garbage_collector_are_freed_at_once(ip, pipeline):
    rng = np.random.default_rng(0)
    ip.user_ns["X"] = rng.normal(size=(640, 2)).astype(np.float32)
    ip.user_ns["Y"] = ip.user_ns["X"] @ np.array([1.5, -2.0], np.float32)
    gc.collect()
    gc.disable()  # (so the runs' iterators wait for the collection below, as between a kernel's collections)
    try:
        for _ in range(8):
            ip.run_cell(f"g = {PIPELINES[pipeline]}")
            fit = ip.run_cell_magic("descend", "w=tf.zeros([2]) --data xb,yb=g --steps 30 --no-widgets", CELL)
            assert fit.steps == 30 and fit.status == "max_steps", fit.message
        fit = None
        ip.run_cell("del g")
        time.sleep(6)  # (the tuning thread's sleeps have grown to seconds)
        started = time.perf_counter()
        gc.collect()
        seconds = time.perf_counter() - started
    finally:
        gc.enable()
    assert seconds < 3.0, f"freeing 8 runs' iterators took {seconds:.1f} s"


def test_a_pipeline_keeps_its_own_options(ip):
    """Only the tuning is turned off: what the user set on the dataset stays."""
    ip.user_ns["X"] = np.linspace(-1, 1, 40, dtype=np.float32).reshape(20, 2)
    ip.user_ns["Y"] = np.linspace(0, 1, 20, dtype=np.float32)
    ip.run_cell("o = tf.data.Options(); o.deterministic = True; o.experimental_slack = True\n"
                "g = tf.data.Dataset.from_tensor_slices((X, Y)).batch(4).with_options(o)")
    from tfmagic.descent.dataset_stream import _flagged

    tf = ip.user_ns["tf"]
    options = _flagged(tf, ip.user_ns["g"]).options()
    assert options.autotune.enabled is False
    assert options.deterministic is True and options.experimental_slack is True
    fit = ip.run_cell_magic("descend", "w=tf.zeros([2]) --data xb,yb=g --epochs 2 --no-widgets", CELL)
    assert fit.steps == 10 and np.all(np.isfinite(fit.history["loss"]))


def test_every_iterator_over_the_users_datasets_is_untuned(ip, monkeypatch):
    """The validation pass iterates the dataset in Python: freeing its iterator waited for the
    tuning thread too (2.4 s after a 2.7 s pass, measured)."""
    from tensorflow.python.data.ops import iterator_ops

    seen = []
    made = iterator_ops.OwnedIterator.__init__

    def recording(self, dataset=None, **kwargs):
        seen.append(dataset.options().autotune.enabled)
        made(self, dataset=dataset, **kwargs)

    monkeypatch.setattr(iterator_ops.OwnedIterator, "__init__", recording)
    rng = np.random.default_rng(1)
    ip.user_ns["X"] = rng.normal(size=(96, 2)).astype(np.float32)
    ip.user_ns["Y"] = ip.user_ns["X"] @ np.array([1.5, -2.0], np.float32)
    ip.run_cell("train = tf.data.Dataset.from_tensor_slices((X[:64], Y[:64])).shuffle(64).batch(8).prefetch(tf.data.AUTOTUNE)\n"
                "val = tf.data.Dataset.from_tensor_slices((X[64:], Y[64:])).batch(8).prefetch(tf.data.AUTOTUNE)")
    fit = ip.run_cell_magic("descend", "w=tf.zeros([2]) --data xb,yb=train --validate xb,yb=val --epochs 3 --no-widgets", CELL)
    assert fit.steps == 24 and len(fit.epochs["val_loss"]) == 3 and np.all(np.isfinite(fit.epochs["val_loss"]))
    assert seen and all(enabled is False for enabled in seen), seen  # (one iterator a validation pass, each untuned)
