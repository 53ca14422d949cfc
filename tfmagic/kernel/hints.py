"""Hints on TensorFlow's dtype and shape errors in ordinary cells too.

The course shows two such errors in plain cells. Once TensorFlow is imported,
an InvalidArgumentError gets tfmagic's hint under TensorFlow's own traceback.
"""

import os
import sys
import types

from tfmagic.cell.explain import hint_for

_installed = {}  # id(shell) -> its CustomTB before (an instance attribute, or None)


def _up_to_tensorflow(tb):
    """The traceback up to the user's call into TensorFlow, and how many frames inside
    TensorFlow it leaves out (~25 lines that say nothing about the user's mistake)."""
    tf_dir = os.path.dirname(sys.modules["tensorflow"].__file__) + os.sep
    kept, hidden = [], 0
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(tf_dir):
            hidden += 1
        elif not hidden:
            kept.append(tb)
        tb = tb.tb_next
    short = None
    for t in reversed(kept):
        short = types.TracebackType(short, t.tb_frame, t.tb_lasti, t.tb_lineno)
    return short, hidden


def _handler(shell, etype, value, tb, tb_offset=None):
    # IPython's own bookkeeping of the last exception (sys.last_*), which a custom
    # handler skips: %debug and %tb read it (with TensorFlow's frames).
    getattr(shell, "_get_exc_info", lambda exc: None)((etype, value, tb))
    short, hidden = _up_to_tensorflow(tb)
    if short is not None and hidden:
        tb = short
    stb = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
    if short is not None and hidden:
        stb = list(stb) + [f"({hidden} frames inside TensorFlow not shown; %tb shows them)"]
    hint = hint_for(value)
    if hint:
        stb = list(stb) + [f"\x1b[1mtfmagic hint\x1b[0m: {hint}"]
    shell._showtraceback(etype, value, stb)
    return stb


def install_when_tensorflow_is_imported(shell):
    """Called before each cell: installs the handler once TensorFlow is loaded."""
    if id(shell) in _installed or "tensorflow" not in sys.modules:
        return
    if shell.custom_exceptions:  # someone else's handler: leave it alone
        return
    tf = sys.modules["tensorflow"]
    before = shell.__dict__.get("CustomTB")
    shell.set_custom_exc((tf.errors.InvalidArgumentError,), _handler)
    _installed[id(shell)] = before


def uninstall(shell):
    """set_custom_exc undone: no custom exceptions, and IPython's own CustomTB back."""
    if id(shell) in _installed:
        before = _installed.pop(id(shell))
        shell.custom_exceptions = ()
        if before is None:
            shell.__dict__.pop("CustomTB", None)
        else:
            shell.CustomTB = before
