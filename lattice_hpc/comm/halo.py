"""Halo (ghost-zone) exchange for site fields on the decomposed lattice.

Storage layout (shared with :mod:`lattice_hpc.geometry`): a site field is an array of shape
``(*lead, P_{d-1}, ..., P_1, P_0, *site)`` where ``P_mu = L_mu + 2 h`` is the local extent of
direction ``mu`` padded by the halo depth ``h`` on both sides, the site axes stand in *reverse*
direction order (t slowest, x fastest: the ILDG/lexicographic order), ``lead`` are leading batch
axes (for example the link direction of a gauge field) and ``site`` is the per-site shape
(``(N, N)`` for links, ``(4, 3)`` for spinors, ``()`` for scalars).  Interior sites occupy
``[h, L_mu + h)`` along every direction.

Which halo sites are filled: for every offset ``o in {-1, 0, 1}^d``, ``o != 0``, with at most
``codim`` non-zero components (``codim = 1``: faces; ``2``: faces and edges, as staples and clover
leaves need; ``d``: everything, corners included), and non-zero only in the exchanged
``directions``, the halo region on side ``o`` receives the neighbouring block's interior region at
distance ``<= h`` from the shared boundary.  After :meth:`HaloExchange.exchange` every filled halo
entry equals the global field at the periodically wrapped global coordinate.

Each region travels as one message straight to the block at grid offset ``o`` (edges and corners
go to diagonal neighbours), so all messages are posted at once and :meth:`start` /
:meth:`Pending.finish` let computation on the interior overlap communication.  Messages whose
partner is this same rank (grid extent 1, or 2 with periodic wrap onto itself) are local copies,
with no MPI traffic.

Transports: NumPy arrays go through MPI subarray datatypes (MPI packs straight from the field; no
extra copy in Python).  CuPy arrays are packed into contiguous device buffers; with a GPU-aware
MPI (``LATTICE_HPC_GPU_AWARE_MPI=1``, or Cray's ``MPICH_GPU_SUPPORT_ENABLED=1``) the device buffers
are handed to MPI after a stream synchronisation, otherwise they are staged through host memory.
"""

from __future__ import annotations

import atexit
import itertools
import os
from typing import Sequence

import numpy as np

from .cart import CartGrid
from .mpi import MPI


_COMMITTED = []  # every datatype this module committed, freed at exit before MPI_Finalize


@atexit.register
def _free_datatypes():
    while _COMMITTED:
        dt = _COMMITTED.pop()
        if MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized():
            dt.Free()


def _gpu_aware_mpi() -> bool:
    return (os.environ.get("LATTICE_HPC_GPU_AWARE_MPI") == "1"
            or os.environ.get("MPICH_GPU_SUPPORT_ENABLED") == "1")


def _is_cupy(a) -> bool:
    return type(a).__module__.startswith("cupy")


class HaloExchange:
    """A halo-exchange plan for one local block shape, depth, codimension and set of directions.

    Args:
        grid: the process grid.
        local_dims: local extents ``L_mu`` in direction order.
        depth: halo depth ``h`` (``1 <= h <= L_mu`` in every exchanged direction).
        codim: largest number of non-zero offset components filled (1 faces, 2 edges, ... ``d``).
        directions: directions whose halos are exchanged (default: all).

    Construction is pure (no communication); :meth:`exchange` and :meth:`start` are collective
    over the grid's communicator and must be called by all ranks in the same order.
    """

    def __init__(self, grid: CartGrid, local_dims: Sequence[int], depth: int = 1,
                 codim: int | None = None, directions: Sequence[int] | None = None):
        self.grid = grid
        self.local_dims = tuple(int(x) for x in local_dims)
        self.ndim = len(self.local_dims)
        self.depth = int(depth)
        self.codim = self.ndim if codim is None else int(codim)
        self.directions = tuple(range(self.ndim)) if directions is None else tuple(directions)
        if not 1 <= self.codim <= self.ndim:
            raise ValueError(f"codim must be in 1..{self.ndim}, got {self.codim}")
        for mu in self.directions:
            if not 1 <= self.depth <= self.local_dims[mu]:
                raise ValueError(f"halo depth {self.depth} must be between 1 and the local extent "
                                 f"{self.local_dims[mu]} of direction {mu}")
        self.padded = tuple(L + 2 * self.depth for L in self.local_dims)
        self.offsets = []
        for o in itertools.product((-1, 0, 1), repeat=self.ndim):
            nonzero = [mu for mu, v in enumerate(o) if v]
            if nonzero and len(nonzero) <= self.codim and all(mu in self.directions for mu in nonzero):
                self.offsets.append(o)
        self._index = {o: i for i, o in enumerate(itertools.product((-1, 0, 1), repeat=self.ndim))}
        self._dtypes: dict = {}

    # -- geometry of the regions ----------------------------------------------------------------
    def _slices(self, o, kind):
        """Slices (memory order) of the send (``'S'``) or receive (``'R'``) region for offset o."""
        h = self.depth
        out = []
        for mu, v in enumerate(o):
            L = self.local_dims[mu]
            if v == 0:
                out.append(slice(h, L + h))
            elif kind == "S":
                out.append(slice(L, L + h) if v > 0 else slice(h, 2 * h))
            else:
                out.append(slice(L + h, L + 2 * h) if v > 0 else slice(0, h))
        return tuple(reversed(out))

    def send_region(self, o):
        """Memory-order slices of the interior region sent to the block at grid offset ``o``."""
        return self._slices(o, "S")

    def recv_region(self, o):
        """Memory-order slices of the halo region filled from the block at grid offset ``o``."""
        return self._slices(o, "R")

    def messages(self):
        """``(offset, partner rank)`` of every off-rank message this rank receives (and sends)."""
        me = self.grid.rank
        return [(o, self.grid.rank_at(o)) for o in self.offsets if self.grid.rank_at(o) != me]

    def message_sites(self, o) -> int:
        """Number of sites in the region for offset ``o``."""
        n = 1
        for mu, v in enumerate(o):
            n *= self.depth if v else self.local_dims[mu]
        return n

    # -- exchange -------------------------------------------------------------------------------
    def exchange(self, field, lead: int = 0):
        """Collective: fill the halo of ``field`` in place and return it (start + finish)."""
        return self.start(field, lead).finish()

    def start(self, field, lead: int = 0) -> "Pending":
        """Collective: post all messages (and do the on-rank copies); returns a handle.

        The interior of ``field`` may be read but not written, and the halo neither read nor
        written, until :meth:`Pending.finish` returns.
        """
        self._check(field, lead)
        pre = (slice(None),) * lead
        me = self.grid.rank
        pending = Pending(field)
        local = []
        for o in self.offsets:
            partner = self.grid.rank_at(o)
            if partner == me:
                # On-rank wrap: my halo on side o is my own interior region sent towards -o.
                local.append((pre + self.recv_region(o), pre + self.send_region(tuple(-v for v in o))))
        for dst, src in local:
            field[dst] = field[src]
        remote = [(o, self.grid.rank_at(o)) for o in self.offsets if self.grid.rank_at(o) != me]
        if not remote:
            return pending
        mpi = self.grid.comm.mpi
        if _is_cupy(field):
            self._start_packed(field, pre, remote, mpi, pending)
        else:
            self._start_datatypes(field, lead, remote, mpi, pending)
        return pending

    def _check(self, field, lead):
        shape = field.shape[lead:lead + self.ndim]
        expected = tuple(reversed(self.padded))
        if shape != expected:
            raise ValueError(f"field has site shape {shape}, the halo plan expects {expected} "
                             f"(padded local extents in memory order t..x, depth {self.depth})")
        if not field.flags.c_contiguous:
            raise ValueError("halo exchange needs a C-contiguous field")

    def _tag(self, o):
        return self._index[tuple(o)]

    def _datatype(self, field, lead, o, kind):
        key = (field.shape, field.dtype.str, lead, o, kind)
        dt = self._dtypes.get(key)
        if dt is None:
            site_bytes = field.dtype.itemsize * int(np.prod(field.shape[lead + self.ndim:], dtype=np.int64))
            sizes = list(field.shape[:lead + self.ndim]) + [site_bytes]
            region = self._slices(o, kind)
            subsizes = list(field.shape[:lead]) + [s.stop - s.start for s in region] + [site_bytes]
            starts = [0] * lead + [s.start for s in region] + [0]
            dt = MPI.BYTE.Create_subarray(sizes, subsizes, starts, order=MPI.ORDER_C).Commit()
            self._dtypes[key] = dt
            _COMMITTED.append(dt)
        return dt

    def _start_datatypes(self, field, lead, remote, mpi, pending):
        buf = field.reshape(-1).view(np.uint8)
        for o, partner in remote:
            pending.requests.append(
                mpi.Irecv([buf, 1, self._datatype(field, lead, o, "R")], source=partner,
                          tag=self._tag(o)))
        for o, partner in remote:
            pending.requests.append(
                mpi.Isend([buf, 1, self._datatype(field, lead, o, "S")], dest=partner,
                          tag=self._tag(tuple(-v for v in o))))

    def _start_packed(self, field, pre, remote, mpi, pending):  # pragma: no cover - GPU only
        import cupy

        aware = _gpu_aware_mpi()
        sends = []
        for o, partner in remote:
            sends.append((cupy.ascontiguousarray(field[pre + self.send_region(o)]), o, partner))
        cupy.cuda.get_current_stream().synchronize()  # buffers complete before MPI reads them
        for o, partner in remote:
            shape = field[pre + self.recv_region(o)].shape
            rbuf = cupy.empty(shape, field.dtype) if aware else np.empty(shape, field.dtype)
            pending.requests.append(mpi.Irecv(rbuf, source=partner, tag=self._tag(o)))
            pending.unpack.append((pre + self.recv_region(o), rbuf))
        for sbuf, o, partner in sends:
            if not aware:
                sbuf = cupy.asnumpy(sbuf)
            pending.keep.append(sbuf)
            pending.requests.append(mpi.Isend(sbuf, dest=partner, tag=self._tag(tuple(-v for v in o))))


class Pending:
    """An exchange in flight; :meth:`finish` completes it (collective with the matching start)."""

    def __init__(self, field):
        self.field = field
        self.requests = []
        self.unpack = []  # (region, buffer) to copy into the field after the receives complete
        self.keep = []  # send buffers that must live until completion

    def finish(self):
        """Wait for all messages, unpack staged buffers, and return the field."""
        if self.requests:
            MPI.Request.Waitall(self.requests)
        if self.unpack:  # pragma: no cover - GPU only
            import cupy

            for region, buf in self.unpack:
                self.field[region] = cupy.asarray(buf)
        self.requests, self.unpack, self.keep = [], [], []
        return self.field
