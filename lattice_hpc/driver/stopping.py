"""Stopping a segment of a run cleanly, with a checkpoint, before the batch system kills it.

Three triggers, checked once per step by every rank together (one small ``allreduce``):

- **a signal**: SIGTERM (Slurm and PBS send it some time before SIGKILL at the wall-clock limit;
  ``sbatch --signal=TERM@120`` makes it explicit) or SIGUSR1 on any rank;
- **the time budget** ``job.max_seconds``: rank 0 stops when the next step and a checkpoint might
  not fit (elapsed + 2 x seconds per step > budget); likewise for the deadline
  ``LATTICE_HPC_DEADLINE`` (Unix time; the batch scripts of ``lattice-hpc submit`` set it from
  the job's start, so that start-up and the reading of the checkpoint count as well);
- **a lost lock**: the run directory's lock (:mod:`.lock`) was taken over by another job
  (``--force-unlock``): the segment stops at once with :class:`~lattice_hpc.errors.RunDirLocked`
  on every rank and writes nothing more, since the run directory is no longer its own.

The handler only sets a flag: the step in progress, its checkpoint and the job's summary complete
normally, and the run continues from that checkpoint when the same command runs again.
"""

from __future__ import annotations

import signal
import threading
import time

import numpy as np

from ..errors import RunDirLocked

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopControl:
    """Collective checks of the stop triggers; restores the previous signal handlers on ``close``."""

    def __init__(self, comm, max_seconds: float = 0.0, lock=None, deadline: float | None = None):
        from ..switches import get

        self.comm, self.max_seconds, self.lock = comm, float(max_seconds), lock
        self.deadline = get("LATTICE_HPC_DEADLINE") if deadline is None else deadline
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
        past = self.deadline is not None and self.comm.rank == 0 and \
            time.time() + 2 * per_step > self.deadline
        got = self.signal or 0
        lost = self.comm.rank == 0 and self.lock is not None and not self.lock.held()
        flags = self.comm.allreduce(np.array([got, int(late), int(lost), int(past)], dtype=np.int64),
                                    op="max")
        if flags[2]:
            raise RunDirLocked(f"{self.lock.run_dir}: the run directory's lock was taken over by "
                               "another job: stopping at once without writing anything more")
        if flags[0]:
            return f"signal {signal.Signals(int(flags[0])).name} received"
        if flags[1]:
            return f"job.max_seconds = {self.max_seconds:g} would be exceeded by the next step"
        if flags[3]:
            return "the next step might end after the batch job's deadline (LATTICE_HPC_DEADLINE)"
        return None

    def close(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
