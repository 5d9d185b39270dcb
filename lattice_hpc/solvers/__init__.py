"""Krylov solvers for the Dirac equation on the decomposed lattice (NumPy or CuPy).

- :mod:`.krylov` -- :func:`cg` (Hestenes-Stiefel 1952), :func:`cgne` (CG on the normal equations,
  tolerance on the original system), :func:`bicgstab` (van der Vorst 1992), :func:`solve_many`;
- :mod:`.mixed`  -- :func:`mixed_precision`: defect correction with low-precision inner solves;
- :mod:`.result` -- :class:`SolveResult` and :class:`SolverError`.

An operator is any object with ``lattice`` (for the reductions), ``apply(x)`` (collective,
returns ``A x``) and, for CGNE, ``apply_dagger(x)``; :class:`lattice_hpc.fermions.WilsonDirac` is
one.  Solves either converge (true relative residual below ``tol``) or raise
:class:`SolverError` carrying the residual history.
"""

from .krylov import bicgstab, cg, cgne, solve_many
from .mixed import mixed_precision
from .result import SolveResult, SolverError

__all__ = ["SolveResult", "SolverError", "cg", "cgne", "bicgstab", "mixed_precision", "solve_many"]
