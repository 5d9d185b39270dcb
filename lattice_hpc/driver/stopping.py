"""Stopping a segment of a run cleanly, with a checkpoint, before the batch system kills it.

Two triggers, checked once per step by every rank together (one small ``allreduce``):

- **a signal**: SIGTERM (Slurm and PBS send it some time before SIGKILL at the wall-clock limit;
  ``sbatch --signal=TERM@120`` makes it explicit) or SIGUSR1 on any rank;
- **the time budget** ``job.max_seconds``: rank 0 stops when the next step and a checkpoint might
  not fit (elapsed + 2 x seconds per step > budget).

The handler only sets a flag: the step in progress, its checkpoint and the job's summary complete
normally, and the run continues from that checkpoint when the same command runs again.
"""

from __future__ import annotations

import signal
import threading

import numpy as np

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopControl:
    """Collective checks of the stop triggers; restores the previous signal handlers on ``close``."""

    def __init__(self, comm, max_seconds: float = 0.0):
        self.comm, self.max_seconds = comm, float(max_seconds)
        self.signal = None
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.signal = signum

    def check(self, elapsed: float, per_step: float) -> str | None:
        """Collective: the reason to stop now (``None`` to go on), the same on every rank."""
        late = self.max_seconds > 0 and self.comm.rank == 0 and \
            elapsed + 2 * per_step > self.max_seconds
        got = self.signal or 0
        flags = self.comm.allreduce(np.array([got, int(late)], dtype=np.int64), op="max")
        if flags[0]:
            return f"signal {signal.Signals(int(flags[0])).name} received"
        if flags[1]:
            return f"job.max_seconds = {self.max_seconds:g} would be exceeded by the next step"
        return None

    def close(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
