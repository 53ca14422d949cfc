"""tfmagic: `%load_ext tfmagic` adds the %%tfgrad and %%descend cell magics.

Loading is fast on purpose: TensorFlow is imported on the first use of a magic.
"""

__version__ = "0.1.0"


def load_ipython_extension(shell):
    from tfmagic.extension import load

    load(shell)


def unload_ipython_extension(shell):
    from tfmagic.extension import unload

    unload(shell)
