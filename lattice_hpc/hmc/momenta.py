"""HMC momenta: Gaussian fields in the Lie algebra, their kinetic energy, and the link update.

Normalisation (one place, used by every part of the HMC): a momentum is ``P_mu(x) = sum_a p_a T^a``
with the group's generators ``T^a`` (``-Tr(T^a T^b) = delta_ab / 2``, :meth:`SUN.algebra`) and
``p_a`` independent standard normals, so the kinetic energy and its distribution are::

    K = (1/2) sum_{x, mu, a} p_a^2 = -sum_{x, mu} Tr(P_mu(x)^2),       P ~ exp(-K).

With the force convention of :mod:`lattice_hpc.gauge.action` (``U -> exp(eps X) U`` changes an
action by ``eps Re Tr(X F)``), Hamilton's equations for ``H = K + S`` are::

    dU/dt = P U,        dP/dt = F / 2,

since ``dK/dt = -2 Re Tr(P dP/dt) = -Re Tr(P F) = -dS/dt``.  :func:`momentum_step` and
:func:`link_step` are the two elementary maps of every integrator.

The draw for ``(x, mu)`` is keyed by the global site and the purpose ``("momenta", trajectory, mu)``
of the counter-based generator, so the momenta are the same field on every process grid.
"""

from __future__ import annotations

from ..groups.linalg import trace


def draw_momenta(U, rng, trajectory: int):
    """Gaussian momenta ``(ndim, *local, N, N)`` for trajectory number ``trajectory``."""
    lat, xp, group = U.lattice, U.backend.xp, U.group
    sites = xp.asarray(lat.global_index)
    out = [group.algebra(rng.normal(("momenta", int(trajectory), mu), sites, group.dim))
           for mu in range(lat.ndim)]
    return xp.stack(out).astype(U.backend.complex)


def kinetic_energy(lattice, P) -> float:
    """Collective: ``K = -sum Tr(P^2)`` (real)."""
    local = float(-trace(P @ P).real.sum())
    return float(lattice.comm.allreduce(local))


def momentum_step(P, F, dt: float) -> None:
    """In place: ``P += (dt / 2) F`` (Hamilton's equation for the force convention above)."""
    P += (0.5 * dt) * F


def link_step(U, P, dt: float) -> None:
    """In place: ``U_mu(x) -> exp(dt P_mu(x)) U_mu(x)`` on the interior; the halo becomes stale."""
    lat, group = U.lattice, U.group
    links = lat.view(U.links, U.depth, None, lead=1)
    links[...] = group.exp(dt * P) @ links
    U.mark_stale()
