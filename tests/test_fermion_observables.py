"""Fermionic observables: point propagators, the pion correlator, the chiral condensate, ``measure``.

- free field: the solver's propagator and pion correlator equal the momentum-space formulas of
  :mod:`lattice_hpc.fermions.free` (independent derivations: numerical ``M(p)^{-1}`` + FFT for the
  propagator, a closed form in the time momenta for the pion), and ``C(t) = C(T - t)``;
- hot field: ``D S = source`` column by column, ``C(t) > 0``, gauge covariance of ``S`` and
  invariance of ``C``, translation invariance (field and source shifted together);
- the pion correlator, the Z2 noise and the condensate are the same on every process grid;
- the Z2 estimate of ``Tr D^{-1} / V`` agrees with the exact trace of the dense ``D``, and the free
  trace from momentum space equals the dense one;
- ``lattice-hpc measure --observables pion,condensate`` serially and under ``mpirun -n 2`` equals
  the in-process computation; missing or bad ``--kappa`` exits 2 naming it.
"""

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from helpers import grids_run, on_grids, run_cli as _cli
from lattice_hpc.backend import Backend
from lattice_hpc.comm import self_comm, world
from lattice_hpc.errors import ConfigError
from lattice_hpc.fermions import (WilsonDirac, chiral_condensate, gather_spinor, inner,
                                  pion_correlator, point_propagator, point_source, z2_noise)
from lattice_hpc.fermions import free
from lattice_hpc.gauge import GaugeField, gauge_transform, random_gauge_transformation
from lattice_hpc.geometry import Lattice
from lattice_hpc.groups import get_group
from lattice_hpc.io import read_gauge
from lattice_hpc.rng import CounterRNG

SU3 = get_group("SU3")
B = Backend("numpy", "double")
GRIDS = [(1, 1, 1, 1), (1, 1, 1, 2), (1, 1, 2, 2), (2, 1, 1, 2)]
DATA = os.path.join(os.path.dirname(__file__), "data")
MILC = os.path.join(DATA, "milc_4x4x4x4.ildg")


def _lattice(dims=(4, 4, 4, 8)):
    return Lattice(dims, (1,) * len(dims), comm=self_comm())


def _cold(lat):
    U = GaugeField.cold(lat, SU3)
    U.refresh()
    return U


def _hot(lat, seed=3):
    U = GaugeField.hot(lat, SU3, CounterRNG(seed))
    U.refresh()
    return U


def _relres(D, x, b):
    r = b - D.apply(x)
    return np.sqrt(inner(D.lattice, r, r).real / inner(D.lattice, b, b).real)


# -- free field ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kappa,bc", [(0.1, None), (0.12, None), (0.1, (1, 1, 1, 1))])
def test_free_propagator_and_pion_equal_momentum_space(kappa, bc):
    dims = (4, 4, 4, 8)
    lat = _lattice(dims)
    D = WilsonDirac(_cold(lat), kappa, bc=bc)
    prop = point_propagator(D)
    want = free.free_propagator_colour(dims, kappa, bc)
    assert np.abs(want).max() > 0.5
    np.testing.assert_allclose(prop.S, want, rtol=0, atol=1e-10)

    C = pion_correlator(lat, prop)
    Cf = free.free_pion_correlator(dims, kappa, bc)
    assert C.shape == (8,) and C.dtype == np.float64
    np.testing.assert_allclose(C, Cf, rtol=1e-10, atol=0)
    np.testing.assert_allclose(C[1:], C[:0:-1], rtol=1e-10)  # C(t) = C(T - t)
    np.testing.assert_allclose(Cf[1:], Cf[:0:-1], rtol=1e-12)
    assert C[0] > C[1] > C[2] > C[3] > C[4] > 0  # decays towards T/2
    assert max(prop.true_residuals) < 1e-12 and min(prop.iterations) > 5


def test_free_pion_closed_form_equals_the_position_space_sum():
    """The closed-form pion equals 3 sum |S|^2 of the FFT propagator, and depends on the b.c."""
    dims = (4, 4, 6, 8)
    S = free.free_propagator(dims, 0.11)
    C = 3 * (np.abs(S) ** 2).reshape(8, -1).sum(axis=1)
    np.testing.assert_allclose(free.free_pion_correlator(dims, 0.11), C, rtol=1e-12)
    periodic = free.free_pion_correlator(dims, 0.11, (1, 1, 1, 1))
    assert np.abs(periodic / C - 1).max() > 1e-3


# -- hot field: identities that hold configuration by configuration ------------------------------
@pytest.mark.parametrize("csw", [0.0, 1.0])
def test_propagator_columns_solve_the_dirac_equation(csw):
    lat = _lattice()
    D = WilsonDirac(_hot(lat), 0.12, csw)
    site = (1, 2, 3, 5)
    prop = point_propagator(D, site)
    assert prop.S.shape == (8, 4, 4, 4, 4, 3, 4, 3) and len(prop.iterations) == 12
    for s in range(4):
        for c in range(3):
            b = point_source(lat, B, site, s, c)
            res = _relres(D, prop.column(s, c), b)
            assert res < 1e-10
            assert res == pytest.approx(prop.true_residuals[3 * s + c], rel=1e-6, abs=1e-15)
    C = pion_correlator(lat, prop)
    assert np.all(C > 0)
    assert C[0] > 1  # the contact term: |S(0;0)|^2 summed over 12 columns, S(0;0) ~ 1
    # not C(t) = C(T-t) exactly on a hot field (only on average): the test below has teeth
    assert np.abs(C[1:] / C[:0:-1] - 1).max() > 1e-3


@pytest.mark.parametrize("csw", [0.0, 1.0])
def test_pion_is_gauge_invariant_and_propagator_covariant(csw):
    lat = _lattice()
    U = _hot(lat)
    g = random_gauge_transformation(lat, SU3, CounterRNG(11), B)
    Ug = gauge_transform(U, g)
    p, pg = point_propagator(WilsonDirac(U, 0.12, csw)), point_propagator(WilsonDirac(Ug, 0.12, csw))
    # S[U^g](x; 0) = g(x) S[U](x; 0) g(0)^dag in colour
    g0 = g[0, 0, 0, 0]
    want = np.einsum("...ab,...sbrc,dc->...sard", g, p.S, g0.conj())
    np.testing.assert_allclose(pg.S, want, rtol=0, atol=1e-10)
    assert np.abs(pg.S - p.S).max() > 1e-2  # the propagator itself is not invariant
    C, Cg = pion_correlator(lat, p), pion_correlator(lat, pg)
    np.testing.assert_allclose(Cg, C, rtol=1e-10, atol=0)


def test_pion_is_translation_invariant():
    """Shift the field by a lattice vector ``a`` and the source to ``a``: same ``C`` (relative to
    the source time), though the shift crosses the antiperiodic time boundary."""
    dims = (4, 4, 4, 8)
    lat = _lattice(dims)
    U = _hot(lat, 5)
    a = (1, 2, 3, 5)
    links = U.gather()  # serial: global = local, memory order (mu, t, z, y, x, 3, 3)
    Ua = GaugeField(lat, SU3, B)
    Ua.set_interior(np.roll(links, shift=tuple(reversed(a)), axis=(1, 2, 3, 4)))  # U_a(x) = U(x - a)
    Ua.refresh()
    p = point_propagator(WilsonDirac(U, 0.12, 1.0))
    pa = point_propagator(WilsonDirac(Ua, 0.12, 1.0), a)
    C, Ca = pion_correlator(lat, p), pion_correlator(lat, pa)
    np.testing.assert_allclose(Ca, C, rtol=1e-10, atol=0)
    # the propagator itself: S_a(x + a; a) = +/- S(x; 0) (sign: antiperiodic wrap in time)
    back = np.roll(pa.S, shift=tuple(-v for v in reversed(a)), axis=(0, 1, 2, 3))
    np.testing.assert_allclose(np.abs(back), np.abs(p.S), rtol=0, atol=1e-10)
    # the source at a on the unshifted field gives another (hot field) correlator
    other = pion_correlator(lat, point_propagator(WilsonDirac(U, 0.12, 1.0), a))
    assert np.abs(other / C - 1).max() > 1e-3


# -- every process grid ---------------------------------------------------------------------------
@pytest.mark.mpi
def test_pion_and_noise_are_the_same_on_every_grid():
    """Clover (the plain Wilson hops are part of it), the source off the origin so that it lives on
    another rank than 0 in the split grids; the condensate from 2 noise vectors.  (Each grid costs
    14 solves: slow when the ranks are oversubscribed, hence one case.)"""
    dims = (4, 4, 4, 8)
    site = (3, 1, 2, 5)

    def body(lat):
        D = WilsonDirac(_hot(lat, 7), 0.12, 1.0)
        C = pion_correlator(lat, point_propagator(D, site))
        eta = gather_spinor(lat, z2_noise(lat, CounterRNG(2), ("z2", 0), B))
        cond = chiral_condensate(D, 2, CounterRNG(2))
        return C, eta, cond.samples, cond.mean, cond.error

    res = on_grids(dims, GRIDS, body)
    if world().rank == 0:
        C0, eta0, s0, m0, e0 = res["serial"]
        assert np.all(C0 > 0) and C0[0] > 1
        assert set(np.unique(eta0.real)) == {-1.0, 1.0} and not eta0.imag.any()
        for key in grids_run(res):
            C, eta, s, m, e = res[key]
            np.testing.assert_allclose(C, C0, rtol=1e-12, atol=0)
            np.testing.assert_array_equal(eta, eta0)
            np.testing.assert_allclose(s, s0, rtol=1e-12)
            assert m == pytest.approx(m0, rel=1e-12) and e == pytest.approx(e0, rel=1e-9)


# -- chiral condensate ----------------------------------------------------------------------------
def _dense(D):
    """The matrix of ``D`` on the spin-colour-site vector space, column by column."""
    shape = D.shape()
    n = int(np.prod(shape))
    M = np.empty((n, n), dtype=np.complex128)
    e = np.zeros(n, dtype=np.complex128)
    for j in range(n):
        e[j] = 1.0
        M[:, j] = D.apply(e.reshape(shape)).ravel()
        e[j] = 0.0
    return M


@pytest.mark.parametrize("csw", [0.0, 1.0])
def test_z2_condensate_agrees_with_the_exact_trace(csw):
    dims = (2, 2, 2, 4)
    lat = _lattice(dims)
    U = GaugeField.near_identity(lat, SU3, CounterRNG(13), epsilon=0.5)  # smooth: Tr D^-1 / V != 12
    U.refresh()
    D = WilsonDirac(U, 0.12, csw)
    exact = np.trace(np.linalg.inv(_dense(D))) / lat.volume
    assert abs(exact.imag) < 1e-12  # gamma_5-hermiticity
    res = chiral_condensate(D, 64, CounterRNG(1))
    assert res.samples.shape == (64,) and res.error > 0
    assert abs(res.mean - exact.real) < 4 * res.error
    assert res.error < 0.05 * abs(exact.real)  # the noise is off-diagonal only: a small error
    assert abs(res.imag_mean) < 4 * res.error
    assert res.bare() == pytest.approx((0.24 * res.mean, 0.24 * res.error))
    assert max(res.true_residuals) < 1e-10 and len(res.iterations) == 64
    # teeth: the estimate resolves Tr D^-1 / V beyond its kappa -> 0 value 12 (about 1.9 here)
    assert abs(res.mean - 12) > 10 * res.error


@pytest.mark.parametrize("kappa", [0.1, 0.12])
def test_free_trace_equals_the_dense_trace(kappa):
    dims = (2, 2, 2, 4)
    lat = _lattice(dims)
    exact = np.trace(np.linalg.inv(_dense(WilsonDirac(_cold(lat), kappa))))
    assert free.free_trace(dims, kappa) == pytest.approx(exact.real, rel=1e-10)
    assert abs(exact.imag) < 1e-10


def test_z2_noise_is_real_z2_and_balanced():
    lat = _lattice()
    eta = z2_noise(lat, CounterRNG(4), ("z2", 0), B)
    assert eta.shape == (8, 4, 4, 4, 4, 3)
    assert np.all(np.abs(eta) == 1) and not eta.imag.any()
    assert abs(eta.real.mean()) < 0.1
    other = z2_noise(lat, CounterRNG(4), ("z2", 1), B)
    assert 0.4 < np.mean(other == eta) < 0.6


def test_fermionic_observables_need_4d_su3_or_2d_u1():
    from lattice_hpc.driver.files import fermion_observables

    lat = Lattice((4, 4, 4), (1, 1, 1), comm=self_comm())
    U = GaugeField.cold(lat, get_group("U1"))
    args = SimpleNamespace(file="three_d.h5", kappa=0.12, csw=None, noise=16, seed=0)
    with pytest.raises(ConfigError, match="4D SU\\(3\\) gauge field or a 2D U\\(1\\)"):
        fermion_observables(U, ["pion"], args)
    lat = Lattice((4, 4), (1, 1), comm=self_comm())
    U = GaugeField.cold(lat, get_group("U1"))
    with pytest.raises(ConfigError, match="--csw 1.0: the clover term"):
        fermion_observables(U, ["pion"], SimpleNamespace(file="two_d.h5", kappa=0.2, csw=1.0))
    out = fermion_observables(U, ["pion"], SimpleNamespace(file="two_d.h5", kappa=0.2, csw=None))
    from lattice_hpc.fermions.free import free_pion_correlator
    np.testing.assert_allclose(out["pion"], free_pion_correlator((4, 4), 0.2), rtol=1e-10)


# -- the command line -----------------------------------------------------------------------------


@pytest.mark.parametrize("csw", [None, 1.0])
def test_measure_pion_serial_and_parallel_equal_in_process(csw):
    # the condensate (2 noise vectors) rides along in the plain Wilson case only, to save time
    extra = ["--observables", "pion,condensate", "--noise", "2"] if csw is None else \
        ["--observables", "pion", "--csw", str(csw)]
    args = ["measure", MILC, "--kappa", "0.12"] + extra
    serial, par = _cli(args), _cli(args, np=2)
    assert serial.returncode == 0, serial.stderr
    assert par.returncode == 0, par.stderr
    a, b = json.loads(serial.stdout), json.loads(par.stdout)

    cfg = read_gauge(MILC, self_comm())
    D = WilsonDirac(cfg.field, 0.12, csw or 0.0)
    want = pion_correlator(cfg.field.lattice, point_propagator(D))
    cond = chiral_condensate(D, 2, CounterRNG(0)) if csw is None else None
    for out in (a, b):
        assert len(out["pion"]) == 4 and all(c > 0 for c in out["pion"])
        np.testing.assert_allclose(out["pion"], want, rtol=1e-10, atol=0)
        assert out["pion_solver"]["max_true_residual"] < 1e-10
        assert len(out["pion_solver"]["iterations"]) == 12
        assert out["kappa"] == 0.12 and out["csw"] == (csw or 0.0)
        if cond is not None:
            assert out["condensate"][0] == pytest.approx(cond.mean, rel=1e-10)
            assert out["condensate"][1] == pytest.approx(cond.error, rel=1e-6)
            assert out["condensate"][1] > 0
        else:
            assert "condensate" not in out
    np.testing.assert_allclose(b["pion"], a["pion"], rtol=1e-10, atol=0)


@pytest.mark.parametrize("extra,message", [
    ([], "needs --kappa"),
    (["--kappa", "0"], "--kappa = 0.0 must be > 0"),
    (["--kappa", "-0.1"], "--kappa = -0.1 must be > 0"),
])
def test_measure_pion_without_a_good_kappa_exits_2(extra, message):
    proc = _cli(["measure", MILC, "--observables", "pion"] + extra)
    assert proc.returncode == 2
    assert message in proc.stderr and "--kappa" in proc.stderr
    assert proc.stdout == ""
