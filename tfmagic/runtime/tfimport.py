"""Import TensorFlow on first use, quietly, without changing the process for the user's code.

TensorFlow's C++ start-up lines land on stderr, which JupyterLab paints red; a
classroom reads them as errors. They are written before TF_CPP_MIN_LOG_LEVEL
applies, so we catch file descriptor 2 during the import and pass on only what
is not known start-up noise. The variable is set for the import only (a `!python`
would inherit it), and TensorFlow's retracing warning is left out only while
tfmagic's own code runs (`quiet_retracing`): the user's own is a lesson of the course.
"""

import contextlib
import logging
import os
import re
import sys
import tempfile

_NOISE = re.compile(
    r"absl::InitializeLog|oneDNN custom operations|cpu_feature_guard|"
    r"This TensorFlow binary is optimized|rebuild TensorFlow with the appropriate|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|"
    r"Could not find cuda drivers|TF-TRT Warning|XLA service .* initialized|StreamExecutor \[|"
    r"disabling MLIR crash reproducer|Compiled cluster using XLA|To enable the following instructions|"
    r"PyFunc is stateful|"  # (a generator dataset's state cannot be saved: dataset_stream.py tries)
    r"Skipping loop optimization for Merge node"  # (Grappler, on a strategy's graphs: not the user's concern)
)
_RETRACE_NOTE = "triggered tf.function retracing"


class _DropRetraceWarning(logging.Filter):
    # Every magic run builds new tf.functions on purpose (globals are baked in
    # as constants), so TensorFlow's "N of the last N calls retraced" hint is
    # about tfmagic's bookkeeping, not the user's code.
    def filter(self, record):
        return _RETRACE_NOTE not in record.getMessage()


_filter = _DropRetraceWarning()
_quieting = [0]  # nested quiet_retracing blocks


class quiet_retracing:
    """While tfmagic's own code runs (it builds new tf.functions on purpose), TensorFlow's
    "N of the last N calls retraced" hint is about its bookkeeping: left out."""

    __slots__ = ("logger",)

    def __enter__(self):
        self.logger = None
        if "tensorflow" in sys.modules:
            self.logger = logging.getLogger("tensorflow")  # (what tf.get_logger() gives)
            _quieting[0] += 1
            if _quieting[0] == 1:
                self.logger.addFilter(_filter)
        return self

    def __exit__(self, *exc):
        if self.logger is not None:
            _quieting[0] -= 1
            if _quieting[0] == 0:
                self.logger.removeFilter(_filter)
        return False


@contextlib.contextmanager
def quiet_native_stderr(active=True):
    """Catch what C++ code writes to fd 2; pass on all but known start-up noise."""
    if not active:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (some embedded shells)
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [
                line
                for line in sink.read().decode("utf-8", "replace").splitlines()
                if line.strip() and not _NOISE.search(line)
            ]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def tensorflow():
    """The tensorflow module, imported once with start-up noise removed."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    before = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with quiet_native_stderr():
            import tensorflow as tf
    finally:
        if before is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return tf
