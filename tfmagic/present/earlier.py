"""The earlier runs of a cell (descent/earlier.py) as a result shows them: each run's label
(what changed), the table under the result (text and HTML) and the faint lines of the static
loss chart; and the observer that keeps a run's points in its series each time it ends."""

import html

import numpy as np

from tfmagic.descent.earlier import PATH_NAMES, POINTS
from tfmagic.descent.observers import Observer
from tfmagic.descent.status import Status
from tfmagic.present.messages import EARLIER_HEAD, EARLIER_TITLE, earlier_label, steps_text
from tfmagic.present.points import decimate, path_points

SVG_POINTS = 100  # points of an earlier run's faint line in a saved record (10 runs: ~12 kB)

_NOT_A_RUN = frozenset({Status.INTERRUPTED, Status.READY, Status.RUNNING})  # (at 0 steps: stopped before its first)


class EarlierResult:
    """One earlier run of the cell, read only: .label (what changed from the run before it),
    .number, .steps, .final_loss, .status, .history ('step', 'loss' and the path of up to two
    scalar variables, at most 500 points ending where the run ended), .settings, .changes."""

    def __init__(self, run):
        self._run = run

    def __getattr__(self, name):
        if name == "_run":
            raise AttributeError(name)
        return getattr(self._run, name)

    @property
    def label(self):
        return earlier_label(self._run)

    def __repr__(self):
        return f"run {self.number} ({self.label}): {self.status}, {steps_text(self.steps)}, final loss {_loss(self.final_loss)}"


class Recorder(Observer):
    """Keeps `run`'s points in its series each time the result's engine ends a run (the cell's,
    then Play, Step or Reset and Play in its panel, until a re-run retires the engine)."""

    def __init__(self, run, result):
        self.run, self.result = run, result

    def end(self, engine):
        from tfmagic.present.html import run_end  # (html shows the table: imported when a run ends)

        if engine.steps == 0 and engine.status in _NOT_A_RUN:
            return  # (refused at its start: not a run of the series)
        points = path_points(engine.history, run_end(self.result), POINTS)
        names = [n for n in _path_names(engine) if n in points]
        self.run.keep(points, engine.status, engine.steps, engine.final_loss, names)


def _path_names(engine):
    """The variables whose path a picture draws: 1 or 2 scalar ones (else none)."""
    names = list(engine.variables)
    if len(names) > PATH_NAMES or any(v.shape.num_elements() != 1 for v in engine.variables.values()):
        return ()
    return names


def _loss(value):
    return "–" if value is None else f"{value:.4g}"


def earlier_rows(res):
    """(run, what changed, steps, final loss, status) of this run (when in a series) and of
    each earlier one, newest first."""
    rows = []
    now = res.this_run
    if now is not None:
        rows.append((f"{now.number} (this run)", earlier_label(now), str(res.steps), _loss(res.final_loss), str(res.status)))
    for run in res.earlier:
        rows.append((str(run.number), run.label, str(run.steps), _loss(run.final_loss), str(run.status)))
    return rows


def earlier_text(res):
    """The table, as text ('' for a run without earlier runs)."""
    if not res.earlier:
        return ""
    rows = [EARLIER_HEAD] + earlier_rows(res)
    widths = [max(len(r[i]) for r in rows) for i in range(len(EARLIER_HEAD))]
    return f"{EARLIER_TITLE}:\n" + "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def earlier_html(res):
    """The table, as HTML ('' for a run without earlier runs)."""
    if not res.earlier:
        return ""
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in EARLIER_HEAD)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in earlier_rows(res))
    return (f"<table class='tfmagic-earlier-table' aria-label='{e(EARLIER_TITLE)}'>"
            f"<caption style='text-align:left'>{e(EARLIER_TITLE)}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def legend_label(run, now=False):
    """A line's label on a chart: 'run 3: eta 0.1 → 0.3' ('this run …' for the current one)."""
    return f"{'this run, ' if now else ''}run {run.number}: {earlier_label(run)}"


def earlier_lines(res):
    """(label, steps, losses) of each earlier run, newest first: their faint lines in a saved
    record, at most SVG_POINTS each (the first and the last point kept)."""
    lines = []
    for run in res.earlier:
        keep = decimate(len(run.history.get("loss", ())), SVG_POINTS)
        lines.append((legend_label(run), np.asarray(run.history.get("step", ()))[keep],
                      np.asarray(run.history.get("loss", ()))[keep]))
    return lines
