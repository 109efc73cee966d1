"""Stopping a run on SIGTERM/SIGINT/SIGUSR1: in every phase, and on the same step in every process.

SIGUSR1 is the warning a SLURM job asks for before its time limit (`--signal=USR1@120`, seqjax/slurm.py):
the run stops as on SIGTERM, and launch.py's exit status then tells the batch script to requeue the job.

A signal sets a flag. The training loop reads it between steps, and in a multi-process run only at steps that
every process reaches with the same decision to look (`StopSignals.agreed`): there the processes all-gather
their flags, so one process's signal stops all of them after the same step, with one checkpoint. Reading the
flag only every few steps keeps the host from waiting on each step.

Outside the loop a phase can be marked `interruptible`: a signal there raises `Interrupted`, so that a slow
final evaluation (a task's `evaluate`, which may take minutes) stops at once; the state is saved by then.
Only code that makes no cross-process collective may be interruptible: a process leaving a collective early
would leave its peers waiting in it.
"""
from __future__ import annotations

import contextlib
import signal
import threading

import jax
import numpy as np

# In a multi-process run the loop all-gathers the stop flags at every step that is a multiple of this (and at
# every log, eval and save step). Each gather is a host round trip between the processes.
STOP_CHECK_EVERY = 10
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Interrupted(Exception):
    """A signal arrived in an interruptible phase."""


def any_process(flag: bool) -> bool:
    """Whether `flag` is true in any process (a collective: every process must call it at the same point)."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.array(flag, np.int32))))


class StopSignals:
    """SIGNALS' handlers for the run; `received` is the first signal's name, `phase` where it arrived.

    `stopped` (set by `agreed`/`agree_now`) is the decision all processes share; the local flag alone is
    `received`.
    """

    def __init__(self, phase: str = "setup"):
        self.received: str | None = None
        self.received_in: str | None = None
        self.stopped = False
        self.phase = phase
        self._raise = False
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            for sig in SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}

    def _handle(self, signum, frame):
        if self.received is None:
            self.received, self.received_in = signal.Signals(signum).name, self.phase
        if self._raise:
            self._raise = False  # one exception; a second signal while it unwinds must not raise again
            raise Interrupted(self.received)

    def agreed(self, step: int, check_now: bool = False) -> bool:
        """Whether to stop before the step after `step`. Single process: at once. Several: only when `step`
        is a multiple of STOP_CHECK_EVERY or `check_now` (which must be the same on every process)."""
        if not self.stopped and (jax.process_count() == 1 or check_now or step % STOP_CHECK_EVERY == 0):
            self.stopped = any_process(self.received is not None)
            if self.stopped and self.received_in is None:  # stopped by a peer: the phase this process was in
                self.received_in = self.phase
        return self.stopped

    def agree_now(self) -> bool:
        """`agreed` at a point every process reaches (e.g. after the last save)."""
        return self.agreed(0, check_now=True)

    @contextlib.contextmanager
    def interruptible(self, phase: str):
        """Within, a signal (or one already received) raises Interrupted. Local work only (see above)."""
        self.phase = phase
        if self.received is not None:
            raise Interrupted(self.received)
        self._raise = True
        try:
            yield
        finally:
            self._raise = False

    @property
    def report(self) -> dict | None:
        """{"signal", "phase"} for the summary, None if no process was stopped by a signal."""
        if not self.stopped and self.received is None:
            return None
        # A process stopped by a peer's signal has received none itself.
        return {"signal": self.received or "peer", "phase": self.received_in}

    def describe(self) -> str:
        """Who received what: 'received SIGTERM', 'process 1 received SIGTERM' or 'process 0: a peer received
        a signal'."""
        if jax.process_count() == 1:
            return f"received {self.received}"
        me = f"process {jax.process_index()}"
        return f"{me} received {self.received}" if self.received else f"{me}: a peer received a signal"
