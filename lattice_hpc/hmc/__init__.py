"""Hybrid Monte Carlo: momenta, action terms (monomials), nested integrators, the chain.

- :mod:`.momenta`       -- algebra-valued Gaussian momenta, kinetic energy, the two elementary
  updates (``P += dt F / 2``, ``U -> exp(dt P) U``) and the normalisation they share;
- :mod:`.monomials`     -- the monomial protocol (action, force, refresh) and the Wilson gauge action;
- :mod:`.pseudofermions` -- two-flavour Wilson(-clover) pseudofermions, even/odd preconditioned,
  the clover log det, Hasenbusch ratios;
- :mod:`.integrators`   -- leapfrog and Omelyan steps on nested levels (Sexton-Weingarten);
- :mod:`.chain`         -- :class:`HMC`: trajectory, Metropolis, records, reversibility check.
"""

from .chain import HMC
from .integrators import Integrator, Level, OMELYAN_LAMBDA
from .momenta import draw_momenta, kinetic_energy, link_step, momentum_step
from .monomials import WilsonGauge
from .pseudofermions import CloverLogDet, HasenbuschRatio, TwoFlavour, two_flavour_monomials

__all__ = ["HMC", "Integrator", "Level", "OMELYAN_LAMBDA", "draw_momenta", "kinetic_energy",
           "link_step", "momentum_step", "WilsonGauge", "TwoFlavour", "HasenbuschRatio",
           "CloverLogDet", "two_flavour_monomials"]
