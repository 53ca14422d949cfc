"""--strategy in JupyterLab, as a person sees it: a strategy that found one device says in the
panel's status line that nothing is spread, and no TensorFlow log line lands in the cell."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

CELLS = [
    # (TensorFlow's native lines let through, as in a kernel without tfmagic's import-time setting)
    "import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '0'\n%load_ext tfmagic",
    "import tensorflow as tf, numpy as np\nX = np.random.default_rng(0).normal(size=(64, 2)).astype('float32')\n"
    "Y = X @ np.array([1.0, -2.0], 'float32')",
    "%%descend w=tf.zeros([2]) --data X,Y --batch-size 16 --steps 400 --strategy mirrored -o fit\n"
    "loss = tf.reduce_mean((tf.linalg.matvec(X, w) - Y) ** 2)",
    "print('DONE', fit.status, fit.device)",
]


def test_one_replica_says_nothing_is_spread_and_no_tensorflow_line_shows(lab):
    name = "strategy.ipynb"
    lab.run_all_with_sidebar(name, CELLS)
    done = lab.wait_for_output(name, 3, "DONE", timeout_ms=180_000)
    assert "DONE max_steps 1 replica (MirroredStrategy found one device: nothing is spread" in done
    streams = "".join("".join(o["text"]) if isinstance(o["text"], list) else o["text"]
                      for o in lab.cell_outputs(name, 2) if o.get("output_type") == "stream")
    assert "tensorflow" not in streams and "W0000" not in streams and "I0000" not in streams, streams
    status = lab.cell(name, 2).locator(".tfmagic-status")
    lab.poll(lambda: "max_steps" in status.inner_text(), 30, "the status line's last redraw")
    assert "1 replica (MirroredStrategy found one device: nothing is spread" in status.inner_text()
    lab.element_screenshot(lab.cell(name, 2), "strategy-one-replica")
