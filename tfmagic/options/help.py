"""The magic_arguments decorators of a magic, generated from its declared options, in their
groups; `%%descend?` reads like a man page: the usage line, the docstring, the groups, and the
defaults a notebook sets with %config."""

from IPython.core.magic_arguments import MagicHelpFormatter, argument, argument_group, kwds, magic_arguments

from tfmagic.options.declared import GROUPS


class CellMagicHelp(MagicHelpFormatter):
    """The usage line starts with `%%name`, as the cell is written (IPython's: `::` and `%name`)."""

    def add_usage(self, usage, actions, groups, prefix="%%"):
        super(MagicHelpFormatter, self).add_usage(usage, actions, groups, prefix)


def settings_help(options):
    """What `%config TfMagics` sets for these options, as the help's last lines."""
    from tfmagic.options.settings import shown_default

    lines = ["Defaults a notebook can set once with %config (an option in the cell still wins):"]
    for option in options:
        if option.setting:
            line = f"%config TfMagics.{option.setting} = {option.example}"
            lines.append(f"  {line:<38}{option.about} ({shown_default(option)})")
    return "\n".join(lines) + "\n"


def _argument(option):
    text = option.text().replace("%", "%%")  # (argparse formats help with %)
    if not option.flags:
        return argument(option.dest, nargs="*", metavar=option.metavar, help=text)
    if option.flag:
        return argument(*option.flags, dest=option.dest, action="store_true", help=text)
    return argument(*option.flags, dest=option.dest, type=option.type, default=None, metavar=option.metavar,
                    choices=option.choices, help=text)


def arguments(options, usage):
    """One decorator putting magic_arguments' decorators on a magic method (its docstring
    becomes the description), the options in their groups."""

    def decorate(func):
        decorators = [magic_arguments(), kwds(formatter_class=CellMagicHelp, usage=usage,
                                              epilog=settings_help(options))]
        for group in GROUPS:
            members = [option for option in options if option.group == group]
            if members:
                decorators.append(argument_group(GROUPS[group]))
                decorators.extend(_argument(option) for option in members)
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return decorate
