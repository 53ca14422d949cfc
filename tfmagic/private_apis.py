"""Every private attribute of another project that tfmagic uses, in one place.

Each entry: where it is used, the versions it was checked against, and what
happens when it is missing (each use is guarded; tests/test_private_apis.py checks
that every one still exists on the installed versions).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class PrivateApi:
    owner: str  # importable module that holds it
    path: str  # attribute path from that module
    used_in: str
    checked: str
    without_it: str


PRIVATE_APIS = (
    PrivateApi("ipykernel.kernelbase", "Kernel.dispatch_shell", "kernel/ipykernel_fix.py: install",
               "ipykernel 7.4.0", "not patched: a slider takes one change per cell run in JupyterLab"),
    PrivateApi("ipykernel.kernelbase", "Kernel._publish_status", "kernel/ipykernel_fix.py: install, busy_while",
               "ipykernel 7.4.0", "not patched: as above, and the kernel indicator may say idle mid-run"),
    PrivateApi("ipykernel.kernelbase", "Kernel.get_parent", "kernel/ipykernel_fix.py: busy_while",
               "ipykernel 7.4.0", "the indicator may say idle mid-run"),
    PrivateApi("ipykernel.ipkernel", "IPythonKernel._cancel_on_sigint", "kernel/interrupts.py: install",
               "ipykernel 7.4.0", "Kernel > Interrupt during an awaiting cell does not stop the panels' background runs"),
    PrivateApi("ipykernel.kernelbase", "Kernel.pre_handler_hook", "kernel/interrupts.py: install",
               "ipykernel 7.4.0", "Kernel > Interrupt during a cell does not stop the panels' background runs"),
    PrivateApi("ipykernel.kernelbase", "Kernel.saved_sigint_handler", "kernel/interrupts.py: install (set by pre_handler_hook)",
               "ipykernel 7.4.0", "Kernel > Interrupt while no cell runs does not stop the panels' background runs"),
    PrivateApi("IPython.core.async_helpers", "_asyncio_runner", "kernel/awaiting.py: live_supported",
               "IPython 9.x", "the runner is not checked (the cell still awaits on asyncio in ipykernel)"),
    PrivateApi("IPython.core.interactiveshell", "InteractiveShell._showtraceback", "kernel/hints.py: _handler",
               "IPython 9.x", "the hint handler is not installed"),
    PrivateApi("IPython.core.interactiveshell", "InteractiveShell._get_exc_info", "kernel/hints.py: _handler",
               "IPython 9.x", "%debug and %tb would show the exception before a hinted TensorFlow error"),
    PrivateApi("tensorflow.python.eager.context", "Context.function_call_options", "descent/callopts.py",
               "TensorFlow 2.21", "the engine's calls run with TensorFlow's default executor (slower, same results)"),
    PrivateApi("tensorflow", "__internal__.autograph.tf_convert", "cell/autograph.py: converted",
               "TensorFlow 2.21", "the engine's graphs are traced with AutoGraph (2-5 ms more a trace)"),
    PrivateApi("tensorflow.python.framework.op_def_registry", "get", "cell/fingerprint.py: _registry_says_it_keeps_state",
               "TensorFlow 2.21", "every op not named there counts as keeping state: no re-run is reused"),
    PrivateApi("keras", "Variable._value", "cell/variables.py: module_variables, constraints (read with getattr)",
               "Keras 3.x", "a model's Keras 3 variable is refused as an unsupported type"),
    PrivateApi("tensorflow.python.ops.gen_summary_ops", "write_summary", "descent/summaries.py: _writer_fn",
               "TensorFlow 2.21", "--logdir writes each scalar eagerly (~40x slower, the same events)"),
    PrivateApi("tensorflow.python.ops.summary_ops_v2", "_ResourceSummaryWriter._resource",
               "descent/summaries.py: SummaryLog._write", "TensorFlow 2.21",
               "--logdir writes each scalar eagerly (~40x slower, the same events)"),
    PrivateApi("ipywidgets", "Widget._view_count", "widgets/steering.py: SteeringCheck (ipywidgets' "
               "experimental view count: the front end updates it when it shows a view)", "ipywidgets 8.1.9",
               "no round trip: only a kernel that cannot hand widget messages over is told of"),
    PrivateApi("tensorflow.python.framework.ops", "_default_graph_stack", "run_guards.py: cut_traces_quiet",
               "TensorFlow 2.21", "an interrupt that cuts a trace short may leave a graph on this thread's stack"),
    PrivateApi("keras.optimizers", "Optimizer._learning_rate", "descent/engine.py: _set_optimizer",
               "Keras 3.x", "none: required to tell the optimizer's state from its learning rate"),
)
