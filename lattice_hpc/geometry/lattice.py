"""The lattice and this rank's block of it.

Memory layout of site fields (shared with :mod:`lattice_hpc.comm.halo`): arrays have shape
``(*lead, P_{d-1}, ..., P_0, *site)`` with the site axes in reverse direction order (t slowest,
x fastest, the ILDG lexicographic order), each padded by a halo of depth ``h`` on both sides
(``P_mu = L_mu + 2h``).  The interior is ``[h, h + L_mu)`` along every direction.  Physics code never
indexes site axes by hand: it asks :meth:`Lattice.view` for the interior shifted by a vector.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Sequence

import numpy as np

from ..comm import CartGrid, Communicator, HaloExchange, world
from .decomposition import direction_names, parse_dims, resolve_grid


class Lattice:
    """A periodic lattice of global extents ``dims`` decomposed over a process grid.

    Args:
        dims: global extents in direction order (``X,T`` or ``X,Y,Z,T``), or a string ``"8,8,8,8"``.
        grid: process grid (same order), a string ``"1,1,1,2"``, or ``"auto"``.
        comm: communicator of the job (default: :func:`lattice_hpc.comm.world`).

    Construction checks the decomposition on every rank before it communicates (it raises
    :class:`~lattice_hpc.errors.GeometryError`), then creates the Cartesian grid (collective).

    Attributes:
        dims, ndim, grid (a :class:`CartGrid`), local_dims, origin (global coordinates of the
        block's first site), volume, local_volume.
    """

    def __init__(self, dims, grid="auto", comm: Communicator | None = None):
        comm = world() if comm is None else comm
        self.dims = parse_dims(dims, "dims")
        self.ndim = len(self.dims)
        grid_dims = resolve_grid(self.dims, grid, comm.size)
        self.grid = CartGrid(comm, grid_dims)  # collective
        self.local_dims = tuple(L // g for L, g in zip(self.dims, grid_dims))
        self.origin = tuple(c * l for c, l in zip(self.grid.coords, self.local_dims))
        self.volume = math.prod(self.dims)
        self.local_volume = math.prod(self.local_dims)
        self.names = direction_names(self.ndim)
        self._halos: dict = {}
        self._parity_sites: dict = {}

    def __repr__(self):
        return (f"Lattice(dims={self.dims}, grid={self.grid.dims}, local={self.local_dims}, "
                f"rank={self.comm.rank}/{self.comm.size})")

    @property
    def comm(self) -> Communicator:
        """Communicator over the process grid (collectives for reductions go through it)."""
        return self.grid.comm

    @property
    def time_direction(self) -> int:
        return self.ndim - 1

    # -- shapes and views -------------------------------------------------------------------
    def shape(self, depth: int = 0) -> tuple[int, ...]:
        """Memory-order site shape of a local field with halo depth ``depth``."""
        return tuple(L + 2 * depth for L in reversed(self.local_dims))

    def view(self, field, depth: int, shift: Sequence[int] | dict | None = None, lead: int = 0):
        """The interior of ``field`` shifted by ``shift``: entry ``x`` of the result is ``field(x + shift)``.

        ``shift`` is a vector in direction order (or a dict ``{mu: s}``), ``|s_mu| <= depth``.  A
        view, no copy.  Entries at a non-zero shift are halo data: exchange the halo first.
        """
        s = [0] * self.ndim
        if isinstance(shift, dict):
            for mu, v in shift.items():
                s[mu] += v
        elif shift is not None:
            s = list(shift)
        sl = []
        for mu in reversed(range(self.ndim)):
            if abs(s[mu]) > depth:
                raise ValueError(f"shift {s[mu]} in direction {mu} exceeds halo depth {depth}")
            sl.append(slice(depth + s[mu], depth + s[mu] + self.local_dims[mu]))
        return field[(slice(None),) * lead + tuple(sl)]

    def halo(self, depth: int = 1, codim: int | None = None, directions=None,
             strategy: str = "auto") -> HaloExchange:
        """A cached halo-exchange plan (see :class:`lattice_hpc.comm.HaloExchange`)."""
        key = (depth, codim, None if directions is None else tuple(directions), strategy)
        if key not in self._halos:
            self._halos[key] = HaloExchange(self.grid, self.local_dims, depth, codim, directions,
                                            strategy)
        return self._halos[key]

    # -- coordinates ------------------------------------------------------------------------
    @cached_property
    def global_coords(self) -> tuple[np.ndarray, ...]:
        """Global coordinate of every interior site, one int64 array (memory-order shape) per direction."""
        axes = []
        for mu in range(self.ndim):
            c = np.arange(self.origin[mu], self.origin[mu] + self.local_dims[mu], dtype=np.int64)
            shape = [1] * self.ndim
            shape[self.ndim - 1 - mu] = self.local_dims[mu]
            axes.append(np.broadcast_to(c.reshape(shape), self.shape(0)))
        return tuple(axes)

    @cached_property
    def global_index(self) -> np.ndarray:
        """Global lexicographic index of every interior site (x fastest, then y, z, t)."""
        idx = np.zeros(self.shape(0), dtype=np.int64)
        stride = 1
        for mu in range(self.ndim):
            idx += self.global_coords[mu] * stride
            stride *= self.dims[mu]
        return idx

    @cached_property
    def parity(self) -> np.ndarray:
        """0 on even sites (even sum of global coordinates), 1 on odd sites; interior shape."""
        return (sum(self.global_coords) % 2).astype(np.int8)

    def parity_sites(self, parity: int, xp=np):
        """``(mask, sites)`` of the interior sites of ``parity`` as arrays of module ``xp``, cached.

        ``mask`` is the boolean interior mask, ``sites`` their global indices in mask order; cached
        so that updates in a loop do not rebuild them (nor copy them to the device) every time.
        """
        key = (int(parity), xp.__name__)
        if key not in self._parity_sites:
            mask = self.parity == parity
            self._parity_sites[key] = (xp.asarray(mask), xp.asarray(self.global_index[mask]))
        return self._parity_sites[key]

    def block_slices(self, coords: Sequence[int]) -> tuple[slice, ...]:
        """Memory-order slices of the block at grid ``coords`` inside a global (unpadded) array."""
        return tuple(slice(c * L, (c + 1) * L)
                     for c, L in zip(reversed(list(coords)), reversed(self.local_dims)))
