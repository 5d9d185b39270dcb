"""Parallel file access: every rank reads or writes its own block of a global site array.

Two kinds of file are written by all ranks at once:

- **Raw binary files** (NERSC, ILDG, MILC, openQCD data sections): :class:`BlockFile` views the
  file from byte ``offset`` on as a C-ordered global array of "sites" of ``site_bytes`` bytes each
  (shape ``global_shape``, memory order: t slowest, x fastest, as in :mod:`lattice_hpc.geometry`).
  Each rank reads or writes the sub-array ``start : start + shape`` of it as the fewest contiguous
  runs (trailing directions that the block covers whole merge into one run) with explicit-offset
  MPI-IO (``MPI_File_read_at`` / ``MPI_File_write_at``); without mpi4py with ``os.pread`` /
  ``os.pwrite``.  Why not one collective call with a subarray file view: MPICH 4.0.x (Debian 12)
  aborts in ROMIO's ``flatten.c`` ("Out of memory") on any derived file type built by mpi4py 4,
  which uses the MPI-4 large-count constructors.
- **HDF5 files** (checkpoints): :func:`open_h5` opens them with h5py's ``mpio`` driver over the
  job's communicator.  It fails at once, with a message saying how to fix it, when the job runs on
  several ranks and h5py was built without MPI.

Header bytes are written by rank 0 alone before the collective data write; the caller broadcasts
the data offset.  All functions here are collective over ``comm`` unless they say otherwise.

I/O errors of :class:`BlockFile`: an error of the file system usually strikes one rank (one node's
client, one server), and the others must not be left waiting for it.  Each rank catches its own
error in the open, :meth:`BlockFile.read_block`, :meth:`BlockFile.write_block` and the final
sync/close; the ranks then agree on the outcome (an ``allgather``), close the file together, and
every rank raises the same :class:`BlockFileError` (an ``OSError``) naming the file and the
rank(s): ``PATH: could not be read (rank 1: EIO: Input/output error ...)``.  The I/O layer turns
it into a :class:`~lattice_hpc.errors.FormatError`.  :func:`io_errno`, :func:`os_error_text` and
:func:`per_rank` name OS errors, also those that h5py and MPI-IO report only as text.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Sequence

import numpy as np

from ..errors import BackendError
from .mpi import IO_ERRORS, MPI, Communicator


# -- naming OS errors ------------------------------------------------------------------------------
_ERRNO_IN_TEXT = re.compile(r"errno = (\d+)")

# OS errors that h5py (under the ``mpio`` driver) and MPI-IO report only as text, e.g. ROMIO's
# "MPI_File_read_at failed ... Other I/O error Input/output error": found by the OS's own wording
_TEXT_ERRNOS = tuple(n for n in (getattr(errno, name, None) for name in (
    "EIO", "EACCES", "EPERM", "ESTALE", "ENOSPC", "EDQUOT", "EROFS", "ENOENT", "EISDIR",
    "ENOTDIR", "EBADF", "ETIMEDOUT", "ENXIO", "ENODEV", "EREMOTEIO", "ENOTCONN", "ECONNRESET",
    "EHOSTDOWN", "EHOSTUNREACH", "ENETDOWN", "ENETUNREACH", "EFBIG", "ENOLCK", "ECOMM",
    "EPROTO")) if n is not None)


def io_errno(exc: BaseException) -> int | None:
    """The OS error number behind ``exc``, or ``None`` if it is not an OS-level error (pure).

    An ``OSError`` raised by the OS carries it in ``errno``.  One raised by h5py/HDF5 either does
    too (``FileNotFoundError``, ...), or names it in its message (``errno = 5, error message =
    ...``), or, under the ``mpio`` driver, only quotes the OS's text (``Other I/O error
    Input/output error``), as MPI-IO's own errors (``mpi4py.MPI.Exception``) do.  HDF5's own
    structural errors (truncated file, bad signature) carry none, or 0.  Other exception types
    (``KeyError``, ``ValueError``, ...) are never OS errors.
    """
    if not isinstance(exc, IO_ERRORS):
        return None
    if isinstance(exc, OSError) and exc.errno:
        return int(exc.errno)
    text = str(exc)
    m = _ERRNO_IN_TEXT.search(text)
    if m:
        return int(m.group(1)) or None
    found = [(text.find(os.strerror(n)), n) for n in _TEXT_ERRNOS if os.strerror(n) in text]
    return min(found)[1] if found else None


def os_error_text(exc: BaseException) -> str:
    """``"EIO: Input/output error"``: the symbolic OS error and its text (else ``str(exc)``), on
    one line; the library's own message follows in parentheses when it says more."""
    n = io_errno(exc)
    own = " ".join(str(exc).split())
    if n is None:
        return own or type(exc).__name__
    text = os.strerror(n)
    strerror = getattr(exc, "strerror", None) if getattr(exc, "errno", None) else None
    extra = " ".join(str(strerror).split()) if strerror else own
    if extra.startswith(text):  # the OS's own text (plus what a fault injection adds)
        text = extra
    elif extra:  # h5py, MPI-IO: the library's message
        text = f"{text} ({extra})"
    return f"{errno.errorcode.get(n, f'errno {n}')}: {text}"


def per_rank(errors) -> str:
    """``"rank 1: EIO: ...; ranks 0,2: ..."``: the non-empty entries of a rank-ordered list."""
    groups: dict[str, list[int]] = {}
    for rank, text in enumerate(errors):
        if text:
            groups.setdefault(text, []).append(rank)
    return "; ".join(f"rank{'s' if len(rs) > 1 else ''} {','.join(map(str, rs))}: {text}"
                     for text, rs in groups.items())


class BlockFileError(OSError):
    """An I/O error of a :class:`BlockFile` on one or more ranks, raised on every rank.

    Attributes:
        path: the file; ``verb``: ``"read"`` or ``"written"``; ``errors``: per rank (rank order),
            the OS error text of that rank, or ``None`` where it succeeded.

    ``str()`` is ``"PATH: could not be read (rank 1: EIO: Input/output error ...)"``.
    """

    def __init__(self, path: str, verb: str, errors):
        self.path, self.verb, self.errors = str(path), verb, list(errors)
        super().__init__(f"{self.path}: could not be {verb} ({per_rank(self.errors)})")

    def __str__(self):
        return self.args[0]


class BlockFile:
    """A binary file opened by all ranks of ``comm`` (collective).

    Args:
        comm: the communicator of the ranks that hold blocks (every rank of it must call each
            method).
        path: the file.  Mode ``"r"`` reads; mode ``"w"`` writes into an existing file (rank 0
            creates it and writes the header first) without truncating it.

    Every method (the constructor too) raises :class:`BlockFileError` on every rank if it failed
    on any rank; the file is then closed (collectively, so that no rank is left waiting).  Use it
    as a context manager: leaving the block normally closes (and, for ``"w"``, syncs) the file,
    and an error of that close is raised on every rank too.  Any other exception that leaves the
    block on several ranks skips the collective close: such an exception is not expected on every
    rank at once, and a collective call there would wait for ever for the ranks that are not in
    it; the job's abort handler (:func:`lattice_hpc.comm.install_abort_handler`) ends the job.
    """

    def __init__(self, comm: Communicator, path: str, mode: str = "r"):
        if mode not in ("r", "w"):
            raise ValueError(f"mode must be 'r' or 'w', not {mode!r}")
        self.comm, self.path, self.mode = comm, str(path), mode
        self._verb = "read" if mode == "r" else "written"
        self._fh = self._fd = None
        error = None
        try:
            if comm.mpi is not None:
                amode = MPI.MODE_RDONLY if mode == "r" else MPI.MODE_WRONLY
                self._fh = MPI.File.Open(comm.mpi, self.path, amode, MPI.INFO_NULL)
            else:
                self._fd = os.open(self.path, os.O_RDONLY if mode == "r" else os.O_WRONLY)
        except IO_ERRORS as exc:
            error = f"opening: {os_error_text(exc)}"
        errors = comm.allgather(error)
        if any(errors):
            if not all(errors) and self._fh is not None:
                # opened on some ranks only: MPI_File_close is collective and the ranks that
                # failed have no handle to close with, so the handle is left (the job ends)
                self._fh = None
            self._abandon()
            raise BlockFileError(self.path, self._verb, errors)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        elif self.comm.size == 1 or isinstance(exc, BlockFileError):
            self._abandon()  # a BlockFileError has closed it already (on every rank)
        # else: see the class docstring (no collective call while an exception leaves the block)

    def read_block(self, offset: int, global_shape: Sequence[int], start: Sequence[int],
                   shape: Sequence[int], site_bytes: int) -> np.ndarray:
        """Collective: this rank's block as ``uint8`` of shape ``(*shape, site_bytes)``.

        The caller has checked that the file is long enough (see :func:`file_size`); a short read
        is an error.  Raises :class:`BlockFileError` on every rank if the read failed on any.
        """
        out = np.empty(tuple(shape) + (int(site_bytes),), dtype=np.uint8)
        error = None
        pos = offset
        try:
            for pos, view in _runs(offset, global_shape, start, shape, site_bytes, out):
                if self._fh is not None:
                    status = MPI.Status()  # leading-axes views of a C array are contiguous
                    self._fh.Read_at(pos, view, status)
                    got = status.Get_count(MPI.BYTE)
                else:
                    data = os.pread(self._fd, view.nbytes, pos)
                    got = len(data)
                    if got == view.nbytes:
                        view[...] = np.frombuffer(data, dtype=np.uint8).reshape(view.shape)
                if got != view.nbytes:
                    raise OSError(f"short read: {got} of {view.nbytes} bytes")
        except IO_ERRORS as exc:
            error = f"{os_error_text(exc)}, at byte {pos}"
        self._agree(error)
        return out

    def write_block(self, offset: int, global_shape: Sequence[int], start: Sequence[int],
                    block: np.ndarray) -> None:
        """Collective: write ``block`` (``uint8``, shape ``(*shape, site_bytes)``) at ``start``.

        Raises :class:`BlockFileError` on every rank if the write failed on any (the caller
        removes the file: it is incomplete).
        """
        block = np.ascontiguousarray(block, dtype=np.uint8)
        shape, site_bytes = block.shape[:-1], block.shape[-1]
        error = None
        pos = offset
        try:
            for pos, view in _runs(offset, global_shape, start, shape, site_bytes, block):
                buf = np.ascontiguousarray(view)
                if self._fh is not None:
                    status = MPI.Status()
                    self._fh.Write_at(pos, buf, status)
                    done = status.Get_count(MPI.BYTE)
                else:
                    done = os.pwrite(self._fd, buf.tobytes(), pos)
                if done != buf.nbytes:
                    raise OSError(f"short write: {done} of {buf.nbytes} bytes")
        except IO_ERRORS as exc:
            error = f"{os_error_text(exc)}, at byte {pos}"
        self._agree(error)

    def close(self, sync: bool = True) -> None:
        """Collective: flush to stable storage (``sync``, mode ``"w"``) and close.

        Raises :class:`BlockFileError` on every rank if the sync or the close failed on any.
        """
        if self._fh is None and self._fd is None:
            return
        error = None
        try:
            if sync and self.mode == "w":
                if self._fh is not None:
                    self._fh.Sync()
                else:
                    os.fsync(self._fd)
        except IO_ERRORS as exc:
            error = f"syncing: {os_error_text(exc)}"
        try:
            if self._fh is not None:
                self._fh.Close()
            else:
                os.close(self._fd)
        except IO_ERRORS as exc:
            error = error or f"closing: {os_error_text(exc)}"
        finally:
            self._fh = self._fd = None
        self._agree(error)

    def _agree(self, error: str | None) -> None:
        """Collective: every rank learns every rank's outcome; on any error the file is closed
        (collectively, errors ignored) and :class:`BlockFileError` is raised on every rank."""
        errors = self.comm.allgather(error)
        if any(errors):
            self._abandon()
            raise BlockFileError(self.path, self._verb, errors)

    def _abandon(self) -> None:
        """Close without syncing, ignoring errors (collective when the handle is an MPI file)."""
        fh, fd = self._fh, self._fd
        self._fh = self._fd = None
        try:
            if fh is not None:
                fh.Close()
            elif fd is not None:
                os.close(fd)
        except IO_ERRORS:
            pass


def _runs(offset, global_shape, start, shape, site_bytes, arr):
    """``(file position, view of arr)`` for each contiguous run of the block."""
    gshape = [int(n) for n in global_shape]
    shape = [int(n) for n in shape]
    start = [int(s) for s in start]
    nd = len(gshape)
    # merge trailing axes that the block covers whole: they form one contiguous run
    k = nd - 1
    while k > 0 and shape[k] == gshape[k] and start[k] == 0:
        k -= 1
    strides = [1] * nd
    for d in range(nd - 2, -1, -1):
        strides[d] = strides[d + 1] * gshape[d + 1]
    for idx in np.ndindex(*shape[:k]):
        first = sum((start[d] + idx[d]) * strides[d] for d in range(k)) + start[k] * strides[k]
        yield offset + first * site_bytes, arr[idx]


def file_size(path: str) -> int:
    """Size of ``path`` in bytes (not collective)."""
    return os.stat(path).st_size


def open_h5(path: str, mode: str, comm: Communicator):
    """Collective: open an HDF5 file on all ranks of ``comm`` with the ``mpio`` driver.

    On one process without parallel h5py the default driver is used.  On several ranks, an h5py
    without MPI raises :class:`~lattice_hpc.errors.BackendError` on every rank before any file is
    touched.
    """
    try:
        import h5py
    except ImportError:
        raise BackendError("h5py is not installed; checkpoints need it (tools/install.sh builds "
                           "it with MPI support)") from None
    parallel = bool(h5py.get_config().mpi)
    if comm.mpi is not None and comm.size > 1 and not parallel:
        raise BackendError(f"h5py {h5py.__version__} was built without MPI support, so {comm.size} "
                           f"ranks cannot write one HDF5 file together; rebuild it with "
                           f"HDF5_MPI=ON CC=mpicc pip install --no-binary=h5py h5py (INSTALL.md)")
    if comm.mpi is not None and parallel:
        return h5py.File(path, mode, driver="mpio", comm=comm.mpi)
    return h5py.File(path, mode)
