"""Runs within reach: the live panels of this kernel, and the cells that show them.

- `%descend_runs` lists the panels whose runs can go on and shows each again (after a
  page reload their cells' outputs may be gone); `%descend_runs stop` stops the runs.
- A result shown again (`r`, `Out[5]`) shows its live panel while it has one.
- A panel that no cell shows any more (the cell that showed it ran again: the front end
  replaced its output; ipykernel passes the cell's id) is closed: its run stops and its
  ~80 widget models are closed, in the kernel and in the page. A panel still shown in
  another cell (detached by a newer run, say) stays drawn.
Cells without an id (nbclient, a terminal) keep their panels: nobody can tell.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from tfmagic.descent.status import Status

_current = {"cell": None}  # the id of the cell running now (pre_run_cell)
STOP_WAIT_S = 5.0  # the longest `%descend_runs stop` waits for the runs to end (a chunk is ~0.1 s)


@dataclass(eq=False)
class Shown:
    widget: Any  # the root widget
    runner: Any = None  # the panel's LiveRunner (None: a comparison view)
    result: Any = None  # what the cell returned
    line: str = ""  # the magic's line, to list it by
    cells: set = field(default_factory=set)  # ids of the cells showing it (None: unknown)
    handle: Any = None  # the display of it in its own cell
    executions: set = field(default_factory=set)  # the executions that showed it (a cell's own Out: not again)

    @property
    def live(self):
        return self.runner is not None and not self.runner.detached


_shown: list[Shown] = []


def show(widget, runner=None, result=None, line=""):
    """Display `widget` in the current cell and keep track of it: where no widget can be
    drawn (an exported page, GitHub) its text says where the record is; when the kernel
    shuts down, the display gives way to that text (a saved notebook then has no widget
    output whose model is gone)."""
    from IPython.display import display

    entry = Shown(widget, runner, result, line, {_current["cell"]}, executions={_execution()})
    bundle = dict(widget._repr_mimebundle_(), **{"text/plain": gone_text(entry)})
    entry.handle = display(bundle, raw=True, display_id=True)
    _shown.append(entry)
    if not _at_exit:
        import atexit

        _at_exit.append(atexit.register(_kernel_exits))  # (after ipykernel's own: it runs before them)
    return entry


_at_exit = []


def gone_text(entry, why="it needs its kernel"):
    """The line a live view leaves where it cannot be drawn (`why`: 'it needs its kernel')."""
    if entry.runner is not None:
        return f"[The live panel of this run is not shown: {why}. The run's record is the cell's result.]"
    why = why.replace("it needs its", "they need their").replace("its kernel", "their kernel")
    return f"[The live charts of these runs are not shown: {why}. The runs' record is the cell's result.]"


def give_way(entry, why):
    """The display of `entry` becomes a line of text (its record is the cell's result); a run
    that went on after its result was shown (Play after the cell ended) leaves its record now."""
    if entry.handle is None:
        return
    text, record = gone_text(entry, why), ""
    result = entry.result
    if entry.runner is not None and getattr(result, "shown_steps", None) not in (None, result.steps):
        text = (f"[The live panel of this run is not shown: {why}. The run went on to step {result.steps} after"
                f" the cell's result was shown; its record now:]")
        record = result._repr_html_()
    entry.handle.update({"text/plain": text, "text/html": f"<div class='tfmagic-gave-way'>{html.escape(text)}</div>{record}"},
                        raw=True)


def _kernel_exits():
    """The kernel shuts down or restarts: its panels' displays give way, so that a notebook
    saved afterwards shows no "Error displaying widget: model not found"."""
    from IPython import get_ipython

    if getattr(get_ipython(), "kernel", None) is None:  # (a terminal shows no widget)
        return
    for entry in list(_shown):
        try:
            give_way(entry, "its kernel shut down")
        except Exception:  # (the channel may be gone already)
            return


def cell_starts(cell_id):
    """A cell begins to run: what only its (now replaced) output showed is closed."""
    _current["cell"] = cell_id
    if cell_id is None:
        return
    for entry in list(_shown):
        if cell_id in entry.cells:
            entry.cells.discard(cell_id)
            if not entry.cells:
                if entry.runner is not None and entry.runner.running:
                    print(f"tfmagic: stopped the run of this cell's earlier panel at step {entry.runner.engine.steps:,}"
                          f" (its output was replaced).")
                close(entry)


def close(entry):
    """Stop the panel's run, close every widget model of it. (Its display is gone: its cell ran
    again, or it was withdrawn.)"""
    if entry in _shown:
        _shown.remove(entry)
    if entry.runner is not None and not entry.runner.detached:
        entry.runner.detach()
    _close_tree(entry.widget)


def withdraw(entry, text=""):
    """Take a panel out of its cell (a run refused before its first step): `text` instead."""
    if entry.handle is not None:
        entry.handle.update({"text/plain": text}, raw=True)
    close(entry)


def _widgets_in(value):
    import ipywidgets

    if isinstance(value, ipywidgets.Widget):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _widgets_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _widgets_in(item)


def _close_tree(root):
    """Close `root` and every widget its synced state refers to (children, layouts, marks...)."""
    seen, stack, order = set(), [root], []
    while stack:
        widget = stack.pop()
        if id(widget) in seen:
            continue
        seen.add(id(widget))
        order.append(widget)
        for name in getattr(widget, "keys", ()):
            stack.extend(_widgets_in(getattr(widget, name, None)))
    for widget in order:
        widget.close()


def live_runs():
    return [entry for entry in _shown if entry.live]


def result_bundle(result, include=None, exclude=None):
    """IPython's mimebundle formatter for a DescentResult: its live panel, if it has one
    (the result's HTML and text come with it, for a saved notebook)."""
    entry = next((e for e in _shown if e.result is result and e.live), None)
    if entry is None or _execution() in entry.executions:  # (the cell that shows it returns it too)
        return None
    entry.cells.add(_current["cell"])
    entry.executions.add(_execution())
    bundle = entry.widget._repr_mimebundle_()
    return {k: v for k, v in bundle.items() if k != "text/plain"}


def _execution():
    from IPython import get_ipython

    return getattr(get_ipython(), "execution_count", None)


def _state(entry):
    runner, engine = entry.runner, entry.runner.engine
    if runner.running:
        where = "running in the background" if runner.background else "running in its cell"
        return f"{where}, step {engine.steps:,}"
    return f"{engine.status}, step {engine.steps:,}"


async def _said_once_ended(tasks, said, still):
    import asyncio

    _, pending = await asyncio.wait(tasks, timeout=STOP_WAIT_S)
    print(still(len(pending)) if pending else said)


def _still_stopping(n):
    return (f"Stopping {n} run{'s' * (n != 1)}: not ended after {STOP_WAIT_S:g} s; "
            f"{'they end' if n != 1 else 'it ends'} at the end of {'their' if n != 1 else 'its'} chunk.")


def runs_magic(line):
    """%descend_runs [stop]: list the live panels and show them again, or stop their runs."""
    from IPython.core.error import UsageError
    from IPython.display import display

    words = line.split()
    if words not in ([], ["stop"]):
        raise UsageError("%descend_runs lists the live panels and shows them again; %descend_runs stop stops their runs")
    entries = live_runs()
    if not entries:
        print("No live %%descend panel in this kernel.")
        return
    if words == ["stop"]:
        going = [e for e in entries if e.runner.running]
        for entry in going:
            entry.runner.stop(Status.STOPPED)
        said = f"Stopped {len(going)} run{'s' * (len(going) != 1)}." if going else "No run is going on."
        tasks = [e.runner.task for e in going if getattr(e.runner, "task", None) is not None]
        from tfmagic.kernel.awaiting import cell_is_awaited

        if tasks and cell_is_awaited():  # (the runs end at their next chunk's end: said once they have)
            return _said_once_ended(tasks, said, _still_stopping)
        print(said)
        return
    for i, entry in enumerate(entries, 1):
        print(f"{i}. %%descend {entry.line}   {_state(entry)}")
    for entry in entries:
        entry.cells.add(_current["cell"])
        entry.executions.add(_execution())
        display(dict(entry.widget._repr_mimebundle_(), **{"text/plain": gone_text(entry)}), raw=True,
                display_id=entry.handle.display_id if entry.handle is not None else None)
