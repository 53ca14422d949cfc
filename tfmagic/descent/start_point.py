"""Where the next run starts, when a caller (the panel's click on the loss picture) picks it:
a start request the next reset takes up. Facts only: a refused start is a BadStart naming
the variable and why (present/messages.py words it)."""

import math

import numpy as np


class BadStart(ValueError):
    """A start the engine refuses: `why` is "unknown" (no such variable), "not_scalar" (it has
    more than one element) or "not_finite" (NaN or inf)."""

    def __init__(self, name, why, value=None):
        super().__init__(name, why, value)
        self.name, self.why, self.value = name, why, value


class StartPoint:
    """Mixed into the engine (descent/engine.py) before Settings: its reset takes up a pending start."""

    start_request = None  # name -> value (the variable's dtype) the next reset starts from, or None

    def set_start(self, values: dict) -> dict:
        """The next reset (the panel's Reset, or Play/Step after a click) starts at `values`
        (name -> number, for one-element variables; the others keep their start). Returns
        them as the variables hold them (cast to each variable's dtype); raises BadStart."""
        start = {}
        for name, value in values.items():
            var = self.variables.get(name)
            if var is None:
                raise BadStart(name, "unknown")
            if var.shape.num_elements() != 1:
                raise BadStart(name, "not_scalar")
            try:
                number = float(np.asarray(value, np.float64).reshape(()))
            except (TypeError, ValueError):
                raise BadStart(name, "not_finite", value) from None
            with np.errstate(over="ignore"):  # (too large for the dtype: refused below)
                cast = np.asarray(number, var.dtype.as_numpy_dtype)
            if not (math.isfinite(number) and np.isfinite(cast)):  # (also a float16 overflow)
                raise BadStart(name, "not_finite", value)
            start[name] = cast
        self.start_request = {**(self.start_request or {}), **start}
        return dict(start)

    @property
    def start_pending(self) -> bool:
        return bool(self.start_request)

    def reset(self, device=None, start=None):
        request, self.start_request = self.start_request, None
        if request and start is None:
            start = request
        super().reset(device=device, start=start)
