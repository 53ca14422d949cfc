#!/usr/bin/env python
"""What a re-run of a %%descend cell costs, against re-running hand-written cells.

The tweak-and-rerun loop: the same cell run again with another eta (and start).
One process, interleaved, medians of REPEATS re-runs, for each problem and step count:
  descend   the whole `%%descend NAMES --eta E --steps N --no-widgets` cell through IPython
            (parse, set-up, run, publish, the printed summary), run once before timing so the
            timed runs are re-runs (they trace the cell alone and try it, as a first run does,
            then run on the compiled steps: tfmagic/descent/reuse.py)
  course    the course's cell run again: a new @tf.function step (traced again), N calls
  warm      the fastest hand-written loop (graph or graph-xla) already traced and compiled:
            what no re-run can beat, only the steps
Targets (issue 14): descend <= 0.3x course at 50 and 1 000 steps; descend <= warm + 10 ms
at 200 000 steps. (~3 minutes; --quick ~1.)

    python benchmarks/bench_rerun.py [--quick]
"""

import argparse
import math
import contextlib
import io
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, os.path.dirname(__file__))
from bench_descent import HAND, Problem, problems, reset_vars, tf  # noqa: E402

REPEATS = 5
COURSE_UP_TO = 1000  # the course's loop at 200 000 steps takes ~20 s a run: its ratio says nothing new


def unseen():
    """A problem the engine was not tuned on: Himmelblau's function from (0.5, -1)."""
    return Problem("P5", "Himmelblau", 0.005, {"u": 0.5, "v": -1.0},
                   lambda u, v: (u**2 + v - 11) ** 2 + (u + v**2 - 7) ** 2,
                   "h = (u**2 + v - 11)**2 + (u + v**2 - 7)**2", ["u=0.5", "v=-1.0"], ())


def shell_for(p):
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    if "tfmagic" not in ip.extension_manager.loaded:
        ip.run_line_magic("load_ext", "tfmagic")
    ip.user_ns.update({"tf": tf, **p.namespace})
    return ip


def descend_rerun(ip, p, n, eta):
    line = f"{' '.join(p.specs)} --eta {eta:g} --steps {n} --no-widgets"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        t0 = time.perf_counter()
        res = ip.run_cell_magic("descend", line, p.cell)
        t = time.perf_counter() - t0
    if res.status != "max_steps":
        raise RuntimeError(f"{p.key} n={n}: {res.status}")
    return t, res.engine.reused


def course_rerun(p, n):
    t0 = time.perf_counter()
    vs = p.make_vars()
    HAND["course"](p, vs)(n)
    [v.numpy() for v in vs.values()]
    return time.perf_counter() - t0


def warm_loop(p, n):
    """The faster of the two hand-written loops, traced and compiled beforehand."""
    best = None
    for way in ("graph", "graph-xla"):
        vs = p.make_vars()
        run = HAND[way](p, vs)
        run(n)  # trace, compile
        times = []
        for _ in range(REPEATS):
            reset_vars(p, vs)
            t0 = time.perf_counter()
            run(n)
            [v.numpy() for v in vs.values()]
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        if best is None or t < best[0]:
            best = (t, way)
    return best


def bench(p, sizes):
    ip = shell_for(p)
    rows = []
    for n in sizes:
        descend_rerun(ip, p, n, p.eta)  # the first run: builds
        first_rerun, reused = descend_rerun(ip, p, n, p.eta * 0.9)
        d, c = [], []
        for i in range(REPEATS):
            d.append(descend_rerun(ip, p, n, p.eta * (0.8 + 0.01 * i))[0])
            if n <= COURSE_UP_TO:
                c.append(course_rerun(p, n))
        warm, way = warm_loop(p, n)
        rows.append(dict(problem=p.key, steps=n, descend=statistics.median(d), first_rerun=first_rerun,
                         reused=reused, course=statistics.median(c) if c else None, warm=warm, warm_way=way))
        r = rows[-1]
        print(f"  {p.key} {n:>7,}: descend re-run {r['descend'] * 1e3:7.1f} ms (first re-run {first_rerun * 1e3:.1f}, "
              f"reused {reused}), course re-run "
              f"{r['course'] * 1e3 if c else math.nan:7.1f} ms, warm {way} {warm * 1e3:.1f} ms", file=sys.stderr, flush=True)
    return rows


def run_plan(bench, argv, p3_sizes):
    """Parse --quick and run `bench(problem, sizes)` on P1, P2, P3 (at p3_sizes: its steps are
    slow) and P5 at 50, 1 000 and 200 000 steps (--quick: P1 and P5); returns the rows."""
    ap = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="P1 and P5 only")
    args = ap.parse_args(argv)
    probs = {p.key: p for p in problems(quick=True)}
    plan = [(probs["P1"], (50, 1000, 200_000)), (unseen(), (50, 1000, 200_000))]
    if not args.quick:
        plan[1:1] = [(probs["P2"], (50, 1000, 200_000)), (probs["P3"], p3_sizes)]
    return [row for p, sizes in plan for row in bench(p, sizes)]


def main(argv=None):
    rows = run_plan(bench, argv, (50, 1000))
    print("\n| problem | steps | `%%descend` re-run, ms | course cell re-run, ms | ratio (target ≤ 0.3) "
          "| warm hand-written loop, ms | re-run − warm, ms (target ≤ 10) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        course = f"{r['course'] * 1e3:.1f}" if r["course"] else "–"
        ratio = f"{r['descend'] / r['course']:.2f}" if r["course"] else "–"
        print(f"| {r['problem']} | {r['steps']:,} | {r['descend'] * 1e3:.1f} | {course} | {ratio} | "
              f"{r['warm'] * 1e3:.1f} ({r['warm_way']}) | {(r['descend'] - r['warm']) * 1e3:.1f} |")
    print("\nMedians of", REPEATS, "re-runs each, interleaved; the first re-run is not in the median:",
          ", ".join(f"{r['problem']}/{r['steps']:,} {r['first_rerun'] * 1e3:.0f} ms" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
