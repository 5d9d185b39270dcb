"""Communicators: a thin, array-aware wrapper over mpi4py, with a single-process stand-in.

``world()`` returns the job's communicator.  When mpi4py is not installed (or ``LATTICE_HPC_NO_MPI=1``)
it returns a single-process communicator with the same methods and no MPI traffic, so the package
runs serially without MPI.

Abort semantics: :func:`install_abort_handler` replaces ``sys.excepthook`` so that an uncaught
exception on any rank prints its traceback (prefixed with the rank) and calls ``MPI_Abort`` on
COMM_WORLD, which ends every rank of the job instead of leaving the others waiting in a collective.
"""

from __future__ import annotations

import os
import sys
import time
import traceback

import numpy as np

try:  # the one import of mpi4py in the package (with .cart and .halo using it through here)
    if os.environ.get("LATTICE_HPC_NO_MPI") == "1":
        raise ImportError("disabled by LATTICE_HPC_NO_MPI=1")
    from mpi4py import MPI
except ImportError:  # pragma: no cover - exercised on machines without mpi4py
    MPI = None

_OPS = {}
if MPI is not None:
    _OPS = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN, "prod": MPI.PROD,
            "lor": MPI.LOR, "land": MPI.LAND, "bxor": MPI.BXOR}


class Communicator:
    """A group of processes.  Wraps an ``mpi4py`` communicator, or stands for one process.

    Attributes:
        rank, size: this process's rank and the number of processes.
        mpi: the underlying ``mpi4py.MPI.Comm`` or ``None`` for the single-process stand-in.
    """

    def __init__(self, mpi_comm=None):
        self.mpi = mpi_comm
        if mpi_comm is None:
            self.rank, self.size = 0, 1
        else:
            self.rank, self.size = mpi_comm.Get_rank(), mpi_comm.Get_size()

    def __repr__(self):
        return f"Communicator(rank={self.rank}, size={self.size}, mpi={self.mpi is not None})"

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    # -- collectives (called on all processes of the communicator simultaneously) -------------
    def barrier(self) -> None:
        """Collective: wait for all processes."""
        if self.mpi is not None and self.size > 1:
            self.mpi.Barrier()

    def allreduce(self, value, op: str = "sum"):
        """Collective: reduce a Python/NumPy scalar or a NumPy array over all processes.

        Arrays are reduced element-wise with the buffer interface; scalars with the object interface.
        On one process the value is returned unchanged (a copy for arrays).
        """
        if op not in ("sum", "max", "min", "prod", "lor", "land", "bxor"):
            raise ValueError(f"unknown reduction {op!r}")
        if isinstance(value, np.ndarray):
            if self.mpi is None or self.size == 1:
                return value.copy()
            src = np.ascontiguousarray(value)
            out = np.empty_like(src)
            self.mpi.Allreduce(src, out, op=_OPS[op])
            return out
        if self.mpi is None or self.size == 1:
            return value
        return self.mpi.allreduce(value, op=_OPS[op])

    def bcast(self, obj, root: int = 0):
        """Collective: broadcast a picklable Python object (small metadata only) from ``root``."""
        if self.mpi is None or self.size == 1:
            return obj
        return self.mpi.bcast(obj, root=root)

    def gather(self, obj, root: int = 0):
        """Collective: gather Python objects to ``root`` (list there, ``None`` elsewhere)."""
        if self.mpi is None or self.size == 1:
            return [obj]
        return self.mpi.gather(obj, root=root)

    def allgather(self, obj):
        """Collective: gather Python objects on every process, ordered by rank."""
        if self.mpi is None or self.size == 1:
            return [obj]
        return self.mpi.allgather(obj)

    def split(self, color: int, key: int | None = None) -> "Communicator | None":
        """Collective: split into sub-communicators by ``color``; ``color < 0`` gives ``None``."""
        if self.mpi is None:
            return Communicator(None) if color >= 0 else None
        sub = self.mpi.Split(color if color >= 0 else MPI.UNDEFINED,
                             self.rank if key is None else key)
        return None if sub == MPI.COMM_NULL else Communicator(sub)

    def check_same(self, value, what: str) -> None:
        """Collective: raise ``RuntimeError`` on every rank unless ``value`` is equal on all ranks.

        Used to check that parameters read independently on each rank agree (as openQCD does).
        """
        values = self.allgather(value)
        if any(v != values[0] for v in values):
            raise RuntimeError(f"{what} differs between ranks: {values}")

    def abort(self, code: int = 1) -> None:
        """End the whole job now (``MPI_Abort`` on COMM_WORLD); on one process, ``os._exit``."""
        sys.stdout.flush()
        sys.stderr.flush()
        if MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized() and world_size() > 1:
            MPI.COMM_WORLD.Abort(code)
        os._exit(code)


def world() -> Communicator:
    """The job's communicator (COMM_WORLD), or the single-process stand-in without mpi4py."""
    return Communicator(MPI.COMM_WORLD if MPI is not None else None)


def self_comm() -> Communicator:
    """A communicator containing only this process (COMM_SELF)."""
    return Communicator(MPI.COMM_SELF if MPI is not None else None)


def world_size() -> int:
    return MPI.COMM_WORLD.Get_size() if MPI is not None else 1


def world_rank() -> int:
    return MPI.COMM_WORLD.Get_rank() if MPI is not None else 0


def have_mpi() -> bool:
    """Whether mpi4py is importable (and not disabled)."""
    return MPI is not None


def wtime() -> float:
    """Wall-clock time in seconds (``MPI.Wtime`` when available)."""
    if MPI is not None:
        return MPI.Wtime()

    return time.perf_counter()


def compute_dims(nprocs: int, ndim: int) -> list[int]:
    """A balanced factorisation of ``nprocs`` into ``ndim`` factors (``MPI.Compute_dims``).

    Pure (no communication).  Factors come in non-increasing order; without mpi4py the same
    greedy factorisation is computed here.
    """
    if MPI is not None:
        return list(MPI.Compute_dims(nprocs, [0] * ndim))
    dims = [1] * ndim  # pragma: no cover - only without mpi4py
    n, p = nprocs, 2
    primes = []
    while n > 1:
        while n % p == 0:
            primes.append(p)
            n //= p
        p += 1
    for f in sorted(primes, reverse=True):
        dims[dims.index(min(dims))] *= f
    return sorted(dims, reverse=True)


def install_abort_handler() -> None:
    """Make an uncaught exception on any rank end the whole job (no hang).

    Prints the traceback with a ``[rank r/size]`` prefix on stderr, then calls ``MPI_Abort``.  On a
    single process the default hook runs and Python exits with status 1 as usual.
    """
    if world_size() <= 1:
        return

    def hook(exc_type, exc, tb):
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        prefix = f"[rank {world_rank()}/{world_size()}] "
        sys.stderr.write("".join(prefix + line + "\n" for line in text.rstrip().splitlines()))
        sys.stderr.write(prefix + "aborting the whole job (MPI_Abort)\n")
        sys.stderr.flush()
        time.sleep(0.3)  # let the process manager forward the message before the job is killed
        MPI.COMM_WORLD.Abort(1)

    sys.excepthook = hook
