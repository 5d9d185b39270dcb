"""Two-flavour Wilson(-clover) pseudofermions, even/odd preconditioned, Hasenbusch ratios.

**Determinant.**  Ordering sites by parity, ``D = [[A_ee, -k H_eo], [-k H_oe, A_oo]]`` and the
Schur complement on the even sites ``D_hat = A_ee - k^2 H_eo A_oo^{-1} H_oe``
(:mod:`lattice_hpc.fermions.evenodd`) give ``det D = det A_oo det D_hat``: the block that is
inverted is the odd one, so it is the odd clover blocks that appear
(``tests/test_pseudofermions.py`` checks this against dense determinants, and that the even
blocks would not do).  Two degenerate flavours weigh a configuration by
``det(D^dag D) = det(A_oo)^2 det(D_hat^dag D_hat)``, i.e. the effective action::

    S_eff = -2 log det A_oo  -  log det(D_hat^dag D_hat)
          = CloverLogDet    +  phi^dag (D_hat^dag D_hat)^{-1} phi     (phi on even sites)

``A`` is Hermitian, so ``det A_oo`` is real; the two-flavour weight only needs ``det(A_oo)^2``, so
``log |det A_oo|`` is used (per site, both chiral blocks).  For Wilson fermions ``A = 1`` and the
log det term is absent.

**Hasenbusch** (hep-lat/0107019; Hasenbusch and Jansen, hep-lat/0211042): with a heavier operator
``W`` (``kappa_h < kappa``, same ``c_sw``) and its Schur complement ``W_hat``,
``det(D_hat^dag D_hat) = det(W_hat^dag W_hat) * det[(D_hat^dag D_hat) / (W_hat^dag W_hat)]``, so::

    S_eff = -2 log det A_oo(kappa)                   CloverLogDet(kappa)   (once, light kappa)
          + phi1^dag (W_hat^dag W_hat)^{-1} phi1      TwoFlavour(kappa_h, include_logdet=False)
          + phi2^dag W_hat (D_hat^dag D_hat)^{-1} W_hat^dag phi2   HasenbuschRatio(kappa, kappa_h)

(the clover blocks depend on kappa: the log det is the light operator's, since ``det D`` is what
is simulated; the heavy operator's ``A_oo`` never enters).  Several ratios chain the same way
(:func:`two_flavour_monomials`).  The gain is in the integrator: the ratio's force is small but
each evaluation needs a light solve, so it goes on the coarsest level with few steps; the heavy
term's force is large but its solves are cheap, so it goes one level finer (one step inside each
outer step is usually enough), the gauge action finer still.  On 4^4, beta = 1, kappa = 0.22
(``tools/hasenbusch_scan.py``) the ratio at kappa_h = 0.17 with 6 or 7 outer steps matches the
acceptance of 16 plain steps at about 0.6 to 0.7 of the CG iterations.

**Heatbath.**  ``eta`` is complex Gaussian with ``P(eta) ~ exp(-eta^dag eta)`` on the even sites,
i.e. ``<|eta_i|^2> = 1`` per colour-spin component (real and imaginary parts of variance 1/2; this
is :func:`lattice_hpc.fermions.random_spinor` divided by ``sqrt 2``, which has unit variance per
*real* component), drawn with purpose ``("pseudofermion", name, trajectory)`` keyed by the global
site, so it is the same field on every process grid.  Then ``phi = D_hat^dag eta`` (TwoFlavour)
and ``phi = W_hat^{-dag} D_hat^dag eta`` (ratio, one solve), so that right after a refresh the
action equals ``eta^dag eta`` exactly.

**Forces** (:mod:`.fermion_force` for ``dD_hat``).  With ``psi = (M^dag M)^{-1} v`` and
``chi = M psi``:

- TwoFlavour, ``S = phi^dag (M^dag M)^{-1} phi`` (``M = D_hat``, ``v = phi``):
  ``dS = -2 Re <chi, dM psi>``;
- ratio, ``S = v^dag (M^dag M)^{-1} v`` with ``v = W_hat^dag phi``:
  ``dS = 2 Re <phi, dW_hat psi> - 2 Re <chi, dM psi>``;
- CloverLogDet, ``S = -2 log det A_oo``: ``dS = -2 Tr(A_oo^{-1} dA_oo)``.

**Solves.**  The action and the force solve ``M^dag M psi = v`` by CG (``force_tol`` for the
force, ``action_tol`` for the Metropolis action; the action ``<v, psi>`` of a CG iterate is off by
``r^dag (M^dag M)^{-1} r``, second order in the residual); the ratio's refresh solves
``W_hat^dag phi = D_hat^dag eta`` by CGNE to ``action_tol``.  A failed solve raises
:class:`lattice_hpc.solvers.SolverError` naming the monomial, except a force solve that
stagnates at the rounding floor just above ``force_tol`` (``_Monomial._solve_normal``).  The
Dirac operator is rebuilt from the current links at each call (one clover construction).
``stats``: solves, iterations, solver seconds, the count and seconds of refreshes, actions and
forces, and the inexact forces since ``reset_stats()``.

Every method is collective (reductions through ``lattice.comm`` and :func:`fermions.spinor.inner`,
the gauge halo through ``U.refresh()`` inside the clover construction).
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..fermions import SchurOperator, WilsonDirac, inner, random_spinor
from ..solvers import SolverError, cg, cgne
from .fermion_force import DiracDerivative

EVEN, ODD = 0, 1


def gaussian_source(lattice, rng, purpose, backend, parity: int = EVEN, site_shape=None):
    """``eta`` with ``P(eta) ~ exp(-eta^dag eta)`` on the sites of ``parity``, zero elsewhere.

    Each complex component has ``<|eta_i|^2> = 1`` (real and imaginary parts of variance 1/2).
    The same field on every process grid (keyed by purpose and global site).  ``site_shape``:
    ``(spins, colours)``, the operator's :attr:`~lattice_hpc.fermions.WilsonDirac.site_shape`
    (default: :func:`~lattice_hpc.fermions.spinor.default_site_shape` of the lattice).
    """
    xp = backend.xp
    eta = random_spinor(lattice, rng, purpose, backend, site_shape) * (1.0 / math.sqrt(2.0))
    return eta * lattice.parity_sites(parity, xp)[0][..., None, None]


def clover_logdet(D, parity: int = ODD) -> float:
    """Collective: ``log |det A_pp| = sum_{x of parity} sum_b log |det A_b(x)|`` (0 for Wilson)."""
    if D.clover is None:
        return 0.0
    xp = D.xp
    _, logabs = xp.linalg.slogdet(D.clover)
    mask = D.lattice.parity_sites(parity, xp)[0]
    local = float((logabs.sum(axis=-1) * mask).sum())
    return float(D.lattice.comm.allreduce(local))


class _Adjoint:
    """``op^dag`` with the solver protocol (for CGNE on ``op^dag x = b``)."""

    def __init__(self, op):
        self.op, self.lattice = op, op.lattice

    def zeros(self):
        return self.op.zeros()

    def apply(self, x):
        return self.op.apply_dagger(x)

    def apply_dagger(self, x):
        return self.op.apply(x)


class _Monomial:
    """Shared bookkeeping: operator construction, solves with statistics, timers."""

    def __init__(self, name, csw, bc, kernel, force_tol, action_tol, maxiter):
        self.name = str(name)
        self.csw = float(csw)
        self.bc = None if bc is None else tuple(bc)
        self.kernel = kernel
        self.force_tol, self.action_tol = float(force_tol), float(action_tol)
        self.maxiter = int(maxiter)
        self.reset_stats()

    def reset_stats(self) -> None:
        self.stats = {"refreshes": 0, "refresh_seconds": 0.0, "actions": 0, "action_seconds": 0.0,
                      "forces": 0, "force_seconds": 0.0, "solves": 0, "iterations": 0,
                      "max_iterations": 0, "solver_seconds": 0.0, "inexact_forces": 0,
                      "worst_force_residual": 0.0}

    _COUNTERS = {"refresh": "refreshes", "action": "actions", "force": "forces"}

    def _count(self, what, t0):
        self.stats[self._COUNTERS[what]] += 1
        self.stats[what + "_seconds"] += time.perf_counter() - t0

    def _dirac(self, U, kappa):
        return WilsonDirac(U, kappa, self.csw, self.bc, self.kernel)  # collective when csw != 0

    def _record(self, res):
        self.stats["solves"] += 1
        self.stats["iterations"] += res.iterations
        self.stats["max_iterations"] = max(self.stats["max_iterations"], res.iterations)
        self.stats["solver_seconds"] += res.seconds

    #: a force solve that stagnates below ``FORCE_SLACK * force_tol`` is used as it is
    FORCE_SLACK = 10.0

    def _solve_normal(self, S, b, tol, what):
        """``psi = (S^dag S)^{-1} b`` by CG.

        A force solve that stagnates at the rounding floor of an ill-conditioned ``S^dag S`` (near
        kappa_c) with a true residual below ``FORCE_SLACK * tol`` is used as it is, and counted in
        ``stats["inexact_forces"]`` (with the largest such residual): the force's accuracy only
        moves the acceptance, never the exactness, since it is a deterministic function of the
        links (zero start vector, the same collective branches on every rank), so the molecular
        dynamics stays reversible and area-preserving.  Action and refresh solves never relax.
        """
        try:
            res = cg(S, b, tol=tol, maxiter=self.maxiter, apply=S.normal)
        except SolverError as exc:
            r = exc.result
            at_floor = math.isfinite(r.true_residual) and r.true_residual < self.FORCE_SLACK * tol
            if what == "force" and at_floor:
                self.stats["inexact_forces"] += 1
                self.stats["worst_force_residual"] = max(self.stats["worst_force_residual"],
                                                         r.true_residual)
                self._record(r)
                return r.x
            raise SolverError(f"monomial {self.name!r} ({what}, kappa={S.kappa}): {exc}",
                              exc.result) from exc
        self._record(res)
        return res.x

    def _solve_adjoint(self, S, b, tol, what):
        """``x = S^{-dag} b`` by CGNE on ``S^dag x = b``."""
        try:
            res = cgne(_Adjoint(S), b, tol=tol, maxiter=self.maxiter)
        except SolverError as exc:
            raise SolverError(f"monomial {self.name!r} ({what}, kappa={S.kappa}): {exc}",
                              exc.result) from exc
        self._record(res)
        return res.x

    def _need_phi(self):
        if getattr(self, "phi", None) is None:
            raise RuntimeError(f"monomial {self.name!r}: refresh() must draw the pseudofermion "
                               "before action() or force()")

    def purpose(self, trajectory: int) -> tuple:
        """The random-number purpose of the pseudofermion source of ``trajectory``."""
        return ("pseudofermion", self.name, int(trajectory))


class TwoFlavour(_Monomial):
    """``S = phi^dag (D_hat^dag D_hat)^{-1} phi  [- 2 log|det A_oo|  if include_logdet]``.

    Args:
        kappa, csw, bc, kernel: the operator (:class:`~lattice_hpc.fermions.WilsonDirac`).
        force_tol, action_tol: CG tolerances (relative residual) of force and action solves.
        name: monomial name (and part of the random-number purpose).
        include_logdet: add this operator's clover log det (once per simulated determinant: set
            False for the heavy operator of a Hasenbusch chain, :func:`two_flavour_monomials`;
            ignored for Wilson fermions, ``csw = 0``).
        maxiter: CG iteration limit.
    """

    def __init__(self, kappa, csw=0.0, bc=None, kernel="auto", force_tol=1e-10, action_tol=1e-12,
                 name="pf", include_logdet=True, maxiter=10_000):
        super().__init__(name, csw, bc, kernel, force_tol, action_tol, maxiter)
        self.kappa = float(kappa)
        self.include_logdet = bool(include_logdet) and self.csw != 0
        self.phi = None

    def refresh(self, U, rng, trajectory: int) -> None:
        t0 = time.perf_counter()
        D = self._dirac(U, self.kappa)
        eta = gaussian_source(U.lattice, rng, self.purpose(trajectory), U.backend,
                              site_shape=D.site_shape)
        self.phi = SchurOperator(D).apply_dagger(eta)
        self._count("refresh", t0)

    def action(self, U) -> float:
        self._need_phi()
        t0 = time.perf_counter()
        D = self._dirac(U, self.kappa)
        psi = self._solve_normal(SchurOperator(D), self.phi, self.action_tol, "action")
        S = inner(U.lattice, self.phi, psi).real
        if self.include_logdet:
            S -= 2.0 * clover_logdet(D, ODD)
        self._count("action", t0)
        return float(S)

    def force(self, U):
        self._need_phi()
        t0 = time.perf_counter()
        D = self._dirac(U, self.kappa)
        M = SchurOperator(D)
        psi = self._solve_normal(M, self.phi, self.force_tol, "force")
        chi = M.apply(psi)
        acc = DiracDerivative(U, D.bc)
        acc.add_schur(D, chi, psi, -2.0)
        if self.include_logdet:
            acc.add_logdet(D, -2.0, ODD)
        F = acc.force()
        self._count("force", t0)
        return F


class HasenbuschRatio(_Monomial):
    """``S = phi^dag W_hat (D_hat^dag D_hat)^{-1} W_hat^dag phi`` (``W``: ``kappa_heavy < kappa``).

    Represents ``det(D_hat^dag D_hat) / det(W_hat^dag W_hat)``; no clover log det (see the module
    docstring).  Arguments as :class:`TwoFlavour`.
    """

    def __init__(self, kappa, kappa_heavy, csw=0.0, bc=None, kernel="auto", force_tol=1e-10,
                 action_tol=1e-12, name="pf_ratio", maxiter=10_000):
        super().__init__(name, csw, bc, kernel, force_tol, action_tol, maxiter)
        self.kappa, self.kappa_heavy = float(kappa), float(kappa_heavy)
        if not self.kappa_heavy < self.kappa:
            raise ValueError(f"HasenbuschRatio {name!r}: kappa_heavy ({kappa_heavy}) must be below "
                             f"kappa ({kappa}): the preconditioner is the heavier operator")
        self.phi = None

    def refresh(self, U, rng, trajectory: int) -> None:
        t0 = time.perf_counter()
        D, W = self._dirac(U, self.kappa), self._dirac(U, self.kappa_heavy)
        eta = gaussian_source(U.lattice, rng, self.purpose(trajectory), U.backend,
                              site_shape=D.site_shape)
        b = SchurOperator(D).apply_dagger(eta)
        self.phi = self._solve_adjoint(SchurOperator(W), b, self.action_tol, "refresh")
        self._count("refresh", t0)

    def action(self, U) -> float:
        self._need_phi()
        t0 = time.perf_counter()
        D, W = self._dirac(U, self.kappa), self._dirac(U, self.kappa_heavy)
        v = SchurOperator(W).apply_dagger(self.phi)
        psi = self._solve_normal(SchurOperator(D), v, self.action_tol, "action")
        S = inner(U.lattice, v, psi).real
        self._count("action", t0)
        return float(S)

    def force(self, U):
        self._need_phi()
        t0 = time.perf_counter()
        D, W = self._dirac(U, self.kappa), self._dirac(U, self.kappa_heavy)
        M = SchurOperator(D)
        v = SchurOperator(W).apply_dagger(self.phi)
        psi = self._solve_normal(M, v, self.force_tol, "force")
        chi = M.apply(psi)
        acc = DiracDerivative(U, D.bc)
        acc.add_schur(W, self.phi, psi, 2.0)
        acc.add_schur(D, chi, psi, -2.0)
        F = acc.force()
        self._count("force", t0)
        return F


class CloverLogDet(_Monomial):
    """``S = -2 log |det A_oo|`` of the clover operator at ``kappa, csw`` (no auxiliary field)."""

    def __init__(self, kappa, csw, kernel="auto", name="clover_logdet"):
        super().__init__(name, csw, None, kernel, 0.0, 0.0, 0)
        self.kappa = float(kappa)
        if self.csw == 0:
            raise ValueError(f"CloverLogDet {name!r}: needs csw != 0 (A = 1 for Wilson fermions)")

    def refresh(self, U, rng, trajectory: int) -> None:
        pass

    def action(self, U) -> float:
        t0 = time.perf_counter()
        S = -2.0 * clover_logdet(self._dirac(U, self.kappa), ODD)
        self._count("action", t0)
        return S

    def force(self, U):
        t0 = time.perf_counter()
        D = self._dirac(U, self.kappa)
        acc = DiracDerivative(U, D.bc)
        acc.add_logdet(D, -2.0, ODD)
        F = acc.force()
        self._count("force", t0)
        return F


def two_flavour_monomials(kappa, csw=0.0, hasenbusch_kappa=None, bc=None, kernel="auto",
                          force_tol=1e-10, action_tol=1e-12, name="pf", maxiter=10_000) -> list:
    """The monomials of two degenerate flavours at ``kappa`` (``-log det(D^dag D)`` in all).

    - ``hasenbusch_kappa=None``: ``[TwoFlavour(kappa, include_logdet=True)]`` (name ``name``);
    - ``hasenbusch_kappa=k1`` or ``[k1, k2, ...]`` (strictly decreasing, below ``kappa``):
      ``[TwoFlavour(k_last, include_logdet=False), HasenbuschRatio(k_{n-1}, k_n), ...,
      HasenbuschRatio(kappa, k1)]`` plus ``CloverLogDet(kappa)`` when ``csw != 0``.  Names:
      ``name``, ``name + "_ratio"`` (``"_ratio0"``, ``"_ratio1"``, ... for several, 0 the lightest),
      ``name + "_logdet"``.
    """
    common = dict(bc=bc, kernel=kernel, force_tol=force_tol, action_tol=action_tol,
                  maxiter=maxiter)
    if hasenbusch_kappa is None:
        return [TwoFlavour(kappa, csw, name=name, include_logdet=True, **common)]
    heavy = ([float(hasenbusch_kappa)] if np.ndim(hasenbusch_kappa) == 0
             else [float(k) for k in hasenbusch_kappa])
    if not heavy:
        raise ValueError("hasenbusch_kappa: give at least one kappa (or None)")
    chain = [float(kappa)] + heavy
    if any(not b < a for a, b in zip(chain, chain[1:])):
        raise ValueError(f"hasenbusch_kappa {heavy} must decrease strictly from kappa = {kappa} "
                         "(each preconditioner heavier than the operator it divides)")
    out = [TwoFlavour(chain[-1], csw, name=name, include_logdet=False, **common)]
    for i in reversed(range(len(heavy))):
        rname = f"{name}_ratio" if len(heavy) == 1 else f"{name}_ratio{i}"
        out.append(HasenbuschRatio(chain[i], chain[i + 1], csw, name=rname, **common))
    if csw != 0:
        out.append(CloverLogDet(kappa, csw, kernel=kernel, name=f"{name}_logdet"))
    return out


__all__ = ["TwoFlavour", "HasenbuschRatio", "CloverLogDet", "two_flavour_monomials",
           "gaussian_source", "clover_logdet"]
