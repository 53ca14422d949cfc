"""The rooms import one way: each module imports only its own room and the rooms below it
(CONTRIBUTING.md draws them). Function-level imports count too."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
RANK = {"errors": 0, "runtime": 0, "cell": 1, "descent": 2, "grad": 2, "present": 3, "kernel": 4, "widgets": 5}
TOP = 6  # extension, magics, runs, options, private_apis


def _room(module):
    """'tfmagic.descent.engine' -> 'descent'; top-level modules -> their own name."""
    parts = module.split(".")
    if len(parts) == 1:
        return "tfmagic"
    return parts[1] if parts[1] in RANK else "top"  # extension, magics, runs, options, private_apis


def _rank(room):
    return RANK.get(room, TOP)


def _modules():
    for path in (ROOT / "tfmagic").rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        yield ".".join(rel.parts), path
    for path in (ROOT / "widgets").glob("*.py"):
        yield f"tfmagic.widgets.{path.stem}", path


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            yield from (n for n in names[:1] if n.startswith("tfmagic"))
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("tfmagic"))


def test_imports_run_one_way():
    wrong = []
    for module, path in _modules():
        here = _room(module)
        for target in _imports(path):
            there = _room(target)
            if there == "tfmagic":
                continue  # `from tfmagic import X`: checked through X's own module path
            if there != here and _rank(there) >= _rank(here):
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_no_module_grows_past_about_400_lines():
    big = {m: n for m, p in _modules() if (n := len(p.read_text().splitlines())) > 450}
    assert big == {}


CLASS_LINES, FUNCTION_LINES = 250, 60


def test_no_class_over_250_lines_and_no_function_over_60():
    too_long = {}
    for module, path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                limit = CLASS_LINES if isinstance(node, ast.ClassDef) else FUNCTION_LINES
                name, lines = f"{module}.{node.name}", node.end_lineno - node.lineno + 1
                if lines > limit:
                    too_long[name] = lines
    assert too_long == {}
