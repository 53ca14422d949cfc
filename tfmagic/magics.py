"""The %%tfgrad and %%descend cell magics: parse the line, run (tfmagic/runs.py), return what to display."""

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from traitlets import Bool, Float, Int, Unicode

from tfmagic import options

# What `%config TfMagics` lists: a teacher sets these once for a notebook.
DEFAULTS_HELP = """Defaults a notebook can set once with %config (an option in the cell still wins):
  %config TfMagics.eta = 0.01         learning rate (0.1)
  %config TfMagics.steps = 200        steps to run (50)
  %config TfMagics.optimizer = 'adam' optimizer (sgd)
  %config TfMagics.pace = 30          live runs at 30 steps/s (off)
  %config TfMagics.widgets = False    text progress instead of the live panel (True)
"""


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


class TfMagics(Magics):
    eta = Float(0.1, help="Default learning rate of %%descend.").tag(config=True)
    steps = Int(50, help="Default number of steps of %%descend.").tag(config=True)
    optimizer = Unicode("sgd", help="Default optimizer of %%descend.").tag(config=True)
    pace = Float(None, allow_none=True, help="Default --pace of live %%descend runs (steps/s).").tag(config=True)
    widgets = Bool(True, help="False: %%descend shows text progress, as with --no-widgets.").tag(config=True)

    def tfgrad(self, line, cell):
        from tfmagic.grad.gradients import differentiate
        from tfmagic.present.results import GradResult
        from tfmagic.runs import check_out, publish, resolve_device, tensorflow_for
        from tfmagic.runtime.tfimport import quiet_retracing

        args = _parse(self.tfgrad, line)
        tf = tensorflow_for(self.shell)
        device = resolve_device(tf, args.device)
        check_out(self.shell, tf, args)
        with quiet_retracing():
            found, assigned = differentiate(tf, cell, self.shell.user_ns, args.names, device, bench=args.bench)
        result = GradResult(found)
        publish(self.shell, assigned, args.out, result)
        return result

    def descend(self, line, cell):
        """Gradient descent on the loss the cell computes, live in a notebook.

        """
        from tfmagic.runs import run_descend
        from tfmagic.runtime.tfimport import quiet_retracing

        args = _parse(self.descend, line)
        args.pace_is_default, args.steps_given, args.eta_given = args.pace is None, args.steps is not None, args.eta is not None
        for name in ("eta", "steps", "optimizer", "pace"):
            if getattr(args, name) is None:
                setattr(args, name, getattr(self, name))
        args.no_widgets = args.no_widgets or not self.widgets
        args.magic_line = line.strip()
        with quiet_retracing():
            return run_descend(self.shell, args, cell)

    @line_magic
    def descend_runs(self, line):
        """%descend_runs: list this kernel's live %%descend panels and show them again (after a
        page reload, say); %descend_runs stop: stop the runs going on (Kernel > Interrupt does too)."""
        from tfmagic.reach import runs_magic

        return runs_magic(line)


TfMagics.descend.__doc__ += DEFAULTS_HELP


# magic_arguments decorators give `%%descend?` real help and parse errors as UsageError.
TfMagics.tfgrad = cell_magic(options.apply(options.tfgrad_arguments, TfMagics.tfgrad))
TfMagics.descend = cell_magic(options.apply(options.descend_arguments, TfMagics.descend))
TfMagics = magics_class(TfMagics)
