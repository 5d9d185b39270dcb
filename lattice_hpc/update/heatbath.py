"""Checkerboard heatbath and overrelaxation for the Wilson gauge action.

All links of one direction ``mu`` and one parity are independent given the others (their staples
contain only links of other directions or of the opposite parity), so they are updated together;
the halo of ``U_mu`` is refreshed (faces and edges) before the next set.  The random numbers of a
link come from the counter ``(seed, global site, ("heatbath", sweep, mu, parity, subgroup), draw)``,
so a sweep gives the same field for every process grid.

SU(N): Cabibbo and Marinari, Phys. Lett. B119 (1982) 387 -- the link is multiplied from the left by
elements of the ``N(N-1)/2`` SU(2) subgroups in turn.  With ``R = U A`` (``A`` the staple sum) and
``w`` the projection of the subgroup block of ``R`` onto ``k * SU(2)``, the subgroup element is drawn
from ``exp((beta/N) Re Tr(x w))`` as ``x = y w_hat^dag``, ``y`` with density ``exp(2 beta k / N y0)``
(:func:`.samplers.su2_heatbath_element`).  Overrelaxation (Creutz, PRD 36 (1987) 515; Brown and
Woch, PRL 58 (1987) 2394) uses ``x = (w_hat^dag)^2``, which leaves the action unchanged.

U(1): with ``A = |A| e^{i phi}``, the new angle is ``theta = v - phi``, ``v`` von Mises with
``kappa = beta |A|``; overrelaxation reflects ``theta -> -theta - 2 phi``.
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module
from ..gauge.action import staple_sum
from .samplers import quaternion_matrix, su2_heatbath_element, von_mises


def heatbath_sweep(U, beta: float, rng, sweep: int) -> None:
    """Collective: one heatbath update of every link (directions, then parities, in order)."""
    for mu in range(U.ndim):
        for parity in (0, 1):
            update_links(U, beta, mu, parity, "heatbath", rng, ("heatbath", int(sweep), mu, parity))


def overrelax_sweep(U, beta: float) -> None:
    """Collective: one overrelaxation update of every link (microcanonical, no random numbers)."""
    for mu in range(U.ndim):
        for parity in (0, 1):
            update_links(U, beta, mu, parity, "overrelax")


def update_links(U, beta: float, mu: int, parity: int, kind: str, rng=None, purpose=()) -> None:
    """Collective: update all links ``U_mu(x)`` with ``x`` of ``parity``, then refresh their halo.

    ``kind`` is ``"heatbath"`` (needs ``rng`` and ``purpose``) or ``"overrelax"``.
    """
    lat = U.lattice
    xp = U.backend.xp
    mask, sites = lat.parity_sites(parity, xp)
    view = U.U(mu)
    A = staple_sum(U, mu)[mask].astype(np.complex128)
    link = view[mask].astype(np.complex128)
    if U.N == 1:
        new = _update_u1(link, A, beta, kind, rng, purpose, sites)
    else:
        new = _update_sun(link, A, beta, U.N, kind, rng, purpose, sites)
        new = U.group.project(new)
    view[mask] = new.astype(view.dtype)
    U.mark_stale(mu)
    U.refresh(mu, codim=2)


def _uniforms(rng, purpose, sites):
    return lambda todo, n, draw: rng.uniform(purpose, sites[todo], n, draw)


def _update_sun(link, A, beta, N, kind, rng, purpose, sites):
    xp = array_module(link)
    R = link @ A
    sub = 0
    for i in range(N):
        for j in range(i + 1, N):
            r00, r01, r10, r11 = R[:, i, i], R[:, i, j], R[:, j, i], R[:, j, j]
            w = xp.stack([0.5 * (r00 + r11).real, 0.5 * (r01 + r10).imag,
                          0.5 * (r01 - r10).real, 0.5 * (r00 - r11).imag], axis=-1)
            k = xp.sqrt((w * w).sum(axis=-1))
            degenerate = k < 1e-300
            what = w / xp.where(degenerate, 1.0, k)[:, None]
            what[degenerate] = xp.asarray([1.0, 0.0, 0.0, 0.0])
            w_dag = quaternion_matrix(what * xp.asarray([1.0, -1.0, -1.0, -1.0]))
            if kind == "heatbath":
                y = su2_heatbath_element(2.0 * beta * k / N,
                                         _uniforms(rng, tuple(purpose) + (sub,), sites))
                x = quaternion_matrix(y) @ w_dag
            elif kind == "overrelax":
                x = w_dag @ w_dag
            else:
                raise ValueError(f"unknown update {kind!r}")
            for M in (link, R):  # rows i, j <- x applied from the left
                ri, rj = M[:, i, :].copy(), M[:, j, :].copy()
                M[:, i, :] = x[:, 0, 0, None] * ri + x[:, 0, 1, None] * rj
                M[:, j, :] = x[:, 1, 0, None] * ri + x[:, 1, 1, None] * rj
            sub += 1
    return link


def _update_u1(link, A, beta, kind, rng, purpose, sites):
    xp = array_module(link)
    a = A[:, 0, 0]
    phi = xp.angle(a)
    if kind == "heatbath":
        v = von_mises(beta * xp.abs(a), _uniforms(rng, tuple(purpose), sites))
        theta = v - phi
    elif kind == "overrelax":
        theta = -xp.angle(link[:, 0, 0]) - 2.0 * phi
    else:
        raise ValueError(f"unknown update {kind!r}")
    return xp.exp(1j * theta)[:, None, None]
