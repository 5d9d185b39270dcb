"""Wilson fermions of the 2D Schwinger model (U(1) links, two-component spinors), issue 14.

The same invariants as the 4D operator (``tests/test_wilson.py``):

- the 2D Dirac algebra (Pauli matrices, ``gamma_5 = sigma_3``);
- gamma_5-hermiticity: the explicit ``D^dag`` equals ``gamma_5 D gamma_5`` and is the adjoint of ``D``;
- gauge covariance ``D[U^g] (g psi) = g D[U] psi``;
- on the free field, plane waves are eigenvectors with the momentum-space matrix, and the point
  propagator and pion correlator equal the momentum-space sums to 1e-10;
- the two-flavour pseudofermion force is the derivative of its action (finite differences) and
  ``det(D^dag D) = det(D_hat^dag D_hat)`` for Wilson fermions (dense matrices);
- ``D psi``, the pseudofermion action and its force are identical on the grids 1x1, 1x2, 2x1, 2x2;
- what is not implemented in 2D (clover, the fused kernels) is refused with a message.
"""

import numpy as np
import pytest

from helpers import grids_run, on_grids
from lattice_hpc.backend import Backend
from lattice_hpc.comm import self_comm, world
from lattice_hpc.errors import BackendError
from lattice_hpc.fermions import (SchurOperator, WilsonDirac, gather_spinor, inner, point_propagator,
                                  pion_correlator, random_spinor)
from lattice_hpc.fermions.free import free_pion_correlator, free_propagator_colour
from lattice_hpc.fermions.gamma import GAMMA5_2D, GAMMA_2D, gammas, projector
from lattice_hpc.gauge import GaugeField, gauge_transform, random_gauge_transformation
from lattice_hpc.geometry import Lattice
from lattice_hpc.groups import get_group
from lattice_hpc.hmc.pseudofermions import TwoFlavour
from lattice_hpc.rng import CounterRNG

U1 = get_group("U1")
B = Backend("numpy", "double")
GRIDS = [(1, 1), (1, 2), (2, 1), (2, 2)]
TIGHT = dict(force_tol=1e-13, action_tol=1e-13)


def _lattice(dims=(6, 8)):
    return Lattice(dims, (1,) * len(dims), comm=self_comm())


def _hot(lat, seed=3):
    U = GaugeField.hot(lat, U1, CounterRNG(seed))
    U.refresh()
    return U


def test_dirac_algebra_2d():
    G, G5 = gammas(2)
    assert G is GAMMA_2D and G5 is GAMMA5_2D
    for mu in range(2):
        assert np.allclose(G[mu], G[mu].conj().T)
        assert np.allclose(G[mu] @ G5 + G5 @ G[mu], 0)
        for nu in range(2):
            assert np.allclose(G[mu] @ G[nu] + G[nu] @ G[mu], 2 * (mu == nu) * np.eye(2))
        for s in (1, -1):
            P, R = projector(mu, s, 2)
            assert P.shape == (1, 2) and R.shape == (2, 1)
            assert np.allclose(R @ P, np.eye(2) - s * G[mu])
    assert np.allclose(G5, np.diag([1, -1]))


def test_gamma5_hermiticity_2d():
    lat = _lattice()
    D = WilsonDirac(_hot(lat), kappa=0.26)
    assert D.site_shape == (2, 1) and D.shape() == (8, 6, 2, 1) and D.hopping.name == "reference"
    rng = CounterRNG(9)
    psi, phi = (random_spinor(lat, rng, (k,), B, D.site_shape) for k in "ab")
    explicit = D.apply_dagger(psi)
    assert np.allclose(explicit, D.gamma5(D.apply(D.gamma5(psi))), atol=1e-13)
    lhs, rhs = inner(lat, phi, D.apply(psi)), inner(lat, D.apply_dagger(phi), psi)
    assert abs(lhs - rhs) < 1e-12 * abs(lhs)
    assert np.linalg.norm(D.apply(psi) - explicit) > 1  # D is not Hermitian: the check has teeth


def test_gauge_covariance_2d():
    lat = _lattice()
    U = _hot(lat)
    g = random_gauge_transformation(lat, U1, CounterRNG(4), B)
    Ug = gauge_transform(U, g)
    psi = random_spinor(lat, CounterRNG(5), ("psi",), B)
    D, Dg = WilsonDirac(U, 0.24), WilsonDirac(Ug, 0.24)
    gpsi = psi @ g.swapaxes(-1, -2)
    want = D.apply(psi) @ g.swapaxes(-1, -2)
    assert np.allclose(Dg.apply(gpsi), want, atol=1e-13)
    assert not np.allclose(D.apply(gpsi), want, atol=1e-3)


def test_free_field_plane_waves_have_the_analytic_eigenvalues_2d():
    dims = (6, 8)
    lat = _lattice(dims)
    U = GaugeField.cold(lat, U1)
    U.refresh()
    kappa = 0.21
    D = WilsonDirac(U, kappa)
    coords = lat.global_coords
    rng = np.random.default_rng(1)
    for n in [(0, 0), (1, 3), (5, 7), (2, 0)]:
        p = [2 * np.pi * n[0] / dims[0], (2 * np.pi * n[1] + np.pi) / dims[1]]  # antiperiodic t
        phase = np.exp(1j * (p[0] * coords[0] + p[1] * coords[1]))
        u = rng.standard_normal((2, 1)) + 1j * rng.standard_normal((2, 1))
        psi = phase[..., None, None] * u
        M = (1 - 2 * kappa * sum(np.cos(p))) * np.eye(2) + 2j * kappa * sum(
            np.sin(p[mu]) * GAMMA_2D[mu] for mu in range(2))
        assert np.allclose(D.apply(psi), phase[..., None, None] * (M @ u), atol=1e-13)


@pytest.mark.parametrize("kappa,bc", [(0.2, None), (0.24, (1, 1))])
def test_free_propagator_and_pion_equal_momentum_space_2d(kappa, bc):
    dims = (6, 8)
    lat = _lattice(dims)
    U = GaugeField.cold(lat, U1)
    U.refresh()
    D = WilsonDirac(U, kappa, bc=bc)
    S = point_propagator(D)
    assert S.S.shape == (8, 6, 2, 1, 2, 1)
    want = free_propagator_colour(dims, kappa, bc)
    assert np.abs(S.S - want).max() < 1e-10 * np.abs(want).max()
    C = pion_correlator(lat, S)
    np.testing.assert_allclose(C, free_pion_correlator(dims, kappa, bc), rtol=1e-10)
    assert np.allclose(C[1:], C[1:][::-1], rtol=1e-10)  # C(t) = C(T - t)


def _directional(lat, X, F):
    return lat.comm.allreduce(float(sum((X[mu] @ F[mu]).diagonal(axis1=-2, axis2=-1).sum().real
                                        for mu in range(lat.ndim))))


def test_two_flavour_force_is_the_derivative_of_the_action_2d():
    lat = _lattice((8, 8))
    U = _hot(lat, 11)
    m = TwoFlavour(0.25, 0.0, name="schwinger", **TIGHT)
    m.refresh(U, CounterRNG(7), 2)
    F = m.force(U)
    assert F.shape == (2, 8, 8, 1, 1) and np.abs(F.real).max() == 0  # in the algebra i R
    for k in range(2):
        X = np.stack([U1.algebra(CounterRNG(5).normal(("dir", k, mu), lat.global_index, 1))
                      for mu in range(2)])
        predicted = _directional(lat, X, F)

        def S(eps):
            V = U.copy()
            V.set_interior(np.stack([U1.exp(eps * X[mu]) * U.U(mu) for mu in range(2)]))
            V.refresh()
            return m.action(V)

        h = 1e-5
        fd = (S(h) - S(-h)) / (2 * h)
        assert abs(predicted - fd) < 1e-6 * abs(fd), (predicted, fd)


def _dense(apply, lat, shape, mask=None):
    n = int(np.prod(shape))
    cols = []
    for j in range(n):
        e = np.zeros(n, dtype=np.complex128)
        e[j] = 1
        cols.append(apply(e.reshape(shape)).reshape(-1))
    M = np.array(cols).T
    if mask is not None:
        keep = np.broadcast_to(mask[..., None, None], shape).reshape(-1)
        M = M[np.ix_(keep, keep)]
    return M


def test_determinant_and_action_against_dense_matrices_2d():
    """``det(D^dag D) = det(D_hat^dag D_hat)`` (Wilson: ``A = 1``), and the pseudofermion action is
    ``phi^dag (D_hat^dag D_hat)^{-1} phi`` with the dense inverse."""
    lat = _lattice((4, 4))
    U = _hot(lat, 5)
    D = WilsonDirac(U, 0.27)
    shape = D.shape()
    full = _dense(D.apply, lat, shape)
    even = lat.parity_sites(0, np)[0].astype(bool)
    Dh = _dense(SchurOperator(D).apply, lat, shape, even)
    _, ld_full = np.linalg.slogdet(full.conj().T @ full)
    _, ld_hat = np.linalg.slogdet(Dh.conj().T @ Dh)
    assert abs(ld_full - ld_hat) < 1e-10 * abs(ld_full)
    assert abs(ld_full) > 0.1  # a non-trivial determinant
    m = TwoFlavour(0.27, 0.0, name="dense", **TIGHT)
    m.refresh(U, CounterRNG(2), 0)
    phi = m.phi[np.broadcast_to(even[..., None, None], shape)]
    want = np.vdot(phi, np.linalg.solve(Dh.conj().T @ Dh, phi)).real
    assert abs(m.action(U) - want) < 1e-10 * want


def test_what_2d_does_not_have_is_refused():
    lat = _lattice()
    U = _hot(lat)
    with pytest.raises(ValueError, match="clover term is implemented for 4D SU\\(3\\)"):
        WilsonDirac(U, 0.25, csw=1.0)
    with pytest.raises(BackendError, match="kernel='reference'"):
        WilsonDirac(U, 0.25, kernel="compiled")
    with pytest.raises(ValueError, match="recon=12"):
        WilsonDirac(U, 0.25, recon=12)


@pytest.mark.mpi
def test_schwinger_operator_and_pseudofermions_are_the_same_on_every_grid():
    dims = (8, 8)

    def body(lat):
        U = _hot(lat, 7)
        D = WilsonDirac(U, 0.26)
        psi = random_spinor(lat, CounterRNG(8), ("psi",), B)
        m = TwoFlavour(0.26, 0.0, name="grid", **TIGHT)
        m.refresh(U, CounterRNG(3), 1)
        F = m.force(U)
        return (gather_spinor(lat, D.apply(psi)), gather_spinor(lat, D.apply_dagger(psi)),
                np.array([m.action(U), float(lat.comm.allreduce(float(np.sum(np.abs(F) ** 2))))]),
                gather_spinor(lat, F.transpose(1, 2, 0, 3, 4).reshape(lat.shape(0) + (2, 1))))

    res = on_grids(dims, GRIDS, body)
    if world().rank == 0:
        for key in grids_run(res):
            for got, want in zip(res[key], res["serial"]):
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
