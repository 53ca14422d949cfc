"""The %%tfgrad and %%descend cell magics: parse options, call the pieces, publish results."""

import sys
import types

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class

from tfmagic import options
from tfmagic.cell.explain import explain
from tfmagic.runtime.tfimport import tensorflow


def _split_line(line):
    """Options as argv, keeping `W=tf.zeros([2, 2])` one token despite its spaces."""
    from IPython.utils.process import arg_split

    merged, depth = [], 0
    for token in arg_split(line, posix=False):  # posix would eat the quotes in x=float('nan')
        if len(token) > 1 and token[0] == token[-1] and token[0] in "'\"":
            token = token[1:-1]
        if depth > 0:
            merged[-1] += " " + token
        else:
            merged.append(token)
        depth += sum(token.count(c) for c in "([{") - sum(token.count(c) for c in ")]}")
    return merged


def _parse(func, line):
    return func.parser.parse_args(_split_line(line))


def _tensorflow(shell):
    """TensorFlow, with our lazy `tf` stand-in in the namespace swapped for the real module."""
    from tfmagic.runtime.lazytf import LazyTensorFlow

    tf = tensorflow()
    if isinstance(shell.user_ns.get("tf"), LazyTensorFlow):
        shell.user_ns["tf"] = tf
    return tf


def _device(tf, spec):
    from tfmagic.runtime import devices

    try:
        return devices.resolve(tf, spec)
    except ValueError as err:
        raise UsageError(str(err)) from None


class TfMagics(Magics):
    def _check_out(self, tf, args):
        """-o OUT must not replace what the cell works on (a variable, or a model's)."""
        out = args.out
        if not out:
            return
        named = {spec.split("=", 1)[0].strip() for spec in args.names}
        current = self.shell.user_ns.get(out)
        if out in named or isinstance(current, tf.Variable) or hasattr(current, "trainable_variables"):
            raise UsageError(
                f"-o {out} would replace the {'variable' if out in named else type(current).__name__} {out}; "
                f"store the result under another name, e.g. -o run"
            )

    def _publish(self, values, out, result):
        from tfmagic.cell.compiler import FUNC_NAME

        ns = self.shell.user_ns
        # A def from the cell reads its globals from your namespace from now on, as after a normal cell.
        values = {
            n: types.FunctionType(v.__code__, ns, v.__name__, v.__defaults__, v.__closure__)
            if isinstance(v, types.FunctionType) and FUNC_NAME in v.__globals__ else v
            for n, v in values.items()
        }
        ns.update(values)
        if out:
            self.shell.user_ns[out] = result

    def tfgrad(self, line, cell):
        args = _parse(self.tfgrad, line)
        tf = _tensorflow(self.shell)
        device = _device(tf, args.device)
        from tfmagic.grad.gradients import differentiate

        self._check_out(tf, args)
        result, assigned = differentiate(tf, cell, self.shell.user_ns, args.names, device, bench=args.bench)
        self._publish(assigned, args.out, result)
        return result

    def descend(self, line, cell):
        args = _parse(self.descend, line)
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
        if args.restarts < 0 or (args.restarts and compare):
            raise UsageError("--restarts takes a positive N, and cannot be combined with --compare")
        tf = _tensorflow(self.shell)
        device = _device(tf, args.device)
        self._check_out(tf, args)
        from tfmagic.descent.setup import prepare

        ranges = {} if args.restarts else None
        engine, created, result, evaluate = prepare(
            tf, cell, self.shell.user_ns, args.names,
            eta=args.eta, optimizer=args.optimizer, device=device, tol=args.tol, jit=args.jit, ranges=ranges,
        )
        if args.restarts and not ranges:
            raise UsageError("--restarts needs a range to draw starts from, e.g. %%descend x=-5:5 --restarts 10")
        self.shell.user_ns.update(created)
        if args.pace and (compare or args.restarts or args.no_widgets or not self._live()):
            print("tfmagic: --pace applies to the live panel of a single run; this one runs at full speed.")
        if compare or args.restarts:
            return self._run_several(tf, engine, result, evaluate, args, compare, ranges)
        if not args.no_widgets:
            if self._live():
                return self._run_live(tf, engine, result, evaluate, args)
            self._say_why_not_live()
        return self._run_blocking(tf, engine, result, evaluate, args)

    def _run_several(self, tf, engine, result, evaluate, args, compare, ranges):
        from tfmagic.descent import experiments

        tol = args.tol or 1e-3
        try:
            if compare:
                multi = experiments.compare(engine, *compare, args.steps, tol=tol, print_every=args.print_every)
            else:
                multi = experiments.restarts(
                    engine, ranges, args.restarts, args.steps, seed=args.seed, tol=tol, print_every=args.print_every
                )
        except Exception as err:
            raise explain(err, result.cell, "running the comparison") from err
        if not args.no_widgets and self._live():
            from IPython.display import display

            from tfmagic.descent.probe import probe_for
            from tfmagic.widgets.compare import CompareView

            curve, surface = probe_for(tf, engine)
            display(CompareView(multi, curve=curve, surface=surface).widget)
        self._publish_final(tf, engine, evaluate, args, multi)
        return multi

    @staticmethod
    def _live():
        from tfmagic.kernel import awaiting as live

        return live.cell_is_awaited()

    def _say_why_not_live(self):
        from tfmagic.kernel import awaiting as live

        if getattr(self, "_said_why_not_live", False):
            return
        self._said_why_not_live = True
        ok, reason = live.live_supported(self.shell)
        if ok:
            reason = "this cell was not run as a notebook cell (e.g. under %%time or from code)"
        print(f"tfmagic: live widgets are off: {reason}. Showing text progress instead.")

    def _run_live(self, tf, engine, result, evaluate, args):
        from IPython.display import display

        from tfmagic.runtime import devices
        from tfmagic.kernel import ipykernel_fix
        from tfmagic.kernel.runner import LiveRunner
        from tfmagic.present.text import CoursePrinter
        from tfmagic.descent.probe import probe_for
        from tfmagic.widgets.panel import DescentPanel

        runner = LiveRunner(engine, pace=args.pace)
        curve, surface = probe_for(tf, engine)
        names = {devices.short(full): full for full in devices.available(tf)}
        panel = DescentPanel(runner, result, args.steps, names, curve=curve, surface=surface)
        display(panel.widget)
        printer = CoursePrinter(args.print_every, sys.stdout) if args.print_every else None
        if printer:
            engine.observe(printer)

        async def run():
            try:
                with ipykernel_fix.busy_while(getattr(self.shell, "kernel", None)):
                    await runner.run(args.steps)
            except Exception as err:
                raise self._failed(err, engine, result, args) from err
            finally:
                if printer:
                    engine.unobserve(printer)
            self._publish_final(tf, engine, evaluate, args, result)
            return result

        return run()

    def _run_blocking(self, tf, engine, result, evaluate, args):
        from tfmagic.present.text import CoursePrinter, TextProgress

        if args.print_every:
            observers = [CoursePrinter(args.print_every, sys.stdout)]
        else:
            observers = [TextProgress(args.steps, sys.stdout)]
        for obs in observers:
            engine.observe(obs)
        try:
            engine.run(args.steps)
        except Exception as err:
            raise self._failed(err, engine, result, args) from err
        finally:
            for obs in observers:
                engine.unobserve(obs)
                getattr(obs, "close", lambda: None)()
        self._publish_final(tf, engine, evaluate, args, result)
        return result

    def _failed(self, err, engine, result, args):
        """The error to raise for a run that stopped by an error; OUT still gets the result
        (its history ends at the last good step, where the variables are)."""
        if args.out:
            self.shell.user_ns[args.out] = result
        return explain(err, result.cell, f"running step {engine.steps + 1}")

    def _publish_final(self, tf, engine, evaluate, args, result):
        try:
            with tf.device(engine.device):
                assigned = evaluate()
        except Exception:  # the variables are already final; the extra names are a courtesy
            assigned = {}
        self._publish(assigned, args.out, result)


# magic_arguments decorators give `%%descend?` real help and parse errors as UsageError.
TfMagics.tfgrad = cell_magic(options.apply(options.tfgrad_arguments, TfMagics.tfgrad))
TfMagics.descend = cell_magic(options.apply(options.descend_arguments, TfMagics.descend))
TfMagics = magics_class(TfMagics)
