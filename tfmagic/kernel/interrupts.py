"""Kernel > Interrupt reaches every run in the kernel, the cell's and the panels' background runs.

ipykernel 7.4 hears SIGINT three ways (kernelapp.py, kernelbase.py, ipkernel.py):
- no cell runs: SIG_IGN (``init_signal``), kept in ``kernel.saved_sigint_handler``
  while a message is handled, and put back after it;
- a cell runs Python: ``default_int_handler`` (``pre_handler_hook``): KeyboardInterrupt;
- a cell awaits: ``_cancel_on_sigint`` cancels the cell's task at its next await.
A run a panel's Play started after its cell ended is a task of its own that none of
them reaches. :func:`install` chains each of the three (never replaces it): the
chained handler first asks every background run to stop (listeners), then calls the
kernel's. :func:`raising` makes SIGINT raise at once during tfmagic's own Python work in
an awaiting cell (a set-up whose trace takes seconds), as in a plain cell.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Any, Callable

__all__ = ["listen", "install", "uninstall", "installed", "raising", "chained", "heard"]

_listeners: list[Callable[[], None]] = []  # called first on every SIGINT while installed
_heard = [0]  # SIGINTs so far (an error that follows one may be how C code let it through)


def heard() -> int:
    """How many interrupts this process has heard (while tfmagic listened)."""
    return _heard[0]


def listen(callback: Callable[[], None]) -> None:
    """callback() on every Kernel > Interrupt (in the signal handler: it must only ask)."""
    if callback not in _listeners:
        _listeners.append(callback)


def _tell_listeners() -> None:
    for callback in list(_listeners):
        try:
            callback()
        except Exception:  # (a listener must never cost the kernel its own handling)
            pass


def chained(previous: Any) -> Callable:
    """A SIGINT handler that tells the listeners, then does what `previous` did."""
    if getattr(previous, "_tfmagic_chained", False):
        return previous

    def handler(signum, frame):
        _heard[0] += 1
        _tell_listeners()
        if callable(previous):
            previous(signum, frame)  # (default_int_handler raises: so would the block)
        elif previous == signal.SIG_DFL:
            signal.default_int_handler(signum, frame)
        _raise_in_block()  # SIG_IGN (an idle kernel) does nothing more, unless a block is open

    handler._tfmagic_chained = True
    handler.previous = previous
    return handler


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _set(handler: Any) -> None:
    if _main_thread():
        signal.signal(signal.SIGINT, handler)


def _unchain(handler: Any) -> Any:
    return handler.previous if getattr(handler, "_tfmagic_chained", False) else handler


def install(kernel: Any) -> bool:
    """Chain the kernel's SIGINT handling in its three states; True if done. Idempotent."""
    if kernel is None or not _main_thread() or getattr(kernel, "_tfmagic_interrupts", False):
        return bool(kernel is not None and getattr(kernel, "_tfmagic_interrupts", False))
    pre, cancel_on_sigint = getattr(kernel, "pre_handler_hook", None), getattr(kernel, "_cancel_on_sigint", None)
    if pre is None or cancel_on_sigint is None:
        return False

    def pre_handler_hook():
        pre()  # saves the idle handler, sets default_int_handler for the message's handler
        if hasattr(kernel, "saved_sigint_handler"):
            kernel.saved_sigint_handler = chained(kernel.saved_sigint_handler)
        _set(chained(signal.getsignal(signal.SIGINT)))

    @contextlib.contextmanager
    def chained_cancel_on_sigint(future):
        with cancel_on_sigint(future):  # installs its handler (cancel the cell's task)...
            _set(chained(signal.getsignal(signal.SIGINT)))  # ...which ours now calls
            yield

    kernel.pre_handler_hook = pre_handler_hook  # instance attributes: looked up at call time
    kernel._cancel_on_sigint = chained_cancel_on_sigint
    kernel._tfmagic_interrupts = True
    _chain[0] += 1
    # Now: inside the %load_ext cell's handler (or at start-up, with no handler yet).
    if hasattr(kernel, "saved_sigint_handler"):
        kernel.saved_sigint_handler = chained(kernel.saved_sigint_handler)
    _set(chained(signal.getsignal(signal.SIGINT)))
    return True


def uninstall(kernel: Any) -> None:
    """Undo :func:`install`: the kernel's own handling, as before."""
    if kernel is None or not getattr(kernel, "_tfmagic_interrupts", False):
        return
    for name in ("pre_handler_hook", "_cancel_on_sigint", "_tfmagic_interrupts"):
        kernel.__dict__.pop(name, None)
    _chain[0] -= 1
    if hasattr(kernel, "saved_sigint_handler"):
        kernel.saved_sigint_handler = _unchain(kernel.saved_sigint_handler)
    if _main_thread():
        _set(_unchain(signal.getsignal(signal.SIGINT)))


def installed(kernel: Any) -> bool:
    return bool(getattr(kernel, "_tfmagic_interrupts", False))


REMIND_SECONDS = 0.1  # an interrupt not heard by then (swallowed) is raised again


_raising: list = []  # the open raising() blocks (the innermost last)
_chain = [0]  # kernels whose SIGINT handling is chained (then every handler in place is ours)


class raising:
    """While the block runs Python (not awaiting), SIGINT raises KeyboardInterrupt at once,
    after the handler in place has seen it (ipykernel's then cancels the awaiting cell).
    Raised where Python ignores it (a weakref callback, a __del__: "Exception ignored in"),
    or caught by other code, it is raised again every REMIND_SECONDS (unsaid) until the
    block has ended. Where the chain is installed, entering costs a list append."""

    __slots__ = ("state", "own")

    def __enter__(self):
        self.state = state = {"open": True, "hook": None}
        self.own = None
        if not _chain[0]:  # (no chain installed: a handler of our own for the block)
            if not _main_thread():
                return self
            self.own = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, chained(self.own))
        _raising.append(state)
        return self

    def __exit__(self, *exc):
        state = self.state
        state["open"] = False
        if state in _raising:
            _raising.remove(state)
        if self.own is not None:
            signal.signal(signal.SIGINT, self.own)
        if state["hook"] is not None and sys.unraisablehook is state["hook"]:
            sys.unraisablehook = state["hook"].previous
        return False


def _raise_in_block():
    """From the chained handler: the innermost open raising() block hears it at once."""
    if not _raising:
        return
    state = _raising[-1]
    if isinstance(sys.exc_info()[1], (KeyboardInterrupt, GeneratorExit)):
        # An interrupt is already unwinding (a finally, an __exit__, a generator's close):
        # one raised inside that cleanup cuts it short (TensorFlow's graph stack can then
        # print "Exception ignored ... Nesting violated"). Heard once the cleanup is done.
        _remind(state)
        return
    if state["hook"] is None:  # an interrupt raised where Python ignores it is raised again
        unraisable = sys.unraisablehook

        def hook(info):
            if state["open"] and info.exc_type is KeyboardInterrupt:
                pass  # raised there, not heard: the reminder raises it again, unsaid
            else:
                unraisable(info)

        hook.previous = unraisable
        state["hook"] = sys.unraisablehook = hook
    _remind(state)
    raise KeyboardInterrupt


def _remind(state):
    main = threading.main_thread().ident

    def again():
        if state["open"]:
            signal.pthread_kill(main, signal.SIGINT)

    timer = threading.Timer(REMIND_SECONDS, again)
    timer.daemon = True
    timer.start()
