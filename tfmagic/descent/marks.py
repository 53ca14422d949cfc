"""The variables at each multiple of K steps, copied by the compiled loop itself (--sharpness), so
the engine need not end a chunk there to see them.

An observer that needs the point at every multiple of K (Observer.every) had each chunk cut there:
a chunk end cost the examples' MLPs 3-4.5 ms (the snapshot, a call's fixed cost, its Python, the
rows read back), 15-40 % of their steps at K = 100. Instead the loops with a row per step
(Graphs.markable) of a run that marks copy the variables, at the step `due` steps into the call,
into row `slot` of a small buffer (one flat row per copy and dtype, SLOTS rows and a spare), and
the next copy is due K steps later. Between chunks the engine sets both (two scalar assignments);
a chunk holds at most SLOTS multiples, so none is overwritten before it is read. The copy never
changes a step: a run is the same bit for bit with or without marks. Loops traced without marks
(a run without --sharpness) run as before; the "step" and "blocks" modes still end their chunks
at the multiples.
"""

MOST_SLOTS = 16  # multiples of K a chunk may span: at K = 100, chunks of up to ~1 600 steps (0.1 s: ~800)
EAGER_VISITS = 8  # chunks whose copies are swapped in eagerly before the swap is compiled
SLOT_FLOATS = 1 << 22  # the copies kept, at most (16 MB; at least one slot, whatever the model's size)


class Marks:
    """The copies of `variables` a marked loop makes (one per multiple of `every` inside a call)."""

    def __init__(self, tf, variables, device):
        self.tf, self.variables = tf, list(variables)
        dim = sum(v.shape.num_elements() for v in self.variables)
        self.slots = max(1, min(MOST_SLOTS, SLOT_FLOATS // max(dim, 1)))
        with tf.device(device):
            self.due = tf.Variable(-1, trainable=False)  # steps into the call of the next copy (-1: none)
            self.slot = tf.Variable(0, trainable=False)  # ... and where it goes
            self.every = tf.Variable(0, trainable=False)
            # (one flat row a dtype: under XLA each variable's own write was a kernel more a step)
            self.groups = {}  # dtype -> the variables of that dtype
            for v in self.variables:
                self.groups.setdefault(tf.as_dtype(v.dtype), []).append(v)
            self.kept = [tf.Variable(tf.zeros([self.slots + 1, sum(v.shape.num_elements() for v in group)], dtype),
                                     trainable=False) for dtype, group in self.groups.items()]
        self._swap, self._every, self._visits = None, 0, 0

    def span(self, step, every):
        """Steps from `step` a chunk may take so that each multiple of `every` after it, up to its end,
        has a slot of its own."""
        return every - step % every + (self.slots - 1) * every

    def arm(self, step, every):
        """Before a call from `step`: the next multiple of `every` after it is due, in its slot."""
        first = (step // every + 1) * every
        self.due.assign(first - step)
        self.slot.assign((first // every) % self.slots)
        if every != self._every:
            self.every.assign(every)
            self._every = every

    def keep(self, i):
        """Traced in a loop's step `i` steps into the call: copies the variables when due. Without a
        branch, every step writes them, to their slot when due, else to a spare one: under XLA a
        branch that read the variables changed XLA's fusions of the step (a loss's last bit at ~1 % of
        the steps), and in the graph loop its function call cost first_network's steps 20 % (this
        write 7 %)."""
        tf = self.tf
        due = tf.equal(i, self.due.read_value())
        slot = self.slot.read_value()
        at = tf.where(due, slot, self.slots)[None]
        for group, kept in zip(self.groups.values(), self.kept):
            kept.scatter_update(tf.IndexedSlices(self._flat(group)[None], at))
        self.slot.assign(tf.where(due, (slot + 1) % self.slots, slot))
        self.due.assign_add(tf.where(due, self.every.read_value(), 0))

    def visit(self, steps, every):
        """For each of `steps` (multiples of `every` inside the last chunk, in order), yields it while
        the variables hold the copy the loop kept there; they are put back after, also if the
        caller raises. (A swap exchanges the variables and a slot: the first slot then holds them,
        and each later swap moves the last copy into its slot: a call a step, and one more.)"""
        if not steps:
            return
        swap = self._swap_fn()
        slots = [self.tf.constant((step // every) % self.slots) for step in steps]
        try:
            for step, slot in zip(steps, slots):
                swap(slot)
                yield step
        finally:
            swap(slots[0])

    def _flat(self, group):
        tf = self.tf
        return tf.concat([tf.reshape(tf.convert_to_tensor(v), [-1]) for v in group], 0)

    def _swap_fn(self):
        """The swap, eager for a Marks' first EAGER_VISITS chunks (a new cell's run: the trace cost
        first_network ~40-50 ms, an eager swap ~1 ms, a compiled one ~0.3 ms), then compiled."""
        self._visits += 1
        if self._visits <= EAGER_VISITS:
            return self._swap_eager
        if self._swap is None:
            from tfmagic.cell import autograph

            self._swap = autograph.function(self.tf, self._swap_eager)
        return self._swap

    def _swap_eager(self, slot):
        """The variables and the copy in `slot` exchanged."""
        tf = self.tf
        for group, kept in zip(self.groups.values(), self.kept):
            now = self._flat(group)
            pieces = tf.split(kept[slot], [v.shape.num_elements() for v in group])
            for v, piece in zip(group, pieces):
                v.assign(tf.reshape(piece, v.shape))
            kept.scatter_update(tf.IndexedSlices(now[None], slot[None]))
        return tf.constant(0)


def marks_every(engine):
    """K of the one observer that wants the point at each multiple of K (None: none, or several)."""
    wanted = {o.every for o in engine.observers if getattr(o, "every", None)}
    return wanted.pop() if len(wanted) == 1 else None


def kept_marks(engine):
    """The Marks of `engine`'s variables on its device (None before a loop marked)."""
    return engine.memo.get(("marks", engine.device))


def chunk_bound(engine, graphs, mode, step):
    """Steps from `step` a chunk of `mode` (run by `graphs`) may take: up to the next multiple an
    observer wants, or, where the loop copies the variables there, up to as many as it has slots for
    (None: no bound)."""
    every = marks_every(engine)
    graphs.marking = bool(every)  # (the loops to run: those that mark, or not)
    if every and graphs.markable(mode):
        if kept_marks(engine) is None:  # (a Reset onto another device builds its graphs again)
            engine.memo[("marks", engine.device)] = Marks(engine.tf, engine.variables.values(), engine.device)
        graphs.marks = kept_marks(engine)
        return graphs.marks.span(step, every)
    return engine.observers.steps_to_boundary(step)


def arm_marks(engine, graphs, mode, step):
    """Before a call of `mode` from `step`: the loop's next copy set up, if it marks."""
    every = marks_every(engine)
    marks = graphs.marks_traced(mode) if every else None
    if marks is not None:
        marks.arm(step, every)
