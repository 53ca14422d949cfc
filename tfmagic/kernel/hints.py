"""Hints on TensorFlow's dtype and shape errors in ordinary cells too.

The course shows two such errors in plain cells. Once TensorFlow is imported,
an InvalidArgumentError gets tfmagic's hint under TensorFlow's own traceback.
"""

import sys

from tfmagic.cell.explain import hint_for

_installed = set()


def _handler(shell, etype, value, tb, tb_offset=None):
    # IPython's own bookkeeping of the last exception (sys.last_*), which a custom
    # handler skips: %debug and %tb read it.
    getattr(shell, "_get_exc_info", lambda exc: None)((etype, value, tb))
    stb = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
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
    shell.set_custom_exc((tf.errors.InvalidArgumentError,), _handler)
    _installed.add(id(shell))


def uninstall(shell):
    if id(shell) in _installed:
        shell.custom_exceptions = ()
        _installed.discard(id(shell))
