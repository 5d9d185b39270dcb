"""Geometry: grid resolution, validation messages that name the direction, coordinates and parity."""

import numpy as np
import pytest

from lattice_hpc.comm import self_comm
from lattice_hpc.errors import GeometryError
from lattice_hpc.geometry import Lattice, resolve_grid


def test_explicit_and_auto_grids():
    assert resolve_grid((8, 8, 8, 16), "1,1,2,2", 4) == (1, 1, 2, 2)
    assert resolve_grid((8, 8, 8, 16), "auto", 2) == (1, 1, 1, 2)  # t split first
    assert resolve_grid((8, 8, 8, 16), "auto", 4) == (1, 1, 2, 2)
    assert resolve_grid((8, 6), "auto", 2) == (2, 1)  # t extent 6 / 2 = 3 is odd: split x instead


@pytest.mark.parametrize("dims,grid,n,msg", [
    ((8, 8, 8, 8), "1,1,1,3", 3, "direction t: global extent 8 is not divisible by the grid extent 3"),
    ((8, 8, 8, 6), "1,1,1,2", 2, "direction t: local extent 3"),
    ((8, 8, 6, 8), "1,1,2,1", 2, "direction z: local extent 3"),
    ((8, 8, 8, 8), "1,1,2", 2, "has 3 entries"),
    ((8, 8, 8, 8), "1,1,2,2", 2, "needs 4 ranks but the job has 2"),
    ((8, 8), "2,x", 2, "expected comma-separated integers"),
    ((6, 6), "auto", 4, "no process grid of 4 ranks"),
])
def test_bad_decompositions_name_the_problem(dims, grid, n, msg):
    with pytest.raises(GeometryError, match=msg):
        resolve_grid(dims, grid, n)


def test_coordinates_index_and_parity():
    lat = Lattice((4, 6), (1, 1), comm=self_comm())
    x, t = lat.global_coords
    assert lat.shape(0) == (6, 4) and lat.shape(1) == (8, 6)
    assert np.array_equal(lat.global_index, x + 4 * t)
    assert np.array_equal(lat.parity, (x + t) % 2)
    assert lat.parity.sum() == lat.local_volume // 2


def test_view_shifts():
    lat = Lattice((4, 4), (1, 1), comm=self_comm())
    f = np.arange(36.0).reshape(6, 6)
    lat.halo(1).exchange(f)
    # f(x + x_hat) at the interior origin is the entry one step along the fastest axis
    assert lat.view(f, 1, {0: 1})[0, 0] == f[1, 2]
    assert lat.view(f, 1, {1: -1})[0, 0] == f[0, 1]
    with pytest.raises(ValueError, match="exceeds halo depth"):
        lat.view(f, 1, {0: 2})
