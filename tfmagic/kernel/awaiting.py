"""Keep widgets live while a ``%%descend`` cell is still running.

Why this module exists (measured on ipykernel 7.4, see FACTS.md):

* While a cell runs a *synchronous* loop, comm messages from the browser (a
  slider change) queue until the cell ends; the loop can never see them.
* A cell that *awaits* (top-level ``await``) lets ipykernel >= 7.4 dispatch
  comm messages while the cell waits.  So the live path of a cell magic
  returns a coroutine, the cell is rewritten to ``await`` it, and the
  coroutine yields with :func:`pause_for_frontend` between ~20 ms chunks.
* ipykernel 7.4 publishes no busy/idle status for those messages, which kills
  a slider in JupyterLab: :mod:`tfmagic.kernel.ipykernel_fix` patches that.
* A kernel interrupt during an awaiting cell arrives as
  ``asyncio.CancelledError`` (not ``KeyboardInterrupt``) at its next await; catch
  :data:`STOP_EXCEPTIONS` around the loop to turn it into a clean stop. While the
  cell's own Python runs (a set-up whose trace takes seconds, a chunk), it raises
  KeyboardInterrupt at once, as in a plain cell (:mod:`tfmagic.kernel.interrupts`).

No TensorFlow and no ipywidgets here: this is plumbing only.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import re
import sys
from typing import Any, Iterable

from tfmagic.kernel.interrupts import raising
from tfmagic.runtime.tfimport import quiet_retracing

__all__ = [
    "MIN_IPYKERNEL",
    "STOP_EXCEPTIONS",
    "live_supported",
    "comms_reach_a_running_cell",
    "register_await_transform",
    "unregister_await_transform",
    "is_await_transform_registered",
    "run_cell_magic_awaited",
    "run_line_magic_awaited",
    "cell_is_awaited",
    "pause_for_frontend",
    "drive",
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


def comms_reach_a_running_cell(kernel: Any) -> tuple[bool, str]:
    """``(True, "")`` if *kernel* hands widget messages to their widgets while a cell awaits
    (ipykernel 7.4's ``dispatch_shell(..., concurrent=True)``), else ``(False, what it is)``.
    A kernel that cannot say (no such method) counts as able: the front end's answer decides."""
    method = getattr(type(kernel), "dispatch_shell", None)
    if method is None:
        return True, ""
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return True, ""
    if "concurrent" in parameters:
        return True, ""
    import ipykernel

    return False, f"{type(kernel).__name__} (ipykernel {getattr(ipykernel, '__version__', '?')})"


# ---------------------------------------------------------------------------
# Make a ``%%descend`` cell an awaiting cell
# ---------------------------------------------------------------------------

# IPython's static transform turns ``%%name line\nbody`` into exactly one line:
#   get_ipython().run_cell_magic('name', 'line', 'body')\n
# (inputtransformer2.cell_magic, IPython 7-9).  We rewrite that line only.
_CELL_MAGIC_CALL = re.compile(r"get_ipython\(\)\.run_cell_magic\((['\"])(\w+)\1, ")
# ... and a line magic on a line of its own, at the top level of a cell, into
#   get_ipython().run_line_magic('name', 'line')\n
_LINE_MAGIC_CALL = re.compile(r"get_ipython\(\)\.run_line_magic\((['\"])(\w+)\1, ")


class _AwaitCellMagicTransformer:
    """An ``input_transformers_post`` entry.

    Post transformers run after IPython's own transforms, on the list of lines;
    ``should_run_async`` then sees the ``await`` in the transformed cell and
    ipykernel runs the cell as a coroutine on its loop.
    """

    _tfmagic_await_transformer = True  # marker for (un)registration

    def __init__(self, magic_names: Iterable[str], line_names: Iterable[str] = ()):
        self.magic_names = set(magic_names)  # cell magics
        self.line_names = set(line_names)  # line magics
        # Import path of this module, so the rewritten cell needs no name in
        # the user namespace (``%reset`` cannot break it).
        self._module = __name__

    def __call__(self, lines: list[str]) -> list[str]:
        m = _CELL_MAGIC_CALL.match(lines[0]) if len(lines) == 1 else None
        if m is not None:
            return [self._awaited(m, self.magic_names, "run_cell_magic_awaited", lines[0])]
        out = []
        for line in lines:  # (a line magic assigned or indented stays as it was: it does not await)
            m = _LINE_MAGIC_CALL.match(line)
            out.append(self._awaited(m, self.line_names, "run_line_magic_awaited", line) if m else line)
        return out

    def _awaited(self, m: re.Match, names: set, runner: str, line: str) -> str:
        if m.group(2) not in names:
            return line
        return (f"await __import__({self._module!r}, fromlist=['_'])"
                f".{runner}(get_ipython(), {m.group(1)}{m.group(2)}{m.group(1)}, " + line[m.end():])

    def __repr__(self) -> str:
        return f"<tfmagic await transformer for {sorted(self.magic_names)}>"


def _find_transformer(shell: Any) -> _AwaitCellMagicTransformer | None:
    for t in getattr(shell, "input_transformers_post", []):
        if getattr(t, "_tfmagic_await_transformer", False):
            return t
    return None


def register_await_transform(shell: Any, magic_names: Iterable[str] | str, line_names: Iterable[str] = ()) -> bool:
    """Make cells that start with ``%%<name>`` (for each of *magic_names*) await, and lines
    that are ``%<name> ...`` (for each of *line_names*) at the top level of a cell.

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
        existing.line_names.update(line_names)
        return True
    shell.input_transformers_post.append(_AwaitCellMagicTransformer(magic_names, line_names))
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
    return await _awaited_call(lambda: shell.run_cell_magic(magic_name, line, cell))


async def run_line_magic_awaited(shell: Any, magic_name: str, line: str, *args: Any, **kwargs: Any) -> Any:
    """The same for a line magic (e.g. `%descend_runs stop` waits until the runs have stopped)."""
    return await _awaited_call(lambda: shell.run_line_magic(magic_name, line, *args, **kwargs))


async def _awaited_call(call: Any) -> Any:
    async def run():
        token = _IN_AWAITED_CELL.set(True)
        try:
            result = call()
        finally:
            _IN_AWAITED_CELL.reset(token)
        if inspect.isawaitable(result):
            result = await result
        return result

    return await _HeardAtOnce(run())


class _HeardAtOnce:
    """Awaits a coroutine step by step; during each step (Python running, not awaiting)
    SIGINT raises KeyboardInterrupt at once, and tfmagic's own retracing is not warned of.
    Between steps the kernel's handler is in place (a cancel at the next await)."""

    def __init__(self, coro: Any):
        self.coro = coro

    def __await__(self):
        value, error = None, None
        while True:
            try:
                with raising(), quiet_retracing():
                    step = self.coro.throw(error) if error is not None else self.coro.send(value)
            except StopIteration as done:
                return done.value
            try:
                value, error = (yield step), None
            except BaseException as err:  # a cancel (Kernel > Interrupt): into the coroutine
                value, error = None, err


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


async def drive(chunks: Any, pause: Any = pause_for_frontend) -> Any:
    """Run a generator of chunks (a descent, a series of runs), yielding to the kernel's
    loop between them, so a widget message or Kernel > Interrupt is seen within a chunk.

    An interrupt (a cancel of the awaiting cell) is thrown into the generator as
    KeyboardInterrupt, which it handles (the run ends 'interrupted'); returns what
    the generator returns. `pause()`: what to await between chunks (a paced run waits
    longer).
    """
    interrupted = False
    while True:
        try:
            with raising(), quiet_retracing():  # (a chunk that traces or compiles: heard at once)
                if interrupted:
                    interrupted = False
                    chunks.throw(KeyboardInterrupt)
                else:
                    next(chunks)
        except StopIteration as done:
            return done.value
        try:
            await pause()
        except STOP_EXCEPTIONS:
            interrupted = True
