import subprocess
import sys

import pytest
from IPython.core.error import UsageError


def test_load_ext_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'tfmagic')\n"
        "assert 'descend' in ip.magics_manager.magics['cell']\n"
        "print('tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
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
