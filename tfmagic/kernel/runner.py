"""Drive a Descent engine from the kernel's event loop, so widgets stay live.

Widget observers may run on a kernel subshell's thread (JupyterLab 4 sends
widget messages through one), so every control request is handed to the main
event loop with `call_soon_threadsafe` and runs between chunks, on the thread
that runs TensorFlow steps. No widget code here: the UI calls these methods.
"""

import asyncio
import inspect

from tfmagic.descent.engine import STEERED_CHUNK_SECONDS
from tfmagic.descent.status import Status
from tfmagic.kernel import interrupts, ipykernel_fix
from tfmagic.kernel.awaiting import drive, pause_for_frontend


PACE_FRAME = 0.05  # seconds of a paced run per chunk: the panel can show every frame


class LiveRunner:
    # Runners alive in this kernel: a new one on the same variables detaches the old.
    _active = []

    def __init__(self, engine, on_detach=None, pace=None):
        self.engine = engine
        self.pace = pace  # steps per second a person can watch (None: as fast as it goes)
        self.loop = asyncio.get_event_loop()
        self.running = False
        self.background = False  # the run going on was started after its cell ended (Play)
        self.detached = False
        self.error = None
        self._chunks = None  # the generator of the run going on (suspended between chunks)
        self._after_run = []
        self.on_end = []  # callbacks after every run (the UI refreshes its buttons)
        self.on_detach = on_detach
        self.task = None
        self.detach_sharing(engine)
        LiveRunner._active.append(self)

    @classmethod
    def detach_sharing(cls, engine):
        """Before a run of `engine` steps: detach every panel on the same variable objects, or
        the same names (a re-run cell makes new variables); returns the runners that were running."""
        mine, stopped = cls._keys(engine), []
        for other in list(cls._active):
            if other.engine is not engine and mine & cls._keys(other.engine):
                if other.running:
                    stopped.append(other)
                other.detach()
        return stopped

    @classmethod
    def detach_retired(cls):
        """Detach the runners of engines a re-run of their cell took over (descent/reuse.py)."""
        for runner in list(cls._active):
            if runner.engine.retired:
                runner.detach()

    @classmethod
    def interrupt_all(cls):
        """Kernel > Interrupt (in the signal handler): every run stops after its chunk in flight."""
        for runner in list(cls._active):
            if runner.running:
                runner.engine.request_stop(Status.INTERRUPTED)

    @classmethod
    def any_running(cls):
        """A run of some panel is going (its chunks share the kernel's loop with everything else)."""
        return any(runner.running for runner in cls._active)

    @staticmethod
    def _keys(engine):
        return {id(v) for v in engine.variables.values()} | set(engine.variables)

    def call(self, fn, *args):
        """Run fn(*args) on the main loop, between chunks; safe from any thread. Dropped once
        detached: another run owns these variables (a click already in flight included)."""
        if self.loop.is_closed():  # the loop that made us is gone: nothing runs concurrently
            self._unless_detached(fn, *args)
        else:
            self.loop.call_soon_threadsafe(self._unless_detached, fn, *args)

    def _unless_detached(self, fn, *args):
        if not self.detached:
            fn(*args)

    def call_later(self, delay, fn):
        """Run fn() on the main loop after `delay` seconds; safe from any thread."""
        if self.loop.is_closed():
            fn()
        else:
            self.loop.call_soon_threadsafe(self.loop.call_later, delay, fn)

    def when_idle(self, fn):
        """Run fn now if no run is going, else right after the run ends."""
        if self.detached:
            return
        if self.running:
            self._after_run.append(fn)
        else:
            fn()

    async def run(self, steps, raise_errors=True):
        """Run up to `steps` steps, yielding to the frontend between chunks."""
        if self.detached:
            self._ended()
            return self.engine.status
        self.running, self.error = True, None
        try:
            # A kernel interrupt ends it as INTERRUPTED after the chunk in flight (see drive).
            if self.pace:
                chunk = max(1, round(self.pace * PACE_FRAME))
                self._chunks = self.engine.run_chunks(steps, chunk, STEERED_CHUNK_SECONDS)
                await drive(self._chunks, self._paced_pause())
            else:
                self._chunks = self.engine.run_chunks(steps, chunk_seconds=STEERED_CHUNK_SECONDS)
                await drive(self._chunks)
        except Exception as err:
            self.error = err
            if raise_errors:
                raise
        finally:
            self._ended()
        return self.engine.status

    def _ended(self):
        self.running = self.background = False
        self._chunks = None
        pending, self._after_run = self._after_run, []
        for fn in pending + self.on_end:
            fn()

    def sweep(self, steps, done):
        """The learning-rate range test in the background (descent/find_eta.py), from the
        start; then done(the EtaSweep, or None if it failed: .error says why)."""
        from tfmagic.descent.find_eta import sweep_chunks

        if self.running or self.detached:
            return
        self.running, self.error, self.background = True, None, True

        async def go():
            found = None
            try:
                self._chunks = sweep_chunks(self.engine, steps)
                with ipykernel_fix.busy_while(_kernel(), background=True):
                    found = await drive(self._chunks)
            except Exception as err:
                self.error = err
            finally:
                self._ended()
            done(found)

        self.task = self.loop.create_task(go())

    def _paced_pause(self):
        """What a paced run awaits between chunks: the time until its steps are due."""
        t0, start = self.loop.time(), self.engine.steps

        async def pause():
            due = t0 + (self.engine.steps - start) / self.pace
            while not self.engine.stop_requested and self.loop.time() < due:
                await asyncio.sleep(min(PACE_FRAME, due - self.loop.time()))
            await pause_for_frontend()

        return pause

    def start(self, steps):
        """Run in the background (after the cell ended): Play on a finished run."""
        if self.running or self.detached:
            return
        self._from_picked_start()
        self.running = self.background = True  # claimed now: a second click cannot start a second task

        async def go():
            # The kernel indicator says busy while it runs (ipykernel_fix), as for a cell.
            with ipykernel_fix.busy_while(_kernel(), background=True):
                await self.run(steps, raise_errors=False)

        self.task = self.loop.create_task(go())

    def stop(self, status=Status.STOPPED):
        cluster = getattr(self.engine, "cluster", None)
        if self.running:
            self.engine.request_stop(status)
        elif cluster and cluster.paused and status != Status.PAUSED:  # the other workers wait in a pause: end them
            cluster.end_pause(self.engine, status)
            for fn in self.on_end:
                fn()

    def step(self, done):
        """Step: one step once no run is going (a run going on pauses first); then done()."""
        def one_step():
            self._from_picked_start()
            self.engine.run(1)
            self.engine.pause()
            done()

        self.stop(Status.PAUSED)
        self.when_idle(one_step)

    def reset(self, device, done):
        """Reset: back to the start, on `device` (a full TensorFlow name), once no run is going
        (a run going on stops first); then done()."""
        def reset():
            self.engine.reset(device=device)
            done()

        self.stop(Status.STOPPED)
        self.when_idle(reset)

    def rewind(self, step, done):
        """Go on from here: the engine back to the point after `step` (descent/rewind.py), once no
        run is going (a run going on pauses first); then done(). A refusal goes to .error."""
        def rewind():
            try:
                self.engine.rewind(step)
                self.error = None
            except ValueError as err:  # (rewind.RewindRefused: nothing changed)
                self.error = err
            done()
        self.stop(Status.PAUSED)
        self.when_idle(rewind)

    def set_start(self, values):
        """A start picked on the loss picture (name -> value): the next run starts there (Reset, or
        Play/Step once no run is going; a run going on is not moved). Returns the values as the
        variables will hold them; raises start_point.BadStart."""
        return self.engine.set_start(values)

    def _from_picked_start(self):
        """Play or Step after a start was picked: a new run from there, not the old one going on."""
        if self.engine.start_pending:
            self.engine.reset()

    def set_eta(self, eta):
        self.engine.eta = eta  # a variable assign: the next step uses it

    def set_optimizer(self, name):
        self.engine.set_optimizer(name)  # between chunks: the next chunk uses it

    def detach(self):
        """A newer run took these variables: stop, and never touch them again."""
        self._finish_now(Status.STOPPED)
        self.detached = True
        if self in LiveRunner._active:
            LiveRunner._active.remove(self)
        if self.on_detach:
            self.on_detach()

    def _finish_now(self, status):
        """End the run going on before anything else steps its variables. Everything runs on
        this loop, so its generator is suspended between chunks: asked to stop, its next step
        takes no step (a sweep then puts its start back); the task then finds it finished."""
        chunks = self._chunks
        if chunks is None or not self.running:
            return
        self.engine.request_stop(status)
        state = inspect.getgeneratorstate(chunks)
        if state == inspect.GEN_SUSPENDED:
            for _ in range(3):  # (a stop ends it within two)
                try:
                    next(chunks)
                except StopIteration:
                    break
                except Exception:  # (an observer's failure must not stop the run that takes over)
                    break
        if inspect.getgeneratorstate(chunks) != inspect.GEN_RUNNING:
            chunks.close()


def _kernel():
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None)


interrupts.listen(LiveRunner.interrupt_all)
