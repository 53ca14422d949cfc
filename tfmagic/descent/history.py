"""The per-step record of a run: rows of named columns, thinned once it grows past HISTORY_MAX."""

import numpy as np

HISTORY_MAX = 1 << 20  # rows kept; longer runs keep every other row


def shown_by_value(variable):
    """A variable with one element is shown (history, printouts) by its value, a larger one by its norm."""
    return variable.shape.num_elements() == 1


class History:
    """Rows of `columns` (float32), with the step each row is of.

    The graphs hand back raw rows: no eta (it only changes between chunks) and
    the `rooted` columns squared (cheaper to compile); `append` completes them.
    """

    def __init__(self, columns, rooted):
        self.columns = list(columns)
        self.index = {c: i for i, c in enumerate(self.columns)}  # column name -> position
        self._rooted = [self.index[c] for c in rooted]
        self.clear()

    def clear(self):
        self._rows = np.zeros((1024, len(self.columns)), np.float32)  # grows by doubling
        self._steps = np.zeros(1024, np.int64)
        self._n = 0
        self._view = None
        self.stride = 1  # a row every `stride` steps (grows as a very long run is thinned)
        self.branches = [(0, 0)]  # (step, number) where each branch begins (descent/rewind.py)

    def reserve(self, rows):
        """Room for `rows` more rows at once (a run knows its length): growing by doubling
        copies what is there each time, ~10 ms over a 200 000-step run."""
        need = min(self._n + rows, HISTORY_MAX + 1)
        if need > len(self._rows):
            grown = np.empty((need, self._rows.shape[1]), np.float32)
            grown[: self._n] = self._rows[: self._n]
            steps = np.empty(need, np.int64)
            steps[: self._n] = self._steps[: self._n]
            self._rows, self._steps, self._view = grown, steps, None

    def empty_rows(self):
        return np.zeros((0, len(self.columns)), np.float32)

    def append(self, points, first_step, stride, eta):
        """Add raw rows, one per `stride` steps from `first_step`; returns them completed.

        Once a long run has thinned the history (self.stride > 1), rows closer than
        that are stored every k-th only; the returned rows are all of them.
        """
        rows = np.empty((len(points), len(self.columns)), np.float32)
        eta_at = self.index["eta"]
        rows[:, :eta_at] = points[:, :eta_at]
        rows[:, eta_at] = eta
        rows[:, eta_at + 1:] = points[:, eta_at:]
        rows[:, self._rooted] = np.sqrt(rows[:, self._rooted])
        every = max(1, self.stride // stride)
        kept = rows[::every]
        slots, n = len(kept), self._n
        if n + slots > len(self._rows):
            size = max(2 * len(self._rows), n + slots)
            self._rows = np.concatenate([self._rows[:n], np.zeros((size - n, self._rows.shape[1]), np.float32)])
            self._steps = np.concatenate([self._steps[:n], np.zeros(size - n, np.int64)])
        self._rows[n: n + slots] = kept
        self._steps[n: n + slots] = first_step + np.arange(slots) * stride * every
        self._n = n = n + slots
        self._view = None
        while n > HISTORY_MAX:
            # Very long runs: keep every other row (and the newest), and record half as often from now on.
            keep = np.arange(0, n, 2) if n % 2 else np.append(np.arange(0, n, 2), n - 1)
            self._rows = np.concatenate([self._rows[keep], np.zeros_like(self._rows[: n // 2 + 1])])
            self._steps = np.concatenate([self._steps[keep], np.zeros_like(self._steps[: n // 2 + 1])])
            self._n = n = len(keep)
            self.stride *= 2
        return rows

    def cut(self, step):
        """Forget the rows of `step` and after (a run that went back to the point before it)."""
        self._n = int(np.searchsorted(self._steps[: self._n], step))
        self._view = None

    def as_dict(self):
        """Column name -> array, and 'step' -> which step each row is.

        Views, not copies: appends land past them and thinning builds new arrays,
        so a dict handed out earlier never changes under its holder."""
        if self._view is None:
            n = self._n
            self._view = {c: self._rows[:n, i] for i, c in enumerate(self.columns)}
            self._view["step"] = self._steps[:n]
            if self.branches != [(0, 0)]:  # (after a rewind: each row's branch)
                starts, numbers = np.array(self.branches, np.int64).T
                self._view["branch"] = numbers[np.searchsorted(starts, self._steps[:n], side="right") - 1]
        return self._view
