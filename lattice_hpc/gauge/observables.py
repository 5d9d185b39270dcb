"""Gauge observables (CONVENTIONS.md).

- Plaquette ``P_{mu nu}(x) = U_mu(x) U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag``; reported as
  ``(1/N) Re Tr P`` averaged over sites and the ``ndim(ndim-1)/2`` planes; spatial and temporal
  parts average over the planes without / with the time direction.
- Link trace ``(1/N) Re Tr U`` averaged over sites and directions.
- Polyakov loop ``(1/N) Tr prod_t U_T(x, t)`` averaged over spatial sites (complex).

Local sums are reduced over ranks with the lattice communicator (the documented communication
points are :meth:`Communicator.allreduce` and :meth:`CartGrid.allgather_along`).
"""

from __future__ import annotations

import numpy as np

from ..groups.linalg import dagger, retrace, trace


def plaquette_field(U, mu: int, nu: int):
    """``P_{mu nu}(x)`` over the interior (needs the halo fresh to codim 1)."""
    return (U.U(mu) @ U.U(nu, {mu: 1})) @ dagger(U.U(nu) @ U.U(mu, {nu: 1}))


def plaquette_plane_sums(U) -> np.ndarray:
    """Collective: ``sum_x Re Tr P_{mu nu}(x)`` over the whole lattice, one entry per plane mu < nu."""
    local = np.array([float(retrace(plaquette_field(U, mu, nu)).sum())
                      for mu in range(U.ndim) for nu in range(mu + 1, U.ndim)])
    return U.lattice.comm.allreduce(local)


def planes(ndim: int):
    return [(mu, nu) for mu in range(ndim) for nu in range(mu + 1, ndim)]


def plaquette(U) -> dict:
    """Collective: ``{"plaquette", "plaquette_spatial", "plaquette_temporal"}`` (spatial is ``None`` in 2D)."""
    sums = plaquette_plane_sums(U) / (U.lattice.volume * U.N)
    t = U.ndim - 1
    temporal = [s for (mu, nu), s in zip(planes(U.ndim), sums) if t in (mu, nu)]
    spatial = [s for (mu, nu), s in zip(planes(U.ndim), sums) if t not in (mu, nu)]
    return {
        "plaquette": float(np.mean(sums)),
        "plaquette_spatial": float(np.mean(spatial)) if spatial else None,
        "plaquette_temporal": float(np.mean(temporal)),
    }


def link_trace(U) -> float:
    """Collective: ``(1/N) Re Tr U`` averaged over sites and directions."""
    local = float(sum(retrace(U.U(mu)).sum() for mu in range(U.ndim)))
    return U.lattice.comm.allreduce(local) / (U.lattice.volume * U.ndim * U.N)


def polyakov_loop(U) -> complex:
    """Collective: ``(1/N) Tr prod_t U_T(x, t)`` averaged over spatial sites.

    Each rank multiplies its own time slices in order; the ordered product over the blocks along
    the time direction comes from :meth:`CartGrid.allgather_along`.
    """
    lat = U.lattice
    t = lat.time_direction
    Ut = U.U(t)  # memory axis 0 is the time direction
    prod = Ut[0]
    for i in range(1, Ut.shape[0]):
        prod = prod @ Ut[i]
    blocks = lat.grid.allgather_along(t, U.backend.asnumpy(prod))
    total = blocks[0]
    for b in blocks[1:]:
        total = total @ b
    local = complex(trace(total).sum()) if lat.grid.coords[t] == 0 else 0j
    spatial_volume = lat.volume // lat.dims[t]
    return complex(lat.comm.allreduce(local)) / (spatial_volume * U.N)


def measure_all(U) -> dict:
    """Collective: plaquettes, link trace and Polyakov loop (``[re, im]``) in one dictionary."""
    out = plaquette(U)
    out["link_trace"] = link_trace(U)
    p = polyakov_loop(U)
    out["polyakov"] = [p.real, p.imag]
    return out
