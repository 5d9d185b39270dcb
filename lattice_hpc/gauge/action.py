"""The Wilson gauge action, its staples and its force.

``S = beta sum_x sum_{mu<nu} (1 - (1/N) Re Tr P_{mu nu}(x))`` (Wilson, PRD 10 (1974) 2445).  For U(1)
this is ``-beta sum cos theta_P`` up to a constant.

Staple sum: ``A_mu(x) = sum_{nu != mu} [ U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag
+ U_nu(x-nu+mu)^dag U_mu(x-nu)^dag U_nu(x-nu) ]``, so that the part of ``S`` that depends on
``U_mu(x)`` is ``-(beta/N) Re Tr(U_mu(x) A_mu(x))``.

Force convention (used by the HMC of later issues): with ``U -> exp(eps X) U`` for an algebra field
``X``, ``dS/d eps = sum_{x,mu} Re Tr(X_mu(x) F_mu(x))`` where
``F_mu(x) = -(beta/N) P_TA(U_mu(x) A_mu(x))`` and ``P_TA`` is the group's algebra projection.
In the metric ``<X, Y> = -Tr(X Y)`` this makes ``F = -grad S``, and the HMC momentum moves as
``dP/dt = F``.
"""

from __future__ import annotations

from .. import switches
from ..errors import BackendError
from ..groups.linalg import dagger
from .observables import plaquette_plane_sums


def staple_sum(U, mu: int):
    """``A_mu(x)`` over the interior (needs the halo fresh to codim 2)."""
    total = None
    for nu in range(U.ndim):
        if nu == mu:
            continue
        up = U.U(nu, {mu: 1}) @ dagger(U.U(nu) @ U.U(mu, {nu: 1}))
        down = dagger(U.U(mu, {nu: -1}) @ U.U(nu, {nu: -1, mu: 1})) @ U.U(nu, {nu: -1})
        total = up + down if total is None else total + up + down
    return total


def wilson_action(U, beta: float) -> float:
    """Collective: ``S = beta sum_x sum_{mu<nu} (1 - (1/N) Re Tr P_{mu nu}(x))``."""
    sums = plaquette_plane_sums(U)
    nplanes = len(sums)
    return float(beta * (U.lattice.volume * nplanes - sums.sum() / U.N))


def gauge_force(U, beta: float, kernel: str = "auto"):
    """``F_mu(x) = -(beta/N) P_TA(U_mu(x) A_mu(x))``, shape ``(ndim, *local, N, N)``.

    Needs the halo fresh to codim 2.  See the module docstring for the sign convention.
    ``kernel="auto"`` uses the compiled kernel (:mod:`.compiled_force`) for SU(3) in 4D on NumPy
    when a C++ compiler works and ``$LATTICE_HPC_KERNEL`` is not ``reference``; ``"reference"``
    this function's array-module code.
    """
    if kernel == "auto" and switches.get("LATTICE_HPC_KERNEL") != "reference":
        from .compiled_force import compiled_gauge_force, usable

        if usable(U):
            try:
                return compiled_gauge_force(U, beta)
            except BackendError:
                pass  # no compiler: the reference below
    xp = U.backend.xp
    return xp.stack([-(beta / U.N) * U.group.project_algebra(U.U(mu) @ staple_sum(U, mu))
                     for mu in range(U.ndim)])
