"""One worker of tests/test_strategy.py's multi-worker run: TF_CONFIG comes from the
environment; prints the trained variable as JSON on its last line."""

import json
import sys

import numpy as np
from IPython.core.interactiveshell import InteractiveShell

ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "tfmagic")
ip.run_cell("import tensorflow as tf")
rng = np.random.default_rng(0)
ip.user_ns["X"] = rng.normal(size=(100, 3)).astype(np.float32)
ip.user_ns["Y"] = ip.user_ns["X"] @ np.array([1.0, -2.0, 0.5], np.float32)
res = ip.run_cell_magic("descend", f"w=tf.zeros([3]) {sys.argv[1]} --no-widgets",
                        "loss = tf.reduce_mean((tf.linalg.matvec(X, w) - Y) ** 2)")
print(json.dumps({"w": ip.user_ns["w"].numpy().tolist(), "loss": res.history["loss"].tolist(),
                  "device": res.device, "status": res.status}))
