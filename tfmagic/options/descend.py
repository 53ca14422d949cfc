"""`DescendOptions`: one %%descend's options, made once from its line, the notebook's %config
defaults and the namespace (data, schedule, strategy, device, -o), checked before anything
changes. The run reads them and never writes them."""

from dataclasses import dataclass

from IPython.core.error import UsageError

from tfmagic.options.declared import DESCEND, FIND_ETA_STEPS, Bad
from tfmagic.options.exclusions import refuse_exclusions


@dataclass(frozen=True)
class DescendOptions:
    names: tuple  # NAME[=INIT] specs, as written
    eta: float  # the first step's (--eta, --eta-schedule's first, or the notebook's default)
    steps: int  # --steps, else --epochs' steps, the schedule's length, --find-eta's sweep or the default
    optimizer: str
    tol: float | None
    device: str | None  # the full logical device name (None: TensorFlow's choice, or the strategy's)
    jit: str  # auto, on or off
    strategy: object  # the tf.distribute.Strategy of --strategy, or None
    data: object  # the descent.data.DataSpec of --data, or None
    seed: int | None
    compare: tuple | None  # ('eta' | 'optimizer', the values) of --compare
    restarts: int
    find_eta: bool
    eta_plan: object  # --eta-schedule's per-step etas (numpy), or None
    pace: float | None
    pace_is_default: bool  # the pace is the notebook's %config default (not said where it cannot apply)
    print_every: int
    sharpness: int | None  # --sharpness K: λ every K steps
    no_widgets: bool
    landscape: bool  # --landscape: the loss on a slice through the start (descent/landscape.py)
    out: str | None
    logdir: str | None  # --logdir (or %config TfMagics.logdir): where run directories go, checked writable
    magic_line: str  # the line as written (the panel's title in %descend_runs)


def _is_range(spec):
    """NAME=LO:HI (as setup.py reads a range)."""
    _, sep, expr = spec.partition("=")
    return bool(sep) and ":" in expr and not any(c in expr for c in "[({")


def checked_values(line, options=DESCEND):
    """Each value the line gives, as its option takes it, else the option's UsageError."""
    for option in options:
        if option.dest != "device":  # (resolved against TensorFlow's devices, which it names)
            try:
                option.checked(getattr(line, option.dest, None))
            except Bad as err:
                raise UsageError(str(err)) from None


def _compare(spec):
    from tfmagic.descent.experiments import parse_compare
    from tfmagic.descent.optimizers import OPTIMIZERS

    try:
        return parse_compare(spec, OPTIMIZERS) if spec else None
    except ValueError as err:
        raise UsageError(str(err)) from None


def _steps(line, settings, epoch_steps, plan):
    if line.steps is not None:
        return line.steps
    if line.find_eta:
        return FIND_ETA_STEPS
    if epoch_steps is not None:
        return epoch_steps
    if plan is not None:
        return len(plan)
    return settings.steps


def descend_options(line, settings, namespace, tf, magic_line=""):
    """The DescendOptions of a parsed line (None where not given), `settings` the TfMagics
    holding the notebook's defaults; UsageError for the first thing that does not fit."""
    from tfmagic.options.data import data_spec
    from tfmagic.options.schedule import eta_plan
    from tfmagic.options.strategy import strategy_for
    from tfmagic.options.targets import check_out, resolve_device

    checked_values(line)
    compare = _compare(line.compare)
    refuse_exclusions(line)
    names = tuple(line.names)
    if line.restarts and not any(_is_range(spec) for spec in names):
        raise UsageError("--restarts needs a range to draw starts from, e.g. %%descend x=-5:5 --restarts 10")
    device = resolve_device(tf, line.device or (None if line.strategy else settings.device))
    check_out(namespace, tf, line.out, names)
    plan = eta_plan(line.eta_schedule, namespace)
    strategy = strategy_for(line.strategy, namespace, tf)
    data, epoch_steps = data_spec(line, namespace, tf, strategy)
    return DescendOptions(
        names=names,
        eta=line.eta if line.eta is not None else float(plan[0]) if plan is not None else settings.eta,
        steps=_steps(line, settings, epoch_steps, plan),
        optimizer=line.optimizer or settings.optimizer,
        tol=line.tol, device=device, jit=line.jit or "auto", strategy=strategy, data=data, seed=line.seed,
        compare=compare, restarts=line.restarts or 0, find_eta=line.find_eta, eta_plan=plan,
        pace=settings.pace if line.pace is None else line.pace, pace_is_default=line.pace is None,
        print_every=line.print_every or 0, sharpness=line.sharpness, no_widgets=line.no_widgets or not settings.widgets,
        landscape=bool(line.landscape),
        out=line.out, logdir=line.logdir or settings.logdir, magic_line=magic_line.strip(),
    )
