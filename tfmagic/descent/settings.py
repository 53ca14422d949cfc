"""What a caller sets on an engine between its chunks: back to the start (and on which device,
from which start), the optimizer, eta, the tolerance, observers, pause and stop requests; and
what it reads back (history, the compiled steps). A mixin of Descent (engine.py), whose loop
reads these between chunks."""

import contextlib

from tfmagic.descent.calls import Calls
from tfmagic.descent.facts import Retired
from tfmagic.descent.graphs import Graphs
from tfmagic.descent.optimizers import check_eta, make_optimizer
from tfmagic.descent.status import REQUESTED, Status


class Settings:
    """Descent's settings and read-backs (the attributes are made by Descent.__init__)."""

    # -- state -------------------------------------------------------------
    def reset(self, device: str | None = None, start: dict | None = None) -> None:
        """Back to the initial values, history cleared, optimizer state fresh.

        `device` (a full TensorFlow device name) moves the computation there;
        `start` (name -> value) makes those the new initial values (restarts).
        """
        if self.retired:
            raise Retired(self.loss_label)
        if start is not None:
            self._initial = [
                self.tf.cast(self.tf.reshape(start[n], v.shape), v.dtype) if n in start else init
                for (n, v), init in zip(self.variables.items(), self._initial)
            ]
            self.__dict__.pop("_curvature", None)
        if device is not None and device != self.device:
            self.device = device
            self._compiled.optimizer = None  # rebuilt there, with its state
        for var, init in zip(self.variables.values(), self._initial):
            var.assign(init)
        self._history.clear()
        self.kept.clear()
        self.timeline.clear()
        self.steps = 0
        self.status = Status.READY
        self.error = None  # the exception that stopped the run (Status.ERROR)
        self.error_redone = False  # ... which did not come back when its steps were redone one at a time
        self.final_loss = self.final_grad_norm = None
        self.final_values = None  # name -> numpy value when a run ended
        self._bad_point = None  # what the step that blew up reached
        self.steps_per_second = 0.0
        self._stop_request = None
        self._unhealthy_start = False
        self.validated = {}  # step -> validation loss taken by the compiled steps (data.EpochLog reads it)
        self._run_steps, self._run_seconds = 0, 0.0
        if self.optimizer is None:
            self._set_optimizer(self.optimizer_name)
        else:
            self._compiled.restart()
            getattr(self._stream, "restart", lambda: None)()  # (a dataset's iterator: to its start)
        self._calls.point = self._calls.start_loss = None  # evaluated afresh by the next run

    def initial_values(self) -> dict:
        """name -> the value a reset puts back (numpy)."""
        return {n: init.numpy() for n, init in zip(self.variables, self._initial)}

    def _set_optimizer(self, name):
        tf, steps = self.tf, self._compiled
        with tf.device(self.device), (self.replicas.scope() if self.replicas else contextlib.nullcontext()):
            opt = make_optimizer(name, self._eta)
            opt.build(list(self.variables.values()))
            opt_state = [v.value for v in opt.variables if v is not opt._learning_rate]
            # (with the stream's state: saved, restored and reset as the optimizer's is)
            steps.state = opt_state + (self._stream.state if self._stream else [])
            steps.initial = [tf.identity(v) for v in opt_state] + (self._stream.initial if self._stream else [])
            # Everything a step changes: the variables and the optimizer's state.
            live = list(self.variables.values()) + steps.state
        steps.optimizer_name, steps.optimizer = name, opt
        steps.policy.forget_rates()
        steps.graphs = Graphs(tf, self.loss_fn, self.variables, opt, self.device, bool(self._tol), len(self.columns) - 1,
                              self.replicas, None if self.replicas else self._stream, self.constraints)
        before = steps.calls
        steps.calls = Calls(tf, steps.graphs, live, self.device, self.jit, self._tol, steps.default_runtime, self.notes)
        steps.calls.one_way_count = self._stream.position if self.one_way else None  # (its reads: no second try)
        if before is not None:  # a switch mid-run: the point and what is carried stay
            steps.calls.point, steps.calls.state, steps.calls.start_loss = before.point, before.state, before.start_loss

    # (what the compiled steps hold, as the engine has always said it)
    optimizer = property(lambda self: self._compiled.optimizer)
    optimizer_name = property(lambda self: self._compiled.optimizer_name)
    memo = property(lambda self: self._compiled.memo, doc="what others built on these variables and loss (the "
                                                          "charts' probe): a re-run keeps it")
    _calls = property(lambda self: self._compiled.calls)
    _graphs = property(lambda self: self._compiled.graphs)

    def forget_compiled(self, mode):
        """Compile `mode`'s loop again when next run."""
        self._calls.forget(mode)

    def set_optimizer(self, name: str) -> None:
        """Switch optimizer; takes effect at the next chunk (fresh optimizer state)."""
        if name != self.optimizer_name:
            self._set_optimizer(name)

    @property
    def tol(self) -> float | None:
        return self._tol

    @tol.setter
    def tol(self, value: float | None) -> None:
        self._calls.set_tol(value)
        self._tol = value

    @property
    def eta(self) -> float:
        return self._eta

    @eta.setter
    def eta(self, value: float) -> None:
        self._eta = self.kept.eta_set(self.steps, self._calls.point, self._eta, check_eta(value))
        self.optimizer.learning_rate = self._eta  # an assign: no retrace

    def observe(self, observer):
        """An observers.Observer, or `callback(engine, chunk)` called after every chunk; one with
        `needs_every_step = True` gets a row for every step (else long XLA chunks keep every k-th)."""
        self._observers.add(observer)

    def unobserve(self, observer):
        self._observers.remove(observer)

    @property
    def observers(self):
        """The observers.Observers watching this engine's runs."""
        return self._observers

    def pause(self) -> None:
        """A run that took its steps but goes on later (the panel's Step) is paused, not done."""
        if self.status == Status.MAX_STEPS:
            self.status = Status.PAUSED

    def request_stop(self, status: Status | str = Status.STOPPED) -> None:
        """Stop after the chunk that is running (as STOPPED, PAUSED or INTERRUPTED)."""
        if status not in REQUESTED:
            raise ValueError(f"a run stops as one of {', '.join(sorted(REQUESTED))}, not {status!r}")
        self._stop_request = Status(status)

    @property
    def stop_requested(self) -> bool:
        return self._stop_request is not None

    @property
    def history(self) -> dict:
        """Per-step arrays; 'step' says which step each row is (see history.HISTORY_MAX)."""
        return self._history.as_dict()

    @property
    def compiled(self) -> dict:
        """mode ("step", "plain", "xla", "blocks") -> its tf.function, for those built so far."""
        return self._graphs.built

    @property
    def history_stride(self) -> int:
        """A history row every this many steps (1 until a very long run is thinned)."""
        return self._history.stride
