"""The %%tfgrad and %%descend cell magics: parse the line, make the options (tfmagic/options/),
run (tfmagic/runs.py), return what to display."""

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from tfmagic.options.declared import DESCEND, TFGRAD, flags
from tfmagic.options.help import arguments
from tfmagic.options.line import parse
from tfmagic.options.settings import DescendSettings


@magics_class
class TfMagics(Magics, DescendSettings):
    """%%tfgrad and %%descend; the defaults a notebook sets with %config are DescendSettings'."""

    @cell_magic
    @arguments(TFGRAD, "%(prog)s [NAME ...] [--device DEV] [--bench] [-o OUT]")
    def tfgrad(self, line, cell):
        """The gradients of the value a cell computes, with respect to the variables it reads.

        The cell is ordinary TensorFlow code; its target is the value of its last expression, or
        the name bound by its last assignment. The cell runs once, compiled (tf.function); what it
        assigns is put back in your namespace. The result (`_`, or OUT) has .value, .gradients
        and .tensors. Example:

            %%tfgrad x
            y = x ** 2 - 4 * x + 4
        """
        from tfmagic.grad.gradients import differentiate
        from tfmagic.options.tfgrad import tfgrad_options
        from tfmagic.present.results import GradResult
        from tfmagic.runs import publish, tensorflow_for
        from tfmagic.runtime.tfimport import quiet_retracing

        parsed = parse(self.tfgrad, line, flags(TFGRAD))
        tf = tensorflow_for(self.shell)
        options = tfgrad_options(parsed, self, self.shell.user_ns, tf)
        with quiet_retracing():
            found, assigned = differentiate(tf, cell, self.shell.user_ns, list(options.names), options.device,
                                            bench=options.bench)
        result = GradResult(found)
        publish(self.shell, assigned, options.out, result)
        return result

    @cell_magic
    @arguments(DESCEND, "%(prog)s [NAME[=INIT] ...] [options]")
    def descend(self, line, cell):
        """Gradient descent on the loss a cell computes, live in a notebook.

        The cell is ordinary TensorFlow code that computes a loss; its target is the value of its
        last expression, or the name bound by its last assignment. Each step evaluates the cell
        (compiled), takes the gradient of the target with respect to the variables, and moves
        them; the variables keep their final values, and what the cell assigns is put back in your
        namespace. In JupyterLab a live panel shows the loss and the path, and steers eta while it
        runs; elsewhere, text progress. The result (`_`, or OUT) has .history, .status, .steps,
        .final_loss, .values and .engine. Example:

            %%descend x=10.0 --eta 0.1 --steps 50
            y = x ** 2 - 4 * x + 4
        """
        from tfmagic.runs import run_descend
        from tfmagic.runtime.tfimport import quiet_retracing

        parsed = parse(self.descend, line, flags(DESCEND))
        with quiet_retracing():
            return run_descend(self.shell, parsed, self, cell, line)

    @line_magic
    def descend_runs(self, line):
        """%descend_runs: list this kernel's live %%descend panels and show them again (after a
        page reload, say); %descend_runs stop: stop the runs going on (Kernel > Interrupt does too)."""
        from tfmagic.reach import runs_magic

        return runs_magic(line)
