"""Action terms of the HMC (monomials): each gives its action and its force.

The protocol (every method collective, called on all ranks with the same arguments)::

    monomial.name                      a short name for records and time reports
    monomial.refresh(U, rng, traj)     at the start of a trajectory: draw auxiliary fields
                                       (pseudofermions); nothing for the gauge action
    monomial.action(U) -> float        its contribution to H at the current links
    monomial.force(U) -> F             ``(ndim, *local, N, N)`` algebra field with
                                       ``d/d eps S(exp(eps X) U) = sum Re Tr(X F)``
                                       (:mod:`lattice_hpc.gauge.action`), so ``dP/dt = F/2``
    monomial.stats -> dict             counters since the last ``reset_stats()`` (solver
                                       iterations, seconds), for the per-trajectory records

Each call refreshes the gauge halo it needs (``U.refresh()``, collective): the integrator moves
the links between calls and leaves the halo stale.
"""

from __future__ import annotations

import time

from ..gauge import gauge_force, wilson_action


class WilsonGauge:
    """``S = beta sum_x sum_{mu<nu} (1 - (1/N) Re Tr P_{mu nu})`` (:mod:`lattice_hpc.gauge.action`)."""

    def __init__(self, beta: float, name: str = "gauge"):
        self.beta = float(beta)
        self.name = name
        self.reset_stats()

    def reset_stats(self) -> None:
        self.stats = {"force_seconds": 0.0, "forces": 0}

    def refresh(self, U, rng, trajectory: int) -> None:
        pass

    def action(self, U) -> float:
        U.refresh(codim=1)
        return wilson_action(U, self.beta)

    def force(self, U):
        t = time.perf_counter()
        U.refresh(codim=2)
        F = gauge_force(U, self.beta)
        self.stats["force_seconds"] += time.perf_counter() - t
        self.stats["forces"] += 1
        return F
