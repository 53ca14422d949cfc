"""Records of the tensors a cell makes and reads: what the UI's table shows."""

from dataclasses import dataclass

from tfmagic.runtime.devices import short as short_device


@dataclass(frozen=True)
class TensorRecord:
    name: str
    kind: str  # 'variable', 'tensor' or 'constant' (a Python/numpy value baked in)
    shape: tuple
    dtype: str
    device: str

    @property
    def shape_text(self):
        return "scalar" if self.shape == () else "×".join(str(d) for d in self.shape)


def record(tf, name, value):
    """A TensorRecord for `value`, or None when it is not tensor-like."""
    import numpy as np

    if isinstance(value, tf.Variable):
        kind, device = "variable", value.device
    elif tf.is_tensor(value):
        kind, device = "tensor", getattr(value, "device", "")
    elif isinstance(value, (np.ndarray, np.generic, int, float)) and not isinstance(value, bool):
        arr = np.asarray(value)
        return TensorRecord(name, "constant", tuple(arr.shape), str(arr.dtype), "host")
    else:
        return None
    shape = tuple(value.shape.as_list()) if value.shape.rank is not None else ()
    return TensorRecord(name, kind, shape, value.dtype.name, short_device(device))


def table(tf, reads, namespace, variables, assigned):
    """The tensor table of a cell: what it reads, the variables it works on (a model's as
    model/dense/kernel), what it assigns; name -> TensorRecord."""
    tensors = {}
    for name, value in [(n, namespace.get(n)) for n in reads] + list(variables.items()) + list(assigned.items()):
        rec = record(tf, name, value)
        if rec:
            tensors[name] = rec
    return tensors
