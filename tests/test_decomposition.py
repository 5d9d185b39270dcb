"""Every parallel result equals the single-rank result, for every process grid.

- hot start: plaquette (total/spatial/temporal), Polyakov loop, action agree to 1e-12 and the
  gathered field is bitwise identical (random fields do not depend on the decomposition);
- heatbath + overrelaxation sweeps give a bitwise identical field on every grid.
"""

import numpy as np
import pytest

from helpers import grids_run, on_grids
from lattice_hpc.gauge import GaugeField, measure_all, wilson_action
from lattice_hpc.groups import get_group
from lattice_hpc.rng import CounterRNG
from lattice_hpc.update import heatbath_sweep, overrelax_sweep

GRIDS = {
    4: [(1, 1, 1, 1), (1, 1, 1, 2), (1, 1, 2, 2), (2, 1, 1, 2)],
    2: [(1, 1), (1, 2), (2, 2)],
}


def _hot_start(group_name, seed=11):
    def body(lat):
        U = GaugeField.hot(lat, get_group(group_name), CounterRNG(seed))
        U.refresh()
        obs = measure_all(U)
        obs["action"] = wilson_action(U, 5.5)
        return obs, U.gather()
    return body


def _compare(results, tol):
    ref_obs, ref_field = results["serial"]
    for grid in grids_run(results):
        obs, field = results[grid]
        for key, val in ref_obs.items():
            if val is None:
                assert obs[key] is None
                continue
            assert np.allclose(obs[key], val, rtol=tol, atol=tol), f"grid {grid}: {key} {obs[key]} != {val}"
        if field is not None:  # the root of the sub-communicator holds the gathered field
            assert np.array_equal(field, ref_field), f"grid {grid}: gathered field differs"


@pytest.mark.mpi
@pytest.mark.parametrize("group_name", ["SU3", "SU2"])
def test_hot_start_4d_is_decomposition_independent(group_name):
    res = on_grids((4, 4, 4, 4), GRIDS[4], _hot_start(group_name))
    _compare(res, 1e-12)
    assert abs(res["serial"][0]["plaquette"]) < 0.05  # a hot start is disordered


@pytest.mark.mpi
def test_hot_start_2d_u1_is_decomposition_independent():
    res = on_grids((8, 8), GRIDS[2], _hot_start("U1"))
    _compare(res, 1e-12)


@pytest.mark.mpi
@pytest.mark.parametrize("group_name,dims", [("SU3", (4, 4, 4, 4)), ("U1", (8, 8))])
def test_heatbath_and_overrelaxation_identical_on_every_grid(group_name, dims):
    def body(lat):
        U = GaugeField.hot(lat, get_group(group_name), CounterRNG(3))
        U.refresh()
        for sweep in range(2):
            heatbath_sweep(U, 2.0, CounterRNG(3), sweep)
            overrelax_sweep(U, 2.0)
        return measure_all(U), U.gather()

    res = on_grids(dims, GRIDS[len(dims)], body)
    ref_obs, ref_field = res["serial"]
    for grid in grids_run(res):
        obs, field = res[grid]
        assert np.isclose(obs["plaquette"], ref_obs["plaquette"], rtol=1e-12, atol=0)
        if field is not None:
            assert np.array_equal(field, ref_field), f"grid {grid}: field after sweeps differs"
    # the sweeps did something: the plaquette moved away from the hot start's
    assert ref_obs["plaquette"] > 0.1
