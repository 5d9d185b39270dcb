"""Clover field strength, the clover energy density and the topological charge (CONVENTIONS.md).

Clover field strength (the same ``F`` as the clover term of :mod:`lattice_hpc.fermions.wilson`
and openQCD's ``ftensor``)::

    Q_{mu nu}(x) = U_mu(x) U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag          (the four plaquette
                 + U_nu(x) U_mu(x+nu-mu)^dag U_nu(x-mu)^dag U_mu(x-mu)       leaves at x in the
                 + U_mu(x-mu)^dag U_nu(x-mu-nu)^dag U_mu(x-mu-nu) U_nu(x-nu)  (mu, nu) plane,
                 + U_nu(x-nu)^dag U_mu(x-nu) U_nu(x+mu-nu) U_mu(x)^dag        all counter-clockwise)

    F_{mu nu}(x) = (1/8) (Q_{mu nu}(x) - Q_{nu mu}(x)) = (1/8) (Q_{mu nu}(x) - Q_{mu nu}(x)^dag).

``F`` is anti-Hermitian; it is an element of u(N), not su(N) (as openQCD's ``ftensor``: its trace
is of order ``a^6`` for SU(3) and vanishes for SU(2)).  ``traceless=True`` subtracts ``Tr F / N``
(the su(N) projection of Grid and of Chroma's traceless field strength) for SU(N); for U(1) the
option changes nothing.  With links ``U_mu(x) = exp(a A_mu(x))``, ``F_{mu nu} = a^2 G_{mu nu} +
O(a^4)`` with ``G_{mu nu} = d_mu A_nu - d_nu A_mu + [A_mu, A_nu]`` anti-Hermitian (Luscher's ``G``).

Energy density (Luscher, arXiv:1006.4518, with ``G = G^a T^a``, ``Tr T^a T^b = -delta_ab / 2``)::

    E(x) = (1/4) sum_{mu,nu} G^a_{mu nu} G^a_{mu nu} = -(1/2) sum_{mu,nu} Tr F_{mu nu} F_{mu nu}
         = -sum_{mu<nu} Tr F_{mu nu}(x)^2  >= 0,

reported as its average over the sites (``<E> = (1/V) sum_x E(x)``).

Topological charge density, 4D (sign written out: ``F`` is the anti-Hermitian clover field)::

    q(x) = -(1/(32 pi^2)) eps_{mu nu rho sigma} Tr F_{mu nu}(x) F_{rho sigma}(x)
         = -(1/(4 pi^2)) Re Tr[ F_xy F_zt - F_xz F_yt + F_xt F_yz ](x),     eps_{xyzt} = +1.

This is CONVENTIONS' ``(1/32 pi^2) eps Tr F F`` read with the Hermitian field strength
``F_h = i F`` (``Tr F_h F_h = -Tr F F``); it is Luscher's continuum ``Q = -(1/32 pi^2) int eps Tr G G``
and the textbook ``(1/32 pi^2) int F^a F~^a``: a self-dual field (``F_xy = F_zt`` ...) has ``Q > 0``.
The orientation is ``eps_{xyzt} = +1`` with time last (CONVENTIONS' direction order, Chroma's and
the Euclidean ``x_4``); a code that labels time 0 and sets ``eps_{0123} = +1`` has the opposite
orientation.  Check: the abelian constant-flux field ``exp(i theta H)``, ``H = diag(1, -1, 0)``, with
``n_1`` flux quanta through every xy plane and ``n_2`` through every zt plane has
``Q = V sin(phi_1) sin(phi_2) / (2 pi^2) -> 2 n_1 n_2`` (``phi_1 = 2 pi n_1 / (L_x L_y)``).

2D U(1): the geometric charge of CONVENTIONS, ``q(x) = arg(P_xt(x)) / (2 pi)`` with ``arg`` in
``(-pi, pi]``, an integer in total on any periodic lattice.

``Q = sum_x q(x)`` is a sum over the whole lattice (one reduction over the lattice communicator).
Every function here reads shifted links and needs the halo fresh to codim 2 (``U.refresh()``).
"""

from __future__ import annotations

import numpy as np

from ..groups.linalg import dagger, retrace, trace


def clover_leaves(U, mu: int, nu: int):
    """``Q_{mu nu}(x)``: the four plaquette leaves at ``x`` in the ``(mu, nu)`` plane (interior)."""
    def u(d, **shift):
        s = {}
        for name, v in shift.items():
            s[{"m": mu, "n": nu}[name]] = v
        return U.U(d, s or None)

    um, un = u(mu), u(nu)
    um_m, un_m = u(mu, m=-1), u(nu, m=-1)          # U(x - mu)
    um_n, un_n = u(mu, n=-1), u(nu, n=-1)          # U(x - nu)
    return (um @ u(nu, m=1) @ dagger(un @ u(mu, n=1))
            + un @ dagger(un_m @ u(mu, m=-1, n=1)) @ um_m
            + dagger(u(nu, m=-1, n=-1) @ um_m) @ u(mu, m=-1, n=-1) @ un_n
            + dagger(un_n) @ um_n @ u(nu, m=1, n=-1) @ dagger(um))


def clover_field_strength(U, mu: int, nu: int, traceless: bool = False):
    """``F_{mu nu}(x) = (Q_{mu nu} - Q_{mu nu}^dag) / 8`` over the interior (see the module docstring).

    ``traceless=True`` removes ``Tr F / N`` (SU(N) only; U(1) is unchanged).
    """
    Q = clover_leaves(U, mu, nu)
    F = (Q - dagger(Q)) / 8.0
    if traceless and U.N > 1:
        tr = trace(F) / U.N
        for i in range(U.N):
            F[..., i, i] -= tr
    return F


def field_strengths(U, traceless: bool = False) -> dict:
    """``{(mu, nu): F_{mu nu}}`` for the ``ndim (ndim - 1) / 2`` planes ``mu < nu``."""
    return {(mu, nu): clover_field_strength(U, mu, nu, traceless)
            for mu in range(U.ndim) for nu in range(mu + 1, U.ndim)}


def _energy_local(F: dict):
    """``E(x) = -sum_{mu<nu} Re Tr F_{mu nu}(x)^2`` over the interior."""
    out = None
    for f in F.values():
        e = -retrace(f @ f)
        out = e if out is None else out + e
    return out


def _charge_local(F: dict):
    """4D ``q(x) = -(1/4 pi^2) Re Tr[F_01 F_23 - F_02 F_13 + F_03 F_12]`` over the interior."""
    s = (retrace(F[0, 1] @ F[2, 3]) - retrace(F[0, 2] @ F[1, 3]) + retrace(F[0, 3] @ F[1, 2]))
    return s * (-1.0 / (4.0 * np.pi ** 2))


def _geometric_charge_local(U):
    """2D U(1): ``arg(P_01(x)) / (2 pi)``, ``arg`` in ``(-pi, pi]``."""
    xp = U.backend.xp
    P = (U.U(0) @ U.U(1, {0: 1})) @ dagger(U.U(1) @ U.U(0, {1: 1}))
    a = xp.angle(P[..., 0, 0])
    a = xp.where(a <= -np.pi, a + 2.0 * np.pi, a)
    return a / (2.0 * np.pi)


def _check_charge_defined(U):
    if U.ndim == 2 and U.N == 1:
        return "geometric"
    if U.ndim == 4:
        return "clover"
    raise ValueError(f"topological charge is defined for 4D fields and for 2D U(1) "
                     f"(got {U.ndim}D {U.group.name})")


def energy_density_clover(U, traceless: bool = False) -> float:
    """Collective: ``<E> = (1/V) sum_x -sum_{mu<nu} Tr F_{mu nu}(x)^2`` with the clover ``F``."""
    local = float(_energy_local(field_strengths(U, traceless)).sum())
    return U.lattice.comm.allreduce(local) / U.lattice.volume


def topological_charge_density(U, traceless: bool = False):
    """``q(x)`` on this rank's interior sites (memory-order shape, on the backend); not collective.

    4D: the clover definition of the module docstring; 2D U(1): ``arg P(x) / (2 pi)``.
    """
    if _check_charge_defined(U) == "geometric":
        return _geometric_charge_local(U)
    return _charge_local(field_strengths(U, traceless))


def topological_charge(U, traceless: bool = False) -> float:
    """Collective: ``Q = sum_x q(x)`` over the whole lattice."""
    local = float(topological_charge_density(U, traceless).sum())
    return float(U.lattice.comm.allreduce(local))


def clover_observables(U, traceless: bool = False) -> tuple[float, float | None]:
    """Collective: ``(<E>, Q)`` from one computation of the clover field strengths.

    ``Q`` is the 4D clover charge, the geometric charge in 2D U(1), ``None`` otherwise.
    """
    F = field_strengths(U, traceless)
    e = float(_energy_local(F).sum())
    if U.ndim == 4:
        kind, q = "clover", float(_charge_local(F).sum())
    elif U.ndim == 2 and U.N == 1:
        kind, q = "geometric", float(_geometric_charge_local(U).sum())
    else:
        kind, q = None, 0.0
    e, q = U.lattice.comm.allreduce(np.array([e, q]))
    return float(e) / U.lattice.volume, (float(q) if kind else None)
