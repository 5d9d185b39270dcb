"""Exact sampling: independence Metropolis-Hastings with the flow as the proposal.

Proposal ``U' = f(z)``, ``z`` a fresh prior sample, accepted with probability
``min(1, w(U') / w(U))``, ``log w = log p - log q = -S - log q`` (up to ``log Z``) for the current
state ``U``; the chain has ``p = exp(-S) / Z`` as its stationary distribution whatever the quality
of ``q`` (Albergo, Kanwar, Shanahan arXiv 1904.12072), provided ``q`` is the exact density of the
proposal, which the exact log-Jacobians of :mod:`lattice_hpc.flows` guarantee.  The decision uses
``log w`` in float64 whatever precision the flow runs in: the action is recomputed in float64 on
the proposal cast to float64, and ``log q`` (the flow's) is cast before the difference.

Proposal ``i`` (numbered from the start of the sampling phase) is the prior draw
``("flow-sample", i)``, and its accept/reject uniform is the counter ``("flow-accept",)`` at
"site" ``i``: a resumed chain is the uninterrupted one, and the proposals of a batch may be made
by any data-parallel replica.  ``log w``, ``S`` and the observables are global sums reduced to
one rank and broadcast (:func:`lattice_hpc.comm.autograd.allreduce_tensor`), so every rank takes
the same decision bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..comm.autograd import allreduce_tensor
from ..errors import FlowError
from .loops import planes, site_sum, sun_loop, u1_charge_local, u1_loop


def weigh(fl, group, U, log_q, beta: float) -> tuple[np.ndarray, dict]:
    """Collective: ``(log w, observables)`` of a batch of fields, float64 NumPy arrays with the
    same bits on every rank.

    ``log w = -S - log q`` per sample; the observables are the plaquette (total, spatial,
    temporal) and for 2D U(1) the geometric topological charge and its square.  The fields are
    cast to float64, padded once, and the per-plane plaquette sums (and the charge) are reduced
    over the ranks in one reduction; the Wilson action is a function of those plane sums,
    ``S = -beta sum cos theta_P`` (U(1)) or ``beta sum (1 - Re Tr P / N)`` (SU(N)).
    """
    with torch.no_grad():
        U64 = U.to(torch.complex128 if U.is_complex() else torch.float64)
        p = fl.pad(U64, 2)
        nd, T = fl.ndim, fl.ndim - 1
        pl = planes(nd)
        parts = []
        for mu, nu in pl:
            if group.N == 1:
                tr = torch.cos(u1_loop(fl, p, mu, nu))
            else:
                tr = torch.diagonal(sun_loop(fl, p, mu, nu), dim1=-2, dim2=-1).sum(-1).real / group.N
            parts.append(site_sum(tr, nd))
        charge = group.N == 1 and nd == 2
        if charge:
            parts.append(u1_charge_local(fl, U64, padded=p))
        tot = allreduce_tensor(torch.stack(parts, dim=-1), fl.comm).cpu().numpy()
        lq = log_q.detach().to(torch.float64).cpu().numpy()
    V = fl.lattice.volume
    sums = tot[:, :len(pl)]
    S = -beta * sums.sum(-1) if group.N == 1 else beta * (V * len(pl) - sums.sum(-1))
    temporal = [i for i, (mu, nu) in enumerate(pl) if T in (mu, nu)]
    spatial = [i for i in range(len(pl)) if i not in temporal]
    obs = {"plaquette": sums.sum(-1) / (V * len(pl))}
    if spatial:
        obs["plaquette_spatial"] = sums[:, spatial].sum(-1) / (V * len(spatial))
    obs["plaquette_temporal"] = sums[:, temporal].sum(-1) / (V * len(temporal))
    if charge:
        q = tot[:, -1]
        obs["topological_charge"] = q
        obs["topological_charge_sq"] = q * q
    return -S - lq, obs


class IndependenceMetropolis:
    """The accept/reject step of the chain; its state is ``log_w`` of the current field.

    Args:
        rng: the sampling phase's :class:`~lattice_hpc.rng.CounterRNG`.
    """

    def __init__(self, rng, log_w: float | None = None):
        self.rng, self.log_w = rng, log_w

    def uniform(self, i: int) -> float:
        return float(self.rng.uniform(("flow-accept",), np.array([i], dtype=np.int64), 1)[0, 0])

    def step(self, i: int, log_w_new: float) -> bool:
        """Proposal ``i`` with log-weight ``log_w_new``: accepted or not (the first proposal of a
        chain that has no state yet is accepted: a draw from ``q`` is a valid start)."""
        if not math.isfinite(log_w_new):
            raise FlowError(f"proposal {i}: its log-weight log p - log q is {log_w_new}, not finite "
                            "(the flow produced a degenerate field or a non-finite log-Jacobian)")
        if self.log_w is None:
            self.log_w = log_w_new
            return True
        accept = math.log(self.uniform(i)) < log_w_new - self.log_w
        if accept:
            self.log_w = log_w_new
        return accept
