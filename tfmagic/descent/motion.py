"""How the point moves, as the arrows on the loss surface show it: the gradient the engine
carries at the current point, and the step the optimizer last took (the difference of the
last two points, exact for every optimizer: momentum's velocity, Adam's scaled step)."""

import numpy as np


class Motion:
    """Mixed into the engine (descent/engine.py); reads its carried state and history."""

    def gradient_now(self) -> dict | None:
        """name -> the loss's gradient at the current point (float), for one-element variables;
        None before a run evaluated the point, or when no gradient is carried (an epoch loop)."""
        calls = self._calls
        if calls is None or calls.point is None or calls.state is None or calls.state[2] is None:
            return None
        return {name: float(np.asarray(g).reshape(-1)[0])
                for (name, var), g in zip(self.variables.items(), calls.state[2]) if var.shape.num_elements() == 1}

    def last_step(self) -> dict | None:
        """name -> x_t - x_(t-1), the last step taken (float), for one-element variables, from
        the point before it (history's last row) and the point now; None when the history does
        not hold the step before (no step yet, or rows thinned or strided)."""
        now = self.now
        history = self._history.as_dict()
        steps = history["step"]
        if now is None or not len(steps) or int(steps[-1]) != now["step"] - 1:
            return None
        return {name: now[name] - float(history[name][-1])
                for name, var in self.variables.items() if var.shape.num_elements() == 1}
