"""Site-major blocks: the bridge between a :class:`GaugeField` and file layouts.

Every file format stores, per site, the links of all directions.  Here a rank's block is a host
array ``(L_t, ..., L_x, ndim, N, N)`` in memory order (t slowest, x fastest, the ILDG order), so
that a block of the file maps onto it without reordering sites.  :func:`block_geometry` gives the
global shape, the start and the shape of this rank's block in that order, as
:class:`lattice_hpc.comm.fileio.BlockFile` wants them.
"""

from __future__ import annotations

import numpy as np

from ..backend import Backend
from ..gauge import GaugeField


def block_geometry(lattice):
    """``(global_shape, start, shape)`` of this rank's block, in memory order (t first, x last)."""
    return (tuple(reversed(lattice.dims)), tuple(reversed(lattice.origin)),
            tuple(reversed(lattice.local_dims)))


def field_to_sites(U: GaugeField) -> np.ndarray:
    """Host array ``(*local memory shape, ndim, N, N)`` of the interior links (a copy)."""
    return np.ascontiguousarray(np.moveaxis(U.backend.asnumpy(U.interior()), 0, -3))


def sites_to_field(lattice, group, sites: np.ndarray, backend: Backend | None = None,
                   depth: int = 1) -> GaugeField:
    """A :class:`GaugeField` (halo refreshed: collective) from a site-major block."""
    backend = backend or Backend("numpy", "double")
    U = GaugeField(lattice, group, backend, depth)
    U.set_interior(backend.asarray(np.moveaxis(sites, -3, 0)))  # converts to the field's dtype
    U.refresh()
    return U

