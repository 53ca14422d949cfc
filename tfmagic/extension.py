"""What `%load_ext tfmagic` adds, and `%unload_ext tfmagic` takes away."""

import sys

from tfmagic.kernel import hints
from tfmagic.kernel import awaiting, interrupts, ipykernel_fix
from tfmagic.runtime.lazytf import LazyTensorFlow

_loaded = {}
# What a first %%descend imports (~80 ms; its panel's widget modules about as much again),
# imported right after TensorFlow: that cell takes seconds anyway, and a teacher's first
# %%descend then shows its first point sooner.
AHEAD = ("tfmagic.runs", "tfmagic.descent.setup", "tfmagic.descent.loss_grid", "tfmagic.descent.curvature",
         "tfmagic.present.results")
AHEAD_LIVE = ("tfmagic.kernel.runner", "tfmagic.widgets.panel")
_ahead = set()  # the shells that have imported them


def _post_run_cell(result=None):
    """After the cell that imported TensorFlow (whichever comes first, it or %load_ext)."""
    from IPython import get_ipython

    shell = get_ipython()
    reuse = sys.modules.get("tfmagic.descent.reuse")  # (nothing is kept before a first %%descend)
    if reuse is not None and shell is not None:
        reuse.CELLS.forget_missing(shell.user_ns)  # `del A`, `%reset -f`: what the cells read goes too
    if shell is None or id(shell) in _ahead or id(shell) not in _loaded or "tensorflow" not in sys.modules:
        return
    import importlib

    _ahead.add(id(shell))
    for name in AHEAD + (AHEAD_LIVE if _loaded[id(shell)][2] else ()):
        try:
            importlib.import_module(name)
        except Exception:  # (only ahead of time: the magic says what is wrong when it runs)
            return


def _pre_run_cell(info=None):
    from IPython import get_ipython

    # The course's own `import tensorflow as tf` (or keras, which imports it) would print
    # TensorFlow's start-up lines in red; imported quietly first, the user's import finds it done.
    cell = getattr(info, "raw_cell", None) or ""
    reuse = sys.modules.get("tfmagic.descent.reuse")
    if reuse is not None:
        reuse.CELLS.cell_started(getattr(info, "cell_id", None))  # (its notes say whose steps it reused)
    if "tensorflow" not in sys.modules and ("tensorflow" in cell or "keras" in cell):
        from tfmagic.runtime.tfimport import tensorflow

        tensorflow()
    shell = get_ipython()
    if shell is not None:
        hints.install_when_tensorflow_is_imported(shell)
    from tfmagic import reach

    reach.cell_starts(getattr(info, "cell_id", None))  # its output is replaced: close what only it showed


_RESULT = ("tfmagic.present.results", "DescentResult")


def _result_bundle(result, include=None, exclude=None):
    from tfmagic.reach import result_bundle

    return result_bundle(result, include, exclude)


def load(shell):
    from tfmagic.magics import TfMagics

    if id(shell) in _loaded:
        return  # loading twice is harmless
    magics = TfMagics(shell)
    shell.register_magics(magics)
    if magics not in shell.configurables:  # %config TfMagics.eta = 0.01 (Magics.__init__ adds it)
        shell.configurables.append(magics)
    # In a kernel that can, %%descend cells await, so widgets stay live while they run.
    live = awaiting.register_await_transform(shell, ["descend"], ["descend_runs"])
    if live:
        ipykernel_fix.install(getattr(shell, "kernel", None))
        interrupts.install(getattr(shell, "kernel", None))  # Kernel > Interrupt reaches background runs
    # A result shown again shows its live panel (tfmagic/reach.py).
    shell.display_formatter.mimebundle_formatter.for_type_by_name(*_RESULT, _result_bundle)
    shell.events.register("pre_run_cell", _pre_run_cell)
    added_tf = "tf" not in shell.user_ns  # never replace the user's own tf
    if added_tf:
        shell.user_ns["tf"] = LazyTensorFlow(shell.user_ns)
    shell.events.register("post_run_cell", _post_run_cell)
    _loaded[id(shell)] = (magics, added_tf, live)


def unload(shell):
    entry = _loaded.pop(id(shell), None)
    if entry is None:
        return
    magics, added_tf, _ = entry
    shell.configurables[:] = [c for c in shell.configurables if c is not magics]
    shell.events.unregister("pre_run_cell", _pre_run_cell)
    shell.events.unregister("post_run_cell", _post_run_cell)
    hints.uninstall(shell)
    reuse = sys.modules.get("tfmagic.descent.reuse")
    if reuse is not None:
        reuse.CELLS.clear(shell.user_ns)  # (their engines, variables and optimizers)
    if "tfmagic.earlier" in sys.modules:
        sys.modules["tfmagic.earlier"].forget(shell)
    awaiting.unregister_await_transform(shell)
    ipykernel_fix.uninstall(getattr(shell, "kernel", None))
    interrupts.uninstall(getattr(shell, "kernel", None))
    shell.display_formatter.mimebundle_formatter.pop(".".join(_RESULT), None)
    for kind, names in (("cell", ("tfgrad", "descend")), ("line", ("descend_runs",))):
        for name in names:
            shell.magics_manager.magics[kind].pop(name, None)
    shell.magics_manager.registry.pop(type(magics).__name__, None)
    if added_tf and isinstance(shell.user_ns.get("tf"), LazyTensorFlow):
        del shell.user_ns["tf"]

