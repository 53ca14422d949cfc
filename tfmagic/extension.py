"""What `%load_ext tfmagic` adds, and `%unload_ext tfmagic` takes away."""

_loaded = {}


def load(shell):
    from .magics import TfMagics

    if id(shell) in _loaded:
        return  # loading twice is harmless
    magics = TfMagics(shell)
    shell.register_magics(magics)
    _loaded[id(shell)] = magics


def unload(shell):
    magics = _loaded.pop(id(shell), None)
    if magics is None:
        return
    cell = shell.magics_manager.magics["cell"]
    for name in ("tfgrad", "descend"):
        cell.pop(name, None)
    shell.magics_manager.registry.pop(type(magics).__name__, None)
