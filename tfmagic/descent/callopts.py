"""How the engine's compiled functions run on a CPU: a lean executor, no Grappler.

The engine's graphs are small and called for short runs, where fixed costs
dominate. Measured on P1-P3 (benchmarks/bench_descent.py's problems, 2 cores):
TensorFlow's single-threaded executor takes a plain graph-loop step from 14.5
to 8.9 us (P1) and 584 to 426 us (P3), and a per-step call from 136 to 101 us;
switching Grappler off takes a first call (instantiation) from 9.6 to 3.7 ms
(per-step function) and 32.6 to 7.8 ms (graph loop) without slowing the steps
of those graphs, and an XLA compile from ~100 to ~92 ms.

A model with many parameters gains more from running a step's independent ops (each variable's
update, its sums) side by side: from THREADED_FROM_ELEMENTS its non-XLA graphs run on the default
executor (see single_threaded_pays).

These are per-thread call options (TensorFlow's own `function_executor_type`
swaps them the same way); they are set only around the engine's calls and put
back after, so the user's own tf.functions are untouched. They are used only
where a function runs on one CPU (see on_one_cpu): across devices the
single-threaded executor hangs, and the lean path is not worth a second case.
"""

import contextlib
import copy


# Plain loops, steps/s, single-threaded -> default executor (2 cores, batch 128, 4 interleaved rounds):
# 128-32-32-10 MLP (5 514 elements) 3 524 -> 2 303; 256-64-64-10 (21 258) 1 461 -> 2 119;
# 784-128-128-10 377 -> 586; 784-256-256-10 250 -> 413.
THREADED_FROM_ELEMENTS = 1 << 14


def single_threaded_pays(elements):
    """Is the single-threaded executor the quicker for graphs stepping this many variable elements?"""
    return elements < THREADED_FROM_ELEMENTS


def _context():
    try:
        from tensorflow.python.eager import context
    except ImportError:  # (a TensorFlow without this module: run as it would)
        return None
    ctx = context.context()
    return ctx if hasattr(ctx, "function_call_options") else None


def on_one_cpu(tf, concrete, device):
    """True when `concrete`, called under tf.device(device), runs on one CPU only:
    every resource it captures and every op pinned in it is where it runs."""
    def key(name):
        spec = tf.DeviceSpec.from_string(name or "")
        return spec.device_type or "CPU", spec.device_index or 0

    if device is None and tf.config.list_logical_devices("GPU"):
        return False  # the default device is a GPU
    where = {key(device)}
    where |= {key(h.device) for h in concrete.captured_inputs if h.dtype == tf.resource}
    where |= {key(n.device) for n in graph_nodes(concrete) if n.device}
    return len(where) == 1 and where.pop()[0] == "CPU"


def graph_nodes(concrete):
    """Every node of a traced function, loop bodies and nested functions included."""
    graph = concrete.graph.as_graph_def()
    return list(graph.node) + [n for f in graph.library.function for n in f.node_def]


def lean_options(tf, single_threaded):
    """The FunctionCallOptions for the engine's calls, or None to use the current ones."""
    ctx = _context()
    if ctx is None:
        return None
    current = ctx.function_call_options
    options = copy.copy(current)
    config = tf.compat.v1.ConfigProto()
    config.ParseFromString(current.config_proto_serialized)
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    options.config_proto_serialized = config
    if single_threaded:
        options.executor_type = "SINGLE_THREADED_EXECUTOR"
    return options


@contextlib.contextmanager
def calling_with(options):
    """Run the body's function calls with `options` (None: unchanged)."""
    ctx = _context() if options is not None else None
    if ctx is None:
        yield
        return
    before = ctx.function_call_options
    ctx.function_call_options = options
    try:
        yield
    finally:
        ctx.function_call_options = before
