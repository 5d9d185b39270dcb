"""Wilson and Wilson-clover Dirac operators: identities, covariance, free field, decomposition.

- Dirac algebra of the DeGrand-Rossi matrices;
- gamma_5-hermiticity: the explicit ``D^dag`` equals ``gamma_5 D gamma_5`` and is the adjoint of ``D``;
- gauge covariance ``D[U^g] (g psi) = g D[U] psi``;
- on the free field, plane waves with antiperiodic time momenta are eigenvectors with the
  analytic momentum-space matrix;
- the clover term is Hermitian and vanishes on a cold start;
- ``D psi`` is identical (1e-12) for the process grids 1x1x1x1, 1x1x1x2, 1x1x2x2, 2x1x1x2.
"""

import numpy as np
import pytest

from helpers import grids_run, on_grids
from lattice_hpc.backend import Backend
from lattice_hpc.comm import self_comm, world
from lattice_hpc.fermions import GAMMA, GAMMA5, WilsonDirac, gather_spinor, inner, random_spinor
from lattice_hpc.gauge import GaugeField, gauge_transform, random_gauge_transformation
from lattice_hpc.geometry import Lattice
from lattice_hpc.groups import get_group
from lattice_hpc.rng import CounterRNG

SU3 = get_group("SU3")
B = Backend("numpy", "double")
GRIDS = [(1, 1, 1, 1), (1, 1, 1, 2), (1, 1, 2, 2), (2, 1, 1, 2)]


def _lattice(dims=(4, 4, 4, 8)):
    return Lattice(dims, (1,) * len(dims), comm=self_comm())


def _hot(lat, seed=3):
    U = GaugeField.hot(lat, SU3, CounterRNG(seed))
    U.refresh()
    return U


def test_dirac_algebra():
    for mu in range(4):
        assert np.allclose(GAMMA[mu], GAMMA[mu].conj().T)
        for nu in range(4):
            anti = GAMMA[mu] @ GAMMA[nu] + GAMMA[nu] @ GAMMA[mu]
            assert np.allclose(anti, 2 * (mu == nu) * np.eye(4))
    assert np.allclose(GAMMA5, np.diag([1, 1, -1, -1]))


@pytest.mark.parametrize("csw", [0.0, 1.7])
def test_gamma5_hermiticity(csw):
    lat = _lattice()
    D = WilsonDirac(_hot(lat), kappa=0.124, csw=csw)
    rng = CounterRNG(9)
    psi, phi = random_spinor(lat, rng, ("a",), B), random_spinor(lat, rng, ("b",), B)
    explicit = D.apply_dagger(psi)
    assert np.allclose(explicit, D.gamma5(D.apply(D.gamma5(psi))), atol=1e-12)
    lhs, rhs = inner(lat, phi, D.apply(psi)), inner(lat, D.apply_dagger(phi), psi)
    assert abs(lhs - rhs) < 1e-10 * abs(lhs)
    assert np.linalg.norm(D.apply(psi) - explicit) > 1  # D is not Hermitian: the check has teeth


@pytest.mark.parametrize("csw", [0.0, 1.0])
def test_gauge_covariance(csw):
    lat = _lattice()
    U = _hot(lat)
    g = random_gauge_transformation(lat, SU3, CounterRNG(4), B)
    Ug = gauge_transform(U, g)
    psi = random_spinor(lat, CounterRNG(5), ("psi",), B)
    D, Dg = WilsonDirac(U, 0.13, csw), WilsonDirac(Ug, 0.13, csw)
    gpsi = psi @ g.swapaxes(-1, -2)  # colour rotation g(x) psi(x)
    want = D.apply(psi) @ g.swapaxes(-1, -2)
    assert np.allclose(Dg.apply(gpsi), want, atol=1e-12)
    assert not np.allclose(D.apply(gpsi), want, atol=1e-3)


def test_free_field_plane_waves_have_the_analytic_eigenvalues():
    dims = (4, 4, 6, 8)
    lat = _lattice(dims)
    U = GaugeField.cold(lat, SU3)
    U.refresh()
    kappa = 0.11
    D = WilsonDirac(U, kappa)
    coords = lat.global_coords
    rng = np.random.default_rng(1)
    for n in [(0, 0, 0, 0), (1, 0, 2, 3), (3, 1, 5, 7), (2, 3, 1, 0)]:
        # antiperiodic time: p_t = (2 pi n_t + pi) / T
        p = [2 * np.pi * n[mu] / dims[mu] for mu in range(3)] + [(2 * np.pi * n[3] + np.pi) / dims[3]]
        phase = np.exp(1j * sum(p[mu] * coords[mu] for mu in range(4)))
        u = rng.standard_normal((4, 3)) + 1j * rng.standard_normal((4, 3))
        psi = phase[..., None, None] * u
        M = (1 - 2 * kappa * sum(np.cos(p))) * np.eye(4) + 2j * kappa * sum(
            np.sin(p[mu]) * GAMMA[mu] for mu in range(4))
        assert np.allclose(D.apply(psi), phase[..., None, None] * (M @ u), atol=1e-12)


def test_clover_term_is_hermitian_and_vanishes_on_a_cold_start():
    lat = _lattice()
    cold = GaugeField.cold(lat, SU3)
    cold.refresh()
    A = WilsonDirac(cold, 0.12, csw=1.5).clover
    assert np.allclose(A, np.eye(6), atol=1e-14)
    A = WilsonDirac(_hot(lat), 0.12, csw=1.5).clover
    assert np.allclose(A, A.conj().swapaxes(-1, -2), atol=1e-13)
    assert np.abs(A - np.eye(6)).max() > 0.01


@pytest.mark.mpi
@pytest.mark.parametrize("csw", [0.0, 1.2])
def test_dirac_operator_is_identical_on_every_grid(csw):
    dims = (4, 4, 4, 8)

    def body(lat):
        D = WilsonDirac(_hot(lat, 7), 0.125, csw)
        psi = random_spinor(lat, CounterRNG(8), ("psi",), B)
        return gather_spinor(lat, D.apply(psi)), gather_spinor(lat, D.apply_dagger(psi))

    res = on_grids(dims, GRIDS, body)
    if world().rank == 0:
        for key in grids_run(res):
            for got, want in zip(res[key], res["serial"]):
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
