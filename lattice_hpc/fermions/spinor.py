"""Spinor fields on the decomposed lattice: local arrays ``(L_t, ..., L_x, 4, 3)`` in memory order
(``(L_t, L_x, 2, 1)`` for the 2D Schwinger model: ``site_shape`` of the operator).

Random spinors come from the counter-based generator keyed by the global site, so they do not
depend on the decomposition.  Inner products are reduced over ranks (collective).
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module

SPIN, COLOR = 4, 3


def default_site_shape(ndim: int) -> tuple:
    """``(spins, colours)`` of the fermions of a ``ndim``-dimensional lattice when no operator says
    otherwise: ``(4, 3)`` in 4D (QCD), ``(2, 1)`` in 2D (the Schwinger model)."""
    if ndim == 4:
        return (SPIN, COLOR)
    if ndim == 2:
        return (2, 1)
    raise ValueError(f"spinor fields are defined in 2 and 4 dimensions, not {ndim}")


def random_spinor(lattice, rng, purpose, backend, site_shape=None):
    """Gaussian spinor (unit variance per real component), the same field on every grid.

    ``site_shape``: ``(spins, colours)`` (default :func:`default_site_shape`; pass the
    operator's ``site_shape``)."""
    xp = backend.xp
    shape = tuple(site_shape or default_site_shape(lattice.ndim))
    sites = xp.asarray(lattice.global_index)
    z = rng.normal(tuple(purpose), sites, 2 * shape[0] * shape[1])
    psi = (z[..., 0::2] + 1j * z[..., 1::2]).reshape(lattice.shape(0) + shape)
    return psi.astype(backend.complex)


def point_source(lattice, backend, site=None, spin=0, color=0, site_shape=None):
    """``delta(x, site) delta(s, spin) delta(c, color)`` (``site`` in direction order x, y, z, t;
    default the origin)."""
    xp = backend.xp
    site = (0,) * lattice.ndim if site is None else tuple(site)
    psi = xp.zeros(lattice.shape(0) + tuple(site_shape or default_site_shape(lattice.ndim)),
                   dtype=backend.complex)
    local = [s - o for s, o in zip(site, lattice.origin)]
    if all(0 <= v < L for v, L in zip(local, lattice.local_dims)):
        psi[tuple(reversed(local)) + (spin, color)] = 1.0
    return psi


def inner(lattice, a, b) -> complex:
    """Collective: ``<a, b> = sum_x a(x)^dag b(x)``."""
    xp = array_module(a)
    local = complex(xp.vdot(a, b))
    return complex(lattice.comm.allreduce(np.array([local]))[0])


def gather_spinor(lattice, psi, root: int = 0):
    """Collective: the global spinor field on ``root`` (memory order), ``None`` elsewhere."""
    xp = array_module(psi)
    host = psi.get() if hasattr(psi, "get") and xp is not np else np.asarray(psi)
    blocks = lattice.grid.gather_blocks(host, root)
    if blocks is None:
        return None
    out = np.empty(tuple(reversed(lattice.dims)) + host.shape[lattice.ndim:], dtype=host.dtype)
    for coords, block in blocks:
        out[lattice.block_slices(coords)] = block
    return out


def residual(D, x, b) -> float:
    """Collective: ``|b - D x| / |b|`` (0 for ``b = 0``)."""
    r = b - D.apply(x)
    nb = inner(D.lattice, b, b).real
    return float(np.sqrt(inner(D.lattice, r, r).real / nb)) if nb > 0 else 0.0
