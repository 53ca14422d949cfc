"""Two patches of ipykernel's private API, so widgets stay usable while a cell awaits.

Checked against ipykernel 7.4.0 (``MIN_IPYKERNEL`` to ``BELOW_IPYKERNEL``); outside that
range, or when ipykernel already does what they add, neither is installed and a
line in the kernel's log says why. ``TFMAGIC_KERNEL_PATCHES=0`` in the kernel's
environment turns both off (the live panel then accepts one change per widget
while a cell runs, and the kernel indicator may show idle mid-run).

1. The dead slider. ipykernel 7.4's ``Kernel.dispatch_shell(msg, concurrent=True)``
   (ipykernel/kernelbase.py: ``if not concurrent: self._publish_status("busy", ...)``)
   handles a comm message that arrives while a cell awaits without publishing
   busy/idle for it. JupyterLab's widget manager sends a model's next update only
   after the idle of the previous one, so a slider goes dead after its first
   change. :func:`install` wraps the kernel instance's ``dispatch_shell`` to publish
   them (it reads ``kernel.session`` and calls ``kernel._publish_status``).
2. The idle indicator. While a cell awaits, each widget, control or subshell
   message gets its own idle, and JupyterLab's indicator shows the latest status
   of any parent: it said "Idle" mid-run, and all along a panel's run in the
   background. :func:`busy_while` republishes busy for the latest run going on
   after each such idle (it wraps ``kernel._publish_status`` while a run goes on
   and reads ``kernel.get_parent``).

Both are listed, with what happens without them, in ``tfmagic/private_apis.py``.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from typing import Any

from tfmagic.kernel.awaiting import MIN_IPYKERNEL, _version_tuple, _warn_once

__all__ = ["BELOW_IPYKERNEL", "enabled", "install", "uninstall", "installed", "busy_while"]

log = logging.getLogger(__name__)

#: The first ipykernel these patches were not checked against.
BELOW_IPYKERNEL = (8,)


def enabled() -> bool:
    """False when the user opted out (TFMAGIC_KERNEL_PATCHES=0)."""
    return os.environ.get("TFMAGIC_KERNEL_PATCHES", "1").strip().lower() not in ("0", "false", "no", "off")


def _why_not(kernel: Any) -> str | None:
    """Why the patches must not go on this kernel, or None."""
    if not enabled():
        return "turned off by TFMAGIC_KERNEL_PATCHES=0"
    import ipykernel

    version = _version_tuple(getattr(ipykernel, "__version__", "0"))
    if not MIN_IPYKERNEL <= version < BELOW_IPYKERNEL:
        return f"checked only for ipykernel {'.'.join(map(str, MIN_IPYKERNEL))} up to below {'.'.join(map(str, BELOW_IPYKERNEL))}"
    try:
        source = inspect.getsource(type(kernel).dispatch_shell)
    except (OSError, TypeError, AttributeError):
        return None
    if "if not concurrent" not in source:
        return "this ipykernel publishes the status of concurrent messages itself"
    return None


_COMM_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})


def _kernel_log(kernel: Any) -> Any:
    return getattr(kernel, "log", None) or log


def _peek_header(kernel: Any, msg: Any) -> dict | None:
    """Header of a raw (still serialized) shell message, or None.

    ``deserialize(content=False)`` does not record the HMAC digest, so the
    kernel's own deserialize of the same message still passes its
    duplicate-signature check (ipykernel's shell_main peeks the same way).
    """
    session = getattr(kernel, "session", None)
    if session is None:
        return None
    try:
        _, frames = session.feed_identities(msg, copy=False)
        return session.deserialize(frames, content=False, copy=False)["header"]
    except Exception:
        return None


def _make_dispatch_wrapper(kernel: Any, original: Any) -> Any:
    async def dispatch_shell(msg, /, *args, **kwargs):
        # ipykernel 7.4 calls dispatch_shell(..., concurrent=True) only for
        # comm messages that arrive while a cell holds the shell lock, and
        # then skips the busy/idle status.  Everything else passes through.
        if not kwargs.get("concurrent") or not getattr(dispatch_shell, "enabled", False):
            return await original(msg, *args, **kwargs)
        header = _peek_header(kernel, msg)
        if header is None or header.get("msg_type") not in _COMM_TYPES:
            return await original(msg, *args, **kwargs)

        comm_parent = {"header": header}
        kernel._publish_status("busy", "shell", parent=comm_parent)
        try:
            return await original(msg, *args, **kwargs)
        finally:
            # The widget manager waits for this idle (parent = its comm_msg)
            # before it sends the model's next update.  (busy_while keeps the
            # frontend's kernel indicator at busy meanwhile.)
            kernel._publish_status("idle", "shell", parent=comm_parent)

    dispatch_shell._tfmagic_idle_fix = True
    dispatch_shell.original = original
    dispatch_shell.enabled = True
    return dispatch_shell


_holders: list = []  # parent messages of the runs going on that keep the indicator busy, latest last


@contextlib.contextmanager
def busy_while(kernel: Any, background: bool = False):
    """Keep the frontend's kernel indicator at busy while the block (a run) goes on.

    While a cell awaits, ipykernel 7.4 publishes idle for each widget, control or
    subshell message it handles (and so does the idle-status fix), and JupyterLab's
    indicator shows the latest status of any parent: it said "Idle" during a run.
    Each such idle is now followed by busy for the latest run going on. A `background`
    run (a panel's Play after its cell ended) has the click as parent: busy is said when
    it starts and idle when it ends, so the indicator shows the kernel busy meanwhile.
    Wraps the kernel instance's private ``_publish_status`` while a run goes on.
    """
    if kernel is None or _why_not(kernel):
        yield
        return
    publish = getattr(kernel, "_publish_status", None)
    get_parent = getattr(kernel, "get_parent", None)
    if publish is None or get_parent is None:
        yield
        return
    parent = get_parent("shell")  # the cell's execute_request, or the click (a context variable)
    if not (parent or {}).get("header", {}).get("msg_id"):
        yield
        return
    if not getattr(kernel.__dict__.get("_publish_status"), "_tfmagic_busy", False):
        kernel._publish_status = _busy_publisher(publish)
    original = kernel._publish_status.original
    _holders.append(parent)
    if background:
        original("busy", "shell", parent)
    try:
        yield
    finally:
        _holders.remove(parent)
        if background:
            original("idle", "shell", parent)
            if _holders:
                original("busy", "shell", _holders[-1])
        current = kernel.__dict__.get("_publish_status")
        if not _holders and getattr(current, "_tfmagic_busy", False):
            if getattr(current.original, "__func__", None) is getattr(type(kernel), "_publish_status", None):
                del kernel._publish_status
            else:
                kernel._publish_status = current.original


def _busy_publisher(publish: Any) -> Any:
    def publish_status(status, channel, parent=None):
        publish(status, channel, parent)
        if status == "idle" and _holders:  # (a run goes on: the kernel is not idle)
            publish("busy", "shell", _holders[-1])

    publish_status._tfmagic_busy = True
    publish_status.original = publish
    return publish_status


def install(kernel: Any) -> bool:
    """Publish busy/idle for comm messages dispatched while a cell awaits.

    Wraps the kernel instance's ``dispatch_shell`` (private API of ipykernel
    7.4).  Returns True if the fix is active.  If the private API is missing or
    different, does nothing, logs once and returns False.  Idempotent.
    """
    if kernel is None:
        return False
    current = getattr(kernel, "dispatch_shell", None)
    if getattr(current, "_tfmagic_idle_fix", False):
        current.enabled = True
        return True
    problems = []
    if current is None or not inspect.iscoroutinefunction(current):
        problems.append("dispatch_shell is not a coroutine function")
    else:
        try:
            if "concurrent" not in inspect.signature(current).parameters:
                problems.append("dispatch_shell has no 'concurrent' parameter")
        except (TypeError, ValueError):
            problems.append("dispatch_shell has no inspectable signature")
    for name in ("_publish_status", "session"):
        if not hasattr(kernel, name):
            problems.append(f"kernel has no {name}")
    if problems:
        _warn_once(
            "idle-fix",
            "tfmagic: cannot install the widget idle-status fix ("
            + "; ".join(problems)
            + "); sliders may accept only one change while a cell runs",
            _kernel_log(kernel),
        )
        return False
    reason = _why_not(kernel)
    if reason:
        _warn_once("idle-fix-skipped", f"tfmagic: widget idle-status fix not installed: {reason}", _kernel_log(kernel))
        return False
    # Instance attribute: ipykernel looks up self.dispatch_shell at call time.
    kernel.dispatch_shell = _make_dispatch_wrapper(kernel, current)
    return True


def uninstall(kernel: Any) -> None:
    """Undo :func:`install` (safe to call when not installed)."""
    if kernel is None:
        return
    current = kernel.__dict__.get("dispatch_shell") if hasattr(kernel, "__dict__") else None
    if getattr(current, "_tfmagic_idle_fix", False):
        current.enabled = False
        original = current.original
        # Drop the instance attribute when the original was the class method,
        # otherwise put the previous instance attribute back.
        if getattr(original, "__func__", None) is getattr(type(kernel), "dispatch_shell", None):
            del kernel.dispatch_shell
        else:
            kernel.dispatch_shell = original
        return
    # Someone wrapped on top of us: we cannot unhook, so just switch off.
    wrapped = getattr(kernel, "dispatch_shell", None)
    seen = 0
    while wrapped is not None and seen < 10:
        if getattr(wrapped, "_tfmagic_idle_fix", False):
            wrapped.enabled = False
            return
        wrapped = getattr(wrapped, "__wrapped__", None)
        seen += 1


def installed(kernel: Any) -> bool:
    current = getattr(kernel, "dispatch_shell", None)
    return bool(getattr(current, "_tfmagic_idle_fix", False) and current.enabled)
