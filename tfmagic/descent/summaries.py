"""--logdir: a run's scalars as TensorBoard event files (tf.summary), one run directory each.

Per step: `loss`, `eta`, `grad_norm`, every step of the first EVERY_STEP_UNTIL, then a step
every step/EVERY_STEP_UNTIL steps or so (TensorBoard's scalar dashboard keeps 1 000 points a tag
anyway; a 200 000-step run writes ~5 900), and a run's last step. Per epoch of a --data run: `epoch_loss` (the
mean training loss) at step = the epoch, and the validation loss as `epoch_loss` in
`<run>/validation`, as Keras's TensorBoard callback lays them out, so the two overlay.

A run directory never holds a step twice: when the history goes back (Reset, or a
divergence after a raise of eta that went back to an earlier point), what follows goes into
`<run>.2`, `<run>.3`, ... starting at the step the history goes on from. (The steps such a
divergence took back stay where they were written: TensorBoard shows the blow-up.)

One compiled writer per process takes the writer's resource as an argument, so a new run
traces nothing (a tf.function per writer traced in ~0.1 s; eager writes cost ~230 us a scalar).
"""

import datetime
import os

import numpy as np

from tfmagic.descent.observers import Observer

EVERY_STEP_UNTIL = 1000
TAGS = ("loss", "eta", "grad_norm")
_compiled = {}  # "writer": the tf.function (built on first use)


def check_writable(logdir):
    """None if run directories can be made under `logdir`, else the OS's reason (a short string)."""
    try:
        if "://" in logdir:  # (gs://, s3://...: TensorFlow's file systems)
            from tfmagic.runtime.tfimport import tensorflow

            tensorflow().io.gfile.makedirs(logdir)
            return None
        os.makedirs(logdir, exist_ok=True)
        if not os.access(logdir, os.W_OK | os.X_OK):
            return "permission denied"
        return None
    except Exception as err:  # (OSError and its kin, TensorFlow's file-system errors)
        return getattr(err, "strerror", None) or getattr(err, "message", None) or str(err) or type(err).__name__


def run_name(out=None, now=None):
    """A run directory's name: OUT (else "descend") and the time, e.g. fit-20261207-021530."""
    now = now or datetime.datetime.now()
    return f"{out or 'descend'}-{now:%Y%m%d-%H%M%S}"


def fresh_path(logdir, name):
    """logdir/name, or logdir/name-2, -3, ... if that exists (two runs in one second)."""
    path, k = os.path.join(logdir, name), 1
    while _exists(path):
        k += 1
        path = os.path.join(logdir, f"{name}-{k}")
    return path


def _exists(path):
    if "://" in path:
        from tfmagic.runtime.tfimport import tensorflow

        return tensorflow().io.gfile.exists(path)
    return os.path.exists(path)


def series_dir(label):
    """A --compare/--restarts run's directory: 'eta=0.1' stays, 'adam' -> 'optimizer=adam',
    'start 3' -> 'start_3'."""
    label = label.replace(" ", "_").replace(os.sep, "_")
    return label if "=" in label or label.startswith("start_") else f"optimizer={label}"


def kept_steps(steps):
    """Which of `steps` to write: every step below EVERY_STEP_UNTIL, then the multiples of
    step // EVERY_STEP_UNTIL + 1 (at most EVERY_STEP_UNTIL * (1 + ln(steps / EVERY_STEP_UNTIL))
    points; a rule of the step alone, so a run continued later thins alike)."""
    return (steps < EVERY_STEP_UNTIL) | (steps % (steps // EVERY_STEP_UNTIL + 1) == 0)


def _writer_fn(tf):
    """steps (int64 [n]), rows (float32 [n, 3]) -> written under TAGS into the writer given
    (None where TensorFlow's raw op is gone: tfmagic/private_apis.py)."""
    if "writer" not in _compiled:
        try:
            from tensorflow.python.ops import gen_summary_ops
        except ImportError:
            gen_summary_ops = None
        if not hasattr(gen_summary_ops, "write_summary"):
            _compiled["writer"] = None
            return None

        meta = scalars_metadata().SerializeToString()

        @tf.function(input_signature=[tf.TensorSpec([], tf.resource), tf.TensorSpec([None], tf.int64),
                                      tf.TensorSpec([None, len(TAGS)], tf.float32)], autograph=False)
        def write(writer, steps, rows):
            def body(i):
                ops = [gen_summary_ops.write_summary(writer, steps[i], rows[i, j], tag, meta) for j, tag in enumerate(TAGS)]
                with tf.control_dependencies(ops):
                    return (i + 1,)

            return tf.while_loop(lambda i: i < tf.shape(steps)[0], body, (tf.constant(0),))

        _compiled["writer"] = write
    return _compiled["writer"]


def scalars_metadata():
    """What tensorboard's own tf.summary.scalar writes (TensorFlow alone has no scalar())."""
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = "scalars"
    return meta


class SummaryLog(Observer):
    """Writes the runs it watches into `path` (and `path.2`, ... after the history went back)."""

    needs_every_step = True  # (a row a step: the steps written are exactly history's)

    def __init__(self, tf, path):
        self.tf, self.base = tf, path
        self._segment, self._writer, self._validation = 0, None, None
        self._last = -1  # the last step written in the current directory
        self._unwritten = None  # (steps, rows) of the last row so far, when thinning left it out
        self.paths = []  # every run directory written, in order

    @property
    def path(self):
        return self.base if self._segment <= 1 else f"{self.base}.{self._segment}"

    def _open(self):
        self.close()
        self._segment += 1
        self._writer = self.tf.summary.create_file_writer(self.path)
        self.paths.append(self.path)
        self._last = -1

    def chunk(self, engine, chunk):
        n = len(chunk.rows["loss"])
        steps = chunk.start + np.arange(n, dtype=np.int64)
        kept = steps < engine.steps  # (a divergence that went back cut these from the history)
        if not kept.any():
            return
        opened = self._writer is None or steps[kept][0] <= self._last
        if opened:
            self._open()  # (the history went back: Reset, or a divergence after a raise of eta)
        valid = kept.copy()
        kept &= kept_steps(steps)
        kept[np.flatnonzero(valid)[0]] |= opened  # (a directory starts where the history goes on from)
        rows = np.stack([np.asarray(chunk.rows[t], np.float32) for t in TAGS], axis=1)
        last = np.flatnonzero(valid)[-1]
        self._unwritten = None if kept[last] else (steps[last:last + 1], rows[last:last + 1])  # (written at the end)
        if kept.any():
            self._write(steps[kept], rows[kept])
            self._last = int(steps[kept][-1])

    def _write(self, steps, rows):
        tf = self.tf
        resource, write = getattr(self._writer, "_resource", None), _writer_fn(tf)
        if resource is not None and write is not None:
            with tf.device("CPU:0"):
                write(resource, steps, rows)
            return
        meta = scalars_metadata()  # (without the private handle: eager writes, ~40x slower, the same events)
        with self._writer.as_default():
            for s, row in zip(steps.tolist(), rows):
                for tag, value in zip(TAGS, row):
                    tf.summary.write(tag, value, step=s, metadata=meta)

    def epoch(self, engine, row):
        epoch, mean, val, _ = row
        meta = scalars_metadata()
        if self._writer is None:
            self._open()
        with self._writer.as_default():
            self.tf.summary.write("epoch_loss", np.float32(mean), step=int(epoch), metadata=meta)
        epochs = engine.observers.epochs
        if np.isfinite(val) or (epochs is not None and epochs.validate is not None):
            if self._validation is None:
                self._validation = self.tf.summary.create_file_writer(os.path.join(self.path, "validation"))
            with self._validation.as_default():
                self.tf.summary.write("epoch_loss", np.float32(val), step=int(epoch), metadata=meta)

    def end(self, engine):
        """The run's last row is written whatever the thinning (where the run ended shows)."""
        if self._unwritten is not None and self._writer is not None and engine.steps == self._unwritten[0][0] + 1:
            self._write(*self._unwritten)
            self._last = int(self._unwritten[0][0])
        self._unwritten = None
        for w in (self._writer, self._validation):
            if w is not None:
                w.flush()

    def close(self):
        for w in (self._writer, self._validation):
            if w is not None:
                w.close()
        self._writer = self._validation = None
