"""Communication: the only package of lattice_hpc that imports mpi4py.

Physics code reaches other ranks only through the objects defined here, at documented points:

- :mod:`.mpi`   -- :class:`Communicator` (reductions, broadcasts, gathers, split; a single-process
  stand-in when mpi4py is absent), :func:`world`, the abort-on-exception hook,
  :func:`collective_io` (an I/O error inside a collective HDF5/MPI-IO
  call ends the whole job with status 2) and ``IO_ERRORS``, the exception types of a failed I/O
  call (OS, h5py, MPI-IO), so that the I/O layer never touches MPI objects.
- :mod:`.fileio` -- :class:`~.fileio.BlockFile` (raw formats, every rank its block; an I/O error
  on any rank raises :class:`~.fileio.BlockFileError` on every rank) and ``open_h5``.
- :mod:`.cart`  -- :class:`CartGrid`: the periodic Cartesian process grid, neighbour ranks at any
  offset, gathers along one direction, and block gathers of a global field.
- :mod:`.halo`  -- :class:`HaloExchange`: halo (ghost-zone) exchange of site fields of any per-site
  shape, any depth, faces only or faces + edges + corners, blocking or start/finish.
- :mod:`.environment` -- :func:`check_environment`: the start-up check that every rank has the same
  switches (:mod:`lattice_hpc.switches`), and (in :mod:`.mpi`) :func:`abort_launch`, which ends
  the whole launch from a process that runs without MPI.

Every collective here must be "called on all MPI processes of the communicator simultaneously"
(openQCD's wording); each function's docstring says when it is collective.
"""

from .mpi import (IO_ERRORS, Communicator, world, self_comm, install_abort_handler, compute_dims,
                  wtime, abort_launch, collective_io, fatal_io_error)
from .environment import check_environment
from .cart import CartGrid
from .halo import HaloExchange

__all__ = [
    "Communicator",
    "world",
    "self_comm",
    "install_abort_handler",
    "compute_dims",
    "wtime",
    "abort_launch",
    "collective_io",
    "fatal_io_error",
    "IO_ERRORS",
    "check_environment",
    "CartGrid",
    "HaloExchange",
]
