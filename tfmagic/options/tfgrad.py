"""`TfgradOptions`: one %%tfgrad's options, made once from its line and the namespace."""

from dataclasses import dataclass

from tfmagic.options.declared import TFGRAD


@dataclass(frozen=True)
class TfgradOptions:
    names: tuple  # what to differentiate with respect to (none: what the cell reads)
    device: str | None  # the full logical device name (None: TensorFlow's choice)
    bench: bool
    out: str | None


def tfgrad_options(line, settings, namespace, tf):
    """The TfgradOptions of a parsed line; UsageError for the first thing that does not fit."""
    from tfmagic.options.descend import checked_values
    from tfmagic.options.targets import check_out, resolve_device

    checked_values(line, TFGRAD)
    device = resolve_device(tf, line.device or settings.device)
    check_out(namespace, tf, line.out, line.names)
    return TfgradOptions(tuple(line.names), device, line.bench, line.out)
