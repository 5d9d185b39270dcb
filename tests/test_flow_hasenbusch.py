"""Hasenbusch factorisation of the pseudofermion weights of a flow chain (issue 14, item 3;
:mod:`lattice_hpc.flows.determinant`).

With ``M_j`` the even/odd Wilson operator at ``k_j`` (``k_{m+1} = kappa``), ``W_j = M_{j+1}
M_j^{-1}`` and ``T(r)`` the unit-determinant triangular operator, factor ``j`` of the fermion
log-weight is ``-phi^dag X_j phi + eta^dag eta`` with ``phi = T(r_j)^dag eta``, ``X_0 =
(M_1^dag M_1)^{-1}``, ``X_j = M_j (M_{j+1}^dag M_{j+1})^{-1} M_j^dag``.  On one fixed field:

- each factor is an unbiased estimator of its determinant: ``E_eta[exp(part_j)] = det(M_1^dag
  M_1)`` and ``det(W_j^dag W_j)`` (dense), so the product is ``det(M^dag M)``;
- each factor's variance is ``sum_i (1 - mu_i)^2`` over the eigenvalues of ``T X_j T^dag`` (dense):
  this pins the triangular operator's ``r_j`` (the mean does not depend on it, ``det T = 1``);
- the factors sum to the record's ``log_w_fermion``, and together spread less than one factor;
- the ``stochastic`` route's factors estimate their determinant ratios between two fields, with the
  dense variance.
"""

import numpy as np
import pytest
import torch

from helpers import dense_even_operator as _dense
from lattice_hpc.comm import self_comm
from lattice_hpc.errors import ConfigError
from lattice_hpc.fermions import WilsonDirac
from lattice_hpc.fermions.triangular import TriangularSchur
from lattice_hpc.flows.determinant import FermionDeterminant
from lattice_hpc.flows.fermions import complex_links, dense_schur, gauge_field
from lattice_hpc.geometry import Lattice
from lattice_hpc.groups import get_group
from lattice_hpc.rng import CounterRNG

U1 = get_group("U1")
DIMS, KAPPA, LEVELS = (4, 4), 0.25, (0.15, 0.21)
DRAWS, BATCH = 1500, 500


@pytest.fixture(scope="module")
def setup():
    lat = Lattice(DIMS, (1, 1), comm=self_comm())
    rng = CounterRNG(5)  # a rough field (plaquette ~0.4): angles uniform in +-0.4 pi
    theta = np.stack([0.8 * np.pi * (rng.uniform(("theta", mu), lat.global_index, 1)[..., 0] - 0.5)
                      for mu in range(2)])
    U = torch.tensor(theta[None], dtype=torch.float64)
    field = gauge_field(lat, U1, complex_links(U1, U)[0].numpy())
    ks = LEVELS + (KAPPA,)
    M = [dense_schur(WilsonDirac(field, k)) for k in ks]
    targets, forms = [], []
    for j in range(len(ks)):
        r = ks[0] if j == 0 else np.sqrt(ks[j] ** 2 - ks[j - 1] ** 2)
        D = WilsonDirac(field, r)
        T = _dense(TriangularSchur(D).apply, D)
        N = M[j].conj().T @ M[j]
        if j == 0:
            X, target = np.linalg.inv(N), np.linalg.slogdet(N)[1]
        else:
            X = M[j - 1] @ np.linalg.solve(N, M[j - 1].conj().T)
            W = M[j] @ np.linalg.inv(M[j - 1])
            target = np.linalg.slogdet(W.conj().T @ W)[1]
        targets.append(float(target))
        forms.append(np.linalg.eigvalsh(T @ X @ T.conj().T))
    D = WilsonDirac(field, KAPPA)
    T = _dense(TriangularSchur(D).apply, D)
    single = np.linalg.eigvalsh(T @ np.linalg.inv(M[-1].conj().T @ M[-1]) @ T.conj().T)
    return lat, U, targets, forms, single, float(np.linalg.slogdet(M[-1].conj().T @ M[-1])[1])


def _parts(lat, U, levels):
    det = FermionDeterminant(lat, U1, KAPPA, "pseudofermion", CounterRNG(11), CounterRNG(12),
                             hasenbusch=levels)
    total, parts = [], []
    for first in range(0, DRAWS, BATCH):  # the same field, a new eta per proposal number
        total.append(det.proposal_terms(U.expand(BATCH, *U.shape[1:]), first))
        parts.append(det.last_factors if levels else total[-1][:, None])
    return np.concatenate(total), np.concatenate(parts)


def test_each_hasenbusch_factor_estimates_its_determinant_with_the_dense_variance(setup):
    lat, U, targets, forms, single, logdet = setup
    assert abs(sum(targets) - logdet) < 1e-10  # det(M_1^dag M_1) prod det(W^dag W) = det(M^dag M)
    total, parts = _parts(lat, U, LEVELS)
    assert parts.shape == (DRAWS, 3)
    for j, (target, mu) in enumerate(zip(targets, forms)):
        assert mu.min() > 0.5  # the estimator exp(part) has a finite variance on this field
        w = np.exp(parts[:, j] - target)  # E[w] = 1
        err = w.std(ddof=1) / np.sqrt(DRAWS)
        print(f"factor {j}: E[exp(part)] / det = {w.mean():.4f}({err:.4f}); var {parts[:, j].var():.3f}"
              f" vs dense {np.sum((1 - mu) ** 2):.3f}")
        assert err < 0.05 and abs(w.mean() - 1) < 4 * err
        want = np.sum((1 - mu) ** 2)
        assert abs(parts[:, j].var(ddof=1) - want) < 0.15 * want
    # the factors are independent: the product estimates det(M^dag M), the variances add
    w = np.exp(total - logdet)
    err = w.std(ddof=1) / np.sqrt(DRAWS)
    want = sum(np.sum((1 - mu) ** 2) for mu in forms)
    print(f"product: E[exp(total)] / det = {w.mean():.4f}({err:.4f}); var {total.var():.3f} vs {want:.3f}")
    assert err < 0.05 and abs(w.mean() - 1) < 4 * err
    assert abs(total.var(ddof=1) - want) < 0.15 * want


def test_the_factorisation_spreads_the_weights_less_than_one_factor(setup):
    lat, U, targets, forms, single, logdet = setup
    split = sum(np.sum((1 - mu) ** 2) for mu in forms)
    one = np.sum((1 - single) ** 2)
    total, _ = _parts(lat, U, ())
    print(f"var log w_fermion: one factor {total.var():.3f} (dense {one:.3f}), "
          f"{len(forms)} factors (dense) {split:.3f}")
    assert abs(total.var(ddof=1) - one) < 0.15 * one
    assert split < 0.6 * one


def test_each_stochastic_hasenbusch_factor_estimates_its_determinant_ratio(setup):
    """The ``stochastic`` route's factors between the field and a nearby one: ``E[r_j] =
    det(W_j'^dag W_j') / det(W_j^dag W_j)`` (``j = 0``: ``M_1``), with the dense variance
    ``sum (1 - mu)^2`` over the eigenvalues of ``W_j (W_j'^dag W_j')^{-1} W_j^dag``."""
    lat, U, *_ = setup
    rng = CounterRNG(9)
    dU = torch.tensor(np.stack([0.9 * (rng.uniform(("d", mu), lat.global_index, 1)[..., 0] - 0.5)
                                for mu in range(2)]))
    V = U[0] + dU
    fields = [gauge_field(lat, U1, complex_links(U1, u[None])[0].numpy()) for u in (U[0], V)]
    ks = LEVELS + (KAPPA,)
    M = [[dense_schur(WilsonDirac(f, k)) for k in ks] for f in fields]
    W = [[M[f][0]] + [M[f][j] @ np.linalg.inv(M[f][j - 1]) for j in range(1, len(ks))] for f in (0, 1)]
    det = FermionDeterminant(lat, U1, KAPPA, "stochastic", CounterRNG(11), CounterRNG(12),
                             hasenbusch=LEVELS)
    n = 600
    logr, total = [], []
    for i in range(n):
        cur, new = det.ratio_terms(U[0], V, i)
        logr.append(det.last_ratio_factors)
        total.append(new - cur)
    logr, total = np.array(logr), np.array(total)
    wants = []
    for j in range(len(ks)):
        Wc, Wn = W[0][j], W[1][j]
        target = np.linalg.slogdet(Wn.conj().T @ Wn)[1] - np.linalg.slogdet(Wc.conj().T @ Wc)[1]
        mu = np.linalg.eigvalsh(Wc @ np.linalg.solve(Wn.conj().T @ Wn, Wc.conj().T))
        assert mu.min() > 0.5
        w = np.exp(logr[:, j] - target)
        err = w.std(ddof=1) / np.sqrt(n)
        want = np.sum((1 - mu) ** 2)
        print(f"stochastic factor {j}: E[r] / ratio = {w.mean():.4f}({err:.4f}); var {logr[:, j].var():.4f}"
              f" vs dense {want:.4f}")
        assert err < 0.05 and abs(w.mean() - 1) < 4 * err
        assert abs(logr[:, j].var(ddof=1) - want) < 0.2 * want
        wants.append(want)
    # independent factors: the product estimates det(M'^dag M') / det(M^dag M)
    ratio = (np.linalg.slogdet(M[1][-1].conj().T @ M[1][-1])[1]
             - np.linalg.slogdet(M[0][-1].conj().T @ M[0][-1])[1])
    w = np.exp(total - ratio)
    err = w.std(ddof=1) / np.sqrt(n)
    assert err < 0.05 and abs(w.mean() - 1) < 4 * err
    assert abs(total.var(ddof=1) - sum(wants)) < 0.2 * sum(wants)


@pytest.mark.parametrize("levels,kw,message", [
    ((0.3,), {}, "must increase, be positive and stay below fermions.kappa"),
    ((0.2, 0.1), {}, "must increase"),
    ((0.1,), {"proposal": "free"}, "proposal = 'triangular'"),
])
def test_hasenbusch_levels_that_do_not_fit_are_refused(levels, kw, message):
    lat = Lattice(DIMS, (1, 1), comm=self_comm())
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FermionDeterminant(lat, U1, KAPPA, "pseudofermion", CounterRNG(1), CounterRNG(2),
                           hasenbusch=levels, **kw)
    if not kw:
        with pytest.raises(ConfigError, match="fermions.hasenbusch"):
            FermionDeterminant(lat, U1, KAPPA, "exact", CounterRNG(1), CounterRNG(2),
                               hasenbusch=(0.1,))
