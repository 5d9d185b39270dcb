"""The exact 2D U(1) formulas (character expansion on a torus) against direct integration."""

import numpy as np

from lattice_hpc.gauge.exact_u1 import (infinite_volume, log_partition, plaquette,
                                        topological_susceptibility)


def _wrap(phi):
    """To (-pi, pi]."""
    return np.pi - np.mod(np.pi - phi, 2 * np.pi)


def test_small_tori_equal_direct_integration():
    # On a torus of V plaquettes the plaquette angles are independent up to sum_p phi_p = 0 mod 2 pi.
    beta = 1.3
    n = 800
    phi = -np.pi + (np.arange(n) + 0.5) * 2 * np.pi / n  # midpoint rule: periodic integrands
    # V = 2: phi_2 = -phi_1, Z = I_0(2 beta), <P> = I_1(2 beta) / I_0(2 beta), Q = 0
    w = np.exp(2 * beta * np.cos(phi))
    assert abs(plaquette(beta, 2) - (np.cos(phi) * w).sum() / w.sum()) < 1e-12
    assert abs(log_partition(beta, 2) - np.log(w.mean())) < 1e-12  # Z = I_0(2 beta), Haar-normalised
    # V = 3: phi_3 = -(phi_1 + phi_2) mod 2 pi; Q = (phi_1 + phi_2 + wrap(phi_3)) / (2 pi) is an integer
    p1, p2 = np.meshgrid(phi, phi, indexing="ij")
    p3 = _wrap(-(p1 + p2))
    w = np.exp(beta * (np.cos(p1) + np.cos(p2) + np.cos(p3)))
    q = np.round((p1 + p2 + p3) / (2 * np.pi))
    P = ((np.cos(p1) + np.cos(p2) + np.cos(p3)) / 3 * w).sum() / w.sum()
    Q2 = (q ** 2 * w).sum() / w.sum()
    assert np.unique(q).tolist() == [-1.0, 0.0, 1.0]
    assert abs(plaquette(beta, 3) - P) < 1e-6
    assert abs(topological_susceptibility(beta, 3)[0] - Q2) < 1e-4
    assert abs(log_partition(beta, 3) - np.log(w.mean())) < 1e-10


def test_log_partition_is_zero_at_beta_zero_and_its_derivative_is_the_plaquette():
    assert log_partition(0.0, 64) == 0.0
    for beta, V in ((2.0, 64), (6.0, 256)):
        h = 1e-5
        d = (log_partition(beta + h, V) - log_partition(beta - h, V)) / (2 * h) / V
        assert abs(d - plaquette(beta, V)) < 1e-8


def test_one_plaquette_torus_is_trivial_and_large_tori_reach_infinite_volume():
    assert abs(plaquette(2.0, 1) - 1) < 1e-12 and abs(topological_susceptibility(2.0, 1)[0]) < 1e-6
    for beta in (2.0, 4.0):
        p, chi = infinite_volume(beta)
        assert abs(plaquette(beta, 16 * 16) - p) < 1e-12
        assert abs(topological_susceptibility(beta, 16 * 16)[1] - chi) < 1e-10
    # the known values at beta = 2: I_1(2)/I_0(2)
    assert abs(infinite_volume(2.0)[0] - 0.6977746579640) < 1e-12
