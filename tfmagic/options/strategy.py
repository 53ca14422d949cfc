"""--strategy S: the tf.distribute.Strategy a %%descend runs under, checked before anything changes.

`mirrored` is MirroredStrategy over the GPUs, else over the CPUs TensorFlow shows
(several once the user configured logical CPUs); `multiworker` is
MultiWorkerMirroredStrategy from TF_CONFIG. Each is made once per kernel and kept:
variables made in one strategy's scope belong to it, and TensorFlow allows one
multi-worker strategy per process.
"""

from IPython.core.error import UsageError

NAMED = ("mirrored", "multiworker")
_made = {}


def _make(tf, name):
    from tfmagic.descent.replicas import quiet_tf_logs

    if name not in _made:
        with quiet_tf_logs(tf):  # ("INFO: Using MirroredStrategy with devices ...": the status line says it)
            _made[name] = _new(tf, name)
    return _made[name]


def _new(tf, name):
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy([d.name for d in gpus or tf.config.list_logical_devices("CPU")])
    return tf.distribute.MultiWorkerMirroredStrategy()


def strategy_for(name, namespace, tf):
    """The strategy of --strategy NAME (None without it). (What it excludes: exclusions.py.)"""
    if not name:
        return None
    value = namespace.get(name)
    if isinstance(value, tf.distribute.Strategy):
        return value
    if name in NAMED:
        try:
            return _make(tf, name)
        except (ValueError, RuntimeError) as err:
            raise UsageError(f"--strategy {name}: TensorFlow could not make it: {err}") from None
    what = f"{name} is a {type(value).__name__}" if name in namespace else f"name '{name}' is not defined"
    raise UsageError(f"--strategy {name}: {what}; give mirrored, multiworker, or the name of a "
                     "tf.distribute.Strategy, e.g. strategy = tf.distribute.MirroredStrategy()")
