"""What a magic does once its line is parsed: a run object made from the options.

`DescentRun` owns one %%descend: the checked options, the variables it creates,
the engine, the result, how it is shown (live panel, comparison, text) and what
goes back into the user's namespace. The magic is parse -> run -> display
(tfmagic/magics.py). A new option is declared in options.py and read here.
"""

import builtins
import keyword
import sys
import types
from dataclasses import dataclass

from IPython.core.error import UsageError

from tfmagic import run_guards as guards
from tfmagic.cell.explain import explain
from tfmagic.cell.variables import is_model
from tfmagic.runtime.tfimport import tensorflow

_said_why_not_live = set()  # shells told once why their %%descend cells show text
def run_descend(shell, args, cell):
    """%%descend: an interrupt before the first step (a set-up, or a first trace, that takes
    seconds) leaves the namespace as it was and says so in one line."""
    from tfmagic.kernel.interrupts import heard

    before, interrupts = dict(shell.user_ns), heard()
    try:
        run = DescentRun(shell, args, cell, before)
        run.interrupts = interrupts
        return run.start()
    except (KeyboardInterrupt, Exception) as err:
        # (an interrupt inside TensorFlow's C++ can come out as another error: a SystemError)
        if isinstance(err, KeyboardInterrupt) or heard() != interrupts:
            raise guards.refused(shell.user_ns, before) from None
        raise




def tensorflow_for(shell):
    """TensorFlow, with our lazy `tf` stand-in in the namespace swapped for the real module."""
    from tfmagic.runtime.lazytf import LazyTensorFlow

    tf = tensorflow()
    if isinstance(shell.user_ns.get("tf"), LazyTensorFlow):
        shell.user_ns["tf"] = tf
    return tf


def resolve_device(tf, spec):
    from tfmagic.runtime import devices

    try:
        return devices.resolve(tf, spec)
    except ValueError as err:
        raise UsageError(str(err)) from None


def check_out(shell, tf, args):
    """-o OUT must not replace what the cell works on (a variable, or a model's)."""
    out = args.out
    if not out:
        return
    if not out.isidentifier() or keyword.iskeyword(out) or hasattr(builtins, out) or out.startswith("__"):
        raise UsageError(f"-o {out}: give a plain variable name that is not a Python keyword or builtin, e.g. -o run")
    named = {spec.split("=", 1)[0].strip() for spec in args.names}
    current = shell.user_ns.get(out)
    if out in named or isinstance(current, tf.Variable) or is_model(tf, current):
        raise UsageError(
            f"-o {out} would replace the {'variable' if out in named else type(current).__name__} {out}; "
            f"store the result under another name, e.g. -o run"
        )


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


def course_printer(every):
    """--print-every K for each run of a series: its label, then the course's lines (None: off)."""
    if not every:
        return None

    def watch(label):
        from tfmagic.present.progress import IterationPrinter

        sys.stdout.write(f"{label}:\n")
        return IterationPrinter(every, sys.stdout)

    return watch


def _is_range(spec):
    """NAME=LO:HI (as setup.py reads a range)."""
    _, sep, expr = spec.partition("=")
    return bool(sep) and ":" in expr and not any(c in expr for c in "[({")


@dataclass
class Checked:
    """The options of a %%descend, checked before anything changes."""

    compare: tuple | None  # ('eta' | 'optimizer', values) for --compare
    ranges: dict | None  # NAME -> (LO, HI) for --restarts, filled while the variables are made


def check_descend_options(args):
    from tfmagic.descent.optimizers import OPTIMIZERS, check_eta

    try:
        check_eta(args.eta)
    except ValueError as err:
        raise UsageError(f"--eta: {err}") from None
    if args.steps <= 0:
        raise UsageError(f"--steps must be a positive whole number, got {args.steps}")
    if args.optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {args.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
    if args.tol is not None and not args.tol > 0:
        raise UsageError(f"--tol must be a positive number, got {args.tol}")
    if args.pace is not None and not 0 < args.pace < float("inf"):
        raise UsageError(f"--pace is steps per second, a positive number; got {args.pace}")
    if args.print_every < 0:
        raise UsageError(f"--print-every must be 0 or more, got {args.print_every}")
    compare = None
    if args.compare:
        from tfmagic.descent.experiments import parse_compare

        try:
            compare = parse_compare(args.compare, OPTIMIZERS)
        except ValueError as err:
            raise UsageError(str(err)) from None
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be 0 or more, got {args.seed}")
    if getattr(args, "find_eta", False) and (compare or args.restarts):
        raise UsageError("--find-eta runs its own sweep of eta: it cannot be combined with --compare or --restarts")
    if args.restarts < 0 or (args.restarts and compare):
        raise UsageError("--restarts takes a positive N, and cannot be combined with --compare")
    if args.restarts and not any(_is_range(spec) for spec in args.names):
        raise UsageError("--restarts needs a range to draw starts from, e.g. %%descend x=-5:5 --restarts 10")
    return Checked(compare=compare, ranges={} if args.restarts else None)


class DescentRun:
    """One %%descend cell: set up from the options, then run and shown one of three ways."""

    def __init__(self, shell, args, cell, names_before=None):
        self.shell, self.args = shell, args
        self._names_before = names_before  # the namespace at the cell's start (put back if interrupted then)
        self._shown = None  # the panel's entry in tfmagic.reach
        checked = check_descend_options(args)
        self.compare, self.ranges = checked.compare, checked.ranges
        self.tf = tf = tensorflow_for(shell)
        device = resolve_device(tf, args.device)
        check_out(shell, tf, args)
        from tfmagic.data_options import check_data_options
        from tfmagic.descent.setup import prepare

        from tfmagic.schedule_option import eta_plan

        plan = eta_plan(args, shell.user_ns)
        data = check_data_options(args, shell.user_ns, tf)
        from tfmagic.strategy_option import strategy_for

        strategy = strategy_for(args, shell.user_ns, tf)
        if strategy is not None and data is not None and args.seed is None:
            data.seed = 0  # (every worker must take the same batches)
        from tfmagic.present.results import DescentResult

        from tfmagic.descent.reuse import CELLS

        prepared = prepare(
            tf, cell, shell.user_ns, args.names,
            eta=args.eta, optimizer=args.optimizer, device=device, tol=args.tol, jit=args.jit, ranges=self.ranges,
            data=data, cells=CELLS, strategy=strategy,
        )
        if prepared.engine.reused:
            from tfmagic.kernel.runner import LiveRunner

            LiveRunner.detach_retired()  # the last run's panel: its buttons would step these variables
        if args.restarts and not self.ranges:
            raise UsageError("--restarts needs a range to draw starts from, e.g. %%descend x=-5:5 --restarts 10")
        self.engine, self._assigned_now = prepared.engine, prepared.assigned_now
        self.engine.eta_plan = plan
        self.result = DescentResult(prepared.engine, prepared.tensors, prepared.constants, prepared.device, prepared.cell,
                                    epochs=prepared.epochs)
        shell.user_ns.update(prepared.created)

    def start(self):
        """The result, or (in a cell that awaits its magic) a coroutine the cell awaits for it:
        then every way of running yields between chunks, so widgets and Kernel > Interrupt
        are heard."""
        args = self.args
        self.awaited = live()  # (asked now: the cell's flag is gone by the time a coroutine runs)
        self._one_run_at_a_time()
        several = self.compare or args.restarts
        if args.pace and (several or args.no_widgets or not self.awaited):
            if not getattr(args, "pace_is_default", False):  # (a notebook's %config default goes unsaid)
                print("tfmagic: --pace applies to the live panel of a single run; this one runs at full speed.")
            args.pace = None
        if several:
            return self._run(self._series_chunks(), self._after_series)
        if args.find_eta:
            return self._run(self._sweep_chunks(), self._after_sweep)
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
    def _series_chunks(self):
        from tfmagic.descent import experiments

        args, engine = self.args, self.engine
        tol, watch = args.tol or 1e-3, course_printer(args.print_every)
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
        if not self.args.no_widgets and self.awaited:
            from tfmagic import reach
            from tfmagic.descent.loss_grid import loss_grid_for
            from tfmagic.widgets.compare import CompareView

            curve, surface = loss_grid_for(self.tf, self.engine)
            reach.show(CompareView(multi, curve=curve, surface=surface).widget, result=multi)
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
        from tfmagic import reach
        from tfmagic.descent.loss_grid import loss_grid_for
        from tfmagic.kernel import ipykernel_fix
        from tfmagic.kernel.runner import LiveRunner
        from tfmagic.present.progress import IterationPrinter
        from tfmagic.widgets.panel import DescentPanel

        args, engine, tf = self.args, self.engine, self.tf
        runner = LiveRunner(engine, pace=args.pace)
        curve, surface = loss_grid_for(tf, engine)
        names = device_choices(tf, engine)
        panel = DescentPanel(runner, self.result, args.steps, names, curve=curve, surface=surface)
        self._shown = reach.show(panel.widget, runner, self.result, getattr(args, "magic_line", ""))
        printer = IterationPrinter(args.print_every, sys.stdout) if args.print_every else None

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

        steps = self.args.steps if self.args.steps_given else 100
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
            with engine.observers.attached(shown):
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
