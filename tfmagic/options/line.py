"""A magic's line as argv, parsed by its magic_arguments parser; a mistyped flag gets
"did you mean --steps?" from the declared flags, in one UsageError line."""

import difflib

from IPython.core.error import UsageError


def split_line(line):
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


def suggestion(word, flags):
    """The declared flag `word` most likely meant ('--stesp' -> '--steps'), or None."""
    bare = word.lstrip("-").lower().replace("_", "-")
    names = {flag.lstrip("-"): flag for flag in flags if flag.startswith("--")}
    close = difflib.get_close_matches(bare, list(names), n=1, cutoff=0.6)
    return names[close[0]] if close else None


def parse(magic, line, flags):
    """The parsed line of `magic` (a method decorated with magic_arguments); UsageError for
    an unknown flag, naming the declared one it resembles."""
    argv = split_line(line)
    parsed, extra = magic.parser.parse_known_args(argv)
    if extra:
        unknown = next((word for word in extra if word.startswith("-") and len(word) > 1), None)
        if unknown is None:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
        flag = unknown.partition("=")[0]
        near = suggestion(flag, flags)
        hint = f"did you mean {near}?" if near else f"the options are listed by %%{magic.__name__}?"
        raise UsageError(f"unknown option {flag}: {hint}")
    return parsed
