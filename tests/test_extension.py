import subprocess
import sys

import pytest
from IPython.core.error import UsageError


def in_fresh_shell(code):
    """Run `code` in a new Python process after `%load_ext tfmagic` in a shell `ip`."""
    prelude = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'tfmagic')\n"
    )
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, check=True)


def test_load_ext_does_not_import_tensorflow():
    out = in_fresh_shell(
        "assert 'descend' in ip.magics_manager.magics['cell']\n"
        "print('tensorflow' in sys.modules)\n"
    )
    assert out.stdout.strip() == "False"


def test_unload_removes_magics_and_load_twice_is_harmless(shell):
    shell.run_line_magic("load_ext", "tfmagic")
    shell.run_line_magic("load_ext", "tfmagic")
    assert {"tfgrad", "descend"} <= set(shell.magics_manager.magics["cell"])
    shell.run_line_magic("unload_ext", "tfmagic")
    assert not {"tfgrad", "descend"} & set(shell.magics_manager.magics["cell"])
    shell.run_line_magic("load_ext", "tfmagic")
    assert {"tfgrad", "descend"} <= set(shell.magics_manager.magics["cell"])


def test_help_lists_the_options(shell):
    doc = shell.find_cell_magic("descend").__doc__
    for option in ("--eta", "--steps", "--optimizer", "--device", "--tol", "--no-widgets", "NAME[=INIT]"):
        assert option in doc
    assert "--device" in shell.find_cell_magic("tfgrad").__doc__


def test_bad_option_is_a_usage_error(ip, run):
    with pytest.raises(UsageError, match="--bogus|unrecognized"):
        run("descend", "x=1.0 --bogus", "x*x")


def test_tf_is_provided_lazily_and_quietly():
    out = in_fresh_shell(
        "assert 'tensorflow' not in sys.modules\n"
        "ip.run_cell('x = tf.Variable(3.0)', store_history=False)\n"
        "import tensorflow\n"
        "assert ip.user_ns['tf'] is tensorflow, ip.user_ns['tf']\n"
        "print(float(ip.user_ns['x'].numpy()))\n"
    )
    assert out.stdout.strip() == "3.0"
    assert "oneDNN" not in out.stderr and "absl" not in out.stderr, out.stderr


def test_users_own_tf_is_kept(ip):
    ip.run_line_magic("unload_ext", "tfmagic")
    ip.user_ns["tf"] = "mine"
    ip.run_line_magic("load_ext", "tfmagic")
    assert ip.user_ns["tf"] == "mine"
    ip.run_line_magic("unload_ext", "tfmagic")
    assert ip.user_ns["tf"] == "mine"
    ip.run_line_magic("load_ext", "tfmagic")


def test_plain_cell_tf_errors_get_a_hint(ip, capsys):
    ip.run_cell("a=tf.constant(3.0, tf.float32)\nb=tf.constant(3, tf.int32)\nc=tf.add(a,b)")
    out = capsys.readouterr().out
    assert "InvalidArgumentError" in out and "tfmagic hint" in out and "tf.cast(t, tf.float" in out
    # TensorFlow's own frames (about 25 lines) are left out above the user's line and the hint
    assert "site-packages/tensorflow" not in out and "frames inside TensorFlow not shown" in out
    assert "c=tf.add(a,b)" in __import__("re").sub(r"\x1b\[[0-9;]*m", "", out)  # the user's line stays
    ip.run_cell("a=tf.constant([1,2])\nb=tf.constant([2,3,1])\nf=tf.add(a,b)")
    out = capsys.readouterr().out
    assert "Incompatible shapes: [2] vs. [3]" in out and "broadcast" in out


def test_tb_and_debug_see_a_hinted_tensorflow_error(ip, capsys):
    """The hint handler skipped IPython's record of the last exception: %tb and %debug
    showed the one before."""
    import sys

    ip.run_cell("1 / 0")
    ip.run_cell("c = tf.add(tf.constant(3.0), tf.constant(3))")
    assert type(sys.last_value).__name__ == "InvalidArgumentError"
    capsys.readouterr()
    ip.run_line_magic("tb", "")
    out = capsys.readouterr().out
    assert "InvalidArgumentError" in out and "ZeroDivisionError" not in out
    assert "tensorflow/python" in out  # %tb keeps TensorFlow's frames


@pytest.mark.parametrize("first", ["import tensorflow as tf", "import keras"])
def test_the_users_own_tensorflow_import_after_load_ext_is_quiet(first):
    """The course types `import tensorflow as tf` after `%load_ext tfmagic` (train_digits
    `import keras`): TensorFlow's red start-up lines (absl, oneDNN, cpu features) used to
    show; the lazy `tf` was quiet."""
    import subprocess
    import sys

    script = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'tfmagic')\n"
        f"r = ip.run_cell('{first}\\nprint(tf.constant(2.0) * 3)')\n"
        "assert r.success\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "6.0" in done.stdout
    assert done.stderr.strip() == "", done.stderr


def test_a_notebook_sets_descend_defaults_once_with_config(ip, run, capsys):
    """A teacher sets eta, steps, optimizer, pace and widgets once (as jupysql's %config does);
    an option in the cell still wins; `%%descend?` and `%config TfMagics` list them."""
    magics = ip.magics_manager.registry["TfMagics"]
    try:
        for line in ("TfMagics.eta = 0.05", "TfMagics.steps = 7", "TfMagics.optimizer = 'adam'",
                     "TfMagics.widgets = False", "TfMagics.pace = 30"):
            ip.run_line_magic("config", line)
        res = run("descend", "x=10.0", "y = (x - 2.0) ** 2")
        assert (res.eta, res.steps, res.optimizer) == (0.05, 7, "adam")
        assert "--pace applies" not in capsys.readouterr().out  # a default pace goes unsaid in text mode
        res = run("descend", "x=10.0 --eta 0.2 --steps 3 --optimizer sgd", "y = (x - 2.0) ** 2")
        assert (res.eta, res.steps, res.optimizer) == (0.2, 3, "sgd")
        ip.run_line_magic("config", "TfMagics.eta = 0.0")  # refused at once (tests/test_options.py)
        assert run("descend", "x=10.0", "y = (x - 2.0) ** 2").eta == 0.05
    finally:
        for name in ("eta", "steps", "optimizer", "pace", "widgets"):
            setattr(magics, name, magics.traits()[name].default())
        ip.config.pop("TfMagics", None)  # (a later load of the extension would read it)
    assert "%config TfMagics.eta = 0.01" in ip.find_cell_magic("descend").__doc__
    ip.run_line_magic("config", "TfMagics")
    listed = capsys.readouterr().out
    assert all(f"TfMagics.{n}" in listed for n in ("eta", "steps", "optimizer", "pace", "widgets"))


def test_what_a_first_descend_needs_is_imported_with_tensorflow():
    """A first %%descend imported ~30 tfmagic modules (~80 ms) before its first step; they
    now come with the user's `import tensorflow`, a cell that takes seconds anyway. The
    panel's widget modules only where there is a panel (a kernel: tests/test_descend_kernel)."""
    out = in_fresh_shell(
        "before = 'tfmagic.descent.setup' in sys.modules\n"
        "assert ip.run_cell('import tensorflow as tf').success\n"
        "print(before, 'tfmagic.descent.setup' in sys.modules, 'tfmagic.runs' in sys.modules,"
        " 'tfmagic.widgets.panel' in sys.modules)\n"
    )
    assert out.stdout.split() == ["False", "True", "True", "False"]


@pytest.mark.parametrize("first", ["import tensorflow", "%load_ext tfmagic\nimport tensorflow"])
def test_loading_before_tensorflow_or_with_it_imports_ahead(first):
    """The course's first cell is often both: the hook runs after the cell, whichever came first."""
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        f"assert ip.run_cell({first!r}).success\n"
        "ip.run_line_magic('load_ext', 'tfmagic')\n"
        "ip.run_cell('x = 1')\n"
        "print('tfmagic.descent.setup' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "True"


STATE = '''
def state(ip):
    """What loading tfmagic may touch in the process, as text to compare."""
    import logging, os, signal
    kernel = getattr(ip, "kernel", None)
    formatter = ip.display_formatter.mimebundle_formatter
    return {
        "events": {name: [repr(cb) for cb in cbs] for name, cbs in ip.events.callbacks.items()},
        "input transformers": [repr(t) for t in ip.input_transformers_post],
        "custom exceptions": repr(ip.custom_exceptions), "own CustomTB": "CustomTB" in vars(ip),
        "configurables": [type(c).__name__ for c in ip.configurables if type(c).__name__ != "ExtensionMagics"],
        "magics": {kind: sorted(names) for kind, names in ip.magics_manager.magics.items()},
        "magic classes": sorted(set(ip.magics_manager.registry) - {"ExtensionMagics"}),  # (IPython's %load_ext)
        "names": sorted(n for n in ip.user_ns if not n.startswith("_") and n not in USED),
        "environment": {k: v for k, v in os.environ.items() if k not in TENSORFLOWS_OWN},
        "tensorflow logger": [repr(f) for f in logging.getLogger("tensorflow").filters],
        "display formatters": sorted(map(str, formatter.type_printers)) + sorted(map(str, formatter.deferred_printers)),
        "SIGINT": repr(signal.getsignal(signal.SIGINT)),
        "kernel": None if kernel is None else (sorted(vars(kernel)), repr(getattr(kernel, "saved_sigint_handler", None))),
    }
'''
USING = [
    "import tensorflow as tf",  # (tfmagic then imports what a first %%descend needs, installs its hint)
    "a = tf.constant(3.0); b = tf.constant(3); c = tf.add(a, b)",  # a hinted TensorFlow error
    "%%descend x=10.0 --steps 20 -o r\ny = (x - 2.0) ** 2",
    "%%tfgrad\nf = x * x",
    "%descend_runs",
    "r",
]
USED = {"tf", "a", "b", "c", "x", "r", "f", "y"}  # the names those cells define (the user's own)


def test_unload_undoes_everything_load_did():
    """Callbacks, input transformers, the exception handler and its CustomTB, configurables,
    magics, the result formatter, the `tf` stand-in: as before `%load_ext`, after using it."""
    # What `import tensorflow` sets in os.environ by itself (TF2_BEHAVIOR, KMP_..., ...): not ours.
    probe = "import os; before = set(os.environ); import tensorflow; print(sorted(set(os.environ) - before))"
    own = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300).stdout.split("\n")[-2]
    code = (
        STATE + f"USED = {USED!r}\nTENSORFLOWS_OWN = set({own})\n"
        "import json, sys\nfrom IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\nbefore = state(ip)\n"
        "ip.run_line_magic('load_ext', 'tfmagic')\n"
        f"for cell in {USING!r}:\n    ip.run_cell(cell)\n"
        "ip.run_line_magic('unload_ext', 'tfmagic')\n"
        "after = state(ip)\n"
        "print(json.dumps({k: [before[k], after[k]] for k in before if before[k] != after[k]}))\n"
        "ip.run_line_magic('load_ext', 'tfmagic')\nip.run_line_magic('unload_ext', 'tfmagic')\n"
        "print('tf' in ip.user_ns)\n"  # the stand-in, unused: taken away
    )
    import json
    import os

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[-2]) == {}
    assert lines[-1] == "True"  # (the user's own `import tensorflow as tf` stays)


def test_the_users_own_retracing_warning_reaches_them_and_no_variable_is_left_set():
    """The course's lesson on retracing: a tf.function called with Python floats warns. The
    warning was filtered out of TensorFlow's logger for the whole process; and
    TF_CPP_MIN_LOG_LEVEL, set for the import, was inherited by every `!python`."""
    import os

    code = (
        "import os\nfrom IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\nip.run_line_magic('load_ext', 'tfmagic')\n"
        "ip.run_cell('import tensorflow as tf')\n"
        "ip.run_cell_magic('descend', 'x=10.0 --steps 20 --no-widgets', 'y = (x - 2.0) ** 2')\n"
        "ip.run_cell('@tf.function\\ndef f(v):\\n    return v * v\\nfor v in [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]:\\n    f(v)')\n"
        "print('environment:', os.environ.get('TF_CPP_MIN_LOG_LEVEL'))\n"
        "ip.system('python -c \"import os; print(\\'child:\\', os.environ.get(\\'TF_CPP_MIN_LOG_LEVEL\\'))\"')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr
    assert "calls to <function f at" in said and "triggered tf.function retracing" in said, said
    assert "environment: None" in done.stdout and "child: None" in done.stdout, done.stdout
    assert "oneDNN" not in done.stderr and "cpu_feature_guard" not in done.stderr  # (still quiet)


def test_tfmagics_own_curvature_estimates_do_not_warn_of_retracing():
    """The 2/λ bound builds a new tf.function each time on purpose (a diverged run's message, --compare,
    --find-eta); from the sixth, outside a magic's own call, TensorFlow said "5 out of the last 5 calls
    ... triggered tf.function retracing" about tfmagic's code, into saved notebooks."""
    code = (
        "import tensorflow as tf\n"
        "from tfmagic.descent.curvature import largest_curvature\n"
        "x = tf.Variable([1.0, 2.0])\n"
        "for k in range(8):\n"
        "    print(round(largest_curvature(tf, lambda: tf.reduce_sum((x * float(k + 1)) ** 2), [x]), 3))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(round(2.0 * (k + 1) ** 2, 3)) for k in range(8)], done.stdout
    assert "retracing" not in done.stderr, done.stderr
