"""Keep widgets live while a ``%%descend`` cell is still running.

Why this module exists (measured on ipykernel 7.4, see FACTS.md):

* While a cell runs a *synchronous* loop, comm messages from the browser (a
  slider change) queue until the cell ends; the loop can never see them.
* A cell that *awaits* (top-level ``await``) lets ipykernel >= 7.4 dispatch
  comm messages while the cell waits.  So the live path of a cell magic
  returns a coroutine, the cell is rewritten to ``await`` it, and the
  coroutine yields with :func:`pause_for_frontend` between ~20 ms chunks.
* Trap: ipykernel 7.4 publishes no busy/idle status for comm messages it
  dispatches while a cell awaits.  JupyterLab's widget manager sends the next
  update of a model only after the *idle* of the previous one, so a slider goes
  dead after its first change.  :func:`install_idle_status_fix` publishes that
  status (private kernel API, guarded).
* A kernel interrupt during an awaiting cell arrives as
  ``asyncio.CancelledError`` (not ``KeyboardInterrupt``); catch
  :data:`STOP_EXCEPTIONS` around the loop to turn it into a clean stop.

No TensorFlow and no ipywidgets here: this is plumbing only.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import re
import sys
from typing import Any, Iterable

__all__ = [
    "MIN_IPYKERNEL",
    "STOP_EXCEPTIONS",
    "live_supported",
    "register_await_transform",
    "unregister_await_transform",
    "is_await_transform_registered",
    "run_cell_magic_awaited",
    "cell_is_awaited",
    "pause_for_frontend",
    "install_idle_status_fix",
    "uninstall_idle_status_fix",
    "idle_status_fix_installed",
]

log = logging.getLogger(__name__)

#: Oldest ipykernel that dispatches comm messages while an awaiting cell runs.
MIN_IPYKERNEL = (7, 4)

#: What an interrupt looks like inside the live loop.  Inside an awaiting cell
#: ipykernel turns SIGINT into a cancellation of the cell's task; a plain
#: ``KeyboardInterrupt`` is still possible if the signal lands elsewhere.
STOP_EXCEPTIONS = (asyncio.CancelledError, KeyboardInterrupt)

# True while the magic function is being called from a cell that our input
# transformer rewrote to ``await`` - only then may the magic return a coroutine.
_IN_AWAITED_CELL: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tfmagic_in_awaited_cell", default=False
)

_warned: set[str] = set()


def _warn_once(key: str, message: str, logger: Any = None) -> None:
    if key in _warned:
        return
    _warned.add(key)
    (logger or log).warning(message)


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


# ---------------------------------------------------------------------------
# Can this shell keep widgets live?
# ---------------------------------------------------------------------------

def live_supported(shell: Any) -> tuple[bool, str]:
    """Return ``(True, "")`` if *shell* can run a live (awaiting) cell.

    Live means: an ipykernel >= 7.4 kernel whose shell runs top-level ``await``
    on the kernel's own asyncio loop.  Otherwise ``(False, reason)`` with a
    one-line reason that can be shown to the user.
    """
    if shell is None:
        return False, "not running inside IPython; live widgets need a Jupyter kernel"

    mro_names = {f"{c.__module__}.{c.__qualname__}" for c in type(shell).__mro__}
    if any(n.startswith("IPython.terminal.") for n in mro_names):
        return False, "terminal IPython has no widget frontend"

    zmqshell = sys.modules.get("ipykernel.zmqshell")
    if zmqshell is None or not isinstance(shell, zmqshell.ZMQInteractiveShell):
        return False, (
            f"{type(shell).__name__} is not a Jupyter kernel shell; "
            "live widgets need an ipykernel kernel"
        )

    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return False, "the IPython shell has no kernel attached"
    if "inprocess" in type(kernel).__module__:
        return False, "an in-process kernel cannot deliver widget messages while a cell runs"

    import ipykernel  # already imported: the shell is a ZMQInteractiveShell

    version = getattr(ipykernel, "__version__", "0")
    if _version_tuple(version) < MIN_IPYKERNEL:
        need = ".".join(map(str, MIN_IPYKERNEL))
        return False, (
            f"ipykernel {version} cannot deliver widget messages while a cell runs; "
            f"upgrade to ipykernel>={need}"
        )

    if not getattr(shell, "autoawait", False):
        return False, "autoawait is off (%autoawait False); live widgets need it on"
    try:
        from IPython.core.async_helpers import _asyncio_runner
    except ImportError:  # pragma: no cover - very old/new IPython
        _asyncio_runner = None
    if _asyncio_runner is not None and getattr(shell, "loop_runner", None) is not _asyncio_runner:
        return False, "the autoawait runner is not asyncio (%autoawait asyncio to fix)"

    return True, ""


# ---------------------------------------------------------------------------
# Make a ``%%descend`` cell an awaiting cell
# ---------------------------------------------------------------------------

# IPython's static transform turns ``%%name line\nbody`` into exactly one line:
#   get_ipython().run_cell_magic('name', 'line', 'body')\n
# (inputtransformer2.cell_magic, IPython 7-9).  We rewrite that line only.
_CELL_MAGIC_CALL = re.compile(r"get_ipython\(\)\.run_cell_magic\((['\"])(\w+)\1, ")


class _AwaitCellMagicTransformer:
    """An ``input_transformers_post`` entry.

    Post transformers run after IPython's own transforms, on the list of lines;
    ``should_run_async`` then sees the ``await`` in the transformed cell and
    ipykernel runs the cell as a coroutine on its loop.
    """

    _tfmagic_await_transformer = True  # marker for (un)registration

    def __init__(self, magic_names: Iterable[str]):
        self.magic_names = set(magic_names)
        # Import path of this module, so the rewritten cell needs no name in
        # the user namespace (``%reset`` cannot break it).
        self._module = __name__

    def __call__(self, lines: list[str]) -> list[str]:
        if len(lines) != 1:
            return lines
        m = _CELL_MAGIC_CALL.match(lines[0])
        if m is None or m.group(2) not in self.magic_names:
            return lines
        rest = lines[0][m.end():]
        call = (
            f"await __import__({self._module!r}, fromlist=['_'])"
            f".run_cell_magic_awaited(get_ipython(), {m.group(1)}{m.group(2)}{m.group(1)}, "
        )
        return [call + rest]

    def __repr__(self) -> str:
        return f"<tfmagic await transformer for {sorted(self.magic_names)}>"


def _find_transformer(shell: Any) -> _AwaitCellMagicTransformer | None:
    for t in getattr(shell, "input_transformers_post", []):
        if getattr(t, "_tfmagic_await_transformer", False):
            return t
    return None


def register_await_transform(shell: Any, magic_names: Iterable[str] | str) -> bool:
    """Make cells that start with ``%%<name>`` (for each of *magic_names*) await.

    Returns True if the rewrite is active, False if ``live_supported(shell)``
    is False (then nothing is registered and cells run as before).
    Registering again is harmless: the names are added to the one transformer.
    """
    if isinstance(magic_names, str):
        magic_names = [magic_names]
    ok, reason = live_supported(shell)
    if not ok:
        log.debug("not registering await transform: %s", reason)
        return False
    existing = _find_transformer(shell)
    if existing is not None:
        existing.magic_names.update(magic_names)
        return True
    shell.input_transformers_post.append(_AwaitCellMagicTransformer(magic_names))
    return True


def unregister_await_transform(shell: Any) -> None:
    """Remove the transformer(s) added by :func:`register_await_transform`."""
    transformers = getattr(shell, "input_transformers_post", None)
    if transformers is None:
        return
    transformers[:] = [
        t for t in transformers if not getattr(t, "_tfmagic_await_transformer", False)
    ]


def is_await_transform_registered(shell: Any) -> bool:
    return _find_transformer(shell) is not None


def cell_is_awaited() -> bool:
    """True while a magic is called from a cell rewritten to ``await`` it.

    The magic function may return a coroutine only when this is True; otherwise
    nobody would await it.
    """
    return _IN_AWAITED_CELL.get()


async def run_cell_magic_awaited(shell: Any, magic_name: str, line: str, cell: str) -> Any:
    """What a rewritten cell awaits: call the magic, await its result if needed.

    The value returned becomes the cell's ``Out`` - the final result, never a
    coroutine.
    """
    token = _IN_AWAITED_CELL.set(True)
    try:
        result = shell.run_cell_magic(magic_name, line, cell)
    finally:
        _IN_AWAITED_CELL.reset(token)
    if inspect.isawaitable(result):
        result = await result
    return result


# ---------------------------------------------------------------------------
# The yield between chunks
# ---------------------------------------------------------------------------

# A comm message reaches the cell's thread through a chain of small tasks
# (shell channel thread -> socket -> on_recv task -> shell_main -> dispatch
# task).  A 1 ms sleep lets the loop poll the sockets (a bare sleep(0) after
# long chunks gave 200-270 ms latency); the few sleep(0)s that follow let a
# chain that started at the very end of the sleep finish before the next
# ~20 ms chunk of work starves it.
_DRAIN_STEPS = 4


async def pause_for_frontend(seconds: float = 0.001) -> None:
    """Yield to the kernel's event loop so pending widget messages are handled.

    Call between time-boxed chunks of work (~20 ms).  Raises
    ``asyncio.CancelledError`` when the user interrupts the kernel.
    """
    await asyncio.sleep(seconds)
    for _ in range(_DRAIN_STEPS):
        await asyncio.sleep(0)


# ---------------------------------------------------------------------------
# The dead-slider fix: busy/idle around comm messages dispatched mid-cell
# ---------------------------------------------------------------------------

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


@contextlib.contextmanager
def busy_while(kernel: Any):
    """Keep the frontend's kernel indicator at busy while the block (an awaiting
    cell's run) goes on.

    While a cell awaits, ipykernel 7.4 publishes idle for each widget, control
    or subshell message it handles (and so does the idle-status fix), and
    JupyterLab's indicator shows the latest status of any parent: it said
    "Idle" during a run.  Each such idle is followed by busy for the cell.
    Wraps the kernel instance's private ``_publish_status``; without it, does nothing.
    """
    publish = getattr(kernel, "_publish_status", None)
    get_parent = getattr(kernel, "get_parent", None)
    if publish is None or get_parent is None:
        yield
        return
    cell = get_parent("shell")  # the cell's execute_request (a context variable: ours)
    cell_id = (cell or {}).get("header", {}).get("msg_id")
    if not cell_id:
        yield
        return

    def publish_status(status, channel, parent=None):
        publish(status, channel, parent)
        if status == "idle":
            other = (parent or get_parent(channel) or {}).get("header", {}).get("msg_id")
            if other != cell_id:
                publish("busy", "shell", cell)

    kernel._publish_status = publish_status  # instance attribute: looked up at call time
    try:
        yield
    finally:
        if kernel.__dict__.get("_publish_status") is publish_status:
            if getattr(publish, "__func__", None) is getattr(type(kernel), "_publish_status", None):
                del kernel._publish_status
            else:
                kernel._publish_status = publish


def install_idle_status_fix(kernel: Any) -> bool:
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
    # Instance attribute: ipykernel looks up self.dispatch_shell at call time.
    kernel.dispatch_shell = _make_dispatch_wrapper(kernel, current)
    return True


def uninstall_idle_status_fix(kernel: Any) -> None:
    """Undo :func:`install_idle_status_fix` (safe to call when not installed)."""
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


def idle_status_fix_installed(kernel: Any) -> bool:
    current = getattr(kernel, "dispatch_shell", None)
    return bool(getattr(current, "_tfmagic_idle_fix", False) and current.enabled)
