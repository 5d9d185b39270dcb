"""Stochastic estimate of the chiral condensate, ``(1/V) Tr D^{-1}``, with Z2 noise.

Estimator: for ``N`` real Z2 noise vectors ``eta_n`` (each spin-colour component of each site
``+1`` or ``-1`` with probability 1/2, so ``E[eta_i eta_j] = delta_ij``),

    Tr D^{-1} = E[ eta^dag D^{-1} eta ],      sample_n = Re(eta_n^dag D^{-1} eta_n) / V.

The diagonal of ``D^{-1}`` is counted exactly by every sample (``eta_i^2 = 1``); only the
off-diagonal elements contribute noise.  ``Tr D^{-1}`` is real (``gamma_5``-hermiticity,
``D^dag = gamma_5 D gamma_5``, gives ``(Tr D^{-1})^* = Tr D^{-1}``), so the real part of each sample
is an unbiased estimate and the imaginary part is pure noise (kept in ``imag_mean`` for checks).
The noise comes from :class:`lattice_hpc.rng.CounterRNG` keyed by ``(seed, ("z2", n))`` and the
global site, so the noise field -- and the estimate, up to rounding -- does not depend on the
process grid.

Normalization and sign (explicit):

- The number reported (``mean``) is ``(1/V) Tr D^{-1}`` with ``D`` in kappa normalization
  (CONVENTIONS.md), for one flavour, the trace over sites, spins and colours, ``V`` the global
  number of sites.  It is positive for the free field at small kappa (``-> 12`` as ``kappa -> 0``).
- The field-theory condensate is ``<psibar psi> = -(1/V) Tr D^{-1}`` (from
  ``<psi_i psibar_j> = (D^{-1})_{ij}`` and Grassmann anticommutation); we report ``Tr D^{-1}/V``,
  i.e. ``-<psibar psi>``, in the kappa normalization of the fields.
- With the bare-lattice (``m0``) normalization ``D_W = D / (2 kappa)`` (``D_W = m0 + 4 - ...``,
  ``kappa = 1 / (2 m0 + 8)``), ``D_W^{-1} = 2 kappa D^{-1}``, so ``Tr D_W^{-1} / V`` is ``2 kappa``
  times the number reported here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .propagator import default_solve, solve_info
from .spinor import default_site_shape, inner, residual


def z2_noise(lattice, rng, purpose, backend, site_shape=None):
    """Real Z2 noise: ``+1`` or ``-1`` for each spin-colour component of each site.

    Drawn from the counter ``(rng.seed, purpose)`` at the global site, so it is the same field on
    every process grid.  Local array ``(L_t, ..., L_x, 4, 3)`` (``site_shape``, default
    :func:`.spinor.default_site_shape`) of the backend's complex dtype.
    """
    xp = backend.xp
    shape = tuple(site_shape or default_site_shape(lattice.ndim))
    sites = xp.asarray(lattice.global_index)
    u = rng.uniform(tuple(purpose), sites, shape[0] * shape[1])
    eta = xp.where(u < 0.5, -1.0, 1.0).reshape(lattice.shape(0) + shape)
    return eta.astype(backend.complex)


@dataclass
class CondensateResult:
    """Z2-noise estimate of ``(1/V) Tr D^{-1}`` (kappa normalization; see the module docstring).

    Attributes:
        mean: the estimate of ``(1/V) Tr D^{-1}`` (``= -<psibar psi>`` per flavour).
        error: standard error of the mean over the samples (``nan`` for one sample).
        samples: ``Re(eta_n^dag D^{-1} eta_n) / V`` per noise vector (host float64 array).
        imag_mean: mean imaginary part of the samples (zero in expectation).
        kappa: the operator's kappa; ``bare()`` converts to ``Tr D_W^{-1} / V``.
        iterations, true_residuals, seconds, results: the solves, as in
            :class:`~lattice_hpc.fermions.propagator.Propagator`.
    """

    mean: float
    error: float
    samples: np.ndarray
    imag_mean: float = 0.0
    kappa: float = float("nan")
    iterations: list = field(default_factory=list)
    true_residuals: list = field(default_factory=list)
    seconds: float = 0.0
    results: list = field(default_factory=list)

    def bare(self) -> tuple[float, float]:
        """``(mean, error)`` of ``(1/V) Tr D_W^{-1}`` with ``D_W = D / (2 kappa)``: ``2 kappa`` times."""
        return 2 * self.kappa * self.mean, 2 * self.kappa * self.error

    def info(self) -> dict:
        """JSON-ready solver summary."""
        return solve_info(self.results, self.true_residuals, self.seconds)


def chiral_condensate(D, nsamples: int, rng, solve=None, purpose=("z2",)) -> CondensateResult:
    """Collective: Z2-noise estimate of ``(1/V) Tr D^{-1}`` from ``nsamples`` solves.

    Args:
        D: the Dirac operator (kappa normalization), with ``apply``, ``lattice``, ``backend``.
        nsamples: number of noise vectors (>= 1; the error needs >= 2).
        rng: a :class:`lattice_hpc.rng.CounterRNG`; sample ``n`` uses purpose ``purpose + (n,)``.
        solve: ``solve(D, b) -> SolveResult`` (default: even/odd CGNE at 1e-12).

    Returns:
        a :class:`CondensateResult`; ``mean`` estimates ``(1/V) Tr D^{-1}`` (``-<psibar psi>``).
    """
    nsamples = int(nsamples)
    if nsamples < 1:
        raise ValueError(f"nsamples = {nsamples} must be >= 1")
    lat = D.lattice
    solve = default_solve if solve is None else solve
    out = CondensateResult(mean=0.0, error=float("nan"), samples=np.zeros(0),
                           kappa=float(getattr(D, "kappa", float("nan"))))
    values = []
    start = time.perf_counter()
    for n in range(nsamples):
        eta = z2_noise(lat, rng, tuple(purpose) + (n,), D.backend, getattr(D, "site_shape", None))
        res = solve(D, eta)
        values.append(inner(lat, eta, res.x) / lat.volume)  # collective
        out.true_residuals.append(residual(D, res.x, eta))
        out.iterations.append(int(res.iterations))
        out.results.append(res)
    out.seconds = time.perf_counter() - start
    z = np.array(values, dtype=np.complex128)
    out.samples = z.real.copy()
    out.mean = float(z.real.mean())
    out.imag_mean = float(z.imag.mean())
    if nsamples > 1:
        out.error = float(z.real.std(ddof=1) / np.sqrt(nsamples))
    return out
