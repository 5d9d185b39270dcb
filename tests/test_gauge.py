"""Gauge fields: cold start, gauge invariance, the force against finite differences, halo guards."""

import numpy as np
import pytest

from helpers import on_grids
from lattice_hpc.comm import self_comm
from lattice_hpc.gauge import (GaugeField, gauge_force, gauge_transform, measure_all,
                               random_gauge_transformation, wilson_action)
from lattice_hpc.geometry import Lattice
from lattice_hpc.groups import get_group
from lattice_hpc.rng import CounterRNG

CASES = [("SU3", (4, 4, 4, 4), [(1, 1, 1, 1), (1, 1, 1, 2), (1, 1, 2, 2)]),
         ("SU2", (4, 4, 4, 4), [(1, 1, 1, 1), (2, 1, 1, 1)]),
         ("U1", (8, 8), [(1, 1), (1, 2), (2, 2)])]


@pytest.mark.parametrize("name,dims,grids", CASES)
def test_cold_start(name, dims, grids):
    U = GaugeField.cold(Lattice(dims, (1,) * len(dims), comm=self_comm()), get_group(name))
    U.refresh()
    obs = measure_all(U)
    assert obs["plaquette"] == 1.0 and obs["link_trace"] == 1.0 and obs["polyakov"] == [1.0, 0.0]
    assert wilson_action(U, 6.0) == 0.0


@pytest.mark.mpi
@pytest.mark.parametrize("name,dims,grids", CASES)
def test_plaquette_and_action_are_gauge_invariant(name, dims, grids):
    def body(lat):
        G = get_group(name)
        U = GaugeField.hot(lat, G, CounterRNG(1))
        U.refresh()
        g = random_gauge_transformation(lat, G, CounterRNG(2), U.backend)
        V = gauge_transform(U, g)
        a, b = measure_all(U), measure_all(V)
        return (a["plaquette"], b["plaquette"], wilson_action(U, 3.0), wilson_action(V, 3.0),
                a["polyakov"], b["polyakov"], a["link_trace"], b["link_trace"])

    for grid, r in on_grids(dims, grids, body).items():
        assert np.isclose(r[0], r[1], rtol=1e-12, atol=1e-14), grid
        assert np.isclose(r[2], r[3], rtol=1e-12), grid
        assert np.allclose(r[4], r[5], atol=1e-12), grid  # the Polyakov loop is invariant too
        assert abs(r[6] - r[7]) > 1e-4  # the link trace is not: the transformation did act


@pytest.mark.mpi
@pytest.mark.parametrize("name,dims,grids", CASES)
def test_gauge_force_is_minus_the_derivative_of_the_action(name, dims, grids):
    """d/d eps S(exp(eps X) U) at 0 equals sum Re Tr(X F) (relative 1e-6), central differences."""
    beta = 5.0

    def body(lat):
        G = get_group(name)
        U = GaugeField.hot(lat, G, CounterRNG(4))
        U.refresh()
        xp = U.backend.xp
        sites = lat.global_index
        X = xp.stack([G.algebra(CounterRNG(5).normal(("dir", mu), sites, G.dim))
                      for mu in range(lat.ndim)])
        F = gauge_force(U, beta)
        predicted = lat.comm.allreduce(float(sum(
            (X[mu] @ F[mu]).diagonal(axis1=-2, axis2=-1).sum().real for mu in range(lat.ndim))))

        def S(eps):
            V = U.copy()
            V.set_interior(xp.stack([G.exp(eps * X[mu]) @ U.U(mu) for mu in range(lat.ndim)]))
            V.refresh()
            return wilson_action(V, beta)

        h = 1e-4
        fd = (S(h) - S(-h)) / (2 * h)
        return predicted, fd

    for grid, (pred, fd) in on_grids(dims, grids, body).items():
        assert abs(pred - fd) < 1e-6 * abs(fd), f"grid {grid}: force {pred} vs finite difference {fd}"


def test_stale_halo_is_refused():
    lat = Lattice((4, 4, 4, 4), (1, 1, 1, 1), comm=self_comm())
    U = GaugeField.hot(lat, get_group("SU3"), CounterRNG(1))
    with pytest.raises(RuntimeError, match="halo of U_0 is stale"):
        U.U(0, {1: 1})
    U.refresh(codim=1)
    U.U(0, {1: 1})
    with pytest.raises(RuntimeError, match="need 2"):
        U.U(0, {1: 1, 2: -1})


def test_polyakov_loop_of_a_constant_field():
    """Links U_t = diag(e^{i a}, e^{i b}, e^{-i(a+b)}) everywhere: P = Tr diag(...)^T / 3."""
    lat = Lattice((4, 4, 4, 6), (1, 1, 1, 1), comm=self_comm())
    G = get_group("SU3")
    U = GaugeField.cold(lat, G)
    a, b = 0.3, -0.7
    d = np.diag(np.exp(1j * np.array([a, b, -a - b])))
    links = U.interior()
    links[3] = d
    U.set_interior(links)
    U.refresh()
    want = np.exp(1j * 6 * np.array([a, b, -a - b])).sum() / 3
    p = measure_all(U)["polyakov"]
    assert np.allclose(p, [want.real, want.imag], atol=1e-14)


@pytest.mark.mpi
def test_compiled_su3_force_equals_the_reference_on_every_grid():
    """The compiled SU(3) force kernel (gauge/force.cuh) against the array-module reference, on
    every process grid, and against the serial reference."""
    from helpers import grids_run, on_grids
    from lattice_hpc.comm import world
    from lattice_hpc.gauge.compiled_force import compiled_gauge_force

    dims = (4, 6, 4, 8)
    grids = [(1, 1, 1, 1), (1, 1, 1, 2), (1, 1, 2, 2), (2, 1, 1, 2)]

    def body(lat):
        U = GaugeField.hot(lat, get_group("SU3"), CounterRNG(21))
        U.refresh()
        ref = gauge_force(U, 5.9, kernel="reference")
        got = compiled_gauge_force(U, 5.9)
        assert np.abs(got - ref).max() < 1e-13 * np.abs(ref).max()
        full = lat.grid.gather_blocks(got[0], 0)
        return None if full is None else sorted((tuple(c), b.sum()) for c, b in full)

    res = on_grids(dims, grids, body)
    if world().rank == 0:
        total = sum(s for _, s in res["serial"])
        for key in grids_run(res):
            assert abs(sum(s for _, s in res[key]) - total) < 1e-11 * abs(total), key
    U = GaugeField.hot(Lattice(dims, (1, 1, 1, 1), comm=self_comm()), get_group("SU3"), CounterRNG(21))
    U.refresh(codim=1)
    with pytest.raises(RuntimeError, match="stale"):
        compiled_gauge_force(U, 5.9)
