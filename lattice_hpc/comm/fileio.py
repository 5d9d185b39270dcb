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
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..errors import BackendError
from .mpi import MPI, Communicator


class BlockFile:
    """A binary file opened by all ranks of ``comm`` (collective).

    Args:
        comm: the communicator of the ranks that hold blocks (every rank of it must call each
            method).
        path: the file.  Mode ``"r"`` reads; mode ``"w"`` writes into an existing file (rank 0
            creates it and writes the header first) without truncating it.
    """

    def __init__(self, comm: Communicator, path: str, mode: str = "r"):
        if mode not in ("r", "w"):
            raise ValueError(f"mode must be 'r' or 'w', not {mode!r}")
        self.comm, self.path, self.mode = comm, str(path), mode
        if comm.mpi is not None:
            amode = MPI.MODE_RDONLY if mode == "r" else MPI.MODE_WRONLY
            self._fh = MPI.File.Open(comm.mpi, self.path, amode, MPI.INFO_NULL)
            self._fd = None
        else:
            self._fh = None
            self._fd = os.open(self.path, os.O_RDONLY if mode == "r" else os.O_WRONLY)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def read_block(self, offset: int, global_shape: Sequence[int], start: Sequence[int],
                   shape: Sequence[int], site_bytes: int) -> np.ndarray:
        """Collective: this rank's block as ``uint8`` of shape ``(*shape, site_bytes)``.

        The caller has checked that the file is long enough (see :func:`file_size`).
        """
        out = np.empty(tuple(shape) + (int(site_bytes),), dtype=np.uint8)
        for pos, view in _runs(offset, global_shape, start, shape, site_bytes, out):
            if self._fh is not None:
                self._fh.Read_at(pos, view)  # leading-axes views of a C array are contiguous
            else:
                data = os.pread(self._fd, view.nbytes, pos)
                if len(data) != view.nbytes:
                    raise OSError(f"{self.path}: short read at byte {pos}")
                view[...] = np.frombuffer(data, dtype=np.uint8).reshape(view.shape)
        self.comm.barrier()
        return out

    def write_block(self, offset: int, global_shape: Sequence[int], start: Sequence[int],
                    block: np.ndarray) -> None:
        """Collective: write ``block`` (``uint8``, shape ``(*shape, site_bytes)``) at ``start``."""
        block = np.ascontiguousarray(block, dtype=np.uint8)
        shape, site_bytes = block.shape[:-1], block.shape[-1]
        for pos, view in _runs(offset, global_shape, start, shape, site_bytes, block):
            buf = np.ascontiguousarray(view)
            if self._fh is not None:
                self._fh.Write_at(pos, buf)
            else:
                os.pwrite(self._fd, buf.tobytes(), pos)
        self.comm.barrier()

    def close(self, sync: bool = True) -> None:
        """Collective: flush to stable storage (``sync``) and close."""
        if self._fh is not None:
            if sync and self.mode == "w":
                self._fh.Sync()
            self._fh.Close()
            self._fh = None
        elif self._fd is not None:
            if sync and self.mode == "w":
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None


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
