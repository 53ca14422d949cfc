"""What an engine runs on and learns while running, as one object: the optimizer and its state,
the compiled graphs and the calls that run them from the current point, the chunk policy, the
modes the lean runtime could not run, and the memo of what others built on them (the charts'
probe). A re-run of the cell whose trace was the same takes it over whole (facts.RunFacts)."""


class CompiledSteps:
    def __init__(self, policy, optimizer_name):
        self.policy = policy  # policy.ChunkPolicy
        self.optimizer, self.optimizer_name = None, optimizer_name  # (built by the engine's _set_optimizer)
        self.state, self.initial = [], []  # what a step changes besides the variables (+ a stream's), its start
        self.graphs = self.calls = None  # graphs.Graphs, calls.Calls
        self.default_runtime = set()  # modes the lean runtime (callopts) could not run
        self.memo = {}  # what others built on these variables and loss (the charts' probe)

    def restart(self):
        """The optimizer's state back to its start, in place: a new optimizer would retrace.
        (Not zeros: Adagrad's accumulators start at 0.1.)"""
        for v, init in zip(self.state, self.initial):
            v.assign(init)

    def handed_over(self, policy):
        """The same compiled steps for a re-run's engine, with its own `policy` (which learns from
        this one's): this engine keeps its own record (its optimizer's name stays its own)."""
        policy.learn_from(self.policy)
        new = CompiledSteps(policy, self.optimizer_name)
        new.optimizer, new.state, new.initial = self.optimizer, self.state, self.initial
        new.graphs, new.calls, new.default_runtime, new.memo = self.graphs, self.calls, self.default_runtime, self.memo
        return new
