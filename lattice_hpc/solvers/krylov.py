"""Krylov solvers for ``A x = b`` on decomposed lattices: CG, CGNE, BiCGStab.

- **CG** (Hestenes and Stiefel, J. Res. Nat. Bur. Standards 49 (1952) 409) for Hermitian positive
  definite ``A`` (e.g. ``D^dag D``)::

      r = b - A x, p = r
      alpha = |r|^2 / <p, A p>,  x += alpha p,  r -= alpha A p
      beta = |r_new|^2 / |r|^2,  p = r_new + beta p

- **CGNE**: CG on the normal equations ``D^dag D x = D^dag b`` for any invertible ``D``, in the
  form of Hestenes and Stiefel's section 10 (often called CGNR / CGLS): it keeps the residual of
  the *original* system ``r = b - D x`` next to the normal residual ``s = D^dag r``::

      q = D p,  alpha = |s|^2 / |q|^2,  x += alpha p,  r -= alpha q,  s = D^dag r
      beta = |s_new|^2 / |s|^2,  p = s_new + beta p

  The iterates are those of CG on ``D^dag D`` (``<p, D^dag D p> = |q|^2``), but the stopping test
  is on ``|r| / |b|`` itself, so ``tol`` is the tolerance of ``D x = b`` with no scaling guess.

- **BiCGStab** (H. A. van der Vorst, SIAM J. Sci. Stat. Comput. 13 (1992) 631) for general ``A``::

      rho = <r0, r>, beta = (rho / rho_old)(alpha / omega), p = r + beta (p - omega v), v = A p
      alpha = rho / <r0, v>, s = r - alpha v, t = A s, omega = <t, s> / |t|^2
      x += alpha p + omega s, r = s - omega t

All three share one driver: iterate until the tracked residual is below a target (first ``tol``),
then recompute the true residual ``b - A x``.  If the recursion drifted and the true residual is
not below ``tol``, restart from the current ``x`` with the exact residual and a lower target, until
it is, or ``maxiter`` is reached, or a restart lowers the true residual by less than 10%
(stagnation: the rounding floor ``~ eps |A| |x| / |b|`` of an ill-conditioned system, which no
restart can pass; the error carries ``x`` and that true residual, which a caller whose accuracy
does not decide exactness, such as an HMC force, may accept).  Inner
products of one iteration that do not depend on each other share one reduction.  Everything is
written on the array module of ``b`` (NumPy or CuPy).
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import array_module
from .result import Run, SolveResult, dots, finite, norm2


def _tiny(x) -> float:
    """Relative size below which an operator is taken to annihilate a vector (singular):
    ``100 eps`` of the precision of ``x``, for operators of norm O(1) (kappa normalization)."""
    return 100 * float(np.finfo(x.dtype).eps)


class _CG:
    def __init__(self, run, A, x):
        self.run, self.A, self.x = run, A, x

    def reset(self, r):
        self.r, self.p = r, r.copy()
        self.rr = norm2(self.run.lattice, r)
        return self.rr

    def step(self):
        Ap = self.A(self.p)
        pAp, pp = dots(self.run.lattice, [(self.p, Ap), (self.p, self.p)])
        if not finite(pAp, pp):
            self.run.fail(self.x, "breakdown: NaN/Inf in <p, A p>")
        if pAp.real <= _tiny(self.x) * pp.real:
            self.run.fail(self.x, f"breakdown: <p, A p> / |p|^2 = {pAp.real / pp.real:.3e} "
                                  "(the operator is not positive definite, or singular)")
        alpha = self.rr / pAp.real
        self.x += alpha * self.p
        self.r -= alpha * Ap
        rr, self.rr = self.rr, norm2(self.run.lattice, self.r)
        self.p *= self.rr / rr
        self.p += self.r
        return self.rr


class _CGNE:
    def __init__(self, run, op, x):
        self.run, self.op, self.x = run, op, x

    def reset(self, r):
        self.r = r
        self.s = self._dag(r)
        self.p = self.s.copy()
        ss, rr = dots(self.run.lattice, [(self.s, self.s), (r, r)])
        self.ss, self.rr = ss.real, rr.real
        return self.rr

    def _dag(self, v):
        self.run.count()
        return self.op.apply_dagger(v)

    def step(self):
        if self.ss <= _tiny(self.x) ** 2 * self.rr:
            self.run.fail(self.x, f"breakdown: |D^dag r| / |r| = {math.sqrt(self.ss / self.rr):.3e} "
                                  "(D is singular and b has a component outside its range)")
        self.run.count()
        q = self.op.apply(self.p)
        qq = norm2(self.run.lattice, q)
        if not finite(qq) or qq == 0:
            self.run.fail(self.x, f"breakdown: |D p|^2 = {qq} (NaN/Inf or D singular)")
        alpha = self.ss / qq
        self.x += alpha * self.p
        self.r -= alpha * q
        self.s = self._dag(self.r)
        ss, rr = dots(self.run.lattice, [(self.s, self.s), (self.r, self.r)])
        self.p *= ss.real / self.ss
        self.p += self.s
        self.ss, self.rr = ss.real, rr.real
        return self.rr


class _BiCGStab:
    def __init__(self, run, A, x):
        self.run, self.A, self.x = run, A, x
        self.stop2 = 0.0  # |r|^2 below which the driver stops (set by the driver)

    def reset(self, r):
        self.r, self.r0 = r, r.copy()
        self.p, self.v = None, None
        self.rho_old = self.alpha = self.omega = 1.0
        self.rho = self.rr = self.r0r0 = norm2(self.run.lattice, r)  # <r0, r> = |r|^2 here
        return self.rr

    def step(self):
        run, lat, x = self.run, self.run.lattice, self.x
        if not finite(self.rho) or abs(self.rho) <= _tiny(x) * math.sqrt(self.r0r0 * self.rr):
            run.fail(x, f"breakdown: rho = <r0, r> = {self.rho:.3e} (NaN/Inf, or r orthogonal "
                        "to r0)")
        if self.p is None:
            self.p = self.r.copy()
        else:
            beta = (self.rho / self.rho_old) * (self.alpha / self.omega)
            self.p -= self.omega * self.v
            self.p *= beta
            self.p += self.r
        self.v = self.A(self.p)
        r0v, vv, pp = dots(lat, [(self.r0, self.v), (self.v, self.v), (self.p, self.p)])
        if not finite(r0v, vv) or r0v == 0 or vv.real <= _tiny(x) ** 2 * pp.real:
            run.fail(x, f"breakdown: <r0, A p> = {r0v:.3e}, |A p| / |p| = "
                        f"{math.sqrt(vv.real / pp.real):.3e} (NaN/Inf, zero, or A singular)")
        self.alpha = self.rho / r0v
        s = self.r
        s -= self.alpha * self.v  # s overwrites r
        t = self.A(s)
        ts, tt, ss = dots(lat, [(t, s), (t, t), (s, s)])
        x += self.alpha * self.p
        if ss.real < self.stop2:  # converged on the half step: r = s; the driver verifies
            return self.reset(s)  # (a consistent state, should the driver go on)
        if not finite(ts, tt) or tt.real <= _tiny(x) ** 2 * ss.real:
            run.fail(x, f"breakdown: |A s|^2 = {tt.real:.3e} (NaN/Inf, or A singular)")
        self.omega = ts / tt.real
        if self.omega == 0:
            run.fail(x, "breakdown: omega = <A s, s> / |A s|^2 = 0")
        x += self.omega * s
        s -= self.omega * t  # r = s - omega t, in place
        rho, rr = dots(lat, [(self.r0, self.r), (self.r, self.r)])
        self.rho_old, self.rho, self.rr = self.rho, rho, rr.real
        return self.rr


def _drive(method, run, A, b, x0) -> SolveResult:
    """Iterate ``method`` to the target, verify the true residual, restart while it drifted."""
    lat = run.lattice
    xp = array_module(b)
    bnorm = math.sqrt(norm2(lat, b))
    if bnorm == 0:
        run.record(0.0)
        return run.result(xp.zeros_like(b), 0.0, True)
    if x0 is None:
        x, r = xp.zeros_like(b), b.copy()
    else:
        x = x0.astype(b.dtype, copy=True)
        r = b - A(x)
    state = method(run, x)
    target, last_true = run.tol, math.inf
    state.stop2 = (target * bnorm) ** 2
    rel = math.sqrt(state.reset(r)) / bnorm
    run.record(rel)
    while True:
        if not math.isfinite(rel):
            run.fail(x, "breakdown: NaN/Inf in the residual")
        if rel < target:
            r = b - A(x)
            true = math.sqrt(norm2(lat, r)) / bnorm
            if true < run.tol:
                return run.result(x, true, True)
            if true > 0.9 * last_true:  # a restart that gains less than 10%: the rounding floor
                run.fail(x, f"the true residual stagnated at {true:.3e} while the recursion "
                            f"reached {rel:.3e} (the rounding floor ~ eps |A| |x| / |b| of an "
                            f"ill-conditioned system: a larger tol is all it can reach)", true)
            last_true = true
            target *= max(0.1, min(0.5, run.tol / true))
            state.stop2 = (target * bnorm) ** 2
            rel = math.sqrt(state.reset(r)) / bnorm
            run.record(rel, replace=True)
            continue
        if run.iterations >= run.maxiter:
            run.fail(x, f"did not converge within maxiter={run.maxiter}")
        rel = math.sqrt(state.step()) / bnorm
        run.iterations += 1
        run.record(rel)


def _counted(run, f, cost=1):
    def apply(v):
        run.count(cost)
        return f(v)
    return apply


def cg(op, b, *, tol=1e-10, maxiter=10_000, x0=None, apply=None) -> SolveResult:
    """Conjugate gradients for Hermitian positive definite ``A`` (default ``op.apply``).

    ``apply`` lets a caller pass another operator on the same lattice, e.g. ``op.normal``
    (``D^dag D``, counted as two applications).  Raises :class:`SolverError` unless
    ``|b - A x| / |b| < tol``.
    """
    run = Run("cg", op.lattice, tol, maxiter)
    f = op.apply if apply is None else apply
    cost = 2 if getattr(op, "normal", None) is not None and f == op.normal else 1
    A = _counted(run, f, cost)
    return _drive(lambda run, x: _CG(run, A, x), run, A, b, x0)


def cgne(op, b, *, tol=1e-10, maxiter=10_000, x0=None) -> SolveResult:
    """``op x = b`` by CG on ``op^dag op x = op^dag b``; ``tol`` is on ``|b - op x| / |b|``."""
    run = Run("cgne", op.lattice, tol, maxiter)
    A = _counted(run, op.apply)
    return _drive(lambda run, x: _CGNE(run, op, x), run, A, b, x0)


def bicgstab(op, b, *, tol=1e-10, maxiter=10_000, x0=None) -> SolveResult:
    """BiCGStab for general (non-Hermitian) ``op``; one iteration applies ``op`` twice."""
    run = Run("bicgstab", op.lattice, tol, maxiter)
    A = _counted(run, op.apply)
    return _drive(lambda run, x: _BiCGStab(run, A, x), run, A, b, x0)


def solve_many(solver, op, sources, **kw) -> list:
    """Solve for several right-hand sides in turn with the same solver and stopping rule.

    ``sources`` is a list of arrays or an array with a leading axis; ``kw`` goes to every call
    (for :func:`mixed_precision`, pass ``op_low=`` here).
    """
    return [solver(op, b=b, **kw) for b in sources]
