"""The third-party private attributes tfmagic lists still exist on the installed versions."""

import importlib

import pytest

from tfmagic.private_apis import PRIVATE_APIS


# Importing it makes ipywidgets' comms kernel comms in this process (test_widgets_charts counts
# the messages of comms without a kernel): checked in a process of its own.
IMPORTED_ELSEWHERE = {"ipykernel.ipkernel"}


def _exists_in_another_process(api):
    import subprocess
    import sys

    code = f"import functools, importlib; functools.reduce(getattr, {api.path!r}.split('.'), importlib.import_module({api.owner!r}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{api.owner}.{api.path} is gone; used in {api.used_in}: {api.without_it}\n{done.stderr}"


def _kernel_after_a_message(cls):
    """saved_sigint_handler exists once pre_handler_hook ran (the kernel handles a message)."""
    import signal

    kernel = cls.__new__(cls)
    before = signal.getsignal(signal.SIGINT)
    try:
        cls.pre_handler_hook(kernel)
    finally:
        signal.signal(signal.SIGINT, before)
    return kernel


def _a_summary_writer(cls):
    import tempfile

    import tensorflow as tf

    writer = tf.summary.create_file_writer(tempfile.mkdtemp())
    assert isinstance(writer, cls)
    return writer


@pytest.mark.parametrize("api", PRIVATE_APIS, ids=lambda a: f"{a.owner}.{a.path}")
def test_listed_private_api_exists(api):
    if api.owner in IMPORTED_ELSEWHERE:
        return _exists_in_another_process(api)
    obj = importlib.import_module(api.owner)
    instance_of = {"Optimizer._learning_rate": lambda cls: cls(0.1), "Variable._value": lambda cls: cls(0.0),
                   "Kernel.saved_sigint_handler": _kernel_after_a_message,
                   "_ResourceSummaryWriter._resource": _a_summary_writer}
    for part in api.path.split("."):
        if not hasattr(obj, part) and api.path in instance_of:  # an instance attribute: made by the constructor
            obj = instance_of[api.path](obj)
        assert hasattr(obj, part), f"{api.owner}.{api.path} is gone; used in {api.used_in}: {api.without_it}"
        obj = getattr(obj, part)


def test_no_unlisted_private_attribute_of_another_project():
    """Private names tfmagic reads from other projects' objects are all in the list."""
    import pathlib
    import re

    listed = {api.path.rsplit(".", 1)[-1] for api in PRIVATE_APIS}
    root = pathlib.Path(__file__).resolve().parents[1]
    ours = {"_active", "_tfmagic_idle_fix", "_warned", "_IN_AWAITED_CELL", "_tfmagic_busy", "_tfmagic_chained",
            "_tfmagic_interrupts", "_keys",
            "_repr_mimebundle_", "_repr_html_"}  # (IPython's documented display protocol, not private attributes)
    found = set()
    for path in list((root / "tfmagic").rglob("*.py")) + list((root / "widgets").glob("*.py")):
        for m in re.finditer(r"\b(?!self\b)([a-z_]+)\.(_[a-z][A-Za-z_]*)\b", path.read_text()):
            found.add(m.group(2))
    assert found - listed - ours == set()
