"""The domain-decomposed flow equals the flow on one rank: outputs, log-densities, parameter
gradients (through the autograd-aware halos of ``comm.autograd``), and whole training steps.

Run serially (the grid loop then has only the serial reference and a 1-rank grid) and under
``mpirun -n 2`` / ``-n 4``, where every grid of the list that fits runs (2D 1x2, 2x1, 2x2; 4D
1x1x2x2, 1x1x1x2)."""

import numpy as np
import pytest
import torch

from flow_helpers import arch, prior, randomise
from helpers import on_grids
from lattice_hpc.comm import self_comm
from lattice_hpc.comm.autograd import allreduce_gradients, sum_over_ranks
from lattice_hpc.flows.geometry import FlowLattice
from lattice_hpc.flows.model import GaugeFlow
from lattice_hpc.flows.train import Parallel, Trainer, action_local
from lattice_hpc.groups import get_group
from lattice_hpc.rng import CounterRNG

torch.set_num_threads(1)


def _global(lat, block):
    """Collective: the global array (site axes from axis 2) on rank 0 of the grid, else None."""
    blocks = lat.grid.gather_blocks(np.ascontiguousarray(block))
    if blocks is None:
        return None
    out = np.empty(block.shape[:2] + tuple(reversed(lat.dims)) + block.shape[2 + lat.ndim:],
                   dtype=block.dtype)
    for coords, b in blocks:
        out[(slice(None), slice(None)) + lat.block_slices(coords)] = b
    return out


def _flow_pass(group, dims, scale, shape="cube", masks="stripes"):
    layers = sum(dims) - 2 if masks == "sweep" else 4 if len(dims) == 4 else 8

    def body(lat):
        fl = FlowLattice(lat)
        flow = randomise(GaugeFlow(fl, arch(group, dims, layers=layers, kernel_shape=shape,
                                            masks=masks), seed=3), scale=scale)
        z = prior(fl, group, n=2)
        U, log_q = flow.sample(z)
        S = sum_over_ranks(action_local(fl, get_group(group), U, 1.3), lat.comm)
        (log_q + S).sum().backward()
        params = list(flow.parameters())
        allreduce_gradients(params, lat.comm)
        z_back, ld_inv = flow.inverse(U.detach())
        log_q_inv = sum_over_ranks(ld_inv, lat.comm)
        return (_global(lat, U.detach().numpy()), log_q.detach().numpy(),
                log_q_inv.detach().numpy(), [p.grad.numpy().copy() for p in params],
                _global(lat, z_back.detach().numpy()))
    return body


@pytest.mark.mpi
@pytest.mark.parametrize("group,dims,grids,scale,shape,masks", [
    ("U1", (8, 8), [(1, 2), (2, 1), (2, 2)], 0.2, "cube", "stripes"),
    ("U1", (4, 8), [(1, 2), (2, 1), (2, 2)], 0.2, "cube", "sweep"),
    ("SU2", (4, 8), [(1, 2), (2, 2)], 0.2, "cube", "stripes"),
    ("SU3", (4, 4, 4, 4), [(1, 1, 1, 2), (1, 1, 2, 2)], 0.05, "cube", "stripes"),
    ("SU3", (4, 4, 4, 4), [(1, 1, 2, 2)], 0.05, "cross", "stripes"),
])
def test_decomposed_flow_equals_one_rank(group, dims, grids, scale, shape, masks):
    """The sweep (its last layers change one link each, on one rank) as well as the stripes."""
    res = on_grids(dims, grids, _flow_pass(group, dims, scale, shape, masks))
    U0, lq0, lqi0, g0, z0 = res["serial"]
    assert np.abs(lq0).min() > 1e-2
    for grid, (U, lq, lqi, g, z) in res.items():
        if grid == "serial" or U is None:
            continue
        assert np.abs(U - U0).max() < 1e-12, grid
        assert np.allclose(lq, lq0, rtol=1e-12, atol=0), grid
        assert np.allclose(lqi, lq0, rtol=1e-10, atol=0), grid  # the inverse gives the density back
        for a, b in zip(g, g0):
            assert np.abs(a - b).max() <= 1e-12 * max(np.abs(b).max(), 1e-300), grid
        assert np.abs(np.exp(1j * z) - np.exp(1j * z0)).max() < 1e-11 if group == "U1" else \
            np.abs(z - z0).max() < 1e-11


def _train(group, dims, steps=3, replicas=1):
    def body(lat):
        fl = FlowLattice(lat)
        flow = GaugeFlow(fl, arch(group, dims, layers=8), seed=4)
        par = Parallel(lat.comm, lat.comm, self_comm())
        tr = Trainer(flow, get_group(group), 2.0, CounterRNG(9), par, batch=4, lr=0.01, clip=5.0)
        hist = [tr.step(k)["loss"] for k in range(steps)]
        return [p.detach().numpy().copy() for p in flow.parameters()], hist
    return body


@pytest.mark.mpi
def test_training_steps_at_every_grid_give_the_same_weights():
    res = on_grids((8, 8), [(1, 2), (2, 2)], _train("U1", (8, 8)))
    w0, h0 = res["serial"]
    for grid, (w, h) in res.items():
        assert np.allclose(h, h0, rtol=1e-12), grid
        for a, b in zip(w, w0):
            assert np.abs(a - b).max() < 1e-10, grid
    assert max(np.abs(a).max() for a in w0) > 0
