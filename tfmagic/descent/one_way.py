"""What a chunk of steps leaves when its batches come from an iterator that cannot go
back (a tf.data.Dataset: dataset_stream.py), where the engine cannot redo the chunk
from its start as it does for arrays: the redo would take other batches.

The stream reads a batch only once the step before it is complete, and a graph loop
keeps a history row per step, so a chunk that fails on a batch, or stops at a point
the data made NaN or could not give, is kept exactly as far as it got. Only a real
divergence (the step blew up) goes back to the start of its chunk: its last good
values are not kept anywhere, and the engine says how many steps that undid.
"""

import numpy as np

from tfmagic.descent.status import Status


class OneWayRuns:
    """Mixed into the engine (descent/engine.py); `one_way`: its stream cannot go back."""

    def _stream_started(self, code):
        """After a run's start point was evaluated (any run: the facts start afresh): a start
        made unhealthy by a dataset is the data's fault (its verdict goes to data_stop)."""
        self.data_stop, self.unkept_steps = None, 0  # (what stopped it; steps a divergence undid)
        if code == Status.DIVERGED and self.one_way:
            self.data_stop = self._stream.stop_at(self.steps + 1)
            self._stream.kept_going = self.data_stop is None

    def _stream_unhealthy(self, rows, count, stride):
        """A plain chunk that stopped at an unhealthy point after `count` steps: (history rows, steps kept)."""
        stop = self._stream.stop_at(self.steps + count + 1)
        if stop is not None:  # (the steps were fine; the next batch was missing or not finite)
            self.data_stop, self._stream.kept_going = stop, False
            return self._record(rows, count, stride), count
        self._calls.restore()
        self._stream.kept_going = False  # (its batch is not the point's now)
        self.unkept_steps = count  # (step steps + count blew up; back to the chunk's start)
        return self._history.empty_rows(), 0

    def _stream_failed(self, mode, err):
        """The cell raised `err` on a batch: keep the steps before it (the variables are there
        already) and stop the run there (a run going on takes the next batch). A generator
        (engine.steps_iter delegates to it): on the zeros that mark the end of the data
        (dataset_stream.py: _flagged) it is no error, and yields the run's last chunk."""
        self._stream.kept_going = False
        start = self.steps
        if mode != "plain":  # (no rows kept in place: back to the chunk's start, consistent)
            self._calls.restore()
            rows = self._history.empty_rows()
        else:
            kept = int(self._stream.position.numpy()) - 1 - self.steps  # (a batch a step, read after it)
            rows = self._graphs.buffer[:kept].numpy() if kept > 0 else np.zeros((0, self._graphs.width), np.float32)
            rows = self._record(rows, max(kept, 0), 1)
            self._calls.point = np.full(self._graphs.width, np.nan, np.float32)  # (its batch failed)
        if self._stream.ended():
            self.data_stop = self._stream.stop_at(self.steps + 1)
            yield self._chunk_done(start, rows, Status.DIVERGED, False)
            return
        if len(rows):
            self._chunk_done(start, rows, Status.RUNNING, False)  # (the observers see the steps kept; not yielded:
            # a driver that closed the run here would lose the error)
        self._stopped_by(err)
        raise err
