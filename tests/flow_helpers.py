"""Shared pieces of the flow tests: small flows, random fields and gauge transformations."""

import math

import numpy as np
import torch

from lattice_hpc.comm import self_comm
from lattice_hpc.flows.geometry import FlowLattice
from lattice_hpc.flows.model import GaugeFlow
from lattice_hpc.flows.prior import haar_sample
from lattice_hpc.geometry import Lattice
from lattice_hpc.groups import get_group
from lattice_hpc.rng import CounterRNG


def arch(group, dims, layers=None, kernel="spline", bins=4, hidden=(4,), kernel_size=3,
         kernel_shape="cube", masks="stripes"):
    nd = len(dims)
    return {"group": group, "dims": list(dims), "layers": layers or 4 * nd, "kernel": kernel,
            "bins": bins, "hidden": list(hidden), "kernel_size": kernel_size,
            "kernel_shape": kernel_shape, "masks": masks}


def randomise(flow, seed=0, scale=0.2):
    """Non-trivial weights (an untrained flow is the identity: its last convolutions are zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device))
    return flow


def serial_flow(group, dims, seed=3, scale=None, **kw):
    """A flow with random weights on one rank.  In 4D the weights are smaller: the context has
    more channels, and with large weights the Jacobian of the whole field gets condition numbers
    near 1e15, where no autograd comparison can reach 1e-10."""
    lat = Lattice(dims, (1,) * len(dims), comm=self_comm())
    fl = FlowLattice(lat)
    scale = (0.2 if len(dims) == 2 else 0.05) if scale is None else scale
    return fl, randomise(GaugeFlow(fl, arch(group, dims, **kw), seed=seed), scale=scale)


def prior(fl, group, n=2, seed=1, purpose=("test",)):
    return haar_sample(fl, get_group(group), CounterRNG(seed), purpose, range(n))


def site_axis(nd, mu, first=1):
    """Axis of direction mu in a per-direction link tensor (B, *sites, ...)."""
    return first + nd - 1 - mu


def random_gauge(fl, group, seed=5):
    """A random local gauge transformation on the (serial) lattice: angles or SU(N) matrices."""
    g = CounterRNG(seed)
    sites = fl.lattice.global_index
    G = get_group(group)
    if G.N == 1:
        return torch.as_tensor(2 * math.pi * g.uniform(("g",), sites, 1)[..., 0])
    return torch.as_tensor(G.haar(g.normal(("g",), sites, G.haar_normals)))


def gauge_transform(U, g, nd, N):
    """``U_mu(x) -> g(x) U_mu(x) g(x+mu)^dag`` on a serial block (periodic by roll)."""
    out = []
    for mu in range(nd):
        ax = site_axis(nd, mu, 0)
        g_up = torch.roll(g, shifts=-1, dims=ax)
        if N == 1:
            out.append(U[:, mu] + g - g_up)
        else:
            out.append(g @ U[:, mu] @ g_up.conj().transpose(-1, -2))
    return torch.stack(out, dim=1)


def su_basis(N):
    """Hermitian generators T_a with tr(T_a T_b) = delta_ab / 2."""
    T = []
    for i in range(N):
        for j in range(i + 1, N):
            a = np.zeros((N, N), complex)
            a[i, j] = a[j, i] = 0.5
            T.append(a)
            b = np.zeros((N, N), complex)
            b[i, j], b[j, i] = -0.5j, 0.5j
            T.append(b)
    for k in range(1, N):
        d = np.zeros((N, N), complex)
        d[:k, :k] = np.eye(k)
        d[k, k] = -k
        T.append(d / math.sqrt(2 * k * (k + 1)))
    return torch.as_tensor(np.array(T))


def wrap(a):
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi
