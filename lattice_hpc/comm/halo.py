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

Two strategies (``strategy="auto"`` picks ``slab`` for ``codim >= 2`` and ``direct`` for faces):

- ``direct``: each region travels as one message straight to the block at grid offset ``o``
  (edges and corners to diagonal neighbours); all messages are posted at once, so
  :meth:`start` / :meth:`Pending.finish` overlap all of the communication with interior work.
- ``slab``: dimension by dimension (Ding-style ordering used by many lattice codes): first the
  on-rank wraps of the directions that are not partitioned, then, one partitioned direction after
  the other, the two slabs of depth ``h`` spanning the *full padded* extent of every other
  direction.  Each slab carries the halos already filled, so edges and corners arrive with it (the
  result is the full halo, every codimension); slabs are contiguous or a few large blocks, so MPI
  sends them without packing.  :meth:`start` posts the first partitioned direction; the others
  follow in :meth:`Pending.finish`.

Messages whose partner is this same rank (grid extent 1) are local copies, with no MPI traffic.

Transports: NumPy arrays go through MPI subarray datatypes (MPI packs straight from the field; no
extra copy in Python).  CuPy arrays are packed into contiguous device buffers; with a GPU-aware
MPI (``LATTICE_HPC_GPU_AWARE_MPI=1``, or Cray's ``MPICH_GPU_SUPPORT_ENABLED=1``) the device buffers
are handed to MPI after a stream synchronisation, otherwise they are staged through host memory.
"""

from __future__ import annotations

import atexit
import itertools
from typing import Sequence

import numpy as np

from .. import switches
from .cart import CartGrid
from .mpi import MPI


_COMMITTED = []  # every datatype this module committed, freed at exit before MPI_Finalize

#: Counts (not timings) of this process's halo exchanges: calls, off-rank messages sent and their
#: bytes.  Read and reset by callers that model where time goes (the HMC's per-trajectory records,
#: the performance model of :mod:`lattice_hpc.batch.model`).
PROFILE = {"calls": 0, "messages": 0, "bytes": 0}


def reset_profile() -> dict:
    """The halo counts so far, then zeroed."""
    out = dict(PROFILE)
    PROFILE.update(calls=0, messages=0, bytes=0)
    return out


@atexit.register
def _free_datatypes():
    while _COMMITTED:
        dt = _COMMITTED.pop()
        if MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized():
            dt.Free()


def _gpu_aware_mpi() -> bool:
    return switches.get("LATTICE_HPC_GPU_AWARE_MPI") or switches.get("MPICH_GPU_SUPPORT_ENABLED")


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
                 codim: int | None = None, directions: Sequence[int] | None = None,
                 strategy: str = "auto"):
        self.grid = grid
        self.local_dims = tuple(int(x) for x in local_dims)
        self.ndim = len(self.local_dims)
        self.depth = int(depth)
        self.codim = self.ndim if codim is None else int(codim)
        self.directions = tuple(range(self.ndim)) if directions is None else tuple(directions)
        if not 1 <= self.codim <= self.ndim:
            raise ValueError(f"codim must be in 1..{self.ndim}, got {self.codim}")
        if strategy not in ("auto", "slab", "direct"):
            raise ValueError(f"unknown halo strategy {strategy!r}: use auto, slab or direct")
        self.strategy = ("slab" if self.codim >= 2 else "direct") if strategy == "auto" else strategy
        # slab order: on-rank directions first (local copies), then the partitioned ones
        self.local_directions = [mu for mu in self.directions if grid.dims[mu] == 1]
        self.remote_directions = [mu for mu in self.directions if grid.dims[mu] > 1]
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
        self._counts = None  # (messages, sites) of one exchange, for PROFILE

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
        """``(offset, partner rank)`` of every off-rank message this rank sends (and receives).

        For the slab strategy the offsets are the unit vectors of the partitioned directions.
        """
        if self.strategy == "slab":
            out = []
            for mu in self.remote_directions:
                for side in (-1, 1):
                    o = tuple(side if nu == mu else 0 for nu in range(self.ndim))
                    out.append((o, self.grid.rank_at(o)))
            return out
        me = self.grid.rank
        return [(o, self.grid.rank_at(o)) for o in self.offsets if self.grid.rank_at(o) != me]

    def message_sites(self, o) -> int:
        """Number of sites in the message for offset ``o`` (slabs include the padding)."""
        n = 1
        for mu, v in enumerate(o):
            if v:
                n *= self.depth
            else:
                n *= self.padded[mu] if self.strategy == "slab" else self.local_dims[mu]
        return n

    def _slab(self, mu, side, kind):
        """Memory-order slices of the slab on ``side`` of direction ``mu`` (full padded extent elsewhere)."""
        h, L = self.depth, self.local_dims[mu]
        if kind == "S":
            sl = slice(L, L + h) if side > 0 else slice(h, 2 * h)
        else:
            sl = slice(L + h, L + 2 * h) if side > 0 else slice(0, h)
        return tuple(sl if nu == mu else slice(None) for nu in reversed(range(self.ndim)))

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
        if self._counts is None:  # the plan's off-rank messages and their sites, once
            msgs = self.messages()
            self._counts = (len(msgs), sum(self.message_sites(o) for o, _ in msgs))
        per_site = field.dtype.itemsize * int(np.prod(field.shape[:lead], dtype=np.int64)) * \
            int(np.prod(field.shape[lead + self.ndim:], dtype=np.int64))
        PROFILE["calls"] += 1
        PROFILE["messages"] += self._counts[0]
        PROFILE["bytes"] += per_site * self._counts[1]
        if self.strategy == "slab":
            for mu in self.local_directions:
                for side in (-1, 1):
                    field[pre + self._slab(mu, side, "R")] = field[pre + self._slab(mu, -side, "S")]
            phases = [self._slab_phase(field, lead, mu) for mu in self.remote_directions]
            if phases:
                phases[0](pending)
                pending.phases = phases[1:]
            return pending
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

    def _region(self, o, kind, slab):
        if slab is None:
            return self._slices(o, kind)
        return self._slab(slab, o[slab], kind)

    def _datatype(self, field, lead, o, kind, slab=None):
        key = (field.shape, field.dtype.str, lead, o, kind, slab)
        dt = self._dtypes.get(key)
        if dt is None:
            site_bytes = field.dtype.itemsize * int(np.prod(field.shape[lead + self.ndim:], dtype=np.int64))
            sizes = list(field.shape[:lead + self.ndim]) + [site_bytes]
            region = self._region(o, kind, slab)
            region = tuple(slice(*r.indices(n)[:2]) for r, n in zip(region, field.shape[lead:]))
            subsizes = list(field.shape[:lead]) + [s.stop - s.start for s in region] + [site_bytes]
            starts = [0] * lead + [s.start for s in region] + [0]
            dt = MPI.BYTE.Create_subarray(sizes, subsizes, starts, order=MPI.ORDER_C).Commit()
            self._dtypes[key] = dt
            _COMMITTED.append(dt)
        return dt

    def _contiguous_pieces(self, field, lead, o, kind, slab):
        """Views (one per leading index) of a region if each is contiguous, else ``None``."""
        region = self._region(o, kind, slab)
        nlead = int(np.prod(field.shape[:lead], dtype=np.int64))
        flat = field.reshape((nlead,) + field.shape[lead:])
        pieces = [flat[(i,) + region] for i in range(nlead)]
        return pieces if all(p.flags.c_contiguous for p in pieces) else None

    def _start_datatypes(self, field, lead, remote, mpi, pending, slab=None):
        """NumPy transport: contiguous regions go straight from/to the field, others as subarrays."""
        recv = [self._contiguous_pieces(field, lead, o, "R", slab) for o, _ in remote]
        send = [self._contiguous_pieces(field, lead, o, "S", slab) for o, _ in remote]
        if all(p is not None for p in recv + send):
            for (o, partner), pieces in zip(remote, recv):
                for i, piece in enumerate(pieces):
                    pending.requests.append(mpi.Irecv(piece, source=partner,
                                                      tag=self._tag(o) + 128 * (i + 1)))
            for (o, partner), pieces in zip(remote, send):
                tag = self._tag(tuple(-v for v in o))
                for i, piece in enumerate(pieces):
                    pending.requests.append(mpi.Isend(piece, dest=partner, tag=tag + 128 * (i + 1)))
            return
        buf = field.reshape(-1).view(np.uint8)
        for o, partner in remote:
            pending.requests.append(
                mpi.Irecv([buf, 1, self._datatype(field, lead, o, "R", slab)], source=partner,
                          tag=self._tag(o)))
        for o, partner in remote:
            pending.requests.append(
                mpi.Isend([buf, 1, self._datatype(field, lead, o, "S", slab)], dest=partner,
                          tag=self._tag(tuple(-v for v in o))))

    def _slab_phase(self, field, lead, mu):
        """A callable that posts the two slabs of direction ``mu`` into the pending exchange."""
        def post(pending):
            mpi = self.grid.comm.mpi
            pre = (slice(None),) * lead
            remote = []
            for side in (-1, 1):
                o = tuple(side if nu == mu else 0 for nu in range(self.ndim))
                remote.append((o, self.grid.rank_at(o)))
            if _is_cupy(field):
                self._start_packed(field, pre, remote, mpi, pending, slab=mu)
            else:
                self._start_datatypes(field, lead, remote, mpi, pending, slab=mu)
        return post

    def _start_packed(self, field, pre, remote, mpi, pending, slab=None):  # pragma: no cover - GPU only
        import cupy

        aware = _gpu_aware_mpi()
        sends = []
        for o, partner in remote:
            sends.append((cupy.ascontiguousarray(field[pre + self._region(o, "S", slab)]), o, partner))
        cupy.cuda.get_current_stream().synchronize()  # buffers complete before MPI reads them
        for o, partner in remote:
            region = pre + self._region(o, "R", slab)
            shape = field[region].shape
            rbuf = cupy.empty(shape, field.dtype) if aware else np.empty(shape, field.dtype)
            pending.requests.append(mpi.Irecv(rbuf, source=partner, tag=self._tag(o)))
            pending.unpack.append((region, rbuf))
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
        self.phases = []  # slab strategy: later directions, posted after the previous completes

    def _complete(self):
        if self.requests:
            MPI.Request.Waitall(self.requests)
        if self.unpack:  # pragma: no cover - GPU only
            import cupy

            for region, buf in self.unpack:
                self.field[region] = cupy.asarray(buf)
        self.requests, self.unpack, self.keep = [], [], []

    def finish(self):
        """Wait for all messages (and run the remaining slab phases); return the field."""
        self._complete()
        for phase in self.phases:
            phase(self)
            self._complete()
        self.phases = []
        return self.field
