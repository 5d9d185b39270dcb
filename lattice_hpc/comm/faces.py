"""Face exchange of packed buffers: the communication of the Wilson hopping term.

The Dirac operator does not exchange whole spinor halos: for each partitioned direction ``mu`` it
packs, on its own, the spin-projected half spinors (2 spins x 3 colours) of its two faces and
hands them to :class:`FaceExchange`, which sends

- the buffer of the *lower* face to the neighbour at ``-mu`` (which needs ``psi(x + mu)`` for its
  upper face), and
- the buffer of the *upper* face to the neighbour at ``+mu`` (which needs ``psi(x - mu)`` for its
  lower face),

all messages posted at once (``MPI_Isend``/``MPI_Irecv``), so the operator computes its interior
while they travel (:meth:`FaceExchange.start` then :meth:`Pending.finish`).  Directions that are
not partitioned are not communicated: the caller wraps them on-rank.

Buffers are contiguous NumPy or CuPy arrays.  CuPy buffers are handed to MPI directly when MPI is
GPU aware (``LATTICE_HPC_GPU_AWARE_MPI=1`` or ``MPICH_GPU_SUPPORT_ENABLED=1``), after a stream
synchronisation, and are staged through host memory otherwise.
"""

from __future__ import annotations

import numpy as np

from .cart import CartGrid
from .halo import _gpu_aware_mpi, _is_cupy
from .mpi import MPI


class FaceExchange:
    """Exchange of face buffers with the two neighbours of every partitioned direction.

    Construction is pure; :meth:`start` is collective over the grid's communicator (every rank
    calls it with buffers for the same directions, in the same order).
    """

    def __init__(self, grid: CartGrid):
        self.grid = grid
        self.directions = [mu for mu, d in enumerate(grid.dims) if d > 1]

    def start(self, lower: dict, upper: dict) -> "Pending":
        """Send ``lower[mu]`` to ``-mu`` and ``upper[mu]`` to ``+mu`` for each partitioned ``mu``.

        Returns a :class:`Pending` whose ``finish()`` gives ``(from_above, from_below)``: dicts of
        the buffers received from ``+mu`` (the neighbour's lower face) and from ``-mu``.
        """
        pending = Pending()
        mpi = self.grid.comm.mpi
        for mu in self.directions:
            up = [0] * self.grid.ndim
            up[mu] = 1
            down = [-v for v in up]
            r_up, r_down = self.grid.rank_at(up), self.grid.rank_at(down)
            for key, send, dest, source, store in ((mu, lower[mu], r_down, r_up, pending.above),
                                                   (mu, upper[mu], r_up, r_down, pending.below)):
                tag = 2 * mu + (store is pending.below)
                if _is_cupy(send):  # pragma: no cover - GPU only
                    import cupy

                    cupy.cuda.get_current_stream().synchronize()
                    if not _gpu_aware_mpi():
                        host = cupy.asnumpy(send)
                        recv = np.empty_like(host)
                        pending.staged.append((store, key, recv))
                        send, buf = host, recv
                    else:
                        buf = cupy.empty_like(send)
                        store[key] = buf
                else:
                    buf = np.empty_like(send)
                    store[key] = buf
                send = np.ascontiguousarray(send) if not _is_cupy(send) else send
                pending.keep.append(send)
                pending.requests.append(mpi.Irecv(buf, source=source, tag=tag))
                pending.requests.append(mpi.Isend(send, dest=dest, tag=tag))
        return pending


class Pending:
    """Messages in flight; :meth:`finish` waits and returns ``(from_above, from_below)``."""

    def __init__(self):
        self.requests, self.keep, self.staged = [], [], []
        self.above, self.below = {}, {}

    def finish(self):
        if self.requests:
            MPI.Request.Waitall(self.requests)
        for store, key, host in self.staged:  # pragma: no cover - GPU only
            import cupy

            store[key] = cupy.asarray(host)
        self.requests, self.keep, self.staged = [], [], []
        return self.above, self.below
