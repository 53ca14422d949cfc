"""A stand-in `tf` for the user's namespace that imports TensorFlow on first use.

`%load_ext tfmagic` must stay fast, yet the course's cells use `tf` right away.
The stand-in imports TensorFlow quietly on first attribute access and then puts
the real module in its place.
"""

import types


class LazyTensorFlow(types.ModuleType):
    def __init__(self, namespace):
        super().__init__("tensorflow", "TensorFlow, imported by tfmagic on first use")
        self._namespace = namespace

    def _load(self):
        from tfmagic.runtime.tfimport import tensorflow

        tf = tensorflow()
        if self._namespace.get("tf") is self:
            self._namespace["tf"] = tf
        return tf

    # Probes made by IPython's display and inspection machinery: answering them
    # must not import TensorFlow just because someone looked at `tf`.
    _PROBES = ("_repr_", "_ipython_", "__wrapped__", "__signature__", "__length_hint__", "_fields")

    def __getattr__(self, name):
        if name.startswith(self._PROBES):
            raise AttributeError(name)
        return getattr(self._load(), name)

    def __repr__(self):
        return "<module 'tensorflow' (imported by tfmagic on first use)>"
