"""What a magic does once its line is parsed: a run object made from the options.

`DescentRun` owns one %%descend: it reads its DescendOptions (tfmagic/options/,
made and checked once; never written), makes the variables, the engine, the result,
shows it (live panel, comparison, text) and puts back what goes into the user's
namespace. The magic is parse -> options -> run -> display (tfmagic/magics.py).
A new option is declared in tfmagic/options/declared.py and read here.
"""

import sys
import types
from typing import TYPE_CHECKING

from IPython.core.error import UsageError

from tfmagic import run_guards as guards
from tfmagic.cell.explain import explain
from tfmagic import earlier
from tfmagic.descent.sharpness import watch_sharpness
from tfmagic.runtime.tfimport import tensorflow

if TYPE_CHECKING:
    from tfmagic.options.descend import DescendOptions

_said_why_not_live = set()  # shells told once why their %%descend cells show text


def run_descend(shell, line, settings, cell, magic_line=""):
    """%%descend of a parsed line, `settings` the notebook's defaults: an interrupt before the
    first step (a set-up, or a first trace, that takes seconds) leaves the namespace as it was
    and says so in one line."""
    before = interrupts = None  # (an interrupt before they are taken: nothing was changed yet)
    with guards.cut_traces_quiet() as forget_cut_trace:
        try:
            from tfmagic.kernel.interrupts import heard
            from tfmagic.options.descend import descend_options

            before, interrupts = dict(shell.user_ns), heard()
            options = descend_options(line, settings, shell.user_ns, tensorflow_for(shell), magic_line)
            run = DescentRun(shell, options, cell, before)
            run.interrupts = interrupts
            return run.start()
        except (KeyboardInterrupt, Exception) as err:
            # (an interrupt inside TensorFlow's C++ can come out as another error: a SystemError)
            if isinstance(err, KeyboardInterrupt) or (interrupts is not None and heard() != interrupts):
                forget_cut_trace(err)
                raise guards.refused(shell.user_ns, before) from None
            raise




def tensorflow_for(shell):
    """TensorFlow, with our lazy `tf` stand-in in the namespace swapped for the real module."""
    from tfmagic.runtime.lazytf import LazyTensorFlow

    tf = tensorflow()
    if isinstance(shell.user_ns.get("tf"), LazyTensorFlow):
        shell.user_ns["tf"] = tf
    return tf


def _shown_panel(run, runner):
    """The live panel of `run` (a DescentRun) on `runner`, shown: its entry in tfmagic.reach.
    Ctrl-C while it is made leaves no half-made panel among the live runners."""
    from tfmagic import reach
    from tfmagic.descent.loss_grid import loss_grid_for
    from tfmagic.widgets.panel import DescentPanel

    try:
        curve, surface = loss_grid_for(run.tf, run.engine)
        panel = DescentPanel(runner, run.result, run.args.steps, device_choices(run.tf, run.engine), curve=curve,
                             surface=surface, landscape=run.landscape)
        return reach.show(panel.widget, runner, run.result, run.args.magic_line)
    except BaseException:
        runner.on_detach = None  # (nothing of the panel to tell)
        runner.detach()
        raise


def device_choices(tf, engine):
    """The panel's device menu, short name -> full name (under a strategy: its replicas only)."""
    from tfmagic.runtime import devices

    if engine.replicas:  # (the strategy places the steps: nothing to choose)
        return {engine.replicas.describe(): engine.device}
    return {devices.short(full): full for full in devices.available(tf)}


def publish(shell, values, out, result):
    """Put what the cell assigned (and OUT) into the namespace, as a normal cell would."""
    from tfmagic.cell.compiler import FUNC_NAME

    ns = shell.user_ns
    # A def from the cell reads its globals from your namespace from now on, as after a normal cell.
    values = {
        n: types.FunctionType(v.__code__, ns, v.__name__, v.__defaults__, v.__closure__)
        if isinstance(v, types.FunctionType) and FUNC_NAME in v.__globals__ else v
        for n, v in values.items()
    }
    ns.update(values)
    if out:
        ns[out] = result


def live():
    """True when this cell awaits its magic, so a live panel can stay responsive."""
    from tfmagic.kernel import awaiting

    return awaiting.cell_is_awaited()


def landscape_for(run, cell):
    """--landscape: the slice through the start (descent/landscape.py), seeded by the cell, also
    the result's `.landscape`, its paths recorded for the engine's life (every run, Play in the
    panel included); None without it, or where the curve or surface shows the loss itself."""
    if not run.args.landscape:
        return None
    from tfmagic.descent import landscape
    from tfmagic.present.messages import landscape_not_needed

    engine = run.engine
    if not landscape.wanted(engine.variables):
        print(landscape_not_needed(len(engine.variables)))
        return None
    with run.tf.device(engine.device):
        land = landscape.Landscape(run.tf, engine, landscape.seed_for(cell, engine.variables))
    engine.observe(landscape.PathRecorder(land))
    run.result.landscape = land
    return land


def landscape_of_series(multi, land):
    """A --compare series' landscape on its result, each path labelled by its run."""
    multi.facts.landscape = land  # (the result's HTML is made from its facts)
    for path, label in zip(land.paths if land is not None else (), multi.runs):
        path.label = label


def compare_view(multi, curve, surface, land):
    from tfmagic.widgets.compare import CompareView
    from tfmagic.widgets.landscape_view import with_landscape

    return with_landscape(CompareView(multi, curve=curve, surface=surface).widget, land)


def course_printer(every):
    """--print-every K for each run of a series: its label, then the course's lines (None: off)."""
    if not every:
        return None

    def watch(label):
        from tfmagic.present.progress import IterationPrinter

        sys.stdout.write(f"{label}:\n")
        return IterationPrinter(every, sys.stdout)

    return watch


class DescentRun:
    """One %%descend cell: set up from its options, then run and shown one of three ways.
    `args` is its DescendOptions (read only)."""

    def __init__(self, shell, args: "DescendOptions", cell: str, names_before: dict | None = None):
        self.shell, self.args = shell, args
        self._names_before = names_before  # the namespace at the cell's start (put back if interrupted then)
        self._shown = None  # the panel's entry in tfmagic.reach
        self.compare = args.compare
        self.ranges = {} if args.restarts else None  # NAME -> (LO, HI), filled while the variables are made
        self.tf = tf = tensorflow_for(shell)
        from tfmagic.descent.setup import prepare
        from tfmagic.present.results import DescentResult

        from tfmagic.descent.reuse import CELLS

        prepared = prepare(
            tf, cell, shell.user_ns, args.names,
            eta=args.eta, optimizer=args.optimizer, device=args.device, tol=args.tol, jit=args.jit, ranges=self.ranges,
            data=args.data, cells=CELLS, strategy=args.strategy,
        )
        if prepared.engine.reused:
            from tfmagic.kernel.runner import LiveRunner

            LiveRunner.detach_retired()  # the last run's panel: its buttons would step these variables
        if args.restarts and not self.ranges:
            raise UsageError("--restarts needs a range to draw starts from, e.g. %%descend x=-5:5 --restarts 10")
        self.engine, self._assigned_now = prepared.engine, prepared.assigned_now
        self.engine.eta_plan = args.eta_plan
        self.result = DescentResult(prepared.engine, prepared.tensors, prepared.constants, prepared.device, prepared.cell,
                                    epochs=prepared.epochs)
        self.result.sharpness_log = watch_sharpness(self.engine, args.sharpness)
        shell.user_ns.update(prepared.created)
        self.landscape = None if args.find_eta else landscape_for(self, cell)  # (before any step: the start)

    def start(self) -> object:
        """The result, or (in a cell that awaits its magic) a coroutine the cell awaits for it:
        then every way of running yields between chunks, so widgets and Kernel > Interrupt
        are heard."""
        args = self.args
        self.awaited = live()  # (asked now: the cell's flag is gone by the time a coroutine runs)
        self._one_run_at_a_time()
        several = self.compare or args.restarts
        self.pace = args.pace
        if args.pace and (several or args.no_widgets or not self.awaited):
            if not args.pace_is_default:  # (a notebook's %config default goes unsaid)
                print("tfmagic: --pace applies to the live panel of a single run; this one runs at full speed.")
            self.pace = None
        if several:
            return self._run(self._series_chunks(), self._after_series)
        if args.find_eta:
            return self._run(self._sweep_chunks(), self._after_sweep)
        earlier.join(self.shell, args, self.result)  # (its earlier runs: in its panel and its record)
        if not args.no_widgets:
            if self.awaited:
                return self._run_live()
            self._say_why_not_live()
        return self._run(self._text_chunks(), self._after_text)

    def _run(self, chunks, after):
        """Drive `chunks` (awaiting between them when the cell awaits), then `after(its value)`."""
        if not self.awaited:
            from tfmagic.descent.engine import drain

            return after(self._unless_interrupted_at_start(drain(chunks)))

        async def run():
            from tfmagic.kernel.awaiting import drive

            return after(self._unless_interrupted_at_start(await drive(chunks)))

        return self._guarded(run())

    # -- one run at a time; an interrupt before the first step --------------------
    def _one_run_at_a_time(self):
        guards.detach_panels_sharing(self.engine)
        self.stepped = False  # some run of this cell took a step (a series resets the engine between runs)
        self.engine.observe(self._note_steps)

    def _note_steps(self, engine, chunk):
        self.stepped = self.stepped or len(chunk.rows["loss"]) > 0

    def _unless_interrupted_at_start(self, done):
        """A run interrupted before its first step (its first trace took seconds) is refused
        like a set-up that was interrupted: the names back as they were, nothing published."""
        self.engine.unobserve(self._note_steps)
        if not self.stepped and guards.interrupted_at_start(done, self.engine):
            raise KeyboardInterrupt
        return done

    async def _guarded(self, coro):
        from tfmagic.kernel.interrupts import heard

        try:
            return await coro
        except (KeyboardInterrupt, Exception) as err:
            interrupted = isinstance(err, KeyboardInterrupt) or heard() != getattr(self, "interrupts", heard())
            if not interrupted or self.stepped or self.engine.steps:
                raise
            if self._shown is not None:
                from tfmagic import reach

                reach.withdraw(self._shown, guards.INTERRUPTED_AT_START)
            raise guards.refused(self.shell.user_ns, self._names_before) from None
        finally:
            self.engine.unobserve(self._note_steps)

    # -- the three ways ------------------------------------------------------
    def _summaries(self, label=None):
        """--logdir: a SummaryLog into this cell's run directory (a series' run: a directory in it)."""
        if not self.args.logdir:
            return None
        import os

        from tfmagic.descent import summaries

        if getattr(self, "_logdir_run", None) is None:
            self._logdir_run = summaries.fresh_path(self.args.logdir, summaries.run_name(self.args.out))
        path = self._logdir_run if label is None else os.path.join(self._logdir_run, summaries.series_dir(label))
        return summaries.SummaryLog(self.tf, path)

    def _series_watch(self):
        """Each run of a series: --print-every's printer and --logdir's log, as they are asked for."""
        printer = course_printer(self.args.print_every)
        if not self.args.logdir:
            return printer
        return lambda label: (printer(label) if printer else None, self._summaries(label))

    def _series_chunks(self):
        from tfmagic.descent import experiments

        args, engine = self.args, self.engine
        tol, watch = args.tol or 1e-3, self._series_watch()
        try:
            if self.compare:
                return (yield from experiments.compare_chunks(engine, *self.compare, args.steps, tol=tol, watch=watch))
            return (yield from experiments.restarts_chunks(
                engine, self.ranges, args.restarts, args.steps, seed=args.seed, tol=tol, watch=watch))
        except Exception as err:
            raise explain(err, self.result.cell, "running the comparison") from err

    def _after_series(self, done):
        from tfmagic.present.results import MultiResult

        multi = MultiResult(done)
        landscape_of_series(multi, self.landscape)
        if not self.args.no_widgets and self.awaited:
            from tfmagic import reach
            from tfmagic.descent.loss_grid import loss_grid_for

            curve, surface = loss_grid_for(self.tf, self.engine)
            reach.show(compare_view(multi, curve, surface, self.landscape), result=multi)
        self._publish_final(multi)
        return multi

    def _say_why_not_live(self):
        from tfmagic.kernel import awaiting

        if id(self.shell) in _said_why_not_live:
            return
        _said_why_not_live.add(id(self.shell))
        ok, reason = awaiting.live_supported(self.shell)
        if ok:
            reason = "this cell was not run as a notebook cell (e.g. under %%time or from code)"
        print(f"tfmagic: live widgets are off: {reason}. Showing text progress instead.")

    def _run_live(self):
        from tfmagic.kernel import ipykernel_fix
        from tfmagic.kernel.runner import LiveRunner
        from tfmagic.present.progress import IterationPrinter

        args, engine = self.args, self.engine
        runner = LiveRunner(engine, pace=self.pace)
        self._shown = _shown_panel(self, runner)
        printer = IterationPrinter(args.print_every, sys.stdout) if args.print_every else None
        summaries = self._summaries()
        if summaries is not None:  # (for the panel's life: Play after Pause and Reset are logged too)
            engine.observe(summaries)

        async def run():
            try:
                with ipykernel_fix.busy_while(getattr(self.shell, "kernel", None)), engine.observers.attached(printer):
                    await runner.run(args.steps)
            except Exception as err:
                raise self._failed(err) from err
            self._unless_interrupted_at_start(self.result)
            self._publish_final(self.result)
            return self.result

        return self._guarded(run())

    def _sweep_chunks(self):
        """--find-eta: the eta sweep with text progress."""
        from tfmagic.descent.find_eta import sweep_chunks
        from tfmagic.present.progress import TextProgress

        steps = self.args.steps  # (--find-eta's own default unless --steps)
        try:
            with self.engine.observers.attached(TextProgress(steps, sys.stdout)):
                return (yield from sweep_chunks(self.engine, steps))
        except Exception as err:
            raise self._failed(err) from err

    def _after_sweep(self, sweep):
        from tfmagic.present.results import EtaSweepResult

        result = EtaSweepResult(sweep)
        if self.args.out:
            self.shell.user_ns[self.args.out] = result
        return result

    def _text_chunks(self):
        """One run with text progress (or --print-every's lines)."""
        from tfmagic.present.progress import IterationPrinter, TextProgress

        args, engine = self.args, self.engine
        shown = IterationPrinter(args.print_every, sys.stdout) if args.print_every else TextProgress(args.steps, sys.stdout)
        try:
            with engine.observers.attached(shown, self._summaries()):
                yield from engine.run_chunks(args.steps)
        except Exception as err:
            raise self._failed(err) from err

    def _after_text(self, _):
        self._publish_final(self.result)
        return self.result

    # -- what goes back to the user -------------------------------------------
    def _failed(self, err):
        """The error to raise for a run that stopped by an error; OUT still gets the result
        (its history ends at the last good step, where the variables are)."""
        self.engine.eta_plan = None
        if self.args.out:
            self.shell.user_ns[self.args.out] = self.result
        return explain(err, self.result.cell, f"running step {self.engine.steps + 1}")

    def _publish_final(self, result):
        self.engine.eta_plan = None  # (replayed by this run only: the panel's buttons steer freely after)
        try:
            with self.tf.device(self.engine.device):
                assigned = self._assigned_now()
        except Exception:  # the variables are already final; the extra names are a courtesy
            assigned = {}
        publish(self.shell, assigned, self.args.out, result)
