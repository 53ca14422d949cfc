import pytest

from tfmagic.runtime.tfimport import tensorflow

tf = tensorflow()
# Two logical CPUs, so device selection is tested on a machine without a GPU.
# This must happen before TensorFlow's runtime starts, hence at import time.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
except RuntimeError:  # already initialised by an earlier import in this process
    pass


@pytest.fixture(scope="session")
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "tfmagic")
    return ip


@pytest.fixture
def ip(shell):
    """The shell with a fresh user namespace that has `tf`, as after `import tensorflow as tf`."""
    shell.reset(new_session=False)
    shell.user_ns["tf"] = tf
    yield shell
    shell.reset(new_session=False)


@pytest.fixture
def run(ip):
    """Run a cell magic: run('descend', 'x=10.0', 'y = x*x')."""

    def _run(magic, line, cell):
        return ip.run_cell_magic(magic, line, cell)

    return _run
