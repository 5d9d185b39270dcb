"""Reverse Kullback-Leibler self-training of a flow (no samples of the target needed).

Loss (Albergo, Kanwar, Shanahan arXiv 1904.12072; CONVENTIONS.md):

    L = E_{z ~ r} [ log q(f(z)) + S(f(z)) ]  =  KL(q || p) - log Z,

estimated on a batch of ``B`` prior samples and minimised with Adam (Kingma and Ba, 1412.6980).
With dynamical fermions ``S`` includes the fermion term of :mod:`.determinant` (exact
``-log det(D^dag D)``, or a pseudofermion action whose gradient has that expectation).
Learning rate ``lr_k = lr * min(1, (k + 1) / warmup) * 2^(-k / halflife)`` (``halflife = 0``:
constant after the warm-up), so that extending a training run does not change its past.  The
gradient norm is clipped to ``clip`` (0: no clipping).

Parallelism (:class:`Parallel`): the ranks form ``replicas`` groups; each group holds every
sample of its share of the batch split over the process grid (domain parallel, through the
halos of :mod:`lattice_hpc.comm.autograd`), and the groups share the batch (data parallel).
Sample ``b`` of step ``k`` is the prior draw ``("flow-train", k, b)`` whichever group draws it,
so the loss and the gradient are those of the global batch for every split: each rank
backpropagates its own part, and :func:`~lattice_hpc.comm.autograd.allreduce_gradients` adds
them (one reduction, then a broadcast, so the weights stay bitwise equal on every rank).

A step whose loss or gradient is not finite is not applied: :class:`~lattice_hpc.errors.FlowError`
names the step and the quantity.

Diagnostics of every step, from the batch's log-weights ``log w = -S - log q`` (float64): the
effective sample size per sample ``ESS = (sum w)^2 / (B sum w^2)`` of the reweighting, and the
acceptance that an independence Metropolis chain would have, estimated without randomness as
``sum_{i,j} (w_j / sum w) (1/B) min(1, w_i / w_j)``, a consistent estimate of
``E_{U~p, U'~q} min(1, w(U') / w(U))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import faults
from ..comm.autograd import allreduce_gradients, sum_over_ranks
from ..errors import FlowError
from .loops import sun_action_local, u1_action_local
from .prior import haar_sample


@dataclass
class Parallel:
    """How the ranks share the work: ``domain`` (the communicator of one sample's blocks),
    ``cross`` (the ranks at the same block position in every replica), ``world``, and this rank's
    ``replica`` out of ``replicas``."""

    world: object
    domain: object
    cross: object
    replica: int = 0
    replicas: int = 1

    def share(self, batch: int) -> range:
        """Global sample indices of this replica's share of a batch."""
        if batch % self.replicas:
            raise FlowError(f"the batch size {batch} must be a multiple of the {self.replicas} "
                            "data-parallel replicas")
        n = batch // self.replicas
        return range(self.replica * n, (self.replica + 1) * n)

    def gather(self, values: np.ndarray) -> np.ndarray:
        """Collective: this replica's per-sample values of a batch -> the whole batch, in order."""
        if self.replicas == 1:
            return values
        return np.concatenate(self.cross.allgather(np.asarray(values)))


def action_local(fl, group, U, beta: float):
    """This rank's part of the Wilson action per sample (differentiable)."""
    return u1_action_local(fl, U, beta) if group.N == 1 else sun_action_local(fl, U, beta)


def ess_per_sample(log_w) -> float:
    """Effective sample size per sample of the reweighting by ``w = exp(log_w)``:
    ``(sum w)^2 / (N sum w^2)``."""
    lw = np.asarray(log_w, dtype=np.float64)
    w = np.exp(lw - lw.max())
    return float(w.sum() ** 2 / (len(w) * (w * w).sum()))


def log_weights_stats(log_w: np.ndarray) -> dict:
    """ESS per sample and the acceptance estimate of a batch of log-weights (float64).

    Both come from the batch's ``B`` samples alone: the ESS cannot fall below ``1/B`` (one
    sample carries all the weight), and both are biased high when ``ESS B`` is small, since the
    rare heavy samples that decide the true figures are missing from the batch.  The progress
    lines flag such batches as unresolved."""
    lw = np.asarray(log_w, dtype=np.float64)
    B = len(lw)
    if not np.all(np.isfinite(lw)):
        return {"ess": float("nan"), "acceptance_estimate": float("nan")}
    ess = ess_per_sample(lw)
    w = np.exp(lw - lw.max())
    pj = w / w.sum()
    ratio = np.minimum(1.0, np.exp(np.clip(lw[:, None] - lw[None, :], -700, 0)))  # [i, j]
    acc = float((ratio * pj[None, :]).sum() / B)
    return {"ess": ess, "acceptance_estimate": acc}


class Trainer:
    """Adam on the reverse KL loss of ``flow`` for the action ``beta`` of ``group``."""

    def __init__(self, flow, group, beta: float, rng, par: Parallel, batch: int, lr: float,
                 warmup: int = 0, halflife: float = 0.0, clip: float = 0.0, fermion=None):
        self.flow, self.group, self.beta, self.rng, self.par = flow, group, beta, rng, par
        #: a :class:`~lattice_hpc.flows.determinant.FermionDeterminant` (its training term is
        #: added to the global gauge action), or None for pure gauge
        self.fermion = fermion
        self.batch, self.lr, self.warmup, self.halflife, self.clip = batch, lr, warmup, halflife, clip
        self.params = [p for p in flow.parameters()]
        self.optimizer = torch.optim.Adam(self.params, lr=lr)
        self.samples = par.share(batch)

    def learning_rate(self, k: int) -> float:
        f = min(1.0, (k + 1) / self.warmup) if self.warmup > 0 else 1.0
        if self.halflife > 0:
            f *= 2.0 ** (-k / self.halflife)
        return self.lr * f

    def step(self, k: int) -> dict:
        """Collective: training step ``k``; returns its diagnostics (the same on every rank)."""
        fl = self.flow.fl
        z = haar_sample(fl, self.group, self.rng, ("flow-train", k), self.samples)
        U, log_q = self.flow.sample(z)
        log_q = faults.value("flow-loss", log_q)
        S = sum_over_ranks(action_local(fl, self.group, U, self.beta), fl.comm)
        if self.fermion is not None:  # global per sample already (collective solves)
            S = S + self.fermion.train_term(U, k, self.samples).to(S.device)
        local = (log_q + S).sum() / self.batch
        self.optimizer.zero_grad(set_to_none=False)
        local.backward()
        allreduce_gradients(self.params, self.par.world)
        log_w = self.par.gather((-(S + log_q)).detach().to(torch.float64).cpu().numpy())
        loss = float(-log_w.mean())
        gnorm = float(torch.sqrt(sum((p.grad.to(torch.float64) ** 2).sum() for p in self.params)))
        for what, value in (("loss", loss), ("gradient norm", gnorm)):
            if not math.isfinite(value):
                raise FlowError(f"training step {k}: the {what} is {value}, so the step is not "
                                "applied (lower train.lr, set train.clip, or use double precision)")
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        lr = self.learning_rate(k)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.optimizer.step()
        return {"step": k, "loss": loss, "grad_norm": gnorm, "lr": lr, **log_weights_stats(log_w)}

    # -- checkpointed state (named arrays, no pickle) ------------------------------------------
    def arrays(self) -> dict:
        """Weights and optimizer state as named NumPy arrays (``model:<name>``, ``adam:<i>:<name>``)."""
        out = {f"model:{k}": v.detach().cpu().numpy() for k, v in self.flow.state_dict().items()}
        st = self.optimizer.state_dict()["state"]
        for i, s in st.items():
            for name, v in s.items():
                out[f"adam:{i}:{name}"] = torch.as_tensor(v).detach().cpu().numpy()
        return out

    def load_arrays(self, arrays: dict) -> None:
        """Restore weights and optimizer state written by :meth:`arrays` (bit for bit)."""
        fl = self.flow.fl
        sd = {k[len("model:"):]: torch.as_tensor(v) for k, v in arrays.items() if k.startswith("model:")}
        self.flow.load_state_dict(sd)
        state: dict = {}
        for k, v in arrays.items():
            if k.startswith("adam:"):
                _, i, name = k.split(":")
                t = torch.as_tensor(v)
                state.setdefault(int(i), {})[name] = t if name == "step" else t.to(fl.device)
        if state:
            sd = self.optimizer.state_dict()
            sd["state"] = state
            self.optimizer.load_state_dict(sd)
