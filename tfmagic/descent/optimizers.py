"""The optimizers %%descend offers (Keras's) and the one check of an eta."""

import math

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad")


def unknown_optimizer(name):
    """The one wording of a name that is not among OPTIMIZERS (the magic's options, --compare, the API)."""
    return ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")


def make_optimizer(name, eta):
    import keras

    if name not in OPTIMIZERS:
        raise unknown_optimizer(name)
    return {
        "sgd": lambda: keras.optimizers.SGD(eta),
        "momentum": lambda: keras.optimizers.SGD(eta, momentum=0.9),
        "nesterov": lambda: keras.optimizers.SGD(eta, momentum=0.9, nesterov=True),
        "adam": lambda: keras.optimizers.Adam(eta),
        "rmsprop": lambda: keras.optimizers.RMSprop(eta),
        "adagrad": lambda: keras.optimizers.Adagrad(eta),
    }[name]()


def check_eta(eta):
    try:
        value = float(eta)
    except (TypeError, ValueError):
        raise ValueError(f"eta must be a number, got {eta!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"eta must be a positive finite number, got {eta!r}")
    if not 1e-38 < value < 3e38:  # the steps are float32: beyond this eta is 0 or inf there
        raise ValueError(f"eta {eta!r} is 0 or infinite in float32, which the steps use; give one between 1e-38 and 3e38")
    return value
