"""Heatbath physics: exact one-link samplers, 2D U(1) exact plaquette, SU(3) strong coupling."""

import math

import numpy as np
import pytest

from lattice_hpc.analysis import binned_error
from lattice_hpc.comm import self_comm
from lattice_hpc.gauge import GaugeField, plaquette
from lattice_hpc.geometry import Lattice
from lattice_hpc.groups import get_group
from lattice_hpc.rng import CounterRNG
from lattice_hpc.update import heatbath_sweep, overrelax_sweep
from lattice_hpc.update.samplers import su2_a0, von_mises


def bessel_i(n, x, terms=60):
    return sum((x / 2) ** (2 * k + n) / (math.factorial(k) * math.factorial(k + n)) for k in range(terms))


def _uniforms(seed, n):
    rng = CounterRNG(seed)
    sites = np.arange(n, dtype=np.int64)
    return lambda todo, m, draw: rng.uniform("t", sites[todo], m, draw)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.9, 2.5, 10.0])
def test_su2_a0_sampler_mean(alpha):
    """<a0> under sqrt(1-a0^2) exp(alpha a0) is I_2(alpha)/I_1(alpha) (0 at alpha = 0)."""
    n = 200000
    a0, _ = su2_a0(np.full(n, alpha), _uniforms(1, n))
    exact = bessel_i(2, alpha) / bessel_i(1, alpha) if alpha > 0 else 0.0
    assert np.all(np.abs(a0) <= 1)
    assert abs(a0.mean() - exact) < 4 * a0.std() / np.sqrt(n)


@pytest.mark.parametrize("kappa", [0.0, 0.3, 2.0, 20.0])
def test_von_mises_sampler_mean(kappa):
    n = 200000
    th = von_mises(np.full(n, kappa), _uniforms(2, n))
    c = np.cos(th)
    exact = bessel_i(1, kappa) / bessel_i(0, kappa)
    assert abs(c.mean() - exact) < 4 * c.std() / np.sqrt(n)
    assert abs(np.sin(th).mean()) < 4 / np.sqrt(n)


def _chain(name, dims, beta, nsweeps, ntherm, n_or=0, seed=1):
    lat = Lattice(dims, (1,) * len(dims), comm=self_comm())
    U = GaugeField.hot(lat, get_group(name), CounterRNG(seed))
    U.refresh()
    rng = CounterRNG(seed)
    out = []
    for s in range(nsweeps):
        heatbath_sweep(U, beta, rng, s)
        for _ in range(n_or):
            overrelax_sweep(U, beta)
        if s >= ntherm:
            out.append(plaquette(U)["plaquette"])
    return np.array(out)


def test_u1_2d_plaquette_matches_exact_value():
    """2D U(1), beta = 2, L = 8: <cos theta_P> = I1(2)/I0(2) = 0.6977746579... (within 3 sigma)."""
    p = _chain("U1", (8, 8), 2.0, 1600, 100, n_or=1)
    mean, err = p.mean(), binned_error(p)
    exact = bessel_i(1, 2.0) / bessel_i(0, 2.0)
    assert abs(exact - 0.6977746579640081) < 1e-12
    assert abs(mean - exact) < 3 * err, f"{mean} +- {err} vs {exact}"
    assert err < 0.004


def test_su3_strong_coupling():
    """SU(3), beta = 0.5: <P> = beta/18 + beta^2/216 + O(beta^3) (single-plaquette cumulants).

    The beta^3 coefficient of the single-plaquette model vanishes (the fourth cumulant of Re Tr U
    is zero for SU(3)); the allowance beta^3/500 covers higher-order lattice contributions.
    """
    beta = 0.5
    p = _chain("SU3", (4, 4, 4, 4), beta, 420, 20)
    mean, err = p.mean(), binned_error(p)
    expansion = beta / 18 + beta ** 2 / 216
    assert abs(mean - expansion) < 3 * err + beta ** 3 / 500, f"{mean} +- {err} vs {expansion}"
    assert err < 5e-4
