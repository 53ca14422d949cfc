"""Every option of %%tfgrad and %%descend, declared once: its flags, type, default, metavar,
help, group and whether a notebook may set its default with %config.

The parser and `%%descend?` (help.py), the %config traits (settings.py), the checks
(descend.py, tfgrad.py) and the "did you mean" of a mistyped flag (line.py) all read this.
"""

import math
from dataclasses import dataclass

from tfmagic.descent.optimizers import OPTIMIZERS, check_eta, unknown_optimizer

# The defaults (the engine's own signature keeps its API defaults; these are the magic's).
ETA = 0.1
STEPS = 50
OPTIMIZER = "sgd"
FIND_ETA_STEPS = 100  # --find-eta's sweep without --steps
BATCH_SIZE = 32  # as Keras's model.fit

GROUPS = {  # the groups of `%%descend?`, in this order, with their titles
    "run": "run",
    "data": "data (mini-batches of arrays, or of a tf.data.Dataset)",
    "steering": "steering (eta found, replayed or compared; a pace to watch)",
    "display": "display",
    "output": "output",
}


class Bad(ValueError):
    """A value an option does not take; its text follows the option's name."""


def _positive_int(value):
    if value <= 0:
        raise Bad(f"must be a positive whole number, got {value}")
    return value


def _not_negative(value):
    if value < 0:
        raise Bad(f"must be 0 or more, got {value}")
    return value


def _eta(value):
    try:
        return check_eta(value)
    except ValueError as err:
        raise Bad(f": {err}") from None


def _optimizer(value):
    if value not in OPTIMIZERS:
        raise Bad(str(unknown_optimizer(value)))
    return value


def _tol(value):
    if not value > 0:
        raise Bad(f"must be a positive number, got {value}")
    return value


def _pace(value):
    if value is not None and not 0 < value < math.inf:
        raise Bad(f"is steps per second, a positive number; got {value}")
    return value


def _restarts(value):
    if value < 0:
        raise Bad("takes a positive N, and cannot be combined with --compare")
    return value


def _logdir(value):
    from tfmagic.descent.summaries import check_writable

    why = check_writable(value) if value.strip() else "an empty path"
    if why:
        raise Bad(f"{value}: cannot write TensorBoard logs there ({why}); nothing was run")
    return value


def _device(value):
    from tfmagic.runtime.devices import well_formed

    if value is not None and not well_formed(value):
        raise Bad(f"is not a device name: {value!r}; write CPU:0, GPU:1, cpu or /device:CPU:0")
    return value


@dataclass(frozen=True)
class Option:
    """One option. `dest` is its name in the parsed line and in DescendOptions."""

    dest: str
    flags: tuple  # () for the positional NAMEs
    group: str
    help: str  # "{default}" is replaced by the default
    type: type = str
    default: object = None  # the magic's default, used where the line does not give one
    metavar: str | None = None
    choices: tuple | None = None
    flag: bool = False  # takes no value (store_true)
    many: bool = False  # the positional NAMEs
    check: object = None  # value -> value, or Bad saying why not
    setting: str | None = None  # the TfMagics trait a notebook sets with %config (the default then)
    example: str | None = None  # ... an example value for the help
    about: str = ""  # ... and what it sets, in a few words

    @property
    def name(self):
        """How messages name it: '--steps', '-o', 'NAME'."""
        return self.flags[-1] if self.flags else self.metavar

    def text(self):
        default = self.default
        if self.dest == "optimizer":
            default = f"{OPTIMIZER}: x <- x - eta*grad"
        return self.help.replace("{default}", str(default))

    def checked(self, value, label=None):
        """`value` if the option takes it, else Bad with the whole sentence."""
        if value is None or self.check is None:
            return value
        try:
            return self.check(value)
        except Bad as err:
            text = str(err)
            if self.dest == "optimizer":  # (its sentence names the option's value itself)
                raise Bad(f"{label}: {text}" if label else text) from None
            raise Bad(f"{label or self.name}{'' if text.startswith(':') else ' '}{text}") from None


NAMES_HELP = ("variables to optimise: NAME=INIT makes NAME a float32 tf.Variable from the Python expression "
              "INIT; a bare NAME is an existing tf.Variable or a Keras model/layer/tf.Module; none means "
              "every tf.Variable the cell reads")
DEVICE_HELP = "TensorFlow device to run on, e.g. CPU:0 or GPU:0"
OUT_HELP = "also store the result in the variable OUT"

DESCEND = (
    Option("names", (), "run", NAMES_HELP, metavar="NAME[=INIT]", many=True),
    Option("eta", ("--eta",), "run", "learning rate (default {default})", float, ETA, "F", check=_eta,
           setting="eta", example="0.01", about="learning rate"),
    Option("steps", ("--steps",), "run", "steps to run (default {default})", int, STEPS, "N", check=_positive_int,
           setting="steps", example="200", about="steps to run"),
    Option("optimizer", ("--optimizer",), "run",
           f"one of {', '.join(OPTIMIZERS)} (Keras optimizers; default {{default}})", str, OPTIMIZER, "NAME",
           check=_optimizer, setting="optimizer", example="'adam'", about="optimizer"),
    Option("tol", ("--tol",), "run", "stop as converged once the gradient norm is below F", float, None, "F",
           check=_tol),
    Option("device", ("--device",), "run", DEVICE_HELP, metavar="DEV", check=_device, setting="device",
           example="'CPU:1'", about="device"),
    Option("jit", ("--jit",), "run", "XLA compilation: auto uses it for long runs, where it pays off",
           default="auto", choices=("auto", "on", "off")),
    Option("strategy", ("--strategy",), "run",
           "run each step on several devices or machines with tf.distribute: mirrored (the GPUs, else the "
           "CPUs), multiworker (from TF_CONFIG), or the name of a tf.distribute.Strategy", metavar="S"),
    Option("data", ("--data",), "data",
           "arrays the cell reads, comma-separated, one row per sample: in the cell each is the current "
           "mini-batch, in an order shuffled each epoch (--seed makes it repeatable); or NAMES=DS, a batched "
           "tf.data.Dataset", metavar="NAMES"),
    Option("batch_size", ("--batch-size",), "data", "with --data: samples per step (default {default})", int,
           BATCH_SIZE, "B"),
    Option("epochs", ("--epochs",), "data", "with --data: passes over the data, instead of --steps", int, None, "E",
           check=_positive_int),
    Option("validate", ("--validate",), "data",
           "with --data: arrays in the place of --data's, in the same order; the cell's loss on them after "
           "every epoch", metavar="NAMES"),
    Option("seed", ("--seed",), "data", "random seed for --restarts, and for the order of --data's samples", int,
           None, "S", check=_not_negative),
    Option("find_eta", ("--find-eta",), "steering",
           "the learning-rate range test: one step at each eta of a sweep from 1e-7 up (at most --steps, "
           f"default {FIND_ETA_STEPS}) until the loss blows up; suggests an eta; changes no variable", flag=True),
    Option("eta_schedule", ("--eta-schedule",), "steering",
           "give each step the eta step i of RUN ran with (RUN: a %%descend result stored with -o RUN, or its "
           "RUN.eta_schedule()): a run steered by hand, repeated; --steps defaults to RUN's", metavar="RUN"),
    Option("compare", ("--compare",), "steering",
           "several runs from the same start, one per value: eta=0.01,0.1,0.9 or optimizer=sgd,adam", metavar="SPEC"),
    Option("restarts", ("--restarts",), "steering",
           "N runs from random starts drawn from NAME=LO:HI ranges; the best is kept", int, 0, "N", check=_restarts),
    Option("pace", ("--pace",), "steering",
           "live panel only: run at N steps per second, slow enough to watch and steer (default off)", float, None,
           "N", check=_pace, setting="pace", example="30", about="live runs at 30 steps/s"),
    Option("print_every", ("--print-every",), "display",
           "print 'iteration: i x: ... y: ...' every K steps, like the course's loop", int, 0, "K",
           check=_not_negative),
    Option("sharpness", ("--sharpness",), "display",
           "every K steps, record the largest eigenvalue λ of the loss's Hessian in history['sharpness'] (with "
           "--data: the loss on 512 fixed rows, all if fewer) and chart it against 2/eta, where plain gradient "
           "descent goes unstable",
           int, None, "K", check=_positive_int),
    Option("no_widgets", ("--no-widgets",), "display", "text progress and summary instead of live widgets",
           flag=True, setting="widgets", example="False",
           about="text progress instead of the live panel"),
    Option("landscape", ("--landscape",), "display",
           "a model of more than two scalars: the loss on a plane through the start along two random "
           "directions, filter normalised (fixed by the cell, so compared runs share them), the path projected "
           "on it; an 11x11 preview, then 41x41 (seconds of loss evaluations)", flag=True),
    Option("out", ("-o", "--out"), "output", OUT_HELP, metavar="OUT"),
    Option("logdir", ("--logdir",), "output",
           "write the run's loss, eta and gradient norm (and epoch losses) for TensorBoard into a run "
           "directory under DIR (named OUT-date-time; a --compare or --restarts series one per run)",
           metavar="DIR", check=_logdir, setting="logdir", example="'logs'", about="TensorBoard log directory"),
)

TFGRAD = (
    Option("names", (), "run",
           "what to differentiate with respect to: a tf.Variable, a Keras model/layer/tf.Module (its trainable "
           "variables), or a constant, numpy array or number (watched for you); default: every tf.Variable, "
           "model and module the cell reads", metavar="NAME", many=True),
    Option("device", ("--device",), "run", DEVICE_HELP, metavar="DEV", check=_device, setting="device",
           example="'CPU:1'", about="device"),
    Option("bench", ("--bench",), "run",
           "time the cell compiled (tf.function) and eager, and show the speed-up (the timing runs' changes to "
           "variables are undone)", flag=True),
    Option("out", ("-o", "--out"), "output", OUT_HELP, metavar="OUT"),
)

DECLARED = {option.dest: option for option in DESCEND}


def flags(options):
    """Every flag of these options ('--eta', '-o', '--out', ...)."""
    return [flag for option in options for flag in option.flags]
