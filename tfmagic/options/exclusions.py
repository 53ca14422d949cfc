"""What excludes what among %%descend's options, and what needs what: one table, one message
each (a message may name the values: {eta_schedule}, {ds} the dataset of --data NAMES=DS)."""

from dataclasses import dataclass

from IPython.core.error import UsageError


@dataclass(frozen=True)
class When:
    """An option given on the line (`value`: given as that value; `dataset`: --data NAMES=DS)."""

    dest: str
    value: object = None
    dataset: bool = False
    at_all: bool = False

    def holds(self, line):
        given = getattr(line, self.dest, None)
        if self.dataset:
            return bool(given) and "=" in given
        if self.value is None:  # (`--batch-size 0` is given at all; `--restarts 0` asks for no restarts)
            return given is not None if self.at_all else bool(given)
        return given == self.value

    def __str__(self):
        flag = "--" + self.dest.replace("_", "-")
        return f"{flag} NAMES=DS" if self.dataset else flag if self.value is None else f"{flag} {self.value}"


FIND_ETA = "--find-eta runs its own sweep of eta: it cannot be combined with --compare or --restarts"
SCHEDULE = "--eta-schedule replays one run's eta: it cannot be combined with --compare, --restarts or --find-eta"
DATA = "--data cannot be combined with --compare or --restarts yet"
STRATEGY = "--strategy runs one training run: it cannot be combined with --compare, --restarts or --find-eta"
DATASET = When("data", dataset=True)
SHARPNESS = ("--sharpness measures one run on arrays: it cannot be combined with --compare, --restarts, "
             "--find-eta, --strategy or a tf.data.Dataset")

EXCLUDES = (  # (one, other, why), checked in this order
    (When("find_eta"), When("compare"), FIND_ETA),
    (When("find_eta"), When("restarts"), FIND_ETA),
    (When("restarts"), When("compare"), "--restarts takes a positive N, and cannot be combined with --compare"),
    (When("eta_schedule"), When("compare"), SCHEDULE),
    (When("eta_schedule"), When("restarts"), SCHEDULE),
    (When("eta_schedule"), When("find_eta"), SCHEDULE),
    (When("eta_schedule"), When("eta"),
     "give --eta or --eta-schedule {eta_schedule}, not both: the schedule sets each step's eta"),
    (When("data"), When("compare"), DATA),
    (When("data"), When("restarts"), DATA),
    (DATASET, When("jit", "on"), "--jit on: XLA cannot compile the reads of {ds}'s iterator; give arrays for XLA "
                                 "(--data X,Y --batch-size B), or leave --jit"),
    (DATASET, When("batch_size", at_all=True), "--batch-size: {ds} is batched already "
                                  "(--batch-size is for arrays: --data X,Y --batch-size 64)"),
    (When("epochs"), When("steps"), "give --epochs or --steps, not both"),
    (When("strategy"), When("device"),
     "--strategy places the steps on its replicas' devices: give --strategy or --device, not both"),
    (When("strategy"), When("jit", "on"), "--jit on is not supported with --strategy: the steps run without XLA"),
    (When("strategy"), When("compare"), STRATEGY),
    (When("strategy"), When("restarts"), STRATEGY),
    (When("strategy"), When("find_eta"), STRATEGY),
    *((When("sharpness"), other, SHARPNESS) for other in (When("compare"), When("restarts"), When("find_eta"),
                                                          When("strategy"), DATASET)),
    (When("logdir"), When("find_eta"), "--logdir records runs: --find-eta's sweep changes nothing and is not one"),
    (When("landscape"), When("find_eta"), "--landscape draws a run's path: --find-eta's sweep is not one"),
)

REQUIRES = tuple(  # (option, what it needs, why)
    (When(dest, at_all=True), When("data"), f"--{dest.replace('_', '-')} goes with --data X,Y (the arrays to take mini-batches of)")
    for dest in ("batch_size", "epochs", "validate")
)


def refuse_exclusions(line):
    """UsageError for the first pair of options in the line that do not go together."""
    values = dict(vars(line), ds=(getattr(line, "data", None) or "").partition("=")[2].strip())
    for one, other, why in REQUIRES:
        if one.holds(line) and not other.holds(line):
            raise UsageError(why.format(**values))
    for one, other, why in EXCLUDES:
        if one.holds(line) and other.holds(line):
            raise UsageError(why.format(**values))
