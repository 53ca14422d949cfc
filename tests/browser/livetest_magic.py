"""Test-only ``%%livetest`` cell magic, loaded *inside a kernel* by the tests.

It is the smallest stand-in for ``%%descend``: it displays an
``ipywidgets.FloatSlider`` and busy-waits for ``seconds`` in 20 ms chunks,
recording the slider value after every chunk and awaiting
``tfmagic.kernel.awaiting.pause_for_frontend()`` between chunks.  The kernel must be able
to import this directory (the tests put it on PYTHONPATH).

Usage in a kernel::

    import livetest_magic; livetest_magic.load(get_ipython())
    %%livetest 3

The cell's Out is a short summary dict; the full record is kept in the user
namespace as ``livetest_last``.
"""

from __future__ import annotations

import threading
import time

from tfmagic.kernel import awaiting
from tfmagic.kernel import ipykernel_fix

CHUNK_SECONDS = 0.02


def load(shell, *, idle_fix: bool = True) -> dict:
    """Register ``%%livetest``; return what the kernel supports (for tests)."""
    supported, reason = awaiting.live_supported(shell)
    kernel = getattr(shell, "kernel", None)
    if idle_fix:
        fix = ipykernel_fix.install(kernel)
    else:
        ipykernel_fix.uninstall(kernel)
        fix = False
    registered = awaiting.register_await_transform(shell, ["livetest"])
    shell.register_magic_function(_livetest, "cell", "livetest")
    return {"supported": supported, "reason": reason, "idle_fix": fix, "registered": registered}


def _busy_chunk() -> None:
    # Stand-in for ~20 ms of TensorFlow work: it holds the thread like real work.
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < CHUNK_SECONDS:
        pass


def _livetest(line: str, cell: str):
    import ipywidgets as widgets
    from IPython import get_ipython
    from IPython.display import display

    shell = get_ipython()
    seconds = float(line.strip() or 3)
    slider = widgets.FloatSlider(value=0.0, min=0.0, max=10.0, step=0.1, description="eta")
    slider.add_class("livetest-slider")
    # Mirrors what the loop last saw, so a browser test can poll the kernel's view.
    seen = widgets.Label(value="seen 0.0")
    seen.add_class("livetest-seen")
    record = {
        "model_id": slider.model_id,
        "values": [],  # slider value after each chunk
        "changes": [],  # (time.monotonic(), new value, thread name) from the observer
        "stopped": None,
        "awaited": awaiting.cell_is_awaited(),
    }
    slider.observe(
        lambda ch: record["changes"].append(
            (time.monotonic(), ch["new"], threading.current_thread().name)
        ),
        names="value",
    )
    display(slider)  # first display_data: the slider (tests take its model id)
    display(seen)
    shell.user_ns["livetest_last"] = record

    def summary():
        vals = record["values"]
        return {
            "stopped": record["stopped"],
            "chunks": len(vals),
            "distinct": sorted(set(vals)),
            "last": vals[-1] if vals else None,
        }

    def start():
        record["t_start"] = time.monotonic()
        return record["t_start"] + seconds

    def step(i):
        _busy_chunk()
        value = slider.value
        if not record["values"] or value != record["values"][-1]:
            seen.value = f"seen {value:g}"
        record["values"].append(value)
        if i == 0:
            print("livetest started", flush=True)

    if not record["awaited"]:
        # Blocking path: widgets cannot change while this runs.
        t_end, i = start(), 0
        while time.monotonic() < t_end:
            step(i)
            i += 1
        record["stopped"], record["t_end"] = "finished", time.monotonic()
        return summary()

    async def run():
        t_end, i = start(), 0
        try:
            while time.monotonic() < t_end:
                step(i)
                i += 1
                await awaiting.pause_for_frontend()
            record["stopped"] = "finished"
        except awaiting.STOP_EXCEPTIONS as exc:
            # A kernel interrupt: stop cleanly and keep what we have.
            record["stopped"] = type(exc).__name__
        record["t_end"] = time.monotonic()
        return summary()

    return run()
