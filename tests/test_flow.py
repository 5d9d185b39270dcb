"""Wilson flow, E(t), t0 and the topological charge (lattice_hpc.gauge.flow / .topology).

What is checked, and against what:
- the RK3 integrator converges with order 3 (error ratio ~8 per halving of eps, against a fine run);
- the flow keeps links in SU(3), is gauge covariant, lowers the Wilson action at every step and
  obeys the steepest-descent identity ``d/dt [g0^2 S_w] = -sum |Z|^2`` (fixes the normalisation of
  ``Z`` against the independent action of ``action.py``);
- continuum normalisation of the flow time: an abelian plane wave of momentum p decays as
  ``exp(-t phat^2)`` (the heat equation of ``dB/dt = D_nu G_nu mu``), SU(3) in 4D and U(1) in 2D;
- exact fields: the constant-flux abelian field (a stationary point of the flow) has the closed
  form E_clover, E_plaq and Q (sign and normalisation of q: Q -> 2 n1 n2); the plane wave has
  E_clover / E_plaq = cos^2(p/2);
- Q = 0 cold, gauge invariant, odd under parity (reflected field built by hand), sum of q(x);
  the geometric 2D U(1) charge is an integer;
- t0: exact on synthetic linear and cubic data, stable in eps on a real crossing, error naming t_max;
- every process grid gives the serial flowed field, E(t) and Q(t).
"""

import os

import numpy as np
import pytest

from helpers import grids_run, on_grids
from lattice_hpc.comm import self_comm
from lattice_hpc.gauge import (FlowError, GaugeField, energy_density_clover,
                               energy_density_plaquette, find_t0, flow_generator,
                               flow_observables, flow_step, gauge_transform,
                               random_gauge_transformation, t0_from_history,
                               topological_charge, topological_charge_density, wilson_action,
                               wilson_flow)
from lattice_hpc.geometry import Lattice
from lattice_hpc.groups import get_group
from lattice_hpc.groups.linalg import dagger, det
from lattice_hpc.io import read_gauge
from lattice_hpc.rng import CounterRNG

SU3 = get_group("SU3")
U1 = get_group("U1")
DATA = os.path.join(os.path.dirname(__file__), "data")
PYQUDA = os.path.join(DATA, "pyquda_4x4x4x8_weak.lime")


def _serial(dims):
    return Lattice(dims, (1,) * len(dims), comm=self_comm())


def _near_identity(lat, eps=0.3, seed=1, group=SU3):
    U = GaugeField.near_identity(lat, group, CounterRNG(seed), epsilon=eps)
    U.refresh()
    return U


def _abelian(lat, group, theta):
    """Links ``exp(i theta_mu(x) H)``, ``H = diag(1, -1, 0, ..)`` (``1`` for U(1)).

    ``theta(mu, coords)`` gives the angle of direction ``mu`` from the global coordinates.
    """
    h = np.zeros(group.N)
    h[0] = 1.0
    if group.N > 1:
        h[1] = -1.0
    links = []
    for mu in range(lat.ndim):
        th = np.asarray(theta(mu, lat.global_coords), dtype=float) * np.ones(lat.shape(0))
        m = np.zeros(th.shape + (group.N, group.N), dtype=complex)
        for i in range(group.N):
            m[..., i, i] = np.exp(1j * h[i] * th)
        links.append(m)
    U = GaugeField(lat, group)
    U.set_interior(np.stack(links))
    U.refresh()
    return U


def _flux_angles(dims, fluxes):
    """Angles of a constant field strength: ``n`` flux quanta through every plane of each pair.

    ``fluxes`` maps a plane ``(a, b)`` to ``n``; every plaquette in that plane has the angle
    ``2 pi n / (L_a L_b)`` (the twist sits on the links ``U_a`` at ``x_a = L_a - 1``).
    """
    def theta(mu, c):
        out = 0.0
        for (a, b), n in fluxes.items():
            phi = 2 * np.pi * n / (dims[a] * dims[b])
            if mu == b:
                out = out + phi * c[a]
            elif mu == a:
                out = out + np.where(c[a] == dims[a] - 1, -phi * dims[a] * c[b], 0.0)
        return out
    return theta


def _reflect(a, ax):
    """``a[-x]`` along site axis ``ax`` (periodic)."""
    return np.roll(np.flip(a, ax), 1, ax)


def _parity(links, ndim):
    """Spatially reflected field on a serial lattice: ``x -> x~ = (-x_s, t)``.

    ``U'_k(x) = U_k(x~ - k)^dag`` for spatial ``k``, ``U'_t(x) = U_t(x~)``; links in memory order
    ``(ndim, T, .., X, N, N)``: direction ``mu`` is site axis ``ndim - 1 - mu``.
    """
    out = []
    t = ndim - 1
    for mu in range(ndim):
        a = links[mu]
        for k in range(t):
            ax = ndim - 1 - k
            a = np.flip(a, ax) if k == mu else _reflect(a, ax)  # flip alone: a[-x - 1]
        out.append(a if mu == t else dagger(a))
    return np.stack(out)


def _field_from(lat, group, links):
    U = GaugeField(lat, group)
    U.set_interior(links)
    U.refresh()
    return U


# -- the integrator ---------------------------------------------------------------------------
def test_rk3_converges_with_order_three():
    """Max link error at t = 0.2 against eps = 1/640: ratio ~8 per halving, approaching 8.

    The white-noise start is stiff (fastest mode eps * 16 = 0.8 at eps = 0.05), so the ratios come
    down to 8 from above: about 9.8, 8.9, 8.5 here.  A second-order scheme would give 4.
    """
    U = _near_identity(_serial((4, 4, 4, 4)), 0.3)
    ref = wilson_flow(U, 0.2, 0.0015625).interior()
    errs = [np.abs(wilson_flow(U, 0.2, e).interior() - ref).max()
            for e in (0.05, 0.025, 0.0125, 0.00625)]
    ratios = [errs[i] / errs[i + 1] for i in range(3)]
    assert all(6.0 < r < 10.0 for r in ratios), ratios
    assert ratios[0] > ratios[1] > ratios[2] and abs(ratios[2] - 8.0) < 1.0, ratios
    assert errs[0] > 1e-5  # the comparison is not a trivial 0 = 0


def test_flow_stays_in_su3_and_does_not_touch_its_input():
    U = _near_identity(_serial((4, 4, 4, 4)), 0.5)
    before = U.interior()
    V = wilson_flow(U, 1.0, 0.05)
    assert np.array_equal(U.interior(), before)
    links = V.interior()
    unit, _ = SU3.unitarity_violation(links)
    assert unit < 1e-12
    assert np.abs(det(links) - 1).max() < 1e-12
    assert np.abs(links - before).max() > 0.1  # it did flow


def test_flow_is_gauge_covariant():
    lat = _serial((4, 4, 4, 4))
    U = _near_identity(lat, 0.4)
    g = random_gauge_transformation(lat, SU3, CounterRNG(7), U.backend)
    a = gauge_transform(wilson_flow(U, 0.3, 0.05), g).interior()
    b = wilson_flow(gauge_transform(U, g), 0.3, 0.05).interior()
    assert np.abs(a - b).max() < 1e-12
    assert np.abs(a - wilson_flow(U, 0.3, 0.05).interior()).max() > 0.1  # g acted


def test_wilson_action_decreases_at_every_step():
    """The flow is the gradient flow of S_w: S_w (and E_plaq = g0^2 S_w / V) drop at each step.

    E_clover is not a function of S_w: on a hot start it first rises (checked), on the smoother
    near-identity start it falls as well.
    """
    lat = _serial((4, 4, 4, 4))
    for U, clover_monotone in ((_near_identity(lat, 0.3), True),
                               (GaugeField.hot(lat, SU3, CounterRNG(1)), False)):
        U.refresh()
        r = flow_observables(U, 0.05, 0.5)
        V, S = U, []
        for _ in range(11):
            S.append(wilson_action(V, 6.0))
            V = flow_step(V, 0.05)
        assert all(b < a for a, b in zip(S, S[1:])), S
        assert np.all(np.diff(r.E_plaq) < 0)
        # E_plaq = g0^2 S_w / V and g0^2 S_w is the Wilson action at beta = 2N = 6
        assert np.allclose(r.E_plaq, np.array(S) / lat.volume, rtol=1e-12)
        assert np.all(np.diff(r.E_clover) < 0) == clover_monotone
        assert np.all(r.t2E[1:] > 0) and np.all(r.E_clover > 0)


def test_flow_is_steepest_descent_of_the_wilson_action():
    """d/dt [g0^2 S_w(V_t)] = -sum_{x,mu} |Z|^2, |Z|^2 = -2 Tr Z^2, g0^2 S_w = S(beta = 2N).

    Central difference with steps +-h of the integrator itself; rescaling Z by any c != 1 breaks it.
    """
    lat = _serial((4, 4, 4, 4))
    V = wilson_flow(_near_identity(lat, 0.4), 0.05, 0.05)
    Z = flow_generator(V)
    norm2 = float(-2 * np.trace(Z @ Z, axis1=-2, axis2=-1).real.sum())
    h = 1e-3
    fd = (wilson_action(flow_step(V, h), 6.0) - wilson_action(flow_step(V, -h), 6.0)) / (2 * h)
    assert norm2 > 1.0
    assert abs(fd + norm2) < 1e-4 * norm2, (fd, -norm2)


@pytest.mark.parametrize("group,dims,mu,nu", [(SU3, (8, 4, 4, 4), 1, 0), (U1, (8, 8), 1, 0)])
def test_plane_wave_decays_with_the_continuum_heat_kernel(group, dims, mu, nu):
    """theta_mu(x) = a cos(p x_nu), transverse: theta(t) = a exp(-t phat^2) cos(p x_nu), and
    E_clover / E_plaq = cos^2(p / 2) (the clover averages F over two neighbouring plaquettes)."""
    lat = _serial(dims)
    a, p = 1e-3, 2 * np.pi / dims[nu]
    phat2 = 4 * np.sin(p / 2) ** 2
    U = _abelian(lat, group, lambda d, c: a * np.cos(p * c[nu]) if d == mu else 0.0)
    assert abs(energy_density_clover(U) / energy_density_plaquette(U) - np.cos(p / 2) ** 2) < 1e-5
    trh2 = 2.0 if group.N > 1 else 1.0  # Tr H^2; Re tr(1 - exp(i f H)) = Tr H^2 f^2 / 2 + ..
    assert abs(energy_density_plaquette(U) - trh2 * a * a * phat2 / 2) < 1e-5 * a * a
    t = 1.0
    V = wilson_flow(U, t, 0.05)
    theta = np.angle(V.interior()[mu][..., 0, 0])
    want = a * np.exp(-t * phat2) * np.cos(p * lat.global_coords[nu])
    assert np.abs(theta - want).max() < 1e-5 * a
    assert np.abs(want).max() < 0.7 * a  # it did decay
    others = [d for d in range(lat.ndim) if d != mu]
    assert np.abs(V.interior()[others] - U.interior()[others]).max() < 1e-15


# -- exact fields: constant flux --------------------------------------------------------------
@pytest.mark.parametrize("n1,n2", [(1, 1), (1, -1), (2, 1)])
@pytest.mark.parametrize("planes,orientation", [(((0, 1), (2, 3)), 1), (((0, 2), (1, 3)), -1),
                                                (((0, 3), (1, 2)), 1)])
def test_constant_flux_field_energy_and_charge(n1, n2, planes, orientation):
    """n1 quanta through the planes of the first pair, n2 through the second: E and Q in closed
    form (Q -> 2 n1 n2 eps_{abcd}); Z = 0, the field is a stationary point of the flow."""
    dims = (4, 4, 4, 6)
    lat = _serial(dims)
    (a, b), (c, d) = planes
    U = _abelian(lat, SU3, _flux_angles(dims, {(a, b): n1, (c, d): n2}))
    p1 = 2 * np.pi * n1 / (dims[a] * dims[b])
    p2 = 2 * np.pi * n2 / (dims[c] * dims[d])
    # H = diag(1, -1, 0): F_ab = i sin(p1) H, Tr H^2 = 2; P = exp(i p H), Re tr(1 - P) = 2(1 - cos p)
    assert abs(energy_density_clover(U) - 2 * (np.sin(p1) ** 2 + np.sin(p2) ** 2)) < 1e-13
    assert abs(energy_density_plaquette(U) - 4 * (2 - np.cos(p1) - np.cos(p2))) < 1e-13
    # small spacing-ish (phi <= 0.39 for n = 1): the two definitions agree to O(phi^2), 4 %
    assert abs(energy_density_clover(U) / energy_density_plaquette(U) - 1) < 0.05 * n1 * n1
    Q = topological_charge(U)
    exact = orientation * lat.volume * np.sin(p1) * np.sin(p2) / (2 * np.pi ** 2)
    assert abs(Q - exact) < 1e-12
    # the continuum value 2 n1 n2 eps (H has eigenvalues +-1) up to (sin(phi)/phi)^2, 11 % at pi/4
    assert abs(Q / (2 * n1 * n2 * orientation) - 1) < 0.15
    assert np.abs(flow_generator(U)).max() < 1e-14
    assert np.abs(wilson_flow(U, 0.2, 0.1).interior() - U.interior()).max() < 1e-13


def test_two_dimensional_u1_charge_is_the_geometric_integer():
    dims = (8, 6)
    lat = _serial(dims)
    for n in (-2, 1, 3):
        U = _abelian(lat, U1, _flux_angles(dims, {(0, 1): n}))
        assert abs(topological_charge(U) - n) < 1e-12
        phi = 2 * np.pi * n / 48
        assert abs(energy_density_clover(U) - np.sin(phi) ** 2) < 1e-14
        assert abs(energy_density_plaquette(U) - 2 * (1 - np.cos(phi))) < 1e-14
    hot = GaugeField.hot(lat, U1, CounterRNG(3))
    hot.refresh()
    q = topological_charge(hot)
    assert abs(q - round(q)) < 1e-12
    r = flow_observables(hot, 0.1, 2.0, every=5)
    assert np.all(np.abs(r.Q - np.round(r.Q)) < 1e-12)
    assert np.all(np.diff(r.E_plaq) < 0)


# -- topological charge symmetries ------------------------------------------------------------
def test_charge_is_zero_cold_and_gauge_invariant():
    lat = _serial((4, 4, 4, 4))
    cold = GaugeField.cold(lat, SU3)
    cold.refresh()
    assert topological_charge(cold) == 0.0 and energy_density_clover(cold) == 0.0
    U = GaugeField.hot(lat, SU3, CounterRNG(2))
    U.refresh()
    g = random_gauge_transformation(lat, SU3, CounterRNG(3), U.backend)
    V = gauge_transform(U, g)
    q, qg = topological_charge_density(U), topological_charge_density(V)
    scale = np.abs(q).sum()
    assert np.abs(q - qg).max() < 1e-13 * scale
    assert abs(topological_charge(U) - topological_charge(V)) < 1e-12 * scale
    assert abs(float(q.sum()) - topological_charge(U)) < 1e-14 * scale
    assert abs(energy_density_clover(U) - energy_density_clover(V)) < 1e-12
    assert abs(energy_density_plaquette(U) - energy_density_plaquette(V)) < 1e-12
    assert np.abs(q).max() > 1e-3  # a non-trivial density


@pytest.mark.parametrize("source", ["near_identity", "pyquda"])
def test_charge_is_odd_under_parity(source):
    """Spatial reflection of the links flips Q (and q(x) -> -q(x~)); E is unchanged."""
    if source == "pyquda":
        U = read_gauge(PYQUDA, self_comm()).field
        U.refresh()
    else:
        U = _near_identity(_serial((4, 4, 4, 6)), 0.4)
    lat = U.lattice
    P = _field_from(lat, SU3, _parity(U.interior(), 4))
    Q, QP = topological_charge(U), topological_charge(P)
    q = topological_charge_density(U)
    q_reflected = q
    for ax in range(3):  # memory axes 0..2 are t, z, y; reflect z, y, x = axes 1, 2, 3
        q_reflected = _reflect(q_reflected, ax + 1)
    scale = np.abs(q).sum()
    assert np.abs(topological_charge_density(P) + q_reflected).max() < 1e-14 * scale
    assert abs(Q) > 1e-5 * scale  # the sign flip of the total is not 0 = -0
    assert abs(Q + QP) < 1e-12 * scale
    for f in (energy_density_clover, energy_density_plaquette):
        assert abs(f(U) - f(P)) < 1e-12 * f(U)
    # the flow commutes with parity
    VP = _field_from(lat, SU3, _parity(wilson_flow(U, 0.1, 0.05).interior(), 4))
    assert np.abs(VP.interior() - wilson_flow(P, 0.1, 0.05).interior()).max() < 1e-12
    # traceless F (su(3) projection) differs only by the small trace part and lowers E
    assert energy_density_clover(U, traceless=True) <= energy_density_clover(U)
    assert abs(topological_charge(U, traceless=True) - Q) < 0.05 * scale


def test_pyquda_weak_field_along_the_flow():
    """No published values: check the field's charge is tiny, gauge invariant, and flows to zero."""
    U = read_gauge(PYQUDA, self_comm()).field
    U.refresh()
    r = flow_observables(U, 0.05, 0.5, every=5)
    assert abs(r.Q[0]) < 1e-3 and np.all(np.abs(r.Q[1:]) < np.abs(r.Q[0]))
    assert np.all(np.diff(r.E_plaq) < 0) and np.all(np.diff(r.E_clover) < 0)
    assert r.E_clover[0] == pytest.approx(energy_density_clover(U), rel=1e-14)


# -- t0 ---------------------------------------------------------------------------------------
def test_t0_interpolation_is_exact_on_synthetic_data():
    t = np.arange(0, 1.01, 0.1)
    assert t0_from_history(t, 0.8 * t) == pytest.approx(0.3 / 0.8, abs=1e-14)
    y = 0.1 * t + 0.3 * t ** 2 - 0.05 * t ** 3 + 0.02   # crosses 0.3 in (0.6, 0.8)
    roots = np.roots([-0.05, 0.3, 0.1, 0.02 - 0.3])
    exact = [r.real for r in roots if abs(r.imag) < 1e-12 and 0 < r.real < 1][0]
    assert t0_from_history(t, y, method="cubic") == pytest.approx(exact, abs=1e-12)
    lin = t0_from_history(t, y)
    assert 1e-5 < abs(lin - exact) < 1e-2  # a straight line is not exact on a cubic
    with pytest.raises(FlowError, match=r"t_max = 1\b"):
        t0_from_history(t, 0.1 * t)


def test_t0_on_a_hot_field_and_the_error_when_it_is_not_reached():
    lat = _serial((4, 4, 4, 4))
    U = GaugeField.hot(lat, SU3, CounterRNG(1))
    U.refresh()
    coarse = find_t0(U, 0.05, 2.0, method="cubic")
    fine = find_t0(U, 0.025, 2.0, method="cubic")
    linear = find_t0(U, 0.025, 2.0)
    assert 0.2 < fine < 0.5
    assert abs(coarse - fine) < 1e-4 and abs(linear - fine) < 1e-3
    r = flow_observables(U, 0.025, 0.5)
    assert t0_from_history(r.t, r.t2E, method="cubic") == fine
    weak = _near_identity(lat, 0.2)
    with pytest.raises(FlowError, match=r"t_max = 0\.5\b"):
        find_t0(weak, 0.05, 0.5)


# -- decomposition independence ---------------------------------------------------------------
@pytest.mark.mpi
@pytest.mark.parametrize("group,dims,grids", [
    (SU3, (4, 4, 4, 8), [(1, 1, 1, 1), (1, 1, 1, 2), (1, 1, 2, 2), (2, 1, 1, 2)]),
    (U1, (8, 8), [(1, 1), (1, 2), (2, 2)])])
def test_flow_is_identical_on_every_grid(group, dims, grids):
    def body(lat):
        U = _near_identity(lat, 0.4, seed=5, group=group)
        r = flow_observables(U, 0.05, 0.2)
        return r.field.gather(), r.E_clover, r.E_plaq, r.Q

    results = on_grids(dims, grids, body)
    ref = results["serial"]
    assert abs(ref[3][0]) > 1e-4 or group is U1
    for grid in grids_run(results):
        links, E, Ep, Q = results[grid]
        if links is not None:  # root of the sub-communicator
            assert np.abs(links - ref[0]).max() < 1e-12, grid
        assert np.allclose(E, ref[1], rtol=1e-12, atol=0), grid
        assert np.allclose(Ep, ref[2], rtol=1e-12, atol=0), grid
        assert np.allclose(Q, ref[3], rtol=0, atol=1e-12), grid
