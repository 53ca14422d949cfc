"""Turn a notebook cell into a Python function that TensorFlow can trace.

The cell's body becomes the body of `def __tfmagic_cell__(<params>)`; its last
expression (or the name its last assignment binds) is the *target*. The function
returns `(target, {assigned name: value})` so the magic can publish the names
back to the user's namespace, as a normal cell would.

The generated source is registered in `linecache`, because AutoGraph reads a
function's source to convert Python `if`/`while` on tensors.
"""

import ast
import builtins
import difflib
import itertools
import linecache
import numbers
import types
from dataclasses import dataclass, field

import numpy as np

from tfmagic.cell import autograph
from tfmagic.errors import CellSyntaxError, TfmagicError, UnknownNameError

FUNC_NAME = "__tfmagic_cell__"
TARGET_NAME = "__tfmagic_target__"
KEEP_NAME = "__tfmagic_keep__"
_counter = itertools.count(1)


@dataclass
class CompiledCell:
    source: str  # the user's cell
    filename: str  # name under which the generated code is in linecache
    function: object  # the plain Python function (not yet a tf.function)
    target_name: str | None  # None when the target is an expression
    assigned: list  # names the cell binds, published afterwards
    reads: list  # names the cell reads from the namespace
    params: list  # parameters of the function, in order
    constants: dict = field(default_factory=dict)  # read globals baked in as constants
    # Names bound to what a tf.function cannot return (a `def`, a module, a TensorShape),
    # as the last trace left them; a GradientTape is not kept (it is spent).
    python_values: dict = field(default_factory=dict)
    not_kept: list = field(default_factory=list)  # names whose value uses the trace's tensors
    builtin_reads: list = field(default_factory=list)  # names read from builtins: a global of that name would win

    @property
    def not_kept_note(self):
        if not self.not_kept:
            return None
        names = ", ".join(dict.fromkeys(self.not_kept))
        return (f"{names} not kept: it uses tensors computed inside the compiled cell, which do not exist "
                "after it; define it in a normal cell.")

    def published(self, assigned):
        """Everything the cell assigned, as a normal cell would leave it."""
        return {**self.python_values, **assigned}

    @property
    def target_label(self):
        return self.target_name or "value"

    def cell_line(self, generated_lineno):
        """Map a line of the generated function back to the user's cell."""
        line = generated_lineno - 1
        lines = self.source.splitlines()
        if 1 <= line <= len(lines):
            return line, lines[line - 1]
        return None, None


class _Names(ast.NodeVisitor):
    """Names a cell binds and reads (nested scopes' own names count as bound)."""

    def __init__(self):
        self.stored, self.loaded, self.local_only = [], [], set()

    def visit_Name(self, node):
        bucket = self.stored if isinstance(node.ctx, (ast.Store, ast.Del)) else self.loaded
        if node.id not in bucket:
            bucket.append(node.id)

    def _scope(self, node):
        args = getattr(node, "args", None)
        if isinstance(args, ast.arguments):
            self.local_only.update(a.arg for a in ast.walk(args) if isinstance(a, ast.arg))
        if hasattr(node, "name"):
            self.local_only.add(node.name)
        inner = _Names()
        for child in ast.iter_child_nodes(node):
            inner.visit(child)
        self.local_only.update(inner.stored, inner.local_only)
        self.loaded.extend(n for n in inner.loaded if n not in self.loaded)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = visit_ClassDef = _scope

    def _comprehension(self, node):
        inner = _Names()
        for child in ast.iter_child_nodes(node):
            inner.visit(child)
        self.local_only.update(inner.stored)
        self.loaded.extend(n for n in inner.loaded if n not in self.loaded)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    def visit_Import(self, node):
        for alias in node.names:
            self.local_only.add((alias.asname or alias.name).split(".")[0])

    visit_ImportFrom = visit_Import


def _defined_at_top(body):
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield stmt.name
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            yield from ((a.asname or a.name).split(".")[0] for a in stmt.names if a.name != "*")


def _syntax_error(err, source):
    lines = source.splitlines()
    lineno = err.lineno or 0
    text = lines[lineno - 1] if 1 <= lineno <= len(lines) else (err.text or "")
    caret = ""
    if err.offset:
        caret = " " * (max(err.offset, 1) - 1 + 4) + "^"
    return CellSyntaxError(
        f"SyntaxError in the cell: {err.msg}",
        line=lineno or None,
        line_text=text,
        detail=f"    {text.rstrip()}\n{caret}" if caret else None,
    )


class _TopLevel(ast.NodeVisitor):
    """Statements of the cell's own level (not inside a def, class or lambda)."""

    def __init__(self):
        self.found = []

    def generic_visit(self, node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            return
        if isinstance(node, (ast.Await, ast.Return, ast.Yield, ast.YieldFrom, ast.Nonlocal, ast.Global)):
            self.found.append(node)
        elif isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            self.found.append(node)
        super().generic_visit(node)


_CANNOT_HOLD = {
    ast.Await: ("await", "TensorFlow compiles the cell into one function, which cannot await; await in a cell of its own"),
    ast.Return: ("return", "the cell's value is its last expression or assignment, not a return"),
    ast.Yield: ("yield", "the cell is compiled into a function whose value is its last line; a generator has none"),
    ast.YieldFrom: ("yield from", "the cell is compiled into a function whose value is its last line; a generator has none"),
    ast.Nonlocal: ("nonlocal", "a cell has no enclosing function to take the name from"),
    ast.Global: ("global", "the names a cell assigns go back to your namespace anyway; drop the global statement"),
    ast.ImportFrom: ("from ... import *", "it cannot be compiled into a function; import it in a cell of its own, "
                     "or import the names you need"),
}


def _refuse_what_a_function_cannot_hold(tree, source):
    """A cell becomes a function's body: say so for what a function body cannot hold."""
    top = _TopLevel()
    for stmt in tree.body:
        top.visit(stmt)
    if top.found:
        node = top.found[0]
        what, why = _CANNOT_HOLD[type(node)]
        raise TfmagicError(f"`{what}` cannot be used in a tfmagic cell: {why}.",
                           line=node.lineno, line_text=source.splitlines()[node.lineno - 1])
    # A def's `global g` would set g in the compiled function's globals while the cell runs,
    # not in your namespace (nor the g the cell itself assigns): the values would silently differ.
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            name = node.names[0]
            raise TfmagicError(
                f"a def in the cell declares `global {name}`: while a compiled cell runs, that is not the {name} "
                f"of your namespace.", line=node.lineno, line_text=source.splitlines()[node.lineno - 1],
                hint=f"return the new value from the def instead (e.g. {name} = f()), or define the def in a cell of its own.")


def _target_of(last, source):
    line = source.splitlines()[last.lineno - 1]
    if isinstance(last, ast.Expr):
        call = last.value
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "print":
            raise TfmagicError(
                "The cell's last line is print(...), which gives None: there is nothing to differentiate or minimise.",
                line=last.lineno,
                line_text=line,
                hint="end the cell with the expression itself, e.g. `y`. The cell is compiled, so print() runs "
                "once while it is traced; use tf.print(...) to print values as it runs.",
            )
        return None
    if isinstance(last, ast.Assign) and len(last.targets) == 1 and isinstance(last.targets[0], ast.Name):
        return last.targets[0].id
    if isinstance(last, (ast.AugAssign, ast.AnnAssign)) and isinstance(last.target, ast.Name):
        return last.target.id
    if isinstance(last, ast.Assign):
        what = "assigns several names at once, so it is not clear which one is the target"
    else:
        kind = type(last).__name__.lower()
        what = f"is {'an' if kind[0] in 'aeiou' else 'a'} `{kind}` statement, so there is nothing to differentiate or minimise"
    raise TfmagicError(
        f"The cell's last statement {what}.",
        line=last.lineno,
        line_text=line,
        hint="end the cell with the expression you want, e.g. `y` or `loss = tf.reduce_mean(err ** 2)`.",
    )


def _is_python_constant(value):
    return isinstance(value, (numbers.Number, np.ndarray, np.generic)) and not isinstance(value, bool)


def _can_return(value):
    """Can a tf.function return this? (tensors, variables, numbers, strings, None, nests of them)"""
    if value is None or isinstance(value, (numbers.Number, str, bytes, np.ndarray, np.generic)):
        return True
    if isinstance(value, (type, types.ModuleType)) or callable(value):  # (numpy has .dtype and .shape)
        return False
    if isinstance(value, (list, tuple)):
        return all(_can_return(v) for v in value)
    if isinstance(value, dict):
        return all(_can_return(v) for v in value.values())
    return hasattr(value, "_type_spec") or hasattr(value, "dtype") and hasattr(value, "shape")


def _uses_graph_tensors(value, seen=None):
    """A function closing over the trace's tensors: calling it after the cell would fail."""
    seen = set() if seen is None else seen
    if id(value) in seen:  # (a recursive function closes over itself)
        return False
    seen.add(id(value))
    for cell in getattr(value, "__closure__", None) or ():
        try:
            contents = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if type(contents).__name__ == "SymbolicTensor" or _uses_graph_tensors(contents, seen):
            return True
    return False


def _returnable(values, python_values, not_kept):
    """The assigned names a tf.function can return; other objects go to `python_values`
    as the trace left them, except a spent GradientTape and what holds graph tensors."""
    kept = {}
    for name, value in values.items():
        if _can_return(value):
            kept[name] = value
        elif type(value).__name__ == "GradientTape":
            continue
        elif _uses_graph_tensors(value):
            not_kept.append(name)
        else:
            python_values[name] = value
    return kept


def _unknown_name(name, namespace):
    close = difflib.get_close_matches(name, [k for k in namespace if not k.startswith("_")], n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "run the cell that defines it first, or give it with NAME=VALUE."
    return UnknownNameError(f"name '{name}' is not defined: the cell reads it, but nothing defines it.", hint=hint)


def compile_cell(source, namespace, params=(), default_globals=None, tf=None):
    """Compile `source` into a function of `params` that returns (target, assigned).

    `namespace` is the user's namespace; the function's globals are the names the
    cell reads from it (or from `default_globals`, e.g. `tf`, where the user has
    no such name), so running the cell never changes the namespace by itself.
    `tf`: when given, the function's own bookkeeping is not converted by AutoGraph.
    """
    filename = f"<tfmagic-cell-{next(_counter)}>"
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as err:
        raise _syntax_error(err, source) from None
    if not tree.body:
        raise TfmagicError("The cell is empty: write the expression to differentiate or minimise.")

    _refuse_what_a_function_cannot_hold(tree, source)
    target_name = _target_of(tree.body[-1], source)
    names = _Names()
    for stmt in tree.body:
        names.visit(stmt)
    params = list(params)
    assigned = [n for n in names.stored if not n.startswith("__tfmagic")]
    assigned += [n for n in _defined_at_top(tree.body) if n not in assigned]  # def, class, import: a cell keeps them
    globals_, reads, builtin_reads, constants = _bind(names, assigned, params, namespace, default_globals or {})
    generated = _function_text(source, tree, target_name, params, assigned)
    python_values, not_kept = {}, []
    keep = lambda local, names: _returnable(  # noqa: E731
        {n: local[n] for n in names if n in local and type(local[n]).__name__ != "Undefined"}, python_values, not_kept)
    globals_[KEEP_NAME] = keep if tf is None else autograph.not_converted(tf, keep)  # (bookkeeping: no conversion)
    linecache.cache[filename] = (len(generated), None, generated.splitlines(True), filename)
    try:
        code = compile(generated, filename, "exec")
    except SyntaxError as err:  # its lines are the cell's, one line down and indented by 4
        err.lineno, err.offset = (err.lineno or 2) - 1, max((err.offset or 5) - 4, 1)
        raise _syntax_error(err, source) from None
    exec(code, globals_)
    return CompiledCell(
        source=source,
        filename=filename,
        function=globals_[FUNC_NAME],
        target_name=target_name,
        assigned=assigned,
        reads=reads,
        params=params,
        constants=constants,
        python_values=python_values,
        not_kept=not_kept,
        builtin_reads=builtin_reads,
    )


def _bind(names, assigned, params, namespace, defaults):
    """(globals, names read from the namespace, builtins read, Python constants read) of a cell
    whose names are `names`; `params` gains the names the cell reads and rebinds."""
    # Only the names the cell reads: a copy of the whole namespace would keep every
    # object the user had (earlier results, arrays since deleted) alive with this cell.
    globals_ = {n: namespace[n] if n in namespace else defaults[n]
                for n in names.loaded if n in namespace or n in defaults}

    local = set(assigned) | names.local_only | set(params)
    for name in names.loaded:
        if name not in local and name not in globals_ and not hasattr(builtins, name):
            raise _unknown_name(name, namespace)
    reads = [n for n in names.loaded if n in globals_ and n not in names.local_only]
    builtin_reads = [n for n in names.loaded if n not in local and n not in globals_]
    # A name the cell both reads and rebinds is local to the function in Python;
    # start it from the user's value, as a cell would.
    for name in assigned:
        if name in names.loaded and name in globals_ and name not in params:
            params.append(name)
    constants = {
        n: globals_[n] for n in reads if n not in params and _is_python_constant(globals_[n])
    }
    return globals_, reads, builtin_reads, constants


def _function_text(source, tree, target_name, params, assigned):
    """The cell as the body of a function of `params` returning (target, assigned names)."""
    lines = source.splitlines()
    last = tree.body[-1]
    if target_name is None:
        row = last.lineno - 1
        lines[row] = lines[row][: last.col_offset] + f"{TARGET_NAME} = " + lines[row][last.col_offset :]
    result = TARGET_NAME if target_name is None else target_name
    # The assigned names are gathered with locals(), not named in the return: a name bound
    # only inside a tensor loop or branch must not be read after it (AutoGraph refuses),
    # and then it is simply not published.
    published = tuple(assigned)
    body = "\n".join("    " + line for line in lines)
    return (
        f"def {FUNC_NAME}({', '.join(params)}):\n{body}\n    return {result}, {KEEP_NAME}(locals(), {published!r})\n"
    )

