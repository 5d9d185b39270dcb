"""Gauge transformations: ``U_mu(x) -> g(x) U_mu(x) g(x+mu)^dag`` (CONVENTIONS.md)."""

from __future__ import annotations

from ..groups.linalg import dagger
from .field import GaugeField


def random_gauge_transformation(lattice, group, rng, backend, purpose=("gauge_transformation",)):
    """Haar-random ``g(x)`` on the interior sites (decomposition independent), shape ``(*local, N, N)``."""
    xp = backend.xp
    sites = xp.asarray(lattice.global_index)
    if group.N == 1:
        return group.haar_from_uniform(rng.uniform(tuple(purpose), sites, 1)[..., 0], backend.complex)
    return group.haar(rng.normal(tuple(purpose), sites, group.haar_normals), backend.complex)


def gauge_transform(U: GaugeField, g) -> GaugeField:
    """Collective: a new field with links ``g(x) U_mu(x) g(x+mu)^dag``; ``g`` given on the interior.

    ``g`` is copied into a padded site field and its faces are exchanged (the documented
    communication point), so ``g(x+mu)`` is available at the block boundary.
    """
    lat = U.lattice
    xp = U.backend.xp
    gp = xp.zeros(lat.shape(1) + (U.N, U.N), dtype=U.links.dtype)
    lat.view(gp, 1)[...] = g
    lat.halo(1, codim=1).exchange(gp)
    out = GaugeField(lat, U.group, U.backend, U.depth)
    new = [g @ U.U(mu) @ dagger(lat.view(gp, 1, {mu: 1})) for mu in range(U.ndim)]
    out.set_interior(xp.stack(new))
    out.refresh()
    return out
