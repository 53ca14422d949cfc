"""The %%tfgrad and %%descend cell magics: parse the line, run (tfmagic/runs.py), return what to display."""

from IPython.core.magic import Magics, cell_magic, magics_class

from tfmagic import options


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
    def tfgrad(self, line, cell):
        from tfmagic.grad.gradients import differentiate
        from tfmagic.present.results import GradResult
        from tfmagic.runs import check_out, publish, resolve_device, tensorflow_for

        args = _parse(self.tfgrad, line)
        tf = tensorflow_for(self.shell)
        device = resolve_device(tf, args.device)
        check_out(self.shell, tf, args)
        found, assigned = differentiate(tf, cell, self.shell.user_ns, args.names, device, bench=args.bench)
        result = GradResult(found)
        publish(self.shell, assigned, args.out, result)
        return result

    def descend(self, line, cell):
        from tfmagic.runs import DescentRun

        return DescentRun(self.shell, _parse(self.descend, line), cell).start()


# magic_arguments decorators give `%%descend?` real help and parse errors as UsageError.
TfMagics.tfgrad = cell_magic(options.apply(options.tfgrad_arguments, TfMagics.tfgrad))
TfMagics.descend = cell_magic(options.apply(options.descend_arguments, TfMagics.descend))
TfMagics = magics_class(TfMagics)
