"""The periodic Cartesian process grid.

Directions are numbered in the conventions' order ``0 = x, 1 = y, ..., ndim-1 = t`` and the grid is
written the same way (``--grid 1,1,2,2``).  A rank's block has grid coordinates ``coords`` (same
order).  The grid is always periodic, as the lattice is.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .mpi import Communicator


class CartGrid:
    """A periodic Cartesian grid of processes over a communicator.

    Collective on construction (``MPI_Cart_create`` over ``comm``).  The caller validates the grid
    against the lattice first (:mod:`lattice_hpc.geometry`), so a bad grid stops every rank before
    this collective is entered.

    Attributes:
        dims: grid extents in direction order.
        coords: this rank's grid coordinates.
        comm: :class:`Communicator` over the Cartesian communicator (rank order = grid order,
            last direction fastest, as ``MPI_Cart_create`` with ``reorder=False``).
    """

    def __init__(self, comm: Communicator, dims: Sequence[int]):
        self.dims = tuple(int(d) for d in dims)
        self.ndim = len(self.dims)
        if math.prod(self.dims) != comm.size:
            raise ValueError(f"process grid {self.dims} needs {math.prod(self.dims)} ranks, "
                             f"the communicator has {comm.size}")
        if comm.mpi is not None and comm.size > 1:
            cart = comm.mpi.Create_cart(list(self.dims), periods=[True] * self.ndim, reorder=False)
            self.comm = Communicator(cart)
            self.coords = tuple(cart.Get_coords(cart.Get_rank()))
        else:
            self.comm = Communicator(comm.mpi if comm.mpi is not None else None)
            self.coords = (0,) * self.ndim
        self._rank_cache: dict[tuple, int] = {}
        self._sub_cache: dict[int, Communicator] = {}

    @property
    def rank(self) -> int:
        return self.comm.rank

    @property
    def size(self) -> int:
        return self.comm.size

    def coords_of(self, rank: int) -> tuple[int, ...]:
        """Grid coordinates of ``rank`` (pure: row-major rank order, last direction fastest)."""
        out = []
        for d in reversed(self.dims):
            out.append(rank % d)
            rank //= d
        return tuple(reversed(out))

    def rank_of(self, coords: Sequence[int]) -> int:
        """Rank at grid coordinates ``coords`` (taken periodically).  Pure."""
        r = 0
        for c, d in zip(coords, self.dims):
            r = r * d + (int(c) % d)
        return r

    def rank_at(self, offset: Sequence[int]) -> int:
        """Rank of the block at ``coords + offset`` (periodic).  Pure, cached."""
        key = tuple(offset)
        if key not in self._rank_cache:
            self._rank_cache[key] = self.rank_of([c + o for c, o in zip(self.coords, key)])
        return self._rank_cache[key]

    def sendrecv(self, send_buf: np.ndarray, dest: int, recv_buf: np.ndarray, source: int,
                 tag: int = 0) -> None:
        """Point-to-point exchange of contiguous host buffers (``MPI_Sendrecv``).

        Collective in pairs: ``dest`` must call it with ``source`` = this rank.  On-rank partners copy.
        """
        if dest == self.rank and source == self.rank:
            recv_buf[...] = send_buf
            return
        self.comm.mpi.Sendrecv(send_buf, dest=dest, sendtag=tag, recvbuf=recv_buf, source=source,
                               recvtag=tag)

    def allgather_along(self, direction: int, array: np.ndarray) -> np.ndarray:
        """Collective over the ranks that share every grid coordinate except ``direction``.

        Returns an array of shape ``(dims[direction], *array.shape)`` whose entry ``c`` is the
        ``array`` of the rank at coordinate ``c`` along ``direction``.  Arrays must have the same
        shape and dtype on those ranks.  Host (NumPy) arrays only.
        """
        n = self.dims[direction]
        array = np.ascontiguousarray(array)
        if n == 1:
            return array[None].copy()
        sub = self._sub_cache.get(direction)
        if sub is None:
            remain = [d == direction for d in range(self.ndim)]
            sub = Communicator(self.comm.mpi.Sub(remain))
            self._sub_cache[direction] = sub
        out = np.empty((n,) + array.shape, dtype=array.dtype)
        sub.mpi.Allgather(array, out)
        return out

    def gather_blocks(self, block: np.ndarray, root: int = 0):
        """Collective: send every rank's ``block`` (host array) to ``root``.

        Returns, on ``root``, a list ``[(coords, block), ...]`` over all ranks; ``None`` elsewhere.
        Buffer-based point-to-point messages (no pickling of array data).
        """
        block = np.ascontiguousarray(block)
        if self.size == 1:
            return [(self.coords, block)]
        meta = self.comm.gather((block.shape, block.dtype.str), root=root)
        if self.rank != root:
            self.comm.mpi.Send(block, dest=root, tag=77)
            return None
        out = []
        for r in range(self.size):
            if r == root:
                out.append((self.coords_of(r), block))
                continue
            shape, dt = meta[r]
            buf = np.empty(shape, dtype=np.dtype(dt))
            self.comm.mpi.Recv(buf, source=r, tag=77)
            out.append((self.coords_of(r), buf))
        return out
