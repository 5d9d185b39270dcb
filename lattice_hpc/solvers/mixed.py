"""Mixed-precision solves by defect correction (iterative refinement).

The outer loop works in the precision of ``op`` (double), the inner solves in that of ``op_low``
(single)::

    x = 0, r = b
    repeat:   solve  op_low e = r / |r|   to inner_tol      (single precision, any Krylov method)
              x += |r| e                                    (promoted to double)
              r  = b - op x                                 (double: the true residual)
    until |r| / |b| < tol

Each correction reduces the true residual by about ``inner_tol`` (as long as ``inner_tol`` is
above the single-precision rounding level), so ``tol = 1e-10`` with ``inner_tol = 1e-5`` takes
two or three corrections, almost all the operator applications being cheap single-precision
ones, while the answer has the accuracy of the double-precision operator.  Normalising the defect
keeps it within the single-precision range.  This is the defect-correction scheme of Strzodka and
Goddeke (FCCM 2006, "Pipelined mixed precision algorithms on FPGAs for fast and accurate PDE
solvers from low precision components") and the "iterative refinement" of Clark, Babich, Barros,
Brower and Rebbi, arXiv:0911.3191 (Comput. Phys. Commun. 181 (2010) 1517), section 4.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import array_module
from .krylov import bicgstab, cg, cgne
from .result import Run, SolveResult, SolverError, norm2

METHODS = {"cgne": cgne, "bicgstab": bicgstab, "cg": cg}


def mixed_precision(op, op_low, b, *, tol=1e-10, inner_tol=1e-5, maxiter=10_000,
                    max_restarts=100, method="cgne") -> SolveResult:
    """``op x = b`` to ``|b - op x| / |b| < tol`` by defect correction with inner solves on ``op_low``.

    Args:
        op: the operator in the working precision (its ``apply`` gives the true residual).
        op_low: the same operator in low precision (``apply`` takes its dtype, e.g. complex64).
        method: inner solver, ``"cgne"``, ``"bicgstab"`` or ``"cg"`` (``cg`` needs ``op_low``
            Hermitian positive definite).
        inner_tol: relative tolerance of each inner solve.
        maxiter: budget of inner iterations over all corrections.
        max_restarts: most outer corrections.

    Returns a :class:`SolveResult` with ``iterations`` = total inner iterations, ``restarts`` =
    number of corrections, ``history`` = the inner residual histories scaled to ``|r|/|b|`` of the
    outer system, each correction's first entry being the outer (true, double) residual.
    """
    if method not in METHODS:
        raise ValueError(f"unknown inner method {method!r}: use one of {sorted(METHODS)}")
    inner_solve = METHODS[method]
    run = Run(f"mixed_precision({method})", op.lattice, tol, maxiter)
    xp = array_module(b)
    low = getattr(op_low, "dtype", np.complex64)
    x = xp.zeros_like(b)
    bnorm = math.sqrt(norm2(op.lattice, b))
    if bnorm == 0:
        run.record(0.0)
        return run.result(x, 0.0, True)
    r, rnorm = b, bnorm
    run.record(1.0)
    while True:
        rel = rnorm / bnorm
        if not math.isfinite(rel):
            run.fail(x, "breakdown: NaN/Inf in the outer residual")
        if rel < tol:
            return run.result(x, rel, True)
        if run.restarts >= max_restarts:
            run.fail(x, f"did not converge within max_restarts={max_restarts} corrections", rel)
        if run.iterations >= maxiter:
            run.fail(x, f"did not converge within maxiter={maxiter} inner iterations", rel)
        try:
            inner = inner_solve(op_low, (r / rnorm).astype(low), tol=inner_tol,
                                maxiter=maxiter - run.iterations)
        except SolverError as exc:
            _absorb(run, exc.result, rel)
            run.fail(x, f"an inner solve failed ({exc})", rel)
        _absorb(run, inner, rel)
        run.restarts += 1
        x += rnorm * inner.x.astype(x.dtype)
        run.count()
        r = b - op.apply(x)
        new = math.sqrt(norm2(op.lattice, r))
        run.record(new / bnorm, replace=True)
        if new > 0.5 * rnorm:
            run.fail(x, f"the outer residual stagnated at {new / bnorm:.3e} (was {rel:.3e}): "
                        f"inner_tol {inner_tol:.0e} is not reachable in the low precision, or "
                        "op_low is not op", new / bnorm)
        rnorm = new


def _absorb(run: Run, inner: SolveResult, rel: float) -> None:
    """Append an inner solve's history, scaled from ``|e-residual|`` to the outer ``|r| / |b|``."""
    run.iterations += inner.iterations
    run.applications += inner.operator_applications
    run.history.extend(h * rel for h in inner.history[1:])
