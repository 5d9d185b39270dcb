"""HMC: reversibility, integrator order, decomposition independence, <exp(-dH)> = 1.

- forward, momenta flipped, backward returns the links to 1e-10 and H to 1e-8 (SU(3) 4D with two
  nested levels, U(1) 2D, and Nf = 2 Wilson and clover + Hasenbusch with three levels);
- ``sqrt(<dH^2>)`` scales as ``dt^2`` for leapfrog and Omelyan (fitted exponent 2 +- 0.25), and
  Omelyan's error is smaller at equal step size;
- the momenta are Gaussian with ``<K> = (1/2) (dofs)``;
- a whole trajectory (accept decision, ``dH`` to 1e-9, plaquette to 1e-12), pure gauge and Nf = 2
  clover with a Hasenbusch ratio, is the same on the process grids 1x1x1x1, 1x1x1x2, 1x1x2x2;
- ``<exp(-dH)>`` equals 1 within 2 standard errors on a short 2D U(1) chain.
"""

import numpy as np
import pytest

from helpers import grids_run, on_grids
from lattice_hpc.analysis import mean_and_error
from lattice_hpc.comm import self_comm, world
from lattice_hpc.gauge import GaugeField
from lattice_hpc.geometry import Lattice
from lattice_hpc.groups import get_group
from lattice_hpc.hmc import HMC, Integrator, Level, WilsonGauge, draw_momenta, kinetic_energy
from lattice_hpc.rng import CounterRNG
from lattice_hpc.update import heatbath_sweep

SU3, U1 = get_group("SU3"), get_group("U1")


def _thermal(lat, group, beta, sweeps=8, seed=1):
    rng = CounterRNG(seed)
    U = GaugeField.hot(lat, group, rng)
    U.refresh()
    for s in range(sweeps):
        heatbath_sweep(U, beta, rng, s)
    U.refresh()
    return U, rng


def _serial(dims):
    return Lattice(dims, (1,) * len(dims), comm=self_comm())


@pytest.mark.parametrize("group,dims,beta", [(SU3, (4, 4, 4, 4), 5.7), (U1, (8, 8), 2.0)])
def test_reversibility(group, dims, beta):
    U, rng = _thermal(_serial(dims), group, beta)
    levels = [Level([WilsonGauge(0.6 * beta, "gauge_a")], 3, "omelyan"),
              Level([WilsonGauge(0.4 * beta, "gauge_b")], 2, "leapfrog")]
    hmc = HMC(U, Integrator(levels, 1.0), rng)
    before = U.gather().copy()
    r = hmc.reversibility(0)
    assert r["dU"] < 1e-10 and abs(r["dH"]) < 1e-8, r
    assert abs(r["dH_forward"]) > 1e-4  # the forward trajectory really moved
    np.testing.assert_array_equal(U.gather(), before)  # the check leaves the field as it was


@pytest.mark.parametrize("scheme", ["leapfrog", "omelyan"])
def test_energy_violation_scales_as_dt_squared(scheme):
    U, rng = _thermal(_serial((4, 4, 4, 4)), SU3, 5.7)
    steps = [16, 32, 64] if scheme == "leapfrog" else [4, 8, 16]  # leapfrog's asymptotic regime
    rms = []
    for n in steps:
        hmc = HMC(U, Integrator([Level([WilsonGauge(5.7)], n, scheme)], 1.0), rng)
        rms.append(np.sqrt(np.mean([hmc.energy_violation(t) ** 2 for t in range(4)])))
    slope = -np.polyfit(np.log(steps), np.log(rms), 1)[0]
    assert abs(slope - 2) < 0.25, (steps, rms, slope)
    if scheme == "omelyan":
        lf = HMC(U, Integrator([Level([WilsonGauge(5.7)], 8, "leapfrog")], 1.0), rng)
        assert rms[1] < 0.3 * np.sqrt(np.mean([lf.energy_violation(t) ** 2 for t in range(4)]))


def test_momenta_are_gaussian_with_the_stated_kinetic_energy():
    lat = _serial((4, 4, 4, 8))
    U = GaugeField.cold(lat, SU3)
    rng = CounterRNG(3)
    Ks = [kinetic_energy(lat, draw_momenta(U, rng, t)) for t in range(20)]
    dofs = lat.volume * 4 * 8
    m, e = mean_and_error(Ks)
    assert abs(m - dofs / 2) < 4 * np.sqrt(dofs / 2 / 20)  # K is chi^2_dofs / 2: variance dofs / 2
    P = draw_momenta(U, rng, 0)
    np.testing.assert_allclose(P, -np.conj(np.swapaxes(P, -1, -2)), atol=1e-15)  # anti-Hermitian
    assert np.abs(np.trace(P, axis1=-2, axis2=-1)).max() < 1e-14
    assert not np.allclose(draw_momenta(U, rng, 1), P)


@pytest.mark.mpi
def test_trajectory_is_the_same_on_every_grid():
    dims = (4, 4, 4, 8)

    def body(lat):
        U = GaugeField.hot(lat, SU3, CounterRNG(5))
        U.refresh()
        levels = [Level([WilsonGauge(3.0, "a")], 2, "omelyan"), Level([WilsonGauge(2.7, "b")], 2, "omelyan")]
        hmc = HMC(U, Integrator(levels, 0.5), CounterRNG(6))
        recs = [hmc.trajectory(t) for t in range(2)]
        return recs, U.gather()

    res = on_grids(dims, [(1, 1, 1, 1), (1, 1, 1, 2), (1, 1, 2, 2)], body)
    if world().rank == 0:
        want, field = res["serial"]
        for key in grids_run(res):
            got, f = res[key]
            for a, b in zip(got, want):
                assert a["accepted"] == b["accepted"], key
                assert abs(a["dH"] - b["dH"]) < 1e-9, key
                assert abs(a["plaquette"] - b["plaquette"]) < 1e-12, key
            np.testing.assert_allclose(f, field, atol=1e-12)


def test_exp_minus_dH_averages_to_one():
    U, rng = _thermal(_serial((8, 8)), U1, 2.0)
    hmc = HMC(U, Integrator([Level([WilsonGauge(2.0)], 3, "leapfrog")], 1.0), rng)
    recs = [hmc.trajectory(t) for t in range(300)]
    x = [r["exp_minus_dH"] for r in recs]
    m, e = mean_and_error(x)
    acc = np.mean([r["accepted"] for r in recs])
    assert 0.3 < acc < 0.98, acc  # steps coarse enough that exp(-dH) fluctuates visibly
    assert e > 0.005
    assert abs(m - 1) < 2 * e, (m, e)


def _nf2_levels(csw, hasenbusch=None, tol=1e-13):
    from lattice_hpc.hmc import HasenbuschRatio, two_flavour_monomials

    ms = two_flavour_monomials(0.12, csw, hasenbusch, force_tol=tol, action_tol=tol)
    ratio = [m for m in ms if isinstance(m, HasenbuschRatio)]
    rest = [m for m in ms if not isinstance(m, HasenbuschRatio)]
    levels = ([Level(ratio, 2, "omelyan")] if ratio else []) + [Level(rest, 2, "omelyan"),
                                                                 Level([WilsonGauge(5.6)], 2, "leapfrog")]
    return levels


@pytest.mark.parametrize("csw,hasenbusch", [(0.0, None), (1.2, 0.1)])
def test_nf2_trajectory_is_reversible(csw, hasenbusch):
    U, rng = _thermal(_serial((4, 4, 4, 4)), SU3, 5.6, sweeps=4)
    hmc = HMC(U, Integrator(_nf2_levels(csw, hasenbusch), 0.5), rng)
    r = hmc.reversibility(0)
    assert r["dU"] < 1e-10 and abs(r["dH"]) < 1e-8, r
    assert abs(r["dH_forward"]) > 1e-5


@pytest.mark.mpi
def test_nf2_clover_trajectory_is_the_same_on_every_grid():
    dims = (4, 4, 4, 8)

    def body(lat):
        U = GaugeField.near_identity(lat, SU3, CounterRNG(5), 0.4)
        U.refresh()
        hmc = HMC(U, Integrator(_nf2_levels(1.0, 0.1, tol=1e-12), 0.3), CounterRNG(6))
        return hmc.trajectory(0)

    res = on_grids(dims, [(1, 1, 1, 1), (1, 1, 1, 2), (1, 1, 2, 2)], body)
    if world().rank == 0:
        want = res["serial"]
        for key in grids_run(res):
            got = res[key]
            assert got["accepted"] == want["accepted"], key
            assert abs(got["dH"] - want["dH"]) < 1e-9, (key, got["dH"], want["dH"])
            assert abs(got["plaquette"] - want["plaquette"]) < 1e-12, key


class _Counting(WilsonGauge):
    def __init__(self, beta, name):
        super().__init__(beta, name)
        self.calls = 0

    def force(self, U):
        self.calls += 1
        return super().force(U)


@pytest.mark.parametrize("schemes", [("omelyan", "omelyan", "leapfrog"), ("leapfrog", "omelyan", "omelyan")])
def test_force_evaluations_are_counted_and_cached(schemes):
    """Each level's force is computed once per link configuration: the count per trajectory is
    ``outer * per_step * steps + 1`` (merged kicks, and the inner level's first kick of an interval
    reusing the force of the previous interval's last), and caching does not change the result."""
    U, rng = _thermal(_serial((4, 4, 4, 4)), SU3, 5.7, sweeps=2)
    ms = [_Counting(2.0, "a"), _Counting(2.0, "b"), _Counting(1.7, "c")]
    integ = Integrator([Level([m], n, s) for m, n, s in zip(ms, (2, 3, 2), schemes)], 0.5)
    hmc = HMC(U, integ, rng)
    dH = hmc.energy_violation(0)
    assert [m.calls for m in ms] == integ.force_evaluations()
    # the same trajectory without the cache: every kick evaluates its force
    uncached = Integrator([Level([WilsonGauge(b, n)], k, s) for b, n, k, s in
                           zip((2.0, 2.0, 1.7), "abc", (2, 3, 2), schemes)], 0.5)
    uncached._force_uncached = uncached._force
    uncached._force = lambda k, U_: (uncached._forces.clear(), uncached._force_uncached(k, U_))[1]
    assert abs(HMC(U, uncached, rng).energy_violation(0) - dH) < 1e-10
