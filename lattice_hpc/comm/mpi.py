"""Communicators: a thin, array-aware wrapper over mpi4py, with a single-process stand-in.

``world()`` returns the job's communicator.  When mpi4py is not installed (or ``LATTICE_HPC_NO_MPI=1``)
it returns a single-process communicator with the same methods and no MPI traffic, so the package
runs serially without MPI.

Abort semantics: :func:`install_abort_handler` replaces ``sys.excepthook`` so that an uncaught
exception on any rank prints its traceback (prefixed with the rank) and calls ``MPI_Abort`` on
COMM_WORLD, which ends every rank of the job instead of leaving the others waiting in a collective.

Without MPI in a job of several processes: a process that runs without MPI
(``LATTICE_HPC_NO_MPI=1``, or mpi4py not importable) cannot take part in the start-up comparison
of the switches (:func:`lattice_hpc.comm.check_environment`), so :func:`world` refuses to run in a
process that an MPI launcher started as one of several (``PMI_SIZE`` > 1: MPICH hydra, Cray PMI
under PALS or srun, Flux; ``OMPI_COMM_WORLD_SIZE`` > 1: Open MPI; a rank > 0 in ``PMI_RANK``,
``OMPI_COMM_WORLD_RANK``, ``PMIX_RANK`` or ``PALS_RANKID``; ``SLURM_STEP_NUM_TASKS`` > 1 with
``SLURM_PROCID`` under srun) and raises :class:`~lattice_hpc.errors.ConfigError` naming the switch and the launcher variable.  The
others are then waiting in ``MPI_Init`` for it, and MPICH's hydra does not end a job whose process
exits with a status before ``MPI_Init`` (it waits for ever): :func:`abort_launch` ends the whole
launch through the launcher's PMI-1 socket (``PMI_FD``, ``cmd=abort``), which hydra honours at once
with that exit status.  A serial child process started by a rank must not inherit the launcher's
variables (remove ``PMI_*``, ``OMPI_*``, ``PMIX_*``, ``PALS_*``, ``SLURM_STEP_*`` from its
environment).

I/O errors inside a collective operation (:func:`collective_io`):
after an exception inside a collective HDF5 or MPI-IO call (a collective dataset write or read,
the metadata writes of a parallel HDF5 file, ``H5Fclose``) the library's state is undefined and
the other ranks may be waiting inside the collective for the rank that failed: there is no safe
way to go on.  The rank that sees the error prints ``lattice-hpc: error: WHAT: ERROR: an I/O
error inside a collective operation; ending the job (nothing was renamed, committed or
discarded)`` and ends the whole job with status 2 (``MPI_Abort``; on one process ``os._exit``,
since finishing the interpreter after such an error can crash in the library).  ``IO_ERRORS``
is the tuple of exception types that an I/O call raises (the OS and h5py: ``OSError``,
``RuntimeError``; MPI-IO: ``mpi4py.MPI.Exception``), for the I/O layer, which never touches MPI
objects itself.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import sys
import time
import traceback

import numpy as np

from .. import switches
from ..errors import ConfigError


def _mpi_disabled() -> bool:
    try:
        return switches.get("LATTICE_HPC_NO_MPI")
    except ConfigError:  # a bad value: MPI as by default; check_environment reports it everywhere
        return False


_NO_MPI_REASON = None  # why this process runs without MPI (None: it uses mpi4py)
try:  # the one import of mpi4py in the package (with .cart and .halo using it through here)
    if _mpi_disabled():
        raise ImportError("disabled by LATTICE_HPC_NO_MPI=1")
    from mpi4py import MPI
except ImportError as _exc:  # pragma: no cover - exercised on machines without mpi4py
    MPI = None
    _NO_MPI_REASON = str(_exc) or type(_exc).__name__

# what a failing I/O call raises: the OS and h5py (OSError, RuntimeError), MPI-IO (MPI.Exception,
# a RuntimeError in mpi4py 4, named for clarity)
IO_ERRORS = (OSError, RuntimeError) + ((MPI.Exception,) if MPI is not None else ())

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

    def on_root(self, fn, *args, catch=(Exception,)):
        """Collective: ``fn(*args)`` on rank 0 only; returns its result on every rank, or raises
        on every rank the exception it raised (an instance of ``catch``; others propagate on
        rank 0 alone, to the abort handler).  The result and the exception travel by pickle
        (``bcast``), so keep them small; the errors of :mod:`lattice_hpc.errors` arrive intact."""
        res = None
        if self.rank == 0:
            try:
                res = (True, fn(*args))
            except catch as exc:
                res = (False, exc)
        ok, value = self.bcast(res)
        if not ok:
            raise value
        return value

    def check_same(self, value, what: str) -> None:
        """Collective: raise :class:`~lattice_hpc.errors.ConfigError` on every rank unless
        ``value`` is equal on all ranks (the command line then exits with status 2).

        Used to check that parameters read independently on each rank agree (as openQCD does).
        """
        values = self.allgather(value)
        if any(v != values[0] for v in values):
            raise ConfigError(f"{what} differs between ranks: {values}")

    def abort(self, code: int = 1) -> None:
        """End the whole job now (``MPI_Abort`` on COMM_WORLD); on one process, ``os._exit``."""
        sys.stdout.flush()
        sys.stderr.flush()
        if MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized() and world_size() > 1:
            MPI.COMM_WORLD.Abort(code)
        os._exit(code)


@contextlib.contextmanager
def collective_io(comm: Communicator, what: str, describe=None, cleanup=None):
    """Context manager around collective I/O calls: an I/O error inside ends the whole job.

    Wrap exactly the calls that are collective inside the library (a collective HDF5 dataset
    read or write, the metadata writes and the close of a parallel HDF5 file), not code that can
    fail on its own (Python-level fault points, independent reads): after an exception inside a
    collective call the library's state is undefined and the other ranks wait inside it.  On an
    exception of :data:`IO_ERRORS` this rank writes to stderr (``[rank r/size] `` first when the
    job has several ranks)::

        lattice-hpc: error: WHAT: ERROR: an I/O error inside a collective operation; ending the job (nothing was renamed, committed or discarded)

    runs ``cleanup()`` if given (errors ignored; e.g. remove the temporary file being written)
    and ends the whole job with status 2 (:meth:`Communicator.abort`: ``MPI_Abort`` on
    COMM_WORLD, ``os._exit`` on one process).  ``describe(exc)`` gives ERROR (default: the OS
    error, :func:`lattice_hpc.comm.fileio.os_error_text`).  Other exceptions (bugs) pass through
    to the abort handler.  Collective as the calls it wraps.
    """
    try:
        yield
    except IO_ERRORS as exc:
        if describe is None:
            from .fileio import os_error_text as describe
        try:
            text = describe(exc)
        except Exception:  # noqa: BLE001 - reporting must not fail
            text = " ".join(str(exc).split()) or type(exc).__name__
        fatal_io_error(comm, what, text, cleanup)


def fatal_io_error(comm: Communicator, what: str, error: str, cleanup=None) -> None:
    """End the whole job with status 2 after an I/O error inside a collective operation (the
    message of :func:`collective_io`); never returns.  Not collective: the rank that saw the
    error calls it, the others are ended by ``MPI_Abort``."""
    prefix = f"[rank {world_rank()}/{world_size()}] " if world_size() > 1 else ""
    sys.stderr.write(f"{prefix}lattice-hpc: error: {what}: {error}: an I/O error inside a "
                     f"collective operation; ending the job (nothing was renamed, committed or "
                     f"discarded)\n")
    sys.stderr.flush()
    if cleanup is not None:
        try:
            cleanup()
        except Exception:  # noqa: BLE001 - the job ends anyway
            pass
    if world_size() > 1:
        time.sleep(0.3)  # let the process manager forward the message before the job is killed
    comm.abort(2)
    os._exit(2)  # not reached


def world() -> Communicator:
    """The job's communicator (COMM_WORLD), or the single-process stand-in without mpi4py.

    Without MPI, raises :class:`ConfigError` (naming the switch and the launcher variable) when an
    MPI launcher started this process as one of several: it would run alone while the others wait
    for it.  The caller should then end the launch with :func:`abort_launch`.
    """
    if MPI is None:
        launched = launcher_processes()
        if launched is not None:
            raise ConfigError(_no_mpi_message(launched))
    return Communicator(MPI.COMM_WORLD if MPI is not None else None)


def _no_mpi_message(launched: str) -> str:
    rank = launcher_rank()
    who = f"this process (launcher rank {rank[1]}, {rank[0]}={rank[1]})" if rank else "this process"
    if _NO_MPI_REASON and "LATTICE_HPC_NO_MPI" in _NO_MPI_REASON:
        return (f"LATTICE_HPC_NO_MPI=1 on {who}, but an MPI launcher started it as one of several "
                f"processes ({launched}): it would run alone while the other ranks wait for it. "
                f"Unset LATTICE_HPC_NO_MPI for MPI runs: set the same environment on every rank "
                f"(in the batch script, before the launcher)")
    return (f"mpi4py is not in use on {who} (it cannot be imported: {_NO_MPI_REASON}), but an MPI "
            f"launcher started it as one of several processes ({launched}): it would run alone "
            f"while the other ranks wait for it. Install mpi4py in the Python environment of every "
            f"node (tools/install.sh), with the same environment on every rank")


def _env_int(var: str) -> int | None:
    value = os.environ.get(var, "").strip()
    return int(value) if value.isdigit() else None


def launcher_processes() -> str | None:
    """``"VAR=value"`` of the launcher variable saying that an MPI launcher started this process as
    one of several, or ``None``.  Pure (reads the environment).

    ``PMI_SIZE`` > 1 (MPICH hydra, Cray PMI under PALS or srun, Flux), ``OMPI_COMM_WORLD_SIZE`` > 1
    (Open MPI), a rank > 0 in ``PMI_RANK`` / ``OMPI_COMM_WORLD_RANK`` / ``PMIX_RANK`` /
    ``PALS_RANKID``, or ``SLURM_STEP_NUM_TASKS`` > 1 together with ``SLURM_PROCID`` (srun; ``SLURM_NTASKS`` alone
    is also set for serial commands inside an sbatch script, so it does not count).
    """
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        n = _env_int(var)
        if n is not None and n > 1:
            return f"{var}={n}"
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PALS_RANKID"):
        n = _env_int(var)
        if n:  # a rank > 0 is not alone
            return f"{var}={n}"
    n = _env_int("SLURM_STEP_NUM_TASKS")
    if n is not None and n > 1 and _env_int("SLURM_PROCID") is not None:
        return f"SLURM_STEP_NUM_TASKS={n} (SLURM_PROCID={os.environ['SLURM_PROCID']})"
    return None


def launcher_rank() -> tuple[str, int] | None:
    """``(variable, rank)`` of this process as its launcher numbers it, or ``None``; pure."""
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PALS_RANKID", "SLURM_PROCID"):
        n = _env_int(var)
        if n is not None:
            return var, n
    return None


def _pmi_abort(code: int) -> bool:
    """Ask the launcher to end the whole launch with ``code`` over the PMI-1 wire protocol.

    MPICH's simple PMI client does the same in ``PMI_Abort`` (``cmd=abort exitcode=N``) on the
    socket the launcher passes in ``PMI_FD`` (hydra; also Slurm's pmi1 plugin).  Returns ``False``
    when there is no such socket (another launcher, or a child process that did not inherit it).
    """
    fd = _env_int("PMI_FD")
    if fd is None:
        return False
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return False
        sock = socket.socket(fileno=os.dup(fd))
        sock.settimeout(5.0)
        sock.sendall(b"cmd=init pmi_version=1 pmi_subversion=1\n")
        sock.recv(1024)  # cmd=response_to_init ... rc=0
        sock.sendall(f"cmd=abort exitcode={int(code)}\n".encode())
    except OSError:
        return False
    return True


def abort_launch(code: int = 2) -> None:
    """End the whole job from a process that is not in it (MPI off, :func:`world` refused).

    With mpi4py in use this is :meth:`Communicator.abort` on COMM_WORLD.  Without it, a process
    started by an MPI launcher asks the launcher to end the launch (:func:`_pmi_abort`), so that
    the ranks waiting in ``MPI_Init`` for this one do not hang; hydra then ends every process with
    ``code`` within a fraction of a second.  Otherwise (or if the launcher does not act within a
    few seconds) the process exits with ``code``; Open MPI's mpirun then ends the others, srun
    does so with ``--kill-on-bad-exit=1``.  Flushes stdout and stderr first.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if MPI is not None:
        Communicator(MPI.COMM_WORLD).abort(code)
    if launcher_processes() is not None:
        time.sleep(0.3)  # let the launcher forward this process's last messages before the kill
        if _pmi_abort(code):
            time.sleep(5.0)  # the launcher kills this process now
    os._exit(code)


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


def mpi4py_version() -> str | None:
    """The version of mpi4py in use, or ``None`` when this process runs without MPI."""
    if MPI is None:
        return None
    import mpi4py

    return mpi4py.__version__


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
    if MPI is None and launcher_processes() is not None:
        def alone(exc_type, exc, tb):  # world() refused: end the launch, not just this process
            rank = launcher_rank()
            prefix = f"[launcher rank {rank[1]}] " if rank else ""
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            sys.stderr.write("".join(prefix + line + "\n" for line in text.rstrip().splitlines()))
            sys.stderr.write(prefix + "ending the whole launch (PMI abort)\n")
            abort_launch(1)

        sys.excepthook = alone
        return
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
