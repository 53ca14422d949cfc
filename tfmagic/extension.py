"""What `%load_ext tfmagic` adds, and `%unload_ext tfmagic` takes away."""

from tfmagic.kernel import hints
from tfmagic.kernel import awaiting, ipykernel_fix
from tfmagic.runtime.lazytf import LazyTensorFlow

_loaded = {}


def _pre_run_cell(info=None):
    import sys

    from IPython import get_ipython

    # The course's own `import tensorflow as tf` (or keras, which imports it) would print
    # TensorFlow's start-up lines in red; imported quietly first, the user's import finds it done.
    cell = getattr(info, "raw_cell", None) or ""
    if "tensorflow" not in sys.modules and ("tensorflow" in cell or "keras" in cell):
        from tfmagic.runtime.tfimport import tensorflow

        tensorflow()
    shell = get_ipython()
    if shell is not None:
        hints.install_when_tensorflow_is_imported(shell)


def load(shell):
    from tfmagic.magics import TfMagics

    if id(shell) in _loaded:
        return  # loading twice is harmless
    magics = TfMagics(shell)
    shell.register_magics(magics)
    shell.configurables.append(magics)  # %config TfMagics.eta = 0.01
    # In a kernel that can, %%descend cells await, so widgets stay live while they run.
    if awaiting.register_await_transform(shell, ["descend"]):
        ipykernel_fix.install(getattr(shell, "kernel", None))
    shell.events.register("pre_run_cell", _pre_run_cell)
    added_tf = "tf" not in shell.user_ns  # never replace the user's own tf
    if added_tf:
        shell.user_ns["tf"] = LazyTensorFlow(shell.user_ns)
    _loaded[id(shell)] = (magics, added_tf)


def unload(shell):
    entry = _loaded.pop(id(shell), None)
    if entry is None:
        return
    magics, added_tf = entry
    if magics in shell.configurables:
        shell.configurables.remove(magics)
    shell.events.unregister("pre_run_cell", _pre_run_cell)
    hints.uninstall(shell)
    awaiting.unregister_await_transform(shell)
    ipykernel_fix.uninstall(getattr(shell, "kernel", None))
    cell = shell.magics_manager.magics["cell"]
    for name in ("tfgrad", "descend"):
        cell.pop(name, None)
    shell.magics_manager.registry.pop(type(magics).__name__, None)
    if added_tf and isinstance(shell.user_ns.get("tf"), LazyTensorFlow):
        del shell.user_ns["tf"]
