"""Even/odd (red/black) preconditioning of the Wilson(-clover) operator: the Schur complement.

Ordering the sites by parity, ``D = A - kappa H`` has the block form (``H`` connects only sites of
opposite parity, ``A`` is site-diagonal)::

    D = [[A_ee, -kappa H_eo], [-kappa H_oe, A_oo]]

and ``D x = b`` is equivalent to (DeGrand and Hecht, Phys. Rev. D 46 (1992) 3937; openQCD's
``dirac/Dw.c``, ``Dwhat``)::

    D_hat x_e = b_e + kappa H_eo A_oo^{-1} b_o,        D_hat = A_ee - kappa^2 H_eo A_oo^{-1} H_oe,
    x_o = A_oo^{-1} (b_o + kappa H_oe x_e).

``D_hat`` acts on even sites only; its condition number is about a quarter of that of ``D``, and
each application costs the same as one of ``D`` (two half-lattice hops).  The clover blocks are
inverted per site (:attr:`WilsonDirac.clover_inv`).  ``D_hat^dag = gamma_5 D_hat gamma_5`` is
``D_hat`` with ``H -> H^dag``.

Fields are full-lattice arrays that are zero on odd sites: the solvers need no change, and the
kernels visit only the sites of the requested parity.
"""

from __future__ import annotations

from .spinor import residual


class SchurOperator:
    """``D_hat = A_ee - kappa^2 H_eo A_oo^{-1} H_oe`` of a :class:`~lattice_hpc.fermions.WilsonDirac`.

    Has the solver protocol (``lattice``, ``apply``, ``apply_dagger``, ``normal``, ``zeros``).
    Every method is collective.
    """

    EVEN, ODD = 0, 1

    def __init__(self, D):
        self.D = D
        self.lattice, self.dtype, self.xp, self.kappa = D.lattice, D.dtype, D.xp, D.kappa

    def zeros(self):
        return self.D.zeros()

    def _apply(self, psi, dagger):
        D = self.D
        t = D.dslash(psi, None, 0.0, None, 1.0, D.clover_inv, dagger, self.ODD)  # A_oo^-1 H_oe psi
        return D.dslash(t, psi, 1.0, D.clover, -self.kappa ** 2, None, dagger, self.EVEN)

    def apply(self, psi):
        """``D_hat psi`` (``psi`` is read on even sites; the result is zero on odd sites)."""
        return self._apply(psi, False)

    def apply_dagger(self, psi):
        return self._apply(psi, True)

    def normal(self, psi):
        return self.apply_dagger(self.apply(psi))

    def prepare(self, b):
        """The even source ``b_e + kappa H_eo A_oo^{-1} b_o``."""
        D = self.D
        t = D.apply_diagonal(D.clover_inv, b, self.ODD)
        return D.dslash(t, b, 1.0, None, self.kappa, None, False, self.EVEN)

    def reconstruct(self, x_even, b):
        """The full solution: ``x_e`` and ``x_o = A_oo^{-1} (b_o + kappa H_oe x_e)``."""
        D = self.D
        s = D.dslash(x_even, b, 1.0, None, self.kappa, None, False, self.ODD)
        return x_even + D.apply_diagonal(D.clover_inv, s, self.ODD)


def solve_evenodd(D, b, solver=None, low=None, **kw):
    """Collective: solve ``D x = b`` through the Schur complement on even sites.

    ``solver(op, b_hat, **kw)`` solves the even system (default CGNE); with ``low`` (a lower-
    precision copy of ``D``, :meth:`WilsonDirac.converted`) the solver is called as
    ``solver(op, op_low, b_hat, **kw)`` (:func:`lattice_hpc.solvers.mixed_precision`).  The
    returned result carries the full solution and the true residual ``|b - D x| / |b|`` of the
    full system; its history and iterations are those of the even solve.
    """
    from ..solvers import SolveResult, cgne  # here: the solvers import fermions.spinor

    solver = cgne if solver is None else solver
    S = SchurOperator(D)
    b_hat = S.prepare(b)
    if low is None:
        res = solver(S, b_hat, **kw)
    else:
        res = solver(S, SchurOperator(low), b_hat, **kw)
    x = S.reconstruct(res.x, b)
    return SolveResult(x=x, iterations=res.iterations, history=res.history,
                       true_residual=residual(D, x, b),
                       converged=res.converged, seconds=res.seconds, restarts=res.restarts,
                       operator_applications=res.operator_applications + 1)
