#!/usr/bin/env python
"""What keeping a cell's earlier runs costs (tfmagic/earlier.py, issue 26 §1), in one process,
interleaved, medians:

1. a re-run of the course's cell through IPython (text mode, its result's text and HTML made as a
   notebook shows them), with the series kept as usual against the same with `join` switched
   off (no series, no table, no faint lines), one of each in turn;
2. the live panel made for a run with 10 earlier runs against the same run with none (the faint
   lines, their legend and the table: each sent once, when the panel is made);
3. the bytes the series keep once full (20 series of 11 runs of 5000 steps, a 2-D path each).

    python benchmarks/bench_earlier.py [--repeats R]
"""

import argparse
import contextlib
import io
import statistics
import time

from IPython.core.interactiveshell import InteractiveShell

import tfmagic.earlier as earlier
from tfmagic.descent.earlier import EARLIER, MAX_BYTES
from tfmagic.runtime.tfimport import tensorflow

tf = tensorflow()
COURSE = "y = tf.pow(x, 2.0) - 4.0 * x + 4.0"
BOWL = "L = (a - 1.0) ** 2 + 3.0 * (b + 0.5) ** 2"
JOIN = earlier.join


def shown(ip, line, cell):
    """One re-run as a notebook shows it: the run, its text and its HTML."""
    with contextlib.redirect_stdout(io.StringIO()):
        r = ip.run_cell_magic("descend", line + " --no-widgets", cell)
    repr(r), r._repr_html_()
    return r


def rerun_ms(ip, steps, keep, i):
    """One re-run (eta changed, as in class), ms."""
    earlier.join = JOIN if keep else (lambda shell, args, result: None)
    try:
        t = time.perf_counter()
        shown(ip, f"x=10.0 --eta 0.0{1 + i % 9} --steps {steps}", COURSE)
        return (time.perf_counter() - t) * 1e3
    finally:
        earlier.join = JOIN


def panel_ms(ip, result, with_earlier, n=5):
    from tfmagic.descent.loss_grid import loss_grid_for
    from tfmagic.kernel.runner import LiveRunner
    from tfmagic.widgets.panel import DescentPanel

    kept = result.earlier
    result.earlier = kept if with_earlier else ()
    curve, surface = loss_grid_for(tf, result.engine)
    try:
        t = time.perf_counter()
        for _ in range(n):
            panel = DescentPanel(LiveRunner(result.engine), result, 50, {"CPU:0": "CPU:0"}, curve=curve, surface=surface)
            panel.widget.close_all() if hasattr(panel.widget, "close_all") else None
        return (time.perf_counter() - t) / n * 1e3
    finally:
        result.earlier = kept


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "tfmagic")
    ip.user_ns["tf"] = tf
    for steps in (50, 5000):  # warm: both ways compiled, the series full
        for i in range(12):
            rerun_ms(ip, steps, i % 2 == 0, i)
    print("| re-run of the course's cell, text + HTML | with earlier runs, ms | without, ms | ratio |")
    print("|---|---|---|---|")
    for steps in (50, 5000):
        with_, without = [], []
        for i in range(10 * args.repeats):  # (one with, one without, in turn)
            with_.append(rerun_ms(ip, steps, True, i))
            without.append(rerun_ms(ip, steps, False, i))
        a, b = statistics.median(with_), statistics.median(without)
        print(f"| {steps} steps, 10 earlier runs | {a:.1f} | {b:.1f} | {a / b:.2f} |")

    with contextlib.redirect_stdout(io.StringIO()):
        for i in range(11):
            r = ip.run_cell_magic("descend", f"x=10.0 --eta 0.0{1 + i % 9} --steps 200 --no-widgets", COURSE)
    with_, without = [], []
    for _ in range(args.repeats):
        with_.append(panel_ms(ip, r, True))
        without.append(panel_ms(ip, r, False))
    a, b = statistics.median(with_), statistics.median(without)
    print(f"\n| the live panel made (1-D curve) | with 10 earlier runs, ms | without, ms | ratio |\n|---|---|---|---|\n"
          f"| course's cell, 200 steps | {a:.1f} | {b:.1f} | {a / b:.2f} |")

    EARLIER.clear()
    with contextlib.redirect_stdout(io.StringIO()):
        for s in range(EARLIER.max_series):
            for i in range(11):
                ip.run_cell_magic("descend", f"a=2.0 b=1.0 --eta 0.0{1 + i % 5} --steps 5000 --no-widgets", BOWL + f" + {s}.0")
    print(f"\nkept: {EARLIER.nbytes} bytes in {len(EARLIER)} series (bound {MAX_BYTES})")


if __name__ == "__main__":
    main()
