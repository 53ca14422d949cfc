"""Errors shown to the user as a short message instead of a traceback wall."""


class TfmagicError(Exception):
    """A problem with the user's cell or options, explained in plain words.

    IPython calls `_render_traceback_` instead of printing the stack, so the
    user sees the message, the cell line at fault and a hint, nothing else.
    """

    def __init__(self, message, *, line=None, line_text=None, hint=None, detail=None):
        self.message = message
        self.line = line
        self.line_text = line_text
        self.hint = hint
        self.detail = detail
        super().__init__(str(self))

    def __str__(self):
        parts = [self.message]
        if self.line is not None:
            where = f"cell line {self.line}"
            if self.line_text:
                where += f":  {self.line_text.strip()}"
            parts.append(where)
        if self.detail:
            parts.append(self.detail)
        if self.hint:
            parts.append(f"Hint: {self.hint}")
        return "\n".join(parts)

    def _render_traceback_(self):
        red, bold, reset = "\x1b[31m", "\x1b[1m", "\x1b[0m"
        lines = str(self).split("\n")
        return [f"{red}{bold}{type(self).__name__}{reset}: {lines[0]}"] + lines[1:]


class CellSyntaxError(TfmagicError):
    pass


class UnknownNameError(TfmagicError):
    pass


class CellRuntimeError(TfmagicError):
    pass


class LossError(TfmagicError):
    """The loss is not something gradient descent can minimise (not scalar, not float)."""
