"""The learned pseudofermion conditional ``phi = s M_c(U)^dag eta`` (issue 14,
:mod:`lattice_hpc.flows.conditional`), on fixed fields against dense matrices:

- the weighted triangular operator ``M_c = (1 - k^2 L_c)(1 - k^2 R_c)`` equals its definition
  from the dense Wilson matrix split by path class (straight, bent) for any weights, has
  ``det M_c = 1`` (so the conditional density is exact), and its ``apply_dagger`` is the adjoint
  (2D dense; 4D SU(3) through inner products);
- the gradient of the training objective in ``(a, b, c_R, c_L)`` (``s(x) = exp(a + b P(x))``)
  equals finite differences, for
  the plain factor and a Hasenbusch ratio factor, in 2D and 4D;
- training lowers the dense conditional KL ``sum(mu - 1 - log mu)`` (``mu`` the eigenvalues of
  ``A^dag (M^dag M)^{-1} A``, ``A`` the dense map ``eta -> phi``), and with the trained
  parameters the chain's fermion weights ``exp(-S + eta^dag eta + log|det A|^2)`` estimate
  ``det(M^dag M)`` with the dense variance; the Jacobian the proposal reports is the dense
  ``log|det A|^2``.
"""

import numpy as np
import pytest
import torch

from helpers import dense_even_operator as _dense
from lattice_hpc.comm import self_comm
from lattice_hpc.fermions import WilsonDirac, inner
from lattice_hpc.fermions.triangular import TriangularSchur
from lattice_hpc.flows.conditional import LearnedConditional
from lattice_hpc.flows.determinant import FermionDeterminant
from lattice_hpc.flows.fermions import complex_links, dense_schur, gauge_field
from lattice_hpc.geometry import Lattice
from lattice_hpc.groups import get_group
from lattice_hpc.hmc.pseudofermions import gaussian_source
from lattice_hpc.rng import CounterRNG

U1, SU3 = get_group("U1"), get_group("SU3")
COEFFS = [[1.3, 0.7], [0.8, 1.2]]  # [[c_R straight, c_R bent], [c_L straight, c_L bent]]


def _u1_field(dims, seed, amp=0.8):
    lat = Lattice(dims, (1, 1), comm=self_comm())
    rng = CounterRNG(seed)
    theta = np.stack([amp * np.pi * (rng.uniform(("theta", mu), lat.global_index, 1)[..., 0] - 0.5)
                      for mu in range(2)])
    U = torch.tensor(theta[None], dtype=torch.float64)
    return lat, U, gauge_field(lat, U1, complex_links(U1, U)[0].numpy())


def _su3_field(seed=4):
    from lattice_hpc.backend import Backend
    from lattice_hpc.gauge import GaugeField

    lat = Lattice((4, 4, 4, 4), (1, 1, 1, 1), comm=self_comm())
    U = GaugeField.hot(lat, SU3, CounterRNG(seed), Backend("numpy", "double"), 1)
    U.refresh()
    return lat, U


def _classes(dims, kappa, field):
    """Dense ``K = H_eo H_oe`` split into its straight and bent two-hop parts, each into the
    parts below and above the diagonal (even sites in global order)."""
    from lattice_hpc.fermions.dense import dense_wilson

    links = np.asarray(field.interior())
    mem = tuple(reversed(dims))
    V = int(np.prod(dims))
    Dw = dense_wilson(links, kappa)
    ns = Dw.shape[0] // V
    H = (np.eye(len(Dw)) - Dw) / kappa
    par = np.indices(mem).reshape(len(dims), V).sum(0) % 2
    even, odd = np.where(par == 0)[0], np.where(par == 1)[0]
    idx = lambda s: (s[:, None] * ns + np.arange(ns)).reshape(-1)  # noqa: E731
    K = H[np.ix_(idx(even), idx(odd))] @ H[np.ix_(idx(odd), idx(even))]
    coords = np.array(np.unravel_index(even, mem))              # (axes, even sites)
    d = (coords[:, :, None] - coords[:, None, :]) % np.array(mem)[:, None, None]
    d = np.minimum(d, np.array(mem)[:, None, None] - d)         # |displacement| per axis
    straight_sites = (np.sort(d, axis=0)[-1] == 2) & (d.sum(axis=0) == 2)
    bent_sites = (d.sum(axis=0) == 2) & ~straight_sites
    blk = lambda m: np.kron(m, np.ones((ns, ns)))  # noqa: E731
    b = np.arange(len(even))
    low, up = blk(b[:, None] > b[None, :]), blk(b[:, None] < b[None, :])
    parts = {(lo, cls): K * blk(sites) * (low if lo else up)
             for lo in (0, 1) for cls, sites in ((0, straight_sites), (1, bent_sites))}
    assert np.abs(K - sum(parts.values())).max() < 1e-13  # every two-hop term is in one class
    return parts


def test_weighted_triangular_operator_is_unit_triangular_with_its_adjoint():
    dims, kappa = (4, 6), 0.26
    lat, _, field = _u1_field(dims, 8)
    D = WilsonDirac(field, kappa)
    T = TriangularSchur(D, coeffs=COEFFS)
    parts = _classes(dims, kappa, field)
    n = parts[(0, 0)].shape[0]
    Lc = COEFFS[1][0] * parts[(1, 0)] + COEFFS[1][1] * parts[(1, 1)]
    Rc = COEFFS[0][0] * parts[(0, 0)] + COEFFS[0][1] * parts[(0, 1)]
    want = (np.eye(n) - kappa ** 2 * Lc) @ (np.eye(n) - kappa ** 2 * Rc)
    got = _dense(T.apply, D)
    assert np.abs(got - want).max() < 1e-13
    assert np.abs(_dense(T.apply_dagger, D) - want.conj().T).max() < 1e-13
    sign, ld = np.linalg.slogdet(got)
    assert abs(ld) < 1e-12 and abs(sign - 1) < 1e-12  # det M_c = 1 for any weights
    unweighted = _dense(TriangularSchur(D).apply, D)
    assert np.abs(got - unweighted).max() > 1e-3      # the weights change the operator


def test_weighted_triangular_adjoint_in_4d():
    lat, U = _su3_field()
    D = WilsonDirac(U, 0.12)
    T = TriangularSchur(D, coeffs=COEFFS)
    rng = CounterRNG(3)
    a, b = (gaussian_source(lat, rng, (k,), U.backend, site_shape=D.site_shape) for k in ("a", "b"))
    lhs, rhs = inner(lat, a, T.apply(b)), inner(lat, T.apply_dagger(a), b)
    assert abs(lhs - rhs) < 1e-12 * abs(lhs) and abs(lhs) > 1


def _finite_differences(cond, field, j, eta, h=1e-6):
    out = []
    for p in range(cond.theta.shape[1]):
        cond.theta[j, p] += h
        up = cond.objective(field, j, eta)[0]
        cond.theta[j, p] -= 2 * h
        down = cond.objective(field, j, eta)[0]
        cond.theta[j, p] += h
        out.append((up - down) / (2 * h))
    return np.array(out)


@pytest.mark.parametrize("case", ["u1_2d", "su3_4d"])
def test_objective_gradient_equals_finite_differences(case):
    if case == "u1_2d":
        lat, _, field = _u1_field((4, 4), 5)
        levels = (0.2, 0.25)
    else:
        lat, field = _su3_field()
        levels = (0.08, 0.12)
    kts = (levels[0], float(np.sqrt(levels[1] ** 2 - levels[0] ** 2)))
    cond = LearnedConditional(lat, kts, levels)
    cond.theta[:] = [[0.05, 0.3, 1.1, 0.9, 1.2, 0.8], [-0.03, -0.2, 0.9, 1.15, 0.85, 1.05]]
    for j in range(2):
        eta = gaussian_source(lat, CounterRNG(9), ("x", j), field.backend,
                              site_shape=WilsonDirac(field, 0.1).site_shape)
        _, grad, _ = cond.objective(field, j, eta)
        fd = _finite_differences(cond, field, j, eta)
        print(case, j, grad, fd)
        assert np.abs(grad - fd).max() < 1e-6 * np.abs(grad).max()
        assert np.abs(grad[1:]).min() > 1e-3  # every weight matters


def _dense_kl(cond, field, kappa, X):
    D = WilsonDirac(field, kappa)
    A = _dense(lambda v: cond.propose(field, 0, v)[0], D)   # phi = A eta
    mu = np.linalg.eigvalsh(A.conj().T @ X @ A)
    return float(np.sum(mu - 1 - np.log(mu))), mu


def test_training_lowers_the_conditional_kl_and_the_weights_stay_exact():
    kappa, draws, batch = 0.25, 1500, 500
    lat, U, field = _u1_field((4, 4), 5)
    M = dense_schur(WilsonDirac(field, kappa))
    N = M.conj().T @ M
    X, logdet = np.linalg.inv(N), float(np.linalg.slogdet(N)[1])
    cond = LearnedConditional(lat, (kappa,), (kappa,))
    cond.theta[0, :2] = [0.1, -0.3]  # a site-dependent scale: its Jacobian is the dense one
    A = _dense(lambda v: cond.propose(field, 0, v)[0], WilsonDirac(field, kappa))
    jac = cond.propose(field, 0, gaussian_source(lat, CounterRNG(1), ("j",), field.backend,
                                                 site_shape=(2, 1)))[1]
    assert abs(jac - 2 * np.linalg.slogdet(A)[1]) < 1e-10 and abs(jac) > 0.5
    cond.theta[0, :2] = 0.0
    before, mu0 = _dense_kl(cond, field, kappa, X)
    cond.train(lambda step: (range(8), [field] * 8), CounterRNG(21), 100, 0.02)
    after, mu = _dense_kl(cond, field, kappa, X)
    print(f"dense conditional KL {before:.4f} -> {after:.4f}; mu_min {mu0.min():.3f} -> {mu.min():.3f};"
          f" theta {cond.state()}")
    assert after < 0.9 * before and mu.min() > mu0.min()
    assert len(cond.history) == 100 and cond.trained
    # the chain's weights with the trained conditional: E[exp(-S + eta^dag eta + log|det A|^2)] = det
    det = FermionDeterminant(lat, U1, kappa, "pseudofermion", CounterRNG(11), CounterRNG(12),
                             proposal="learned")
    det.conditional.load(cond.state())
    lwf = np.concatenate([det.proposal_terms(U.expand(batch, *U.shape[1:]), first)
                          for first in range(0, draws, batch)])
    w = np.exp(lwf - logdet)
    err = w.std(ddof=1) / np.sqrt(draws)
    want = float(np.sum((1 - mu) ** 2))
    print(f"E[w] {w.mean():.4f}({err:.4f}); var log w_f {lwf.var(ddof=1):.3f} vs dense {want:.3f}")
    assert err < 0.05 and abs(w.mean() - 1) < 4 * err
    assert abs(lwf.var(ddof=1) - want) < 0.15 * want


def test_learned_conditional_is_refused_where_it_does_not_apply():
    from lattice_hpc.errors import ConfigError

    lat, _, _ = _u1_field((4, 4), 5)
    with pytest.raises(ConfigError, match="'learned' is the pseudofermion proposal"):
        FermionDeterminant(lat, U1, 0.25, "stochastic", CounterRNG(1), CounterRNG(2), proposal="learned")
    det = FermionDeterminant(lat, U1, 0.25, "pseudofermion", CounterRNG(1), CounterRNG(2),
                             proposal="learned", hasenbusch=[0.2])
    assert det.conditional.theta.shape == (2, 6)
    from lattice_hpc.errors import FlowError

    with pytest.raises(FlowError, match="fermions.hasenbusch changed"):
        det.conditional.load([[0.0, 1, 1, 1, 1]])


@pytest.mark.mpi
def test_objective_and_jacobian_are_the_same_on_every_grid():
    from helpers import grids_run, on_grids
    from lattice_hpc.comm import world

    def body(lat):
        rng = CounterRNG(6)
        theta = np.stack([0.8 * np.pi * (rng.uniform(("theta", mu), lat.global_index, 1)[..., 0] - 0.5)
                          for mu in range(2)])
        U = torch.tensor(theta[None], dtype=torch.float64)
        field = gauge_field(lat, U1, complex_links(U1, U)[0].numpy())
        cond = LearnedConditional(lat, (0.2, 0.17), (0.2, 0.26))
        cond.theta[:] = [[0.05, 0.3, 1.1, 0.9, 1.2, 0.8], [-0.03, -0.2, 0.9, 1.15, 0.85, 1.05]]
        out = []
        for j in range(2):
            eta = gaussian_source(lat, CounterRNG(9), ("x", j), field.backend, site_shape=(2, 1))
            obj, grad, lwf = cond.objective(field, j, eta)
            out.append(np.concatenate([[obj, lwf, cond.propose(field, j, eta)[1]], grad]))
        return np.array(out)

    res = on_grids((8, 8), [(1, 1), (1, 2), (2, 2)], body)
    if world().rank == 0:
        for key in grids_run(res):
            np.testing.assert_allclose(res[key], res["serial"], rtol=1e-10, atol=1e-10)
