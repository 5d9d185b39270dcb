"""Geometry: the global lattice, the process grid resolution, and this rank's block.

- :mod:`.decomposition` -- parse and validate ``--grid`` against the lattice (pure; no MPI).
- :mod:`.lattice`       -- :class:`Lattice`: local block, global coordinates, parity, halo views.
"""

from .decomposition import parse_dims, resolve_grid
from .lattice import Lattice

__all__ = ["Lattice", "parse_dims", "resolve_grid"]
