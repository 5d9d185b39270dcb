"""The one-plaquette start of a U(1) flow (``train.init = "plaquette"``, :mod:`lattice_hpc.flows.
pretrain`) and what it makes of the 2D sweep order (:func:`lattice_hpc.flows.masks.sweep_masks`):
a flow that is exact but for the last plaquette before any training."""

import math

import numpy as np
import torch

from flow_helpers import prior, serial_flow
from lattice_hpc.flows.loops import u1_loop
from lattice_hpc.flows.ncp import ncp_mixture
from lattice_hpc.flows.pretrain import plaquette_kernel, plaquette_kl, start_from_plaquette
from lattice_hpc.flows.train import action_local
from lattice_hpc.gauge.exact_u1 import log_partition
from lattice_hpc.groups import get_group

torch.set_num_threads(1)


def test_the_one_plaquette_kernel_has_the_one_plaquette_density():
    """The fitted NCP mixture pushes the uniform angle to ``exp(beta cos theta) / (2 pi I_0)``:
    its density, from the inverse map's exact log-derivative, is within 1% of it everywhere, and
    its KL (midpoint rule) is that of an independent finer rule."""
    beta, K = 3.0, 6
    params, kl = plaquette_kernel("ncp", K, beta, iterations=300, points=2048)
    assert kl < 1e-5
    assert abs(float(plaquette_kl("ncp", params, K, beta, 32768)) - kl) < 1e-6
    y = torch.linspace(0, 2 * math.pi, 2001, dtype=torch.float64)[:-1]
    p = params.expand(len(y), -1)
    _, ld = ncp_mixture(y, p[:, :K], p[:, K:2 * K], p[:, 2 * K], inverse=True)
    q = torch.exp(ld) / (2 * math.pi)
    p1 = torch.exp(beta * torch.cos(y)) / (2 * math.pi * np.i0(beta))
    assert (q / p1 - 1).abs().max() < 1e-2
    assert abs(float(q.mean()) * 2 * math.pi - 1) < 1e-8  # a density: integrates to one
    # the identity (the flow's usual start) is the uniform density: KL = ln I_0(beta)
    zero = torch.zeros(2 * K + 1, dtype=torch.float64)
    assert abs(float(plaquette_kl("ncp", zero, K, beta)) - math.log(np.i0(beta))) < 1e-9


def test_the_sweep_flow_from_the_plaquette_start_is_exact_but_for_the_last_plaquette():
    """In 2D the plaquettes of ``exp(-S)`` are independent up to ``prod P = 1``.  In the sweep
    order every layer meets its active loop uniform and never changes it again, so with the
    one-plaquette kernel in every layer ``log w = log p - log q`` is ``beta cos theta_P(0,0)``
    plus a constant (the last plaquette stays uniform), and the reverse KL is ``ln I_0(beta)``.
    The stripes order with the same start is far from that."""
    beta, dims = 3.0, (8, 8)
    G = get_group("U1")
    fl, flow = serial_flow("U1", dims, scale=0.0, layers=sum(dims) - 2, kernel="ncp", bins=6,
                           masks="sweep")
    kl1 = start_from_plaquette(flow, beta, iterations=300, points=2048)
    z = prior(fl, "U1", n=400)
    with torch.no_grad():
        U, log_q = flow.sample(z)
        S = action_local(fl, G, U, beta)
        last = u1_loop(fl, fl.pad(U, 2), 0, 1)[:, 0, 0]
    log_w = (-S - log_q).numpy()
    resid = log_w - beta * torch.cos(last).numpy()
    assert resid.std() < 0.02 < 0.5 * beta / math.sqrt(2) < log_w.std()
    kl = float(-log_w.mean()) + log_partition(beta, math.prod(dims))
    err = 3 * log_w.std() / math.sqrt(len(log_w))
    assert abs(kl - math.log(np.i0(beta)) - (math.prod(dims) - 1) * kl1) < err
    _, stripes = serial_flow("U1", dims, scale=0.0, layers=8, kernel="ncp", bins=6, masks="stripes")
    start_from_plaquette(stripes, beta, iterations=300, points=2048)
    with torch.no_grad():
        U2, log_q2 = stripes.sample(z)
        kl2 = float((log_q2 + action_local(fl, G, U2, beta)).mean()) + log_partition(beta, 64)
    assert kl2 > 5 * kl
