"""Molecular-dynamics integrators: leapfrog, second-order minimum-norm (Omelyan), and nested
multiple time scales (Sexton and Weingarten, Nucl. Phys. B 380 (1992) 665).

A :class:`Level` holds monomials, a number of steps and a scheme.  Levels are ordered outermost
first: level ``k`` integrates over an interval ``T`` with ``n_k`` steps of size ``h = T / n_k``,
each step kicking the momenta with the forces of its own monomials and moving the links by
integrating level ``k+1`` over ``h`` (the innermost level moves the links directly).  Put the
cheap, stiff gauge force on the finest (last) level and the fermion forces outside.

Schemes, for one step of size ``h`` (``kick(c)``: ``P += c F_k / 2`` with this level's force,
:func:`.momenta.momentum_step`; ``drift(c)``: the next level over ``c h``):

- leapfrog:  ``kick(h/2) drift(h) kick(h/2)``;
- omelyan:   ``kick(l h) drift(h/2) kick((1 - 2l) h) drift(h/2) kick(l h)``, ``l = 0.1931833275037836``
  (Omelyan, Mryglod and Folk, Comput. Phys. Commun. 151 (2003) 272; Takaishi and de Forcrand,
  hep-lat/0505020), whose error coefficient is about ten times smaller than leapfrog's at two
  force evaluations per step.

Both are symmetric (time-reversible) and symplectic, so ``<exp(-dH)> = 1`` and HMC is exact.  The
last kick of a step and the first of the next are merged (one force evaluation), and a level's
force is computed once per link configuration: between two integrations of a finer level that
are separated only by a kick of a coarser one the links have not moved, and the cached force is
used again (the forces depend on the links only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .momenta import link_step, momentum_step

OMELYAN_LAMBDA = 0.1931833275037836
SCHEMES = ("leapfrog", "omelyan")


@dataclass
class Level:
    """Monomials integrated together, with ``steps`` steps of ``scheme`` per outer interval."""

    monomials: list
    steps: int
    scheme: str = "omelyan"

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"integrator scheme {self.scheme!r}: use one of {', '.join(SCHEMES)}")
        if self.steps < 1:
            raise ValueError(f"integrator steps must be >= 1, got {self.steps}")


@dataclass
class Integrator:
    """Nested integration of the levels (outermost first) over a trajectory of length ``tau``."""

    levels: list
    tau: float
    timings: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.levels:
            raise ValueError("the integrator needs at least one level")
        self._moves = 0      # link updates so far: the links' version
        self._forces = {}    # level -> (version, force)

    def force_evaluations(self) -> list[int]:
        """Force evaluations per trajectory at each level (merged and cached kicks counted once)."""
        out, outer = [], 1
        for lev in self.levels:
            per_step = 1 if lev.scheme == "leapfrog" else 2
            out.append(outer * per_step * lev.steps + 1)
            outer *= lev.steps * per_step
        return out

    def run(self, U, P, tau: float | None = None) -> None:
        """In place: integrate ``(U, P)`` over ``tau`` (default the trajectory length; a negative
        ``tau`` runs backwards, which is the same as flipping the momenta)."""
        self._forces = {}
        self._integrate(0, U, P, self.tau if tau is None else tau)
        self._forces = {}

    # -- internals ------------------------------------------------------------------------------
    def _force(self, k, U):
        cached = self._forces.get(k)
        if cached is not None and cached[0] == self._moves:
            return cached[1]
        F = None
        for m in self.levels[k].monomials:
            t = time.perf_counter()
            f = m.force(U)
            self.timings[m.name] = self.timings.get(m.name, 0.0) + time.perf_counter() - t
            F = f if F is None else F + f
        self._forces[k] = (self._moves, F)
        return F

    def _kick(self, k, U, P, c):
        F = self._force(k, U)
        if F is not None:
            momentum_step(P, F, c)

    def _drift(self, k, U, P, T):
        if k + 1 < len(self.levels):
            self._integrate(k + 1, U, P, T)
        else:
            t = time.perf_counter()
            link_step(U, P, T)
            self._moves += 1
            self.timings["links"] = self.timings.get("links", 0.0) + time.perf_counter() - t

    def _integrate(self, k, U, P, T):
        lev = self.levels[k]
        h = T / lev.steps
        if lev.scheme == "leapfrog":
            self._kick(k, U, P, h / 2)
            for i in range(lev.steps):
                self._drift(k, U, P, h)
                self._kick(k, U, P, h if i < lev.steps - 1 else h / 2)
            return
        lam = OMELYAN_LAMBDA
        self._kick(k, U, P, lam * h)
        for i in range(lev.steps):
            self._drift(k, U, P, h / 2)
            self._kick(k, U, P, (1 - 2 * lam) * h)
            self._drift(k, U, P, h / 2)
            self._kick(k, U, P, 2 * lam * h if i < lev.steps - 1 else lam * h)
