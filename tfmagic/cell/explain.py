"""Explain an exception raised by the user's cell, next to TensorFlow's own words."""

import linecache
import re
import traceback

from tfmagic.errors import CellRuntimeError, TfmagicError

_DTYPE_PATTERNS = (
    re.compile(r"expected to be a (\w+) tensor but is a (\w+) tensor"),
    re.compile(r"has type (\w+) that does not match type (\w+)"),
    re.compile(r"requested dtype (\w+) for Tensor with dtype (\w+)"),
    re.compile(r"has type (\w+) that does not match expected type of (\w+)"),
)
# TensorFlow's eager messages say "a float tensor" for float32 and "int" for int32.
_DTYPE_NAMES = {"float": "float32", "int": "int32", "double": "float64"}
_SHAPE_PATTERNS = (
    re.compile(r"[Ii]ncompatible shapes: (\[[^\]]*\]) vs\. (\[[^\]]*\])"),
    re.compile(r"input shapes: (\[[^\]]*\]), (\[[^\]]*\])"),
    re.compile(r"Matrix size-incompatible: In\[0\]: (\[[^\]]*\]), In\[1\]: (\[[^\]]*\])"),
    re.compile(r"[Dd]imensions must be equal.*?shapes: (\[[^\]]*\]), (\[[^\]]*\])", re.S),
)


_OP_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\]$")  # which compiled function ran: not the user's business


def _first_line(text):
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


_ERROR_LINE = re.compile(r"^([\w.]*(?:Error|Exception)):\s*(.+)$")
_NODE_REF = re.compile(r" for '\{\{node [^']*'")  # the graph node's dump inside a shape message


def tf_message(err):
    """TensorFlow's message without its graph dump and AutoGraph preamble."""
    msg = getattr(err, "message", None) or str(err)
    lines = [_OP_SUFFIX.sub("", _NODE_REF.sub("", ln.strip())) for ln in msg.splitlines() if ln.strip()]
    raised = [m for m in map(_ERROR_LINE.match, lines) if m]
    if raised:  # "ValueError: ..." after AutoGraph's code lines, or a py_function's own error
        kind, text = raised[-1].groups()
        return text if kind.rsplit(".", 1)[-1] == type(err).__name__ else f"{kind}: {text}"
    kept = [
        ln
        for ln in lines
        if not ln.startswith(("File ", "in user code", "Traceback", "Call arguments", "•", "[[", "[Op:"))
        and "{{node" not in ln
    ]
    return kept[-1] if kept else _first_line(msg)


_CELL_FILE = re.compile(r'File "(<tfmagic-cell-\d+>)", line (\d+)')


def _same_code(filename, cell):
    """`filename` is this compile of the cell, or an earlier one of the same generated code:
    a re-run can run the function traced from that one, and its lines map alike."""
    if filename == cell.filename:
        return True
    earlier, now = linecache.cache.get(filename), linecache.cache.get(cell.filename)
    return filename.startswith("<tfmagic-cell-") and earlier is not None and now is not None and earlier[2] == now[2]


def locate(err, cell):
    """(cell line, line text) where `err` happened inside the compiled cell."""
    found = (None, None)
    for frame in traceback.extract_tb(err.__traceback__):
        if _same_code(frame.filename, cell):
            found = cell.cell_line(frame.lineno)
    if found[0] is None:
        # Errors raised while tracing carry AutoGraph's rewritten location in the text, and
        # errors of a traced function the place where its op was made.
        for match in _CELL_FILE.finditer(str(err)):
            if _same_code(match.group(1), cell):
                found = cell.cell_line(int(match.group(2)))
    return found


def hint_for(err):
    text = str(err)
    if "Op:Collective" in text and type(err).__name__ in _LOST_PEER:
        return ("a process of this multi-worker run went away (it ended, or stopped answering TensorFlow's peer "
                "check): the strategy's collectives are aborted in every process; start them all again to train.")
    if "has no attribute 'numpy'" in text:
        return (
            "the cell is compiled into a graph (tf.function), where tensors have no value yet, so .numpy() "
            "is not available inside it. Use tf.print(...) in the cell, or read the names after it: they are "
            "put back into your namespace with their values."
        )
    for pattern in _DTYPE_PATTERNS:
        m = pattern.search(text)
        if m:
            a, b = (_DTYPE_NAMES.get(d, d) for d in m.groups())
            target, other = (a, b) if a.startswith("float") or not b.startswith("float") else (b, a)
            return (
                f"the two sides have different dtypes ({a} and {b}); TensorFlow never converts "
                f"them for you. Cast the {other} side: `tf.cast(t, tf.{target})`, or create it as "
                f"{target} in the first place: `tf.constant(3.0)` rather than `tf.constant(3)`."
            )
    for pattern in _SHAPE_PATTERNS:
        m = pattern.search(text)
        if m:
            a, b = m.groups()
            if "Matrix size-incompatible" in pattern.pattern or "MatMul" in text:
                return (
                    f"shapes {a} and {b}: for tf.matmul the inner sizes must agree "
                    "(columns of the first = rows of the second)."
                )
            return (
                f"shapes {a} and {b} do not broadcast. Broadcasting lines the shapes up from the right; "
                "each pair of sizes must be equal or one of them 1 (a missing size counts as 1). "
                "Reshape one side, e.g. `tf.reshape(t, [-1, 1])`, or check which axis you meant."
            )
    return None


_LOST_PEER = ("UnavailableError", "DeadlineExceededError", "CancelledError", "AbortedError", "InternalError")


def explain(err, cell, what="running the cell"):
    """A CellRuntimeError for `err`, keeping TensorFlow's message and adding a hint."""
    if isinstance(err, TfmagicError):
        return err
    line, text = locate(err, cell)
    return CellRuntimeError(
        f"{type(err).__name__} while {what}: {tf_message(err)}",
        line=line,
        line_text=text,
        hint=hint_for(err),
    )
