#!/usr/bin/env python
"""How fast does tfmagic's Descent engine run gradient descent, against hand-written TensorFlow?

One process, three problems:
  P1  y = x**2 - 4*x + 4 from x = 10 (the course's function), sgd eta 0.001
  P2  Rosenbrock (1-a)**2 + 100*(b-a**2)**2 from (-1.5, 2), sgd eta 1e-4
  P3  least squares mean((A w - b)**2), A 4096x256 float32 (seeded), w = 256 zeros, sgd eta 0.01

(a) steady-state steps/s (median of >= 5 timed repeats after a warm-up at the timed size, so a
    compile that only a long run triggers is not timed; each repeat runs the variables from the
    starting point again; the ways' repeats interleaved) of
      engine-auto / engine-off / engine-on   tfmagic.descent.engine.Descent(jit='auto'|'off'|'on').run(n)
                                             (n >= 20 000 for 'auto', so it is a long run)
      course    the course's @tf.function per-step update, called from Python n times
      graph     one tf.function running n steps in a `while i < n` loop (n an int32 tensor)
      graph-xla the same with jit_compile=True
    "best hand-written" is the faster of graph and graph-xla.
(b) end-to-end wall seconds of one fresh run of N steps (fresh variables, fresh tf.function /
    fresh Descent, so tracing and XLA compilation are paid), the final values read back; medians
    over 3 repeats when one run takes < 10 s. "fastest hand-written" is the min over course,
    graph and graph-xla. Also shown: engine-off / engine-on, and "descend" = the %%descend path
    without IPython (tfmagic.descent.setup.prepare(): compile the cell, probe it, build the engine) + run.

Targets: steady engine/best-hand-written >= 0.8; steady engine/course >= 100 on P1;
end-to-end engine/fastest-hand-written <= 1.25 (i.e. time ratio; lower is better).

    python benchmarks/bench_descent.py [--quick] [--json PATH] [--problems P1,P2,P3]

--quick: shorter timed calls (~0.08 s, 3 repeats), end-to-end at 50/1000/10000 steps (P3: 50/1000/2000)
for engine-auto and the hand-written ways only, one repeat when a run takes >= 0.5 s.
The full run takes ~7 minutes on 2 idle cores. Other busy processes on the machine (see the load
average printed at the end) make every number noisier; P3's are the most affected.
"""

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tfmagic.runtime.tfimport import tensorflow  # noqa: E402

tf = tensorflow()

from tfmagic.descent import engine as engine_mod  # noqa: E402
from tfmagic.descent.setup import prepare  # noqa: E402
from tfmagic.descent.engine import Descent  # noqa: E402
from tfmagic.present.messages import outcome  # noqa: E402

TARGET_STEADY_VS_BEST = 0.8
TARGET_STEADY_VS_COURSE = 100.0  # P1 only
TARGET_E2E = 1.25
REPEAT_BELOW_SECONDS = 10.0


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# -- problems -----------------------------------------------------------------------------------
@dataclass
class Problem:
    key: str
    title: str
    eta: float
    init: dict  # name -> numpy float32 starting value
    loss: object  # f(*variables) -> scalar tensor
    cell: str  # the same loss as a %%descend cell
    specs: list  # %%descend NAME=INIT list
    sizes: tuple  # end-to-end step counts
    namespace: dict = field(default_factory=dict)

    def make_vars(self):
        return {n: tf.Variable(v, name=n) for n, v in self.init.items()}

    def loss_fn(self, variables):
        vs = list(variables.values())
        return lambda: self.loss(*vs)


def problems(quick):
    rng = np.random.RandomState(0)
    A_np = rng.standard_normal((4096, 256)).astype(np.float32)
    b_np = rng.standard_normal(4096).astype(np.float32)
    A, bvec = tf.constant(A_np), tf.constant(b_np)
    big = 10_000 if quick else 100_000
    big3 = 2_000 if quick else 20_000
    return [
        Problem("P1", "x^2-4x+4", 0.001, {"x": np.float32(10.0)},
                lambda x: x**2 - 4 * x + 4,
                "y = x**2 - 4*x + 4", ["x=10.0"], (50, 1000, big)),
        Problem("P2", "Rosenbrock", 1e-4, {"a": np.float32(-1.5), "b": np.float32(2.0)},
                lambda a, b: (1 - a) ** 2 + 100 * (b - a**2) ** 2,
                "f = (1 - a)**2 + 100*(b - a**2)**2", ["a=-1.5", "b=2.0"], (50, 1000, big)),
        Problem("P3", "least squares 4096x256", 0.01, {"w": np.zeros(256, np.float32)},
                lambda w: tf.reduce_mean(tf.square(tf.linalg.matvec(A, w) - bvec)),
                "loss = tf.reduce_mean(tf.square(tf.linalg.matvec(A, w) - b))", ["w=tf.zeros([256])"],
                (50, 1000, big3), namespace={"A": A, "b": bvec}),
    ]


# -- hand-written ways --------------------------------------------------------------------------
def make_course_step(loss, variables, eta):
    """The course's way: a compiled step, called once per step from Python."""
    vs = list(variables.values())

    @tf.function
    def do_update():
        with tf.GradientTape() as tape:
            y = loss()
        grads = tape.gradient(y, vs)
        for v, g in zip(vs, grads):
            v.assign(v - g * eta)

    def run(n):
        for _ in range(n):
            do_update()

    return run


def make_graph_loop(loss, variables, eta, jit):
    """One tf.function call runs n steps in-graph; n is an int32 tensor (no retrace per n)."""
    vs = list(variables.values())

    def loop(n):
        i = tf.constant(0)
        while i < n:
            with tf.GradientTape() as tape:
                y = loss()
            grads = tape.gradient(y, vs)
            for v, g in zip(vs, grads):
                v.assign(v - g * eta)
            i += 1
        return i

    fn = tf.function(loop, jit_compile=jit)

    def run(n):
        fn(tf.constant(n, tf.int32)).numpy()

    return run


HAND = {
    "course": lambda p, vs: make_course_step(p.loss_fn(vs), vs, p.eta),
    "graph": lambda p, vs: make_graph_loop(p.loss_fn(vs), vs, p.eta, False),
    "graph-xla": lambda p, vs: make_graph_loop(p.loss_fn(vs), vs, p.eta, True),
}


# -- timing helpers -----------------------------------------------------------------------------
def reset_vars(p, variables):
    for n, v in variables.items():
        v.assign(p.init[n])


def sized(run, reset, target, min_n=1):
    """(timed, n): timed() times run(n), n sized so one call takes about `target` seconds.

    Each size is timed twice and the faster counts, and the final size is run once
    untimed: a longer run may compile a faster loop (the engine's XLA blocks), and
    that compile is not the steady state."""

    def timed(n):
        reset()
        gc.collect()
        t0 = time.perf_counter()
        run(n)
        return time.perf_counter() - t0

    n = max(min_n, 16)
    timed(n)  # warm-up: trace / compile
    while True:
        t = min(timed(n), timed(n))
        if t >= 0.25 * target:
            break
        n = int(n * min(16.0, max(2.0, 0.5 * target / max(t, 1e-6))))
    n = max(min_n, int(n * target / t))
    timed(n)  # warm-up at the final size
    return (lambda: timed(n)), n


def steady(timers, repeats):
    """way -> {n, times, rate (median steps/s)}; the ways' repeats interleaved, so a machine
    that slows down for a while (2 shared cores) slows every way alike."""
    times = {way: [] for way in timers}
    for _ in range(repeats):
        for way, (timed, _) in timers.items():
            times[way].append(timed())
    return {way: {"n": n, "times": times[way], "rate": statistics.median(n / t for t in times[way])}
            for way, (_, n) in timers.items()}


def steady_engine(p, jit, target):
    variables = p.make_vars()
    eng = Descent(tf, p.loss_fn(variables), variables, eta=p.eta, jit=jit)
    chunk_log = []

    def on_chunk(engine, chunk):
        count = engine.steps - chunk.start  # steps, not rows (long XLA chunks keep every k-th row)
        if count and chunk.steps_per_second:  # 0 for a chunk that traced
            chunk_log.append((count, count / chunk.steps_per_second))

    eng.observe(on_chunk)

    def run(n):
        chunk_log.clear()
        status = eng.run(n)
        if status != "max_steps":
            raise RuntimeError(f"{p.key} engine jit={jit}: status {status} after {eng.steps} steps ({outcome(eng)})")
        eng.reset()  # keep memory flat across repeats (history cleared, chunks kept)

    # A long run: auto starts with XLA, and a run's start (its first evaluation) is ~1 % of it;
    # and runs of 0.5 s even with --quick, as only runs with > 0.1 s of work left compile its blocks.
    min_n = 20_000 if jit == "auto" else 1
    target = max(target, 0.5) if jit == "auto" else target
    timed, n = sized(run, lambda: reset_vars(p, variables), target, min_n=min_n)

    def facts():  # rate inside the chunk calls only (the engine's own per-chunk timing), last repeat
        steps = sum(c for c, _ in chunk_log)
        return {"in_chunk_rate": steps / sum(t for _, t in chunk_log), "chunks": len(chunk_log),
                "xla_used": "xla" in eng.compiled}

    return (timed, n), facts


def e2e_repeat(fn, quick):
    """Median of 3 wall times (1 when a run takes >= 10 s, or >= 2 s in --quick)."""
    gc.collect()
    first = fn()
    limit = 0.5 if quick else REPEAT_BELOW_SECONDS
    if first >= limit:
        return {"times": [first], "median": first}
    times = [first]
    for _ in range(2):
        gc.collect()
        times.append(fn())
    return {"times": times, "median": statistics.median(times)}


def e2e_hand(p, way, n):
    def once():
        t0 = time.perf_counter()
        vs = p.make_vars()
        run = HAND[way](p, vs)
        run(n)
        [v.numpy() for v in vs.values()]
        return time.perf_counter() - t0

    return once


def e2e_engine(p, jit, n):
    def once():
        t0 = time.perf_counter()
        vs = p.make_vars()
        eng = Descent(tf, p.loss_fn(vs), vs, eta=p.eta, jit=jit)
        status = eng.run(n)
        [v.numpy() for v in vs.values()]
        t = time.perf_counter() - t0
        if status != "max_steps":
            raise RuntimeError(f"{p.key} engine jit={jit} n={n}: {status} ({outcome(eng)})")
        return t

    return once


def e2e_descend(p, n):
    """The %%descend path without IPython: compile the cell, probe it, build the engine, run."""

    def once():
        t0 = time.perf_counter()
        prepared = prepare(
            tf, p.cell, dict(p.namespace), p.specs, eta=p.eta, optimizer="sgd", device=None, tol=None, jit="auto"
        )
        eng = prepared.engine
        status = eng.run(n)
        prepared.assigned_now()
        t = time.perf_counter() - t0
        if status != "max_steps":
            raise RuntimeError(f"{p.key} %%descend n={n}: {status} ({outcome(eng)})")
        return t

    return once


# -- the run ------------------------------------------------------------------------------------
STEADY_WAYS = ["engine-auto", "engine-off", "engine-on", "course", "graph", "graph-xla"]
E2E_WAYS = ["engine-auto", "engine-off", "engine-on", "descend", "course", "graph", "graph-xla"]
QUICK_E2E_WAYS = ["engine-auto", "course", "graph", "graph-xla"]


def bench_problem(p, quick):
    target = 0.08 if quick else 0.5
    repeats = 3 if quick else 5
    out = {"steady": {}, "e2e": {}}
    timers, engine_facts = {}, {}
    for way in STEADY_WAYS:
        if way.startswith("engine-"):
            timers[way], engine_facts[way] = steady_engine(p, way.split("-")[1], target)
        else:
            vs = p.make_vars()
            timers[way] = sized(HAND[way](p, vs), lambda vs=vs: reset_vars(p, vs), target)
    t0 = time.perf_counter()
    out["steady"] = steady(timers, repeats)
    for way, res in out["steady"].items():
        res.update(engine_facts[way]() if way in engine_facts else {})
        log(f"  {p.key} steady {way:12s} {res['rate']:12,.0f} steps/s  (n={res['n']})")
    log(f"  ({repeats} interleaved rounds: {time.perf_counter() - t0:.1f} s)")
    for n in p.sizes:
        row = {}
        for way in QUICK_E2E_WAYS if quick else E2E_WAYS:
            if way == "descend":
                fn = e2e_descend(p, n)
            elif way.startswith("engine-"):
                fn = e2e_engine(p, way.split("-")[1], n)
            else:
                fn = e2e_hand(p, way, n)
            row[way] = e2e_repeat(fn, quick)
            log(f"  {p.key} e2e {n:>7} {way:12s} {row[way]['median']:8.3f} s  {['%.3f' % t for t in row[way]['times']]}")
        out["e2e"][str(n)] = row
    return out


def ratios(results):
    """Rows of the ratio table: (problem, metric, engine, reference, ratio, target, ok)."""
    rows = []
    for key, r in results.items():
        s = r["steady"]
        eng = s["engine-auto"]["rate"]
        best_way = max(("graph", "graph-xla"), key=lambda w: s[w]["rate"])
        best = s[best_way]["rate"]
        ratio = eng / best
        rows.append((key, "steady engine / best hand-written", f"{eng:,.0f}/s", f"{best:,.0f}/s ({best_way})",
                     ratio, f">= {TARGET_STEADY_VS_BEST}", ratio >= TARGET_STEADY_VS_BEST))
        course = s["course"]["rate"]
        ratio = eng / course
        has_target = key == "P1"
        rows.append((key, "steady engine / course per-step", f"{eng:,.0f}/s", f"{course:,.0f}/s", ratio,
                     f">= {TARGET_STEADY_VS_COURSE:g}" if has_target else "-",
                     ratio >= TARGET_STEADY_VS_COURSE if has_target else None))
        for n, row in r["e2e"].items():
            hand = {w: row[w]["median"] for w in ("course", "graph", "graph-xla")}
            fastest_way = min(hand, key=hand.get)
            eng_t = row["engine-auto"]["median"]
            ratio = eng_t / hand[fastest_way]
            rows.append((key, f"end-to-end {int(n):,} steps: engine / fastest", f"{eng_t:.3f} s",
                         f"{hand[fastest_way]:.3f} s ({fastest_way})", ratio, f"<= {TARGET_E2E}", ratio <= TARGET_E2E))
    return rows


def print_tables(results, problems_by_key, elapsed, quick, load):
    print(f"\n### tfmagic descent benchmark{' (--quick)' if quick else ''}\n")
    print(f"TensorFlow {tf.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"XLA_PAYS_AFTER_SECONDS={engine_mod.XLA_PAYS_AFTER_SECONDS}, CHUNK_SECONDS={engine_mod.CHUNK_SECONDS}\n")
    print("| problem | metric | engine (jit=auto) | reference | ratio | target | |")
    print("|---|---|---|---|---|---|---|")
    for key, metric, eng, ref, ratio, target, ok in ratios(results):
        flag = "" if ok is None else ("ok" if ok else "**MISS**")
        print(f"| {key} | {metric} | {eng} | {ref} | {ratio:.3g} | {target} | {flag} |")

    print("\nSteady state, steps/s (median of repeats; engine in-chunk = the engine's own chunk timing):\n")
    print("| problem | " + " | ".join(STEADY_WAYS) + " | engine-auto in-chunk |")
    print("|---" * (len(STEADY_WAYS) + 2) + "|")
    for key, r in results.items():
        s = r["steady"]
        cells = [f"{s[w]['rate']:,.0f}" for w in STEADY_WAYS]
        print(f"| {key} | " + " | ".join(cells) + f" | {s['engine-auto']['in_chunk_rate']:,.0f} |")

    ways = QUICK_E2E_WAYS if quick else E2E_WAYS
    print("\nEnd to end, seconds for one fresh run (median; * = single run):\n")
    print("| problem | steps | " + " | ".join(ways) + " |")
    print("|---" * (len(ways) + 2) + "|")
    for key, r in results.items():
        for n, row in r["e2e"].items():
            cells = [f"{row[w]['median']:.3f}{'*' if len(row[w]['times']) == 1 else ''}" for w in ways]
            print(f"| {key} | {int(n):,} | " + " | ".join(cells) + " |")
    notes = []
    for key, p in problems_by_key.items():
        if p.sizes[-1] != (10_000 if quick else 100_000):
            notes.append(f"{key}'s largest end-to-end run is {p.sizes[-1]:,} steps, not 100,000 (it takes long).")
    for note in notes:
        print(f"\n{note}")
    print(f"\nTotal benchmark time: {elapsed:.0f} s. Load average (1 min) at start {load['start'][0]:.2f}, "
          f"at end {load['end'][0]:.2f} (includes this benchmark) on {os.cpu_count()} CPUs; "
          "other busy processes make the numbers noisy.")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="reduced run (< 2 minutes)")
    ap.add_argument("--json", metavar="PATH", help="write the raw numbers here")
    ap.add_argument("--problems", default="P1,P2,P3", help="comma-separated subset, e.g. P1,P3")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    wanted = [k.strip().upper() for k in args.problems.split(",")]
    probs = {p.key: p for p in problems(args.quick) if p.key in wanted}
    results = {}
    for key, p in probs.items():
        log(f"{key}: {p.title}")
        results[key] = bench_problem(p, args.quick)
    elapsed = time.perf_counter() - t_start
    load = {"start": load_start, "end": os.getloadavg()}
    print_tables(results, probs, elapsed, args.quick, load)
    if args.json:
        doc = {
            "quick": args.quick,
            "tensorflow": tf.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "xla_pays_after_seconds": engine_mod.XLA_PAYS_AFTER_SECONDS,
            "elapsed_seconds": elapsed,
            "loadavg": load,
            "problems": {k: {"title": p.title, "eta": p.eta, "sizes": list(p.sizes)} for k, p in probs.items()},
            "results": results,
            "ratios": [dict(zip(("problem", "metric", "engine", "reference", "ratio", "target", "ok"), r))
                       for r in ratios(results)],
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
