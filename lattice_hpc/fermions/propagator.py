"""Point-source quark propagators and the pion correlator.

The propagator from a point source at global site ``y`` is ``S(x; y) = D^{-1}(x, y)`` (kappa
normalization, CONVENTIONS.md), one solve ``D psi = delta_{y, spin_src, col_src}`` per source spin
and colour.  It is stored as a local array of shape ``(L_t, L_z, L_y, L_x, 4, 3, 4, 3)`` (2D:
``(L_t, L_x, 2, 1, 2, 1)``; memory order
of the sink site, then sink spin, sink colour, source spin, source colour) on the operator's array
module, so ``S[..., :, :, s, c]`` is the solution for source spin ``s`` and colour ``c``.

The pion correlator (CONVENTIONS.md) is

    C(t) = sum_{x in timeslice t} sum_{spin, colour} |S(x, t; 0)|^2,      t = 0 .. T-1,

the ``gamma_5``-hermiticity form of ``sum_x tr[gamma_5 S(x;0) gamma_5 S(0;x)]``, unnormalized.

Solvers are pluggable: every function takes ``solve(D, b) -> SolveResult`` (the result type of
:mod:`lattice_hpc.solvers`, with at least ``x``, ``iterations``, ``true_residual``, ``converged``,
``seconds`` and ``operator_applications``).  The default is even/odd preconditioned CGNE at relative
tolerance ``1e-12`` (:func:`default_solve`); any solver with the same signature can be
dropped in.  Besides what the solver reports, the residual ``|b - D x| / |b|``
of the full system is recomputed here for each column, so it means the same whatever the solver.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..backend import array_module
from .spinor import point_source, residual

DEFAULT_TOL = 1e-12


def default_solve(D, b):
    """Collective: ``D x = b`` by even/odd preconditioned CGNE (:func:`.evenodd.solve_evenodd`) at
    relative tolerance ``1e-12`` on the Schur system; the caller checks the full true residual."""
    from .evenodd import solve_evenodd

    return solve_evenodd(D, b, tol=DEFAULT_TOL)


def solve_info(results, residuals, seconds: float) -> dict:
    """JSON-ready summary of a set of solves (iterations, residuals, time)."""
    return {"solves": len(results),
            "iterations": [int(r.iterations) for r in results],
            "operator_applications": int(sum(int(getattr(r, "operator_applications", 0) or 0)
                                             for r in results)),
            "max_true_residual": float(max(residuals)) if residuals else 0.0,
            "max_reported_residual": float(max(float(r.true_residual) for r in results))
            if results else 0.0,
            "seconds": float(seconds)}


@dataclass
class Propagator:
    """A point-source propagator and how it was computed.

    Attributes:
        S: local array ``(L_t, L_z, L_y, L_x, 4, 3, 4, 3)`` (sink spin, sink colour, source spin,
            source colour) on the operator's array module.
        site: the source's global site in direction order ``(x, y, z, t)``.
        iterations: solver iterations of the 12 solves (source spin major, colour minor).
        true_residuals: ``|b - D x| / |b|`` of each column, recomputed here on the full system.
        reported_residuals: the ``true_residual`` each solve reported.
        seconds: wall time of the 12 solves (this rank).
        results: the solvers' ``SolveResult`` objects.
    """

    S: object
    site: tuple
    iterations: list = field(default_factory=list)
    true_residuals: list = field(default_factory=list)
    reported_residuals: list = field(default_factory=list)
    seconds: float = 0.0
    results: list = field(default_factory=list)

    def column(self, spin: int, color: int):
        """The solution for source ``(spin, color)``: a C-contiguous spinor field ``(..., 4, 3)``."""
        xp = array_module(self.S)
        return xp.ascontiguousarray(self.S[..., spin, color])

    def info(self) -> dict:
        """JSON-ready solver summary (iterations per solve, largest residual, time)."""
        return solve_info(self.results, self.true_residuals, self.seconds)


def _check_site(lattice, site) -> tuple:
    site = tuple(int(s) for s in site)
    if len(site) != lattice.ndim or any(not 0 <= s < L for s, L in zip(site, lattice.dims)):
        raise ValueError(f"source site {site} is not a site of the {lattice.dims} lattice")
    return site


def point_propagator(D, site=None, solve=None) -> Propagator:
    """Collective: ``S(x; site) = D^{-1}(x, site)`` from 12 point sources (one per spin and colour).

    Args:
        D: the Dirac operator (e.g. :class:`~lattice_hpc.fermions.WilsonDirac`), with ``apply``,
            ``lattice``, ``backend`` and ``zeros()``.
        site: the source's global coordinates in direction order ``(x, y, z, t)``.
        solve: ``solve(D, b) -> SolveResult`` (default :func:`default_solve`: even/odd CGNE at 1e-12).

    Returns:
        a :class:`Propagator`.  A solver that does not converge raises its own error
        (:class:`lattice_hpc.solvers.SolverError` for the package's solvers).
    """
    lat = D.lattice
    site = _check_site(lat, (0,) * lat.ndim if site is None else site)
    solve = default_solve if solve is None else solve
    xp = array_module(D.zeros())
    nspin, ncol = D.site_shape
    S = xp.zeros(lat.shape(0) + (nspin, ncol, nspin, ncol), dtype=D.dtype)
    prop = Propagator(S=S, site=site)
    start = time.perf_counter()
    for s in range(nspin):
        for c in range(ncol):
            b = point_source(lat, D.backend, site, s, c, site_shape=D.site_shape)
            res = solve(D, b)
            S[..., s, c] = res.x
            prop.results.append(res)
            prop.iterations.append(int(res.iterations))
            prop.reported_residuals.append(float(res.true_residual))
            prop.true_residuals.append(residual(D, res.x, b))
    prop.seconds = time.perf_counter() - start
    return prop


def pion_correlator(lattice, S, site=None) -> np.ndarray:
    """Collective: ``C(t) = sum_{x in timeslice t} sum_{spin,colour} |S(x, t; site)|^2``.

    Args:
        lattice: the decomposed lattice ``S`` lives on.
        S: a :class:`Propagator`, or its local array ``(L_t, L_z, L_y, L_x, 4, 3, 4, 3)``.
        site: the source site ``(x, y, z, t)``; default: the propagator's site, or the origin for a
            bare array.

    Returns:
        a host ``float64`` array of length ``T``, the same on every rank.  Entry ``t`` is the sum
        over the timeslice ``(t_src + t) mod T`` of the global lattice: for the source at the
        origin (CONVENTIONS.md) this is ``C(t)`` at global time ``t``; for a source at ``t_src`` it
        is the correlator at separation ``t`` from the source.  The sign that a hop across the
        antiperiodic time boundary gives the propagator drops out of ``|S|^2``.

    Communication: one ``allreduce`` of a length-``T`` array (the documented reduction point).
    """
    if isinstance(S, Propagator):
        site = S.site if site is None else site
        S = S.S
    site = (0,) * lattice.ndim if site is None else _check_site(lattice, site)
    xp = array_module(S)
    nd = lattice.ndim
    if tuple(S.shape[:nd]) != lattice.shape(0):
        raise ValueError(f"propagator of local shape {tuple(S.shape[:nd])} does not fit the "
                         f"lattice block {lattice.shape(0)}")
    a = S.real * S.real + S.imag * S.imag
    local = a.reshape(a.shape[0], -1).sum(axis=1)  # one value per local timeslice
    local = local.get() if xp is not np else np.asarray(local)
    tdir = lattice.time_direction
    T, t0 = lattice.dims[tdir], lattice.origin[tdir]
    full = np.zeros(T, dtype=np.float64)
    full[t0:t0 + lattice.local_dims[tdir]] = local
    full = lattice.comm.allreduce(full)
    return np.roll(full, -site[tdir])
