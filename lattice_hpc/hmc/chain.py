"""The HMC chain: one trajectory = refresh, integrate, Metropolis accept/reject (Duane, Kennedy,
Pendleton and Roweth, Phys. Lett. B 195 (1987) 216).

Per trajectory ``n``::

    every monomial refreshes its auxiliary fields (pseudofermions) with purpose (..., n)
    P ~ exp(-K) with purpose ("momenta", n, mu)                (:mod:`.momenta`)
    H0 = K(P) + sum_m S_m(U);  integrate (U, P) over tau;  H1 = K(P') + sum_m S_m(U')
    accept with probability min(1, exp(-(H1 - H0))), with the uniform number of purpose
    ("metropolis", n): one number, the same on every rank

A trajectory whose ``dH`` is NaN or infinite is rejected and reported (``"nonfinite": true``); a
solver that fails inside it (:class:`lattice_hpc.solvers.SolverError`) stops the chain with a
message naming the trajectory.  All random numbers come from the counter-based generator keyed
by the trajectory number, so the chain is the same on every process grid and a resumed chain
continues the uninterrupted one.

:meth:`HMC.reversibility` integrates forward, flips the momenta, integrates back, and reports
``|dU|`` (largest change of a link) and ``dH`` of the round trip: both vanish up to rounding for a
reversible integrator with tight solver tolerances.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..gauge import measure_all
from .momenta import draw_momenta, kinetic_energy


class HMC:
    """Hybrid Monte Carlo for the gauge field ``U`` (updated in place).

    Args:
        U: the gauge field (its links are the chain's state).
        integrator: an :class:`~lattice_hpc.hmc.integrators.Integrator` (levels with monomials).
        rng: the counter-based generator (:class:`lattice_hpc.rng.CounterRNG`).
    """

    def __init__(self, U, integrator, rng):
        self.U, self.integrator, self.rng = U, integrator, rng
        self.monomials = [m for lev in integrator.levels for m in lev.monomials]
        names = [m.name for m in self.monomials]
        if len(set(names)) != len(names):
            raise ValueError(f"monomial names must be distinct, got {names}")

    def hamiltonian(self, P) -> tuple[float, dict]:
        """Collective: ``H = K + sum_m S_m`` and its parts."""
        parts = {"kinetic": kinetic_energy(self.U.lattice, P)}
        for m in self.monomials:
            parts[m.name] = m.action(self.U)
        return float(sum(parts.values())), parts

    def _start(self, trajectory):
        for m in self.monomials:
            if hasattr(m, "reset_stats"):
                m.reset_stats()
            m.refresh(self.U, self.rng, trajectory)
        return draw_momenta(self.U, self.rng, trajectory)

    def trajectory(self, trajectory: int, metropolis: bool = True) -> dict:
        """Collective: one trajectory (number ``trajectory``); returns its record.

        ``metropolis=False`` accepts the trajectory whatever its ``dH`` (unless it is not finite):
        molecular dynamics without the accept step, which is *not* exact and is meant only for the
        first trajectories of a thermalization from a cold or hot start; the record says
        ``"metropolis": false``.
        """
        U = self.U
        t0 = time.perf_counter()
        saved = U.copy()
        P = self._start(trajectory)
        H0, parts0 = self.hamiltonian(P)
        t1 = time.perf_counter()
        self.integrator.timings = {}
        self.integrator.run(U, P)
        t2 = time.perf_counter()
        H1, parts1 = self.hamiltonian(P)
        dH = H1 - H0
        finite = math.isfinite(dH)
        u = float(self.rng.uniform(("metropolis", int(trajectory)), np.zeros(1, np.int64), 1)[0, 0])
        accepted = finite and (not metropolis or dH <= 0 or u < math.exp(-dH))
        if not accepted:
            self._restore(saved)
        U.refresh()
        t3 = time.perf_counter()
        rec = {"trajectory": int(trajectory), "dH": dH if finite else repr(dH),
               "exp_minus_dH": math.exp(-dH) if finite and dH > -700 else (0.0 if not finite else math.inf),
               "accepted": bool(accepted), "nonfinite": not finite}
        if not metropolis:
            rec["metropolis"] = False
        rec.update(_observables(U))
        rec["dH_parts"] = {k: parts1[k] - parts0[k] for k in parts0}
        rec["seconds"] = {"total": t3 - t0, "refresh_and_H": (t1 - t0) + (t3 - t2),
                          "integrator": t2 - t1, **{f"force_{k}": v for k, v in
                                                    self.integrator.timings.items()}}
        stats = {m.name: m.stats for m in self.monomials if getattr(m, "stats", None)}
        if stats:
            rec["monomials"] = stats
        return rec

    def _forward(self, trajectory: int):
        """Start trajectory ``trajectory`` and integrate it: ``(saved links, P, H0, H1)``."""
        saved = self.U.copy()
        P = self._start(trajectory)
        H0, _ = self.hamiltonian(P)
        self.integrator.run(self.U, P)
        H1, _ = self.hamiltonian(P)
        return saved, P, H0, H1

    def _restore(self, saved) -> None:
        self.U.links[...] = saved.links
        self.U._fresh = list(saved._fresh)

    def energy_violation(self, trajectory: int) -> float:
        """Collective: ``dH`` of trajectory ``trajectory`` without the accept step; the links are
        restored afterwards (for step-size tuning and the integrator-order check)."""
        saved, _, H0, H1 = self._forward(trajectory)
        self._restore(saved)
        return H1 - H0

    def reversibility(self, trajectory: int) -> dict:
        """Collective: forward, momenta flipped, backward; the links are restored afterwards.

        Returns ``{"dU": max |U_back - U_start|, "dH": H_back - H_start, "dH_forward": ...}``.
        """
        U = self.U
        saved, P, H0, Hf = self._forward(trajectory)
        P *= -1
        self.integrator.run(U, P)
        H2, _ = self.hamiltonian(P)
        lat = U.lattice
        diff = U.backend.xp.abs(lat.view(U.links, U.depth, None, lead=1)
                                - lat.view(saved.links, U.depth, None, lead=1))
        dU = float(lat.comm.allreduce(float(diff.max()), op="max"))
        self._restore(saved)
        U.refresh()
        return {"dU": dU, "dH": H2 - H0, "dH_forward": Hf - H0}


def _observables(U) -> dict:
    obs = measure_all(U)
    re, im = obs.pop("polyakov")
    obs.update({"polyakov_re": re, "polyakov_im": im, "polyakov_abs": math.hypot(re, im)})
    return obs
