"""The two-flavour fermion determinant in the flow's training loss and in its Metropolis chain,
three exact ways (issue 14; ``[fermions] determinant = ...`` of a flow job).

Target: ``p(U) = exp(-S_g(U)) det(D^dag D) / Z`` (two degenerate Wilson flavours; ``M = D_hat``
the even/odd Schur complement, ``det(D^dag D) = det(M^dag M)``), proposal ``U' = f(z)`` with
density ``q``.  Each treatment defines the chain's log-weights and a training term whose
gradient is that of ``-log det(D^dag D)`` (exactly or in expectation), added to the gauge action
in the reverse-KL loss (:mod:`.train`).

``exact`` (small volumes)
    ``log w(U) = -S_g - log q + log det(M^dag M)`` from a dense LU (:func:`.fermions.logdet_action`);
    training adds ``S_det = -log det(M^dag M)`` exactly, differentiably.
``pseudofermion`` (independence Metropolis on the joint target, Abbott et al. arXiv 2207.08945)
    The joint target ``p(U, phi) ~ exp(-S_g(U) - phi^dag (M^dag M)^{-1} phi)`` has the marginal
    ``p(U)`` (the Gaussian integral is ``pi^n det(M^dag M)``).  The flow proposes ``U'`` and,
    given it, a pseudofermion ``phi' = s M_0(U')^dag eta`` (``eta`` complex Gaussian, counter
    ``("flow-pf", i)``; ``s`` = ``fermions.proposal_scale``), with ``M_0`` either
    ``triangular`` (the default): ``(1 - k^2 L)(1 - k^2 R)``, the even/odd operator with its
    two-hop term split into the parts below and above the diagonal in the global site order,
    ``det M_0 = 1`` exactly and ``M_0 = M + O(kappa^4)`` (:mod:`lattice_hpc.fermions.
    triangular`), or ``free``: the free-field Schur operator at ``fermions.proposal_kappa``
    (default ``kappa``).  Both give a tractable conditional ``q(phi' | U') ~ exp(-eta^dag
    eta)`` (the Jacobian ``s^{2n} |det M_0|^2`` is a constant).  The pair is accepted with the
    joint weights, ``log w = -S_g(U') - log q(U') - phi'^dag (M'^dag M')^{-1} phi' + eta^dag eta``
    (one solve per proposal): an independence chain on ``(U, phi)`` whose ``U`` marginal is
    ``p(U)``.  The variance of the fermion part is ``sum_i (1 - mu_i)^2`` over the eigenvalues ``mu_i`` of
    ``s^2 M_0 (M^dag M)^{-1} M_0^dag``, finite only if every ``mu_i > 1/2``.  On 4x4 hot fields
    at kappa = 0.25 it is about 1 for ``triangular`` and 47 for ``free`` (8x8: 3 and 216);
    what is left is ``det M`` itself, which a proposal of determinant 1 cannot carry.
    ``learned``: ``phi' = s(x) M_c(U')^dag eta`` with per-path-class weights ``c`` and a
    site-dependent scale ``s(x) = exp(a + b P(x))`` of the local plaquette, trained by the
    conditional's reverse KL before the chain (:mod:`.conditional`; ``det M_c = 1``, so the
    conditional density stays exact; its Jacobian ``2 n_s sum_x log s(x)`` depends on ``U`` and
    enters ``log w``).
    Training adds ``S_pf(U, phi)`` with ``phi`` the heatbath at ``U`` held fixed:
    ``E_phi[grad S_pf] = -grad log det(M^dag M)`` (the HMC pseudofermion force), an unbiased
    gradient of the marginal KL.
Hasenbusch factorisation of the ``pseudofermion`` weights (``fermions.hasenbusch = [k_1, ...,
k_m]``, increasing, below ``kappa``; Hasenbusch, Phys. Lett. B 519 (2001) 177)
    With ``M_j`` the operator at ``k_j`` (``k_{m+1} = kappa``),
    ``det(M^dag M) = det(M_1^dag M_1) prod_j det(W_j^dag W_j)``, ``W_j = M_{j+1} M_j^{-1}``,
    and the joint target carries one pseudofermion per factor:
    ``S = phi_0^dag (M_1^dag M_1)^{-1} phi_0 + sum_j phi_j^dag M_j (M_{j+1}^dag M_{j+1})^{-1}
    M_j^dag phi_j`` (one solve per factor).  The proposals are ``phi_0 = s T(k_1)^dag eta_0``
    and ``phi_j = s T(r_j)^dag eta_j`` with ``T`` the triangular operator and
    ``r_j^2 = k_{j+1}^2 - k_j^2`` (``W_j = 1 - r_j^2 K + O(k^4)``, ``det T = 1``), counters
    ``("flow-pf", i)`` and ``("flow-pf-h", j, i)``.  Each factor's part of ``log w`` has the
    variance ``sum_i (1 - mu_i)^2`` over its own eigenvalues; splitting moves every ``mu`` closer
    to 1.  Dense spectra of four 8x8 U(1) fields at plaquette 0.7 (``tools/
    hasenbusch_variance.py``, ``bench/results/hasenbusch_variance_schwinger_L8_*.json``): at
    ``kappa = 0.276`` one factor has variance 8.5 and ``mu_min = 0.11`` (below 1/2: the weights'
    variance is infinite), ``[0.2, 0.25]`` 0.7 + 1.4 + 1.4 = 3.5 with every ``mu_min >= 0.56``;
    at ``kappa = 0.24`` 3.7 (``mu_min = 0.41``) against 1.2 for ``[0.17, 0.21]``
    (``mu_min >= 0.79``).  The even/odd factorisation itself (``det D = det D_hat``: the
    pseudofermion on the even sites) is the first such saving: on all sites, with the triangular
    split of ``D``, the variance is 29 at ``kappa = 0.24`` and 47 at 0.276.
    ``tests/test_flow_hasenbusch.py`` checks each factor's mean and variance against the dense
    matrices.  The records carry each factor's part
    (``log_w_fermion_factors``) and the summary their variances.  The ``stochastic`` route
    factorises the same way: before proposal ``i``, at the current field, ``phi_0 = M_1^dag
    eta_0`` and ``phi_j = W_j^dag eta_j = M_j^{-dag} M_{j+1}^dag eta_j`` (the heatbath of each
    factor: one extra solve per factor ``j >= 1``, ``2m + 1`` solves per proposal in all),
    counters ``("flow-sr", i)`` and ``("flow-sr-h", j, i)``, and ``log r = sum_j (eta_j^dag
    eta_j - S_j(U'))`` estimates the ratio factor by factor.  The current field's part
    ``S_j(U) = eta_j^dag eta_j`` holds to the heatbath solve's residual: keep ``fermions.tol``
    tight (the default 1e-12; looser only where CG stagnates near the critical ``kappa``).
    Training is unchanged (one heatbath pseudofermion at ``kappa``: the factorisation changes the
    variance of the weights, not the expectation of the gradient).
``stochastic`` (an unbiased estimate of the determinant ratio in the accept step)
    Before proposal ``i`` the pseudofermion is drawn at the chain's *current* field,
    ``phi = M(U)^dag eta`` (counter ``("flow-sr", i)``), and
    ``r = exp(-phi^dag (M'^dag M')^{-1} phi + eta^dag eta)`` has
    ``E_eta[r] = det(M'^dag M') / det(M^dag M)``; the proposal is accepted with
    ``min(1, r w_g(U') / w_g(U))``, ``log w_g = -S_g - log q``.  Exact: it is Metropolis within
    Gibbs on ``p(U, phi)`` (the heatbath of ``phi | U``, then an independence step of
    ``U | phi``).  One solve per proposal; the records carry ``log r`` (``log_w_fermion``), whose
    mean and variance over the chain the summary reports.  Training as for ``pseudofermion``.

All three are exact; they differ in cost and in the variance of the weights, which the records
show (``log_w`` and ``log_w_fermion``).  Collective: every rank calls every method together.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..fermions import SchurOperator, WilsonDirac, inner
from ..hmc.pseudofermions import gaussian_source
from .fermions import (_fields, _normal_solve, complex_links, draw_pseudofermion, logdet_action,
                       pseudofermion_action, pseudofermion_values)

TREATMENTS = ("exact", "pseudofermion", "stochastic")
PROPOSALS = ("triangular", "free", "learned")


def check_hasenbusch(levels, kappa: float, treatment: str, proposal: str) -> tuple:
    """The Hasenbusch levels as floats, or a :class:`ConfigError` naming what does not fit:
    they must increase, be positive and stay below ``kappa``, for the ``pseudofermion`` route
    with the ``triangular`` proposal or the ``stochastic`` route."""
    try:
        if any(isinstance(k, (bool, str)) for k in levels):
            raise TypeError
        ks = tuple(float(k) for k in levels)
    except (TypeError, ValueError):
        raise ConfigError(f"fermions.hasenbusch = {levels!r} must be a list of kappas") from None
    if not ks:
        return ks
    if treatment == "exact" or (treatment == "pseudofermion" and proposal not in ("triangular", "learned")):
        raise ConfigError("fermions.hasenbusch factorises the weights of determinant = "
                          "'pseudofermion' (with proposal = 'triangular' or 'learned') or 'stochastic'; "
                          f"got determinant = {treatment!r}, proposal = {proposal!r}")
    full = ks + (float(kappa),)
    if not (full[0] > 0 and all(a < b for a, b in zip(full[:-1], full[1:]))):
        raise ConfigError(f"fermions.hasenbusch = {list(ks)}: the kappas must increase, be "
                          f"positive and stay below fermions.kappa = {float(kappa)}")
    return ks


class FermionDeterminant:
    """Two Wilson flavours at ``kappa`` in a flow job, by ``treatment`` (module docstring).

    Args:
        lattice, group: of the flow's block.
        kappa, bc: the Wilson operator.
        treatment: ``exact``, ``pseudofermion`` or ``stochastic``.
        rng: the sampling phase's :class:`~lattice_hpc.rng.CounterRNG` (pseudofermions of the
            chain); training draws from ``train_rng``.
        proposal_kappa: ``kappa`` of the free operator ``M_0`` of the ``pseudofermion``
            proposals (0: ``kappa``).
        proposal_scale: ``s`` in ``phi' = s M_0^dag eta`` (its Jacobian is a constant).
        proposal: ``M_0`` of the ``pseudofermion`` proposals, ``triangular``, ``free`` or
            ``learned`` (:attr:`conditional`, trained by :meth:`train_conditional`).
        tol: relative residual of the CG solves.
        hasenbusch: the intermediate ``kappa`` s of the factorised ``pseudofermion`` weights or
            ``stochastic`` ratio (increasing, each below ``kappa``; empty: one factor).
    """

    def __init__(self, lattice, group, kappa: float, treatment: str, rng, train_rng, bc=None,
                 proposal_kappa: float = 0.0, tol: float = 1e-12, proposal_scale: float = 1.0,
                 proposal: str = "triangular", hasenbusch=()):
        if treatment not in TREATMENTS:
            raise ConfigError(f"fermions.determinant = {treatment!r}: use one of {', '.join(TREATMENTS)}")
        self.lattice, self.group, self.kappa, self.treatment = lattice, group, float(kappa), treatment
        self.rng, self.train_rng, self.bc, self.tol = rng, train_rng, bc, float(tol)
        self.proposal_kappa = float(proposal_kappa) or self.kappa
        self.proposal_scale = float(proposal_scale)
        if proposal not in PROPOSALS:
            raise ConfigError(f"fermions.proposal = {proposal!r}: use {', '.join(PROPOSALS)}")
        if proposal == "learned" and treatment != "pseudofermion":
            raise ConfigError(f"fermions.proposal = 'learned' is the pseudofermion proposal of "
                              f"determinant = 'pseudofermion', not {treatment!r}")
        self.proposal = proposal
        self.hasenbusch = check_hasenbusch(hasenbusch, self.kappa, treatment, proposal)
        ks = self.hasenbusch + (self.kappa,)
        #: ``kappa`` of each factor's triangular proposal operator: ``k_1``, then ``r_j``
        self.proposal_kappas = (ks[0],) + tuple(float(np.sqrt(ks[j] ** 2 - ks[j - 1] ** 2))
                                                for j in range(1, len(ks)))
        self.conditional = None
        if proposal == "learned":
            from .conditional import LearnedConditional

            self.conditional = LearnedConditional(lattice, self.proposal_kappas, ks, bc, self.tol)
            self.conditional.theta[:, 0] = np.log(self.proposal_scale)  # the initial s = e^a
        self.last_factors = None  # (B, factors) of the latest proposal_terms (Hasenbusch)
        self.last_ratio_factors = None  # each factor's log r of the latest ratio_terms
        self._free = None
        self._paths = None

    # -- training ------------------------------------------------------------------------------
    def train_term(self, U, step: int, samples) -> torch.Tensor:
        """Collective, differentiable: the per-sample term ``(B,)`` added to the global gauge
        action in the loss of training step ``step`` (``samples``: the global sample indices)."""
        if self.treatment == "exact":
            return logdet_action(self.lattice, self.group, U, self.kappa, self.bc)
        phi = draw_pseudofermion(self.lattice, self.group, U.detach(), self.kappa, self.train_rng,
                                 ("flow-train-pf", int(step)), self.bc, samples)
        return pseudofermion_action(self.lattice, self.group, U, phi, self.kappa, self.bc, self.tol)

    # -- sampling --------------------------------------------------------------------------------
    def proposal_terms(self, U, first: int) -> np.ndarray:
        """Collective: the fermion part of the log-weights of a batch of proposals (numbered
        ``first, first + 1, ...``) that does not depend on the chain's state, ``(B,)`` float64
        (``stochastic``: zeros; its part needs the current field, :meth:`ratio_terms`)."""
        B = U.shape[0]
        if self.treatment == "stochastic":
            return np.zeros(B)
        U64 = U.detach().to(_double(U))
        with torch.no_grad():
            if self.treatment == "exact":
                return -logdet_action(self.lattice, self.group, U64, self.kappa, self.bc).cpu().numpy()
            fields = _fields(self.lattice, self.group, complex_links(self.group, U64))
            if self.hasenbusch:
                return self._factorised_terms(fields, first)
            phis, eta2 = [], []
            for b, field in enumerate(fields):
                phi, e2 = self._proposed_pseudofermion(field, first + b)
                phis.append(phi)
                eta2.append(e2)
            S = pseudofermion_values(self.lattice, fields, phis, self.kappa, self.bc, self.tol)
        return -S + np.array(eta2)

    def _factorised_ratio(self, current, proposal, i: int) -> tuple[float, float]:
        """:meth:`ratio_terms` with the Hasenbusch factors (module docstring); each factor's
        ``log r_j`` in :attr:`last_ratio_factors`."""
        ks = self.hasenbusch + (self.kappa,)
        cur, new = (_fields(self.lattice, self.group, complex_links(self.group, u.unsqueeze(0).to(_double(u))))[0]
                    for u in (current, proposal))
        on_cur = [SchurOperator(WilsonDirac(cur, k, 0.0, self.bc)) for k in ks]  # M_j(U)
        cur_parts, new_parts = [], []
        for j in range(len(ks)):
            top = on_cur[j]
            key = ("flow-sr", int(i)) if j == 0 else ("flow-sr-h", j, int(i))
            eta = gaussian_source(self.lattice, self.rng, key, cur.backend, site_shape=top.D.site_shape)
            phi = top.apply_dagger(eta)  # j = 0: M_1^dag eta
            if j > 0:  # phi_j = W_j^dag eta = M_j^-dag M_{j+1}^dag eta (the heatbath at the current field)
                low = on_cur[j - 1]
                phi = low.apply(_normal_solve(low, phi, self.tol, 10_000, "Hasenbusch heatbath").x)
                phi = SchurOperator(WilsonDirac(new, ks[j - 1], 0.0, self.bc)).apply_dagger(phi)
            S = pseudofermion_values(self.lattice, [new], [phi], ks[j], self.bc, self.tol)
            cur_parts.append(-float(inner(self.lattice, eta, eta).real))
            new_parts.append(-float(S[0]))
        self.last_ratio_factors = [n - c for n, c in zip(new_parts, cur_parts)]
        return float(sum(cur_parts)), float(sum(new_parts))

    def _factorised_terms(self, fields, first: int) -> np.ndarray:
        """The Hasenbusch-factorised fermion parts (module docstring), ``(B,)``; each factor's
        part in :attr:`last_factors` ``(B, factors)``."""
        ks = self.hasenbusch + (self.kappa,)
        parts = []
        for j in range(len(ks)):
            kt = self.proposal_kappas[j]
            purpose = None if j == 0 else ("flow-pf-h", j)
            phis, eta2 = [], []
            for b, field in enumerate(fields):
                phi, e2 = self._proposed_pseudofermion(field, first + b, kt, purpose, j)
                if j > 0:  # phi_j^dag M_j (M_{j+1}^dag M_{j+1})^-1 M_j^dag phi_j
                    phi = SchurOperator(WilsonDirac(field, ks[j - 1], 0.0, self.bc)).apply_dagger(phi)
                phis.append(phi)
                eta2.append(e2)
            S = pseudofermion_values(self.lattice, fields, phis, ks[j], self.bc, self.tol)
            parts.append(-S + np.array(eta2))
        self.last_factors = np.stack(parts, axis=1)
        return self.last_factors.sum(axis=1)

    def train_conditional(self, fields_of_step, steps: int, lr: float, gather=None, log=None) -> None:
        """Collective (``proposal = "learned"``): train :attr:`conditional` on the fields that
        ``fields_of_step(step)`` returns (:meth:`.conditional.LearnedConditional.train`), with
        the sampling phase's counters."""
        self.conditional.train(fields_of_step, self.rng, steps, lr, gather, log)

    def _proposed_pseudofermion(self, field, i: int, kappa: float | None = None, purpose=None,
                                factor: int = 0):
        """``(phi = s M_0^dag eta, eta^dag eta)`` of proposal ``i`` on ``field`` (collective);
        ``kappa``: of the triangular ``M_0`` (default ``kappa``), ``purpose``: the counter's
        prefix (default ``("flow-pf",)``), ``factor``: the Hasenbusch factor (``learned``)."""
        from ..backend import Backend
        from ..fermions.triangular import TriangularSchur
        from ..gauge import GaugeField

        if self.proposal == "learned":
            if not self.conditional.trained:
                raise RuntimeError("the learned pseudofermion conditional is used before training")
            key = ("flow-pf",) if purpose is None else tuple(purpose)
            eta = gaussian_source(self.lattice, self.rng, key + (int(i),), field.backend,
                                  site_shape=self.conditional.site_shape(field))
            phi, jac = self.conditional.propose(field, factor, eta)
            return phi, inner(self.lattice, eta, eta).real + jac  # log q(phi | U) = -eta^2 - jac
        if self.proposal == "triangular":
            if self._paths is None:  # the path masks depend on the lattice only
                self._paths = TriangularSchur.paths_of(self.lattice, field.backend.xp)
            kt = self.kappa if kappa is None else kappa
            M0 = TriangularSchur(WilsonDirac(field, kt, 0.0, self.bc), self._paths)
        else:
            if self._free is None:
                cold = GaugeField.cold(self.lattice, self.group, Backend("numpy", "double"))
                cold.refresh()
                self._free = SchurOperator(WilsonDirac(cold, self.proposal_kappa, 0.0, self.bc))
            M0 = self._free
        key = ("flow-pf",) if purpose is None else tuple(purpose)
        eta = gaussian_source(self.lattice, self.rng, key + (int(i),), field.backend,
                              site_shape=M0.D.site_shape)
        return self.proposal_scale * M0.apply_dagger(eta), inner(self.lattice, eta, eta).real

    def ratio_terms(self, current, proposal, i: int) -> tuple[float, float]:
        """Collective (``stochastic``): draw ``phi = M(current)^dag eta`` for proposal ``i`` and
        return ``(-eta^dag eta, -S_pf(proposal, phi))``, the fermion parts of the current
        field's and of the proposal's log-weights given ``phi`` (single fields, float64); their
        difference is ``log r``.  With Hasenbusch factors, one ``phi_j`` per factor (module
        docstring), the sums over the factors, each factor's ``log r_j`` in
        :attr:`last_ratio_factors`."""
        if self.hasenbusch:
            return self._factorised_ratio(current, proposal, i)
        cur = current.unsqueeze(0).to(_double(current))
        (phi, eta2), = draw_pseudofermion(self.lattice, self.group, cur, self.kappa, self.rng,
                                          ("flow-sr",), self.bc, [int(i)], with_eta=True)
        with torch.no_grad():
            S = pseudofermion_action(self.lattice, self.group, proposal.unsqueeze(0).to(_double(proposal)),
                                     [phi], self.kappa, self.bc, self.tol)
        return -float(eta2), -float(S[0])


def _double(t: torch.Tensor):
    return torch.complex128 if t.is_complex() else torch.float64


__all__ = ["FermionDeterminant", "PROPOSALS", "TREATMENTS", "check_hasenbusch"]
