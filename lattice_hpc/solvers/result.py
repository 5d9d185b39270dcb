"""Results, errors and the bookkeeping that every Krylov solver shares.

A solve returns a :class:`SolveResult` or raises :class:`SolverError`; it never returns an
unconverged answer.  The error carries the result so far (``exc.result``), in particular the
residual history, so a caller can see how the solve went wrong.

Reductions are collective: norms and inner products go through
:func:`lattice_hpc.fermions.spinor.inner` or ``lattice.comm.allreduce``, so every rank sees the same
numbers and takes the same branches (stop, restart, fail) -- no rank can leave a solve alone.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import array_module
from ..fermions.spinor import inner


@dataclass
class SolveResult:
    """The outcome of a solve ``A x = b``.

    Attributes:
        x: the solution (same array module, shape and dtype as ``b``).
        iterations: Krylov iterations (mixed precision: total inner iterations).
        history: relative residual ``|r_k| / |b|`` as the solver tracks it, ``iterations + 1``
            entries, index 0 the start.  When the solver recomputes the residual from ``x``
            (restart, outer correction) the entry of that iteration is replaced by the recomputed
            value.
        true_residual: ``|b - A x| / |b|`` recomputed with the operator at the end (CGNE: of the
            original system ``D x = b``); ``nan`` when not computed (failed solves).
        converged: whether ``true_residual < tol``.
        seconds: wall time of the solve on this rank (``time.perf_counter``).
        restarts: mixed precision: the number of outer corrections; 0 otherwise.
        operator_applications: calls of ``op.apply`` plus ``op.apply_dagger`` (a normal operator
            ``D^dag D`` counts 2), including the residual recomputations.
    """

    x: Any
    iterations: int
    history: list
    true_residual: float
    converged: bool
    seconds: float
    restarts: int = 0
    operator_applications: int = 0


class SolverError(RuntimeError):
    """A solve that did not converge: maxiter reached, stagnation, divergence, breakdown, NaN/Inf.

    Attributes:
        result: the :class:`SolveResult` so far (``converged=False``).
        history, iterations: shortcuts to ``result.history`` and ``result.iterations``.
    """

    def __init__(self, message: str, result: SolveResult):
        super().__init__(message)
        self.result = result
        self.history = result.history
        self.iterations = result.iterations


def norm2(lattice, a) -> float:
    """Collective: ``|a|^2 = Re <a, a>``."""
    return inner(lattice, a, a).real


def dots(lattice, pairs) -> list:
    """Collective: ``[<a, b> for a, b in pairs]`` with one reduction for all of them."""
    xp = array_module(pairs[0][0])
    local = np.array([complex(xp.vdot(a, b)) for a, b in pairs], dtype=np.complex128)
    return [complex(v) for v in lattice.comm.allreduce(local)]


@dataclass
class Run:
    """Bookkeeping of one solve: timing, history, operator count, and the failure message.

    ``cost`` is the number of operator applications per call of ``apply`` (2 for ``D^dag D``).
    """

    name: str
    lattice: Any
    tol: float
    maxiter: int
    history: list = field(default_factory=list)
    iterations: int = 0
    applications: int = 0
    restarts: int = 0
    t0: float = field(default_factory=time.perf_counter)

    def count(self, n: int = 1) -> None:
        self.applications += n

    def record(self, rel: float, replace: bool = False) -> None:
        """Append the tracked relative residual of a new iteration (or replace the current one)."""
        if replace and self.history:
            self.history[-1] = rel
        else:
            self.history.append(rel)

    def result(self, x, true_residual: float, converged: bool) -> SolveResult:
        return SolveResult(x=x, iterations=self.iterations, history=self.history,
                           true_residual=float(true_residual), converged=converged,
                           seconds=time.perf_counter() - self.t0, restarts=self.restarts,
                           operator_applications=self.applications)

    def fail(self, x, reason: str, true_residual: float = math.nan):
        """Raise :class:`SolverError` naming the solver, tolerance, iterations, last residual."""
        last = self.history[-1] if self.history else math.nan
        trend = _trend(self.history) if reason.startswith("did not converge") else ""
        msg = (f"{self.name}: {reason}{trend}; tol {self.tol:.1e}, {self.iterations} iterations, "
               f"last relative residual {last:.3e}")
        raise SolverError(msg, self.result(x, true_residual, False))


def _trend(history) -> str:
    """Why a solve ran out of iterations: the residual diverged, stagnated, or was just slow."""
    if len(history) < 2 or not all(math.isfinite(h) for h in history):
        return ""
    if history[-1] > 10 * history[0]:
        return " (the residual diverged)"
    if len(history) < 20:  # too short to tell slow convergence from stagnation
        return ""
    k = (3 * len(history)) // 4
    if min(history[k:]) > 0.5 * min(history[:k]):
        return " (the residual stagnated)"
    return ""


def finite(*values) -> bool:
    return all(math.isfinite(abs(v)) for v in values)
