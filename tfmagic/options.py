"""The magics' options, declared with IPython's magic_arguments (so `%%descend?` shows them)."""

from IPython.core.magic_arguments import argument, magic_arguments

from tfmagic.descent.optimizers import OPTIMIZERS

tfgrad_arguments = [
    magic_arguments(),
    argument("names", nargs="*", metavar="NAME",
             help="what to differentiate with respect to: a tf.Variable, a Keras model/layer/tf.Module "
                  "(its trainable variables), or a constant, numpy array or number (watched for you); "
                  "default: every tf.Variable, model and module the cell reads"),
    argument("--device", metavar="DEV", help="TensorFlow device to run on, e.g. CPU:0 or GPU:0"),
    argument("--bench", action="store_true",
             help="time the cell compiled (tf.function) and eager, and show the speed-up (the timing runs' changes to variables are undone)"),
    argument("-o", "--out", metavar="OUT", help="also store the result in the variable OUT"),
]

descend_arguments = [
    magic_arguments(),
    argument("names", nargs="*", metavar="NAME[=INIT]",
             help="variables to optimise: NAME=INIT makes NAME a float32 tf.Variable from the Python "
                  "expression INIT; a bare NAME is an existing tf.Variable or a Keras model/layer/tf.Module; "
                  "none means every tf.Variable the cell reads"),
    # (eta, steps, optimizer, pace and widgets default to TfMagics' settings: see magics.py)
    argument("--eta", type=float, default=None, metavar="F", help="learning rate (default 0.1)"),
    argument("--steps", type=int, default=None, metavar="N", help="steps to run (default 50)"),
    argument("--optimizer", default=None, metavar="NAME",
             help=f"one of {', '.join(OPTIMIZERS)} (Keras optimizers; default sgd: x <- x - eta*grad)"),
    argument("--device", metavar="DEV", help="TensorFlow device to run on, e.g. CPU:0 or GPU:0"),
    argument("--tol", type=float, default=None, metavar="F",
             help="stop as converged once the gradient norm is below F"),
    argument("--print-every", type=int, default=0, metavar="K",
             help="print 'iteration: i x: ... y: ...' every K steps, like the course's loop"),
    argument("--jit", choices=("auto", "on", "off"), default="auto",
             help="XLA compilation: auto uses it for long runs, where it pays off"),
    argument("--compare", metavar="SPEC",
             help="several runs from the same start, one per value: eta=0.01,0.1,0.9 or optimizer=sgd,adam"),
    argument("--restarts", type=int, default=0, metavar="N",
             help="N runs from random starts drawn from NAME=LO:HI ranges; the best is kept"),
    argument("--seed", type=int, default=None, metavar="S", help="random seed for --restarts, and for the order of --data's samples"),
    argument("--pace", type=float, default=None, metavar="N",
             help="live panel only: run at N steps per second, slow enough to watch and steer"),
    argument("--data", metavar="NAMES",
             help="arrays the cell reads, comma-separated, one row per sample: in the cell each is the "
                  "current mini-batch, in an order shuffled each epoch (--seed makes it repeatable)"),
    argument("--batch-size", type=int, default=None, metavar="B", help="with --data: samples per step (default 32)"),
    argument("--epochs", type=int, default=None, metavar="E",
             help="with --data: passes over the data, instead of --steps"),
    argument("--validate", metavar="NAMES",
             help="with --data: arrays in the place of --data's, in the same order; the cell's loss on "
                  "them after every epoch"),
    argument("--find-eta", action="store_true",
             help="the learning-rate range test: one step at each eta of a sweep from 1e-7 up (at most "
                  "--steps, default 100) until the loss blows up; suggests an eta; changes no variable"),
    argument("--strategy", metavar="S",
             help="run each step on several devices or machines with tf.distribute: mirrored (the GPUs, else "
                  "the CPUs), multiworker (from TF_CONFIG), or the name of a tf.distribute.Strategy"),
    argument("--eta-schedule", metavar="RUN",
             help="give each step the eta step i of RUN ran with (RUN: a %%descend result stored with -o RUN, "
                  "or its RUN.eta_schedule()): a run steered by hand, repeated; --steps defaults to RUN's"),
    argument("--no-widgets", action="store_true", help="text progress and summary instead of live widgets"),
    argument("-o", "--out", metavar="OUT", help="also store the result in the variable OUT"),
]


def apply(decorators, func):
    for deco in reversed(decorators):
        func = deco(func)
    return func
