"""A multi-worker run steered from the chief: its eta, stop and pause requests and the size of
each chunk reach every worker through the strategy's own all-reduce.

At the start of each run and before each chunk, every worker contributes a small float64
vector to a SUM all-reduce: the chief its values, the others zeros, so every worker gets the
chief's exactly (x + 0.0 == x). Every worker then takes the same eta, the same chunk (mode and
steps, which trace the same collectives in the same order) and stops at the same step.

A pause: the chief's run ends as PAUSED; the others end their chunk loop at the same step and
wait in the next all-reduce for the chief's Play (a new run: BEGIN) or Stop while paused (END).
They wait as long as the chief's process lives: one that ends closes its sockets (the wait ends
with an UnavailableError within seconds, measured 6 s); a machine that stops answering is found by
TensorFlow's own peer check (every 30 s, 3 tries of 10 s), which aborts the wait alike.
"""

from tfmagic.descent.replicas import quiet_tf_logs
from tfmagic.descent.status import Status

BEGIN, END, CHUNK = 1.0, 2.0, 3.0  # what a message is: a run starts, a paused run ends, a chunk follows
STOPS = (None, Status.STOPPED, Status.PAUSED, Status.INTERRUPTED)  # a stop request, by its code
MODES = ("step", "plain", "xla", "blocks")  # a chunk's compiled loop, by its code
SIZE = 6  # [kind, eta, steps or a stop code, mode, steps of the chunk, stride]


def cluster_for(tf, replicas):
    """The ClusterControls of a multi-worker run's replicas, else None."""
    if replicas is None or not replicas.multi_worker:
        return None
    return ClusterControls(tf, replicas.strategy)


class ClusterControls:
    def __init__(self, tf, strategy):
        self.tf, self.strategy = tf, strategy
        self.is_chief = bool(strategy.extended.should_checkpoint)  # (True on the chief only, in TensorFlow's sense)
        self.paused = False  # the last run ended paused: the others wait for the chief's next word
        self.paused_at = []  # steps at which the cluster paused (the same on every worker)
        self.etas = []  # (step, eta) each time the chief's eta reached this worker changed

    def _exchange(self, values):
        """The chief's values, on every worker (each worker calls this at the same point)."""
        tf = self.tf
        mine = tf.constant(values if self.is_chief else [0.0] * SIZE, tf.float64)
        with quiet_tf_logs(tf):
            total = self.strategy.reduce(tf.distribute.ReduceOp.SUM, mine, axis=None)
        return [float(v) for v in total.numpy()]

    # -- the chief --------------------------------------------------------------
    def begin(self, engine, steps):
        """The chief starts a run of `steps` (also Play after a pause): the others run it too."""
        self._exchange([BEGIN, engine.eta, float(steps), 0.0, 0.0, 0.0])
        self.paused = False

    def end_pause(self, engine, status=Status.STOPPED):
        """Stop (or an interrupt) on the chief while the cluster is paused: the others end too."""
        if self.is_chief and self.paused:
            self._exchange([END, engine.eta, float(STOPS.index(Status(status))), 0.0, 0.0, 0.0])
            self.paused = False
            engine.ended_as(Status(status))

    def agree(self, engine, stop, plan):
        """Before a chunk, on every worker: the chief's eta and stop request (`stop`: the chief's
        request that counts here), set; returns the chief's next chunk as a `plan()` (mode, steps,
        stride) (`plan`: the chief's)."""
        mode, n, stride = plan() if self.is_chief and stop is None else ("step", 0, 0)
        _, eta, code, mode_code, n, stride = self._exchange(
            [CHUNK, engine.eta, float(STOPS.index(stop)), float(MODES.index(mode)), float(n), float(stride)])
        stop = STOPS[int(code)]
        if not self.is_chief:
            self._take_eta(engine, eta)
            if stop:
                engine.request_stop(stop)
        if stop == Status.PAUSED:
            self.paused = True
            self.paused_at.append(engine.steps)
        agreed = (MODES[int(mode_code)], int(n), int(stride))
        return lambda: agreed

    def _take_eta(self, engine, eta):
        if eta != engine.eta:
            engine.eta = eta
            self.etas.append((engine.steps, eta))

    # -- the other workers --------------------------------------------------------
    def follow(self, engine, run):
        """A worker's whole run, Play after Pause included: `run(steps)` yields the chunks of a run of
        the chief's `steps`; after a pause the chief's next word: another run, or the end."""
        while True:
            kind, eta, value, *_ = self._exchange([0.0] * SIZE)  # (after a pause: waits for Play or Stop)
            self.paused = False
            if kind == END:
                engine.ended_as(STOPS[int(value)])
                return
            self._take_eta(engine, eta)
            yield from run(int(value))
            if engine.status != Status.PAUSED:
                return
