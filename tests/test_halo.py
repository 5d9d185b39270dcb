"""Halo exchange: every halo entry equals the global field at the wrapped coordinate.

Faces, edges and corners; depth 1 and 2; 2D and 4D; scalar, spinor and link per-site shapes; every
process grid that fits the job.
"""

import itertools

import numpy as np
import pytest

from helpers import global_test_field, on_grids

GRIDS_4D = [(1, 1, 1, 1), (1, 1, 1, 2), (1, 1, 2, 2), (2, 1, 1, 2), (2, 2, 1, 1)]
GRIDS_2D = [(1, 1), (1, 2), (2, 1), (2, 2)]


def _check_halo(lat, global_field, site_shape, lead, depth, codim, strategy="auto"):
    """Fill a padded local field from the global one, exchange, and compare every filled halo site."""
    nd = lat.ndim
    h = depth
    local = np.full(tuple(lead) + lat.shape(h) + tuple(site_shape), np.nan + 0j)
    nl = len(lead)
    interior = global_field[(slice(None),) * nl + lat.block_slices(lat.grid.coords)]
    lat.view(local, h, lead=nl)[...] = interior
    lat.halo(h, codim, strategy=strategy).exchange(local, lead=nl)
    checked = 0
    for pad in itertools.product(*[range(L + 2 * h) for L in reversed(lat.local_dims)]):
        # pad is in memory order (t..x); position relative to the interior per direction
        rel = [p - h for p in reversed(pad)]
        outside = sum(1 for mu, r in enumerate(rel) if r < 0 or r >= lat.local_dims[mu])
        if outside == 0 or outside > codim:
            continue
        gcoord = [(lat.origin[mu] + rel[mu]) % lat.dims[mu] for mu in range(nd)]
        want = global_field[(slice(None),) * nl + tuple(reversed(gcoord))]
        got = local[(slice(None),) * nl + pad]
        if not np.array_equal(got, want):
            return f"halo site {rel} (rank {lat.comm.rank}) differs from global {gcoord}"
        checked += 1
    return checked


@pytest.mark.mpi
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("codim", [1, 2, 4])
@pytest.mark.parametrize("strategy", ["direct", "slab"])
def test_halo_4d(depth, codim, strategy):
    dims = (4, 4, 4, 8)
    cases = [((), ()), ((3, 3), (4,)), ((4, 3), ())]  # (site shape, lead): scalar, links, spinor
    for site_shape, lead in cases:
        g = global_test_field(dims, site_shape, lead, seed=1)
        res = on_grids(dims, GRIDS_4D, lambda lat: _check_halo(lat, g, site_shape, lead, depth, codim, strategy))
        for grid, r in res.items():
            assert not isinstance(r, str), f"grid {grid}: {r}"
            assert r > 0


@pytest.mark.mpi
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("codim", [1, 2])
@pytest.mark.parametrize("strategy", ["direct", "slab"])
def test_halo_2d(depth, codim, strategy):
    dims = (8, 4)
    for site_shape in [(), (1, 1), (4, 3)]:
        g = global_test_field(dims, site_shape, seed=2)
        res = on_grids(dims, GRIDS_2D, lambda lat: _check_halo(lat, g, site_shape, (), depth, codim, strategy))
        for grid, r in res.items():
            assert not isinstance(r, str), f"grid {grid}: {r}"
            assert r > 0


@pytest.mark.mpi
def test_halo_start_finish_overlaps_interior_work():
    """start() returns before the halo is used; the interior can be read meanwhile; finish() completes."""
    dims = (4, 4, 4, 4)
    g = global_test_field(dims, (3, 3), seed=3)

    def body(lat):
        local = np.zeros(lat.shape(1) + (3, 3), complex)
        lat.view(local, 1)[...] = g[lat.block_slices(lat.grid.coords)]
        pending = lat.halo(1, 2).start(local)
        interior_sum = lat.view(local, 1).sum()  # work on the interior while messages fly
        pending.finish()
        ref = np.zeros_like(local)
        lat.view(ref, 1)[...] = g[lat.block_slices(lat.grid.coords)]
        lat.halo(1, 2).exchange(ref)
        return np.array_equal(local, ref) and np.isclose(interior_sum, lat.view(ref, 1).sum())

    res = on_grids(dims, GRIDS_4D, body)
    assert all(res.values())


def test_halo_rejects_wrong_shape_and_too_deep():
    from lattice_hpc.comm import self_comm
    from lattice_hpc.geometry import Lattice

    lat = Lattice((4, 4), (1, 1), comm=self_comm())
    with pytest.raises(ValueError, match="site shape"):
        lat.halo(1).exchange(np.zeros((5, 5)))
    with pytest.raises(ValueError, match="depth 5"):
        lat.halo(5)


@pytest.mark.mpi
@pytest.mark.parametrize("codim", [1, 2])
def test_halo_counts_are_the_off_rank_sites_it_filled(codim):
    """The counts the performance model reads (``comm.halo.PROFILE``): one exchange of a link
    field sends exactly as many bytes as there are halo entries filled from another rank (direct
    strategy: each such entry travels once), in as many messages as the plan has partners."""
    from lattice_hpc.comm import halo

    dims = (4, 4, 4, 8)
    lead, site = (4,), (3, 3)

    def body(lat):
        h = 1
        field = np.zeros(lead + lat.shape(h) + site, dtype=np.complex128)
        plan = lat.halo(h, codim, strategy="direct")
        halo.reset_profile()
        plan.exchange(field, lead=1)
        counts = halo.reset_profile()
        remote = 0
        for pad in itertools.product(*[range(L + 2 * h) for L in reversed(lat.local_dims)]):
            rel = [p - h for p in reversed(pad)]
            off = [(-1 if r < 0 else 1 if r >= lat.local_dims[mu] else 0) for mu, r in enumerate(rel)]
            if 0 < sum(map(abs, off)) <= codim and lat.grid.rank_at(off) != lat.grid.rank:
                remote += 1
        per_site = 4 * 9 * 16
        return counts["calls"], counts["messages"], counts["bytes"], remote * per_site, \
            len(plan.messages())

    res = on_grids(dims, GRIDS_4D, body)
    for grid, (calls, msgs, nbytes, want, partners) in res.items():
        assert calls == 1 and msgs == partners and nbytes == want, grid
        if grid in ("serial", (1, 1, 1, 1)):
            assert msgs == 0 and nbytes == 0
        else:
            assert nbytes > 0
