"""A traced cell as a fingerprint: what its trace computes, comparable with a later trace
of it, holding no copy of what the cell read (digests, not arrays).

Two traces compute the same when their graphs are equal, every attribute included (a
constant by its bytes, so -0.0 is not 0.0 and float64 not float32), once the nested functions
TensorFlow numbers afresh at every trace (a while loop's body, a cond's branches) are named by
their order of appearance; and when they capture the same inputs: the run's own variables by
position, other variables and resources by identity, eager tensors by dtype, shape and a
digest of their bytes. A trace with an op that keeps state in its kernel (tf.random.normal's
RandomStandardNormal, ...) is never the same as another: a kept kernel goes on with its
sequence where a new trace starts it afresh. What cannot be judged gives no fingerprint.
"""

import hashlib
import re
from dataclasses import dataclass

# Random ops whose generator lives in the kernel (a new trace restarts it), named even where
# TensorFlow's op registry cannot be read; other stateful ops are judged by it (_keeps_state).
KERNEL_STATE_OPS = frozenset({
    "RandomStandardNormal", "RandomUniform", "RandomUniformInt", "TruncatedNormal", "ParameterizedTruncatedNormal",
    "RandomShuffle", "Multinomial", "RandomGamma", "RandomPoisson", "RandomPoissonV2", "RandomCrop",
    "NonDeterministicInts", "UniformCandidateSampler", "LogUniformCandidateSampler", "AllCandidateSampler",
    "LearnedUnigramCandidateSampler", "FixedUnigramCandidateSampler", "ThreadUnsafeUnigramCandidateSampler",
})
# Stateful ops without a resource input whose state does not outlive one call (control flow,
# checks, printing, per-call scratch): a kept trace runs them as a new one would.
_PER_CALL = frozenset({
    "Assert", "CheckNumerics", "CheckNumericsV2", "Print", "PrintV2", "If", "Case", "While",
    "StatefulPartitionedCall", "TensorArray", "TensorArrayV2", "TensorArrayV3", "StackV2", "Empty",
    "GuaranteeConst", "DeviceIndex", "IsTensorFloat32Enabled", "_Arg", "_Retval", "Timestamp",
})


@dataclass(frozen=True, eq=False)
class Fingerprint:
    graph: bytes  # digest of the canonical graph (nested functions included)
    inputs: tuple  # per captured input: ("var", i), ("tensor", dtype, shape, digest) or ("is", object)
    kernel_state: tuple  # ops found that keep state in their kernel (never reusable)

    def same_as(self, other):
        """Would running one trace's compiled steps give what the other's would?"""
        return (other is not None and not self.kernel_state and not other.kernel_state
                and self.graph == other.graph and len(self.inputs) == len(other.inputs)
                and all(_same_input(a, b) for a, b in zip(self.inputs, other.inputs)))


def _same_input(a, b):
    if a[0] == "is" or b[0] == "is":
        return a[0] == b[0] and a[1] is b[1]
    return a == b


class Unjudgeable(Exception):
    """A trace whose inputs cannot be compared with another's."""


def of_trace(tf, concrete, variables):
    """The Fingerprint of `concrete` (a traced ConcreteFunction) whose run optimises
    `variables` (in order), or None when what it captured cannot be judged."""
    try:
        return _of_trace(tf, concrete, variables)
    except Exception:  # (whatever could not be read: not judged, never an error of the run)
        return None


def _of_trace(tf, concrete, variables):
    graph = concrete.graph
    if getattr(graph, "deferred_external_captures", None):
        return None  # (values read at call time by a callback: nothing to compare)
    roles = {}
    for i, var in enumerate(variables):
        for handle in handles(var):
            roles[id(handle)] = ("var", i)
    try:
        inputs = tuple(_input(tf, t, roles) for t in concrete.captured_inputs)
    except Unjudgeable:
        return None
    digest_of_graph, ops = _canonical_digest(graph)
    return Fingerprint(digest_of_graph, inputs, _kernel_state(ops))


def handles(var):
    """A variable's resource handles: its own, and each replica's under a tf.distribute strategy."""
    found = [getattr(var, "handle", None)]
    found += [getattr(v, "handle", None) for v in getattr(var, "values", ()) or ()]
    return [h for h in found if h is not None]


def _input(tf, tensor, roles):
    if id(tensor) in roles:
        return roles[id(tensor)]
    if not tf.is_tensor(tensor) or not hasattr(tensor, "numpy"):
        raise Unjudgeable  # (a graph tensor of another graph: not a value)
    dtype = tensor.dtype
    if dtype.is_numpy_compatible and dtype != tf.string and not dtype.is_quantized:
        value = tensor.numpy()
        return "tensor", dtype.name, tuple(value.shape), digest(value)
    return "is", tensor  # a resource, a variant (a dataset), strings: the same object, or not the same


def digest(array):
    """A digest of a numpy array's bytes, dtype and shape (no copy kept)."""
    import numpy as np

    array = np.ascontiguousarray(array)
    h = hashlib.sha1(f"{array.dtype.str}{array.shape}".encode(), usedforsecurity=False)
    h.update(memoryview(array).cast("B") if array.size else b"")
    return h.digest()


def _function_names(attr):
    if attr.HasField("func"):
        yield attr.func.name
    if attr.HasField("list"):
        yield from (f.name for f in attr.list.func)


def _canonical_digest(graph):
    """(A digest of the graph as two traces of the same code give it alike, the ops it runs.)
    Its nested functions are named by their order of appearance (node by node, depth first),
    and so are the numbers TensorFlow names captured tensors by (a placeholder, an inlined
    small tensor, the loop arguments made from them): a consistent renaming of labels keeps
    what the graph computes. A large constant counts by its digest."""
    graph_def = graph.as_graph_def()
    library = {f.signature.name: f for f in graph_def.library.function}
    bodies = [graph_def.node] + [f.node_def for f in library.values()]
    for node in (n for body in bodies for n in body):
        if node.op == "Const" and len(node.attr["value"].tensor.tensor_content) > 64:
            tensor = node.attr["value"].tensor
            tensor.tensor_content = hashlib.sha1(tensor.tensor_content, usedforsecurity=False).digest()
    ops = {n.op for body in bodies for n in body} - set(library)  # (a call by name: judged by its body)
    order = _appearance(graph_def.node, library)
    rename = {name.encode(): b"\x00f%d" % i for i, name in enumerate(order)}
    numbers = _numbers(graph_def.node, [library[n] for n in order])
    rename.update({n.encode(): b"\x00n%d" % i for i, n in enumerate(numbers)})
    alternatives = [b"(?:" + b"|".join(re.escape(n.encode()) for n in sorted(order, key=len, reverse=True)) + rb")(?!\d)",
                    rb"(?<!\d)(?:" + b"|".join(n.encode() for n in sorted(numbers, key=len, reverse=True)) + rb")(?!\d)"]
    pattern = re.compile(b"|".join(a for a, used in zip(alternatives, (order, numbers)) if used)) if rename else None
    parts = [library[name].SerializeToString(deterministic=True) for name in order]
    graph_def.ClearField("library")
    h = hashlib.sha1(usedforsecurity=False)
    for part in [graph_def.SerializeToString(deterministic=True)] + parts:
        h.update(pattern.sub(lambda m: rename[m.group(0)], part) if pattern else part)
        h.update(b"\x00|")
    return h.digest(), ops


def _appearance(nodes, library):
    """The library's function names in the order the nodes call them, depth first (then the
    ones no node calls, by name)."""
    order, seen = [], set()

    def visit(nodes):
        for node in nodes:
            for key in sorted(node.attr):
                for name in _function_names(node.attr[key]):
                    if name in library and name not in seen:
                        seen.add(name)
                        order.append(name)
                        visit(library[name].node_def)

    visit(nodes)
    return order + sorted(set(library) - seen)


def _numbers(nodes, functions):
    """The all-digit names (a captured tensor's number) in order of appearance."""
    found = {}
    for body, arguments in [(nodes, ())] + [(f.node_def, f.arg_attr.values()) for f in functions]:
        names = [a.attr["_user_specified_name"].s.decode() for a in arguments if "_user_specified_name" in a.attr]
        for node in body:
            names.append(node.name)
            if "_user_specified_name" in node.attr:
                names.append(node.attr["_user_specified_name"].s.decode())
        found.update((n, None) for n in names if n.isdigit())
    return list(found)


def _kernel_state(ops):
    """The ops that keep state in their kernel."""
    return tuple(sorted(op for op in ops if _keeps_state(op)))


_verdicts = {}


def _keeps_state(op):
    """A stateful op whose state is neither in a resource it is given (a variable, a
    tf.random.Generator's) nor gone after one call; unknown ops count as keeping it."""
    if op not in _verdicts:
        if op in KERNEL_STATE_OPS:
            _verdicts[op] = True
        elif op in _PER_CALL:
            _verdicts[op] = False
        else:
            _verdicts[op] = _registry_says_it_keeps_state(op)
    return _verdicts[op]


def _registry_says_it_keeps_state(op):
    try:
        from tensorflow.core.framework import types_pb2
        from tensorflow.python.framework import op_def_registry

        op_def = op_def_registry.get(op)
    except Exception:  # (a TensorFlow without it: nothing else can be judged)
        return True
    if op_def is None:
        return True  # a function called by name, or an op we cannot see: not judged
    return op_def.is_stateful and not any(a.type == types_pb2.DT_RESOURCE for a in op_def.input_arg)
