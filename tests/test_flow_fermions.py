"""Fermion actions inside the flows (issue 14): torch autograd functions over the project's
Dirac operator, solvers and fermion force.

- ``logdet_action`` (dense LU of the even/odd operator) equals ``-log det(D^dag D)`` of a dense
  Wilson matrix built in torch, and its gradient (through U(1) angles, and for SU(3) matrices)
  equals torch's autograd of that reference to 1e-8;
- the gradient of ``pseudofermion_action`` (CG forward, fermion-force backward) equals central
  finite differences of the action to 1e-6;
- ``draw_pseudofermion`` is the heatbath: right after the draw, ``S_pf = eta^dag eta``;
- values and gradients are the same on every process grid (2D 1x2, 2x2; 4D 1x1x1x2).
"""

import itertools

import numpy as np
import pytest
import torch

from helpers import grids_run, on_grids
from lattice_hpc.comm import self_comm, world
from lattice_hpc.fermions import gather_spinor
from lattice_hpc.fermions.gamma import gammas
from lattice_hpc.flows.fermions import (complex_links, dense_schur, draw_pseudofermion,
                                        logdet_action, logdet_normal, pseudofermion_action)
from lattice_hpc.gauge import GaugeField
from lattice_hpc.geometry import Lattice
from lattice_hpc.groups import get_group
from lattice_hpc.hmc.pseudofermions import gaussian_source
from lattice_hpc.rng import CounterRNG

U1, SU3 = get_group("U1"), get_group("SU3")


def _lattice(dims, grid=None):
    return Lattice(dims, grid or (1,) * len(dims), comm=self_comm())


def _angles(lat, B, seed=1):
    """Hot U(1) angles ``(B, ndim, *local)`` from the counter RNG (the same field on every grid)."""
    rng = CounterRNG(seed)
    out = [np.stack([2 * np.pi * rng.uniform(("theta", b, mu), lat.global_index, 1)[..., 0] - np.pi
                     for mu in range(lat.ndim)]) for b in range(B)]
    return torch.tensor(np.stack(out), dtype=torch.float64)


def _su3(lat, B, seed=2, eps=0.6):
    out = []
    for b in range(B):
        U = GaugeField.near_identity(lat, SU3, CounterRNG(seed + b), epsilon=eps)
        out.append(np.stack([U.U(mu) for mu in range(lat.ndim)]))
    return torch.tensor(np.stack(out), dtype=torch.complex128)


def dense_wilson_torch(U, dims, kappa):
    """Reference: the full Wilson matrix ``D = 1 - kappa H`` of one sample ``U`` (``(ndim, *dims
    reversed, N, N)`` complex torch), sites in memory order then spin, colour, antiperiodic in
    time; built entry by entry in torch so that autograd differentiates it."""
    nd = len(dims)
    G = torch.tensor(gammas(nd)[0])
    ns, N = G.shape[-1], U.shape[-1]
    V = int(np.prod(dims))
    eye = torch.eye(ns, dtype=torch.complex128)
    blocks = {}
    for x in itertools.product(*[range(L) for L in dims]):  # direction order
        i = sum(x[m] * int(np.prod(dims[:m])) for m in range(nd))
        for mu in range(nd):
            y = list(x)
            y[mu] = (y[mu] + 1) % dims[mu]
            j = sum(y[m] * int(np.prod(dims[:m])) for m in range(nd))
            phase = -1.0 if (mu == nd - 1 and x[mu] == dims[mu] - 1) else 1.0
            link = U[(mu,) + tuple(reversed(x))]
            fwd = -kappa * phase * torch.kron(eye - G[mu], link)
            bwd = -kappa * phase * torch.kron(eye + G[mu], link.conj().T.contiguous())
            blocks.setdefault((i, j), []).append(fwd)
            blocks.setdefault((j, i), []).append(bwd)
    n = ns * N
    rows = []
    for i in range(V):
        row = []
        for j in range(V):
            b = sum(blocks.get((i, j), [])) if (i, j) in blocks else torch.zeros(n, n, dtype=torch.complex128)
            if i == j:
                b = b + torch.eye(n, dtype=torch.complex128)
            row.append(b)
        rows.append(torch.cat(row, dim=1))
    return torch.cat(rows, dim=0)


def _reference_logdet(U, dims, kappa):
    D = dense_wilson_torch(U, dims, kappa)
    return -2.0 * torch.linalg.slogdet(D)[1]


@pytest.mark.parametrize("case", ["u1_2d", "su3_4d"])
def test_logdet_action_and_its_gradient_equal_the_dense_torch_reference(case):
    if case == "u1_2d":
        dims, kappa, group = (4, 4), 0.27, U1
        lat = _lattice(dims)
        U = _angles(lat, 2).requires_grad_(True)
    else:
        dims, kappa, group = (2, 2, 2, 2), 0.12, SU3
        lat = _lattice(dims)
        U = _su3(lat, 1).requires_grad_(True)
    S = logdet_action(lat, group, U, kappa, chunk=24)
    w = torch.tensor([1.0, -0.5][:S.shape[0]], dtype=torch.float64)  # an upstream gradient
    (w * S).sum().backward()
    got = U.grad.clone()
    U.grad = None
    Uc = complex_links(group, U)
    ref = torch.stack([_reference_logdet(Uc[b], dims, kappa) for b in range(Uc.shape[0])])
    np.testing.assert_allclose(S.detach().numpy(), ref.detach().numpy(), rtol=1e-11)
    (w * ref).sum().backward()
    want = U.grad
    scale = want.abs().max()
    assert scale > 1e-3  # the gradient is not trivially zero
    err = float((got - want).abs().max() / scale)
    assert err < 1e-8, err


def test_dense_schur_determinant_is_the_full_determinant_for_wilson():
    lat = _lattice((4, 4))
    U = complex_links(U1, _angles(lat, 1, seed=5))[0].numpy()
    from lattice_hpc.flows.fermions import gauge_field
    from lattice_hpc.fermions import WilsonDirac

    D = WilsonDirac(gauge_field(lat, U1, U), 0.25)
    full = dense_wilson_torch(torch.tensor(U), (4, 4), 0.25).numpy()
    _, want = np.linalg.slogdet(full.conj().T @ full)
    assert abs(logdet_normal(D) - want) < 1e-10 * abs(want)
    assert dense_schur(D).shape == (16, 16)


def test_pseudofermion_action_gradient_equals_finite_differences():
    dims, kappa = (6, 6), 0.26
    lat = _lattice(dims)
    theta = _angles(lat, 2, seed=3)
    phi = draw_pseudofermion(lat, U1, theta + 0.3, kappa, CounterRNG(4), ("pf",))  # phi fixed
    t = theta.clone().requires_grad_(True)
    S = pseudofermion_action(lat, U1, t, phi, kappa, tol=1e-14)
    S.sum().backward()
    g = t.grad
    rng = np.random.default_rng(0)
    for _ in range(2):
        X = torch.tensor(rng.standard_normal(theta.shape))
        h = 1e-5
        plus = pseudofermion_action(lat, U1, theta + h * X, phi, kappa, tol=1e-14).sum()
        minus = pseudofermion_action(lat, U1, theta - h * X, phi, kappa, tol=1e-14).sum()
        fd = float((plus - minus) / (2 * h))
        pred = float((g * X).sum())
        assert abs(pred - fd) < 1e-6 * abs(fd), (pred, fd)


def test_pseudofermion_su3_gradient_equals_finite_differences_along_the_group():
    dims, kappa = (2, 2, 2, 4), 0.12
    lat = _lattice(dims)
    U = _su3(lat, 1)
    phi = draw_pseudofermion(lat, SU3, _su3(lat, 1, seed=9), kappa, CounterRNG(4), ("pf",))
    u = U.clone().requires_grad_(True)
    pseudofermion_action(lat, SU3, u, phi, kappa, tol=1e-14).sum().backward()
    rng = np.random.default_rng(1)
    A = rng.standard_normal(U.shape) + 1j * rng.standard_normal(U.shape)
    X = torch.tensor(A - np.conj(np.swapaxes(A, -1, -2)))  # anti-Hermitian direction
    h = 1e-5

    def S(eps):
        V = torch.linalg.matrix_exp(eps * X) @ U
        return float(pseudofermion_action(lat, SU3, V, phi, kappa, tol=1e-14).sum())

    fd = (S(h) - S(-h)) / (2 * h)
    pred = float(torch.real(torch.sum(torch.conj(u.grad) * (X @ U))))  # Re Tr(g^dag dU)
    assert abs(pred - fd) < 1e-6 * abs(fd), (pred, fd)


def test_pseudofermion_heatbath_gives_eta_squared():
    dims, kappa = (6, 6), 0.26
    lat = _lattice(dims)
    theta = _angles(lat, 1, seed=7)
    rng = CounterRNG(11)
    phi = draw_pseudofermion(lat, U1, theta, kappa, rng, ("pf",))
    S = float(pseudofermion_action(lat, U1, theta, phi, kappa, tol=1e-14)[0])
    from lattice_hpc.backend import Backend

    eta = gaussian_source(lat, rng, ("pf", 0), Backend("numpy", "double"))
    want = float(np.vdot(eta, eta).real)
    assert abs(S - want) < 1e-10 * want


@pytest.mark.mpi
@pytest.mark.parametrize("dims,grids,group", [
    ((4, 4), [(1, 1), (1, 2), (2, 2)], "U1"),
    ((2, 2, 2, 4), [(1, 1, 1, 1), (1, 1, 1, 2)], "SU3"),
])
def test_fermion_actions_and_gradients_are_the_same_on_every_grid(dims, grids, group):
    G = get_group(group)
    kappa = 0.27 if group == "U1" else 0.12

    def body(lat):
        U = (_angles(lat, 1, seed=2) if group == "U1" else _su3(lat, 1)).requires_grad_(True)
        phi = draw_pseudofermion(lat, G, U.detach(), kappa, CounterRNG(3), ("pf",))
        S_pf = pseudofermion_action(lat, G, U, phi, kappa, tol=1e-14)
        S_pf.sum().backward()
        g_pf = U.grad.clone()
        U.grad = None
        out = [S_pf.detach().numpy()]
        if group == "U1":
            S_det = logdet_action(lat, G, U, kappa, chunk=8)
            S_det.sum().backward()
            out += [S_det.detach().numpy()]
            grads = [g_pf, U.grad.clone()]
        else:
            grads = [g_pf]
        nd = lat.ndim
        for g in grads:  # (1, nd, *local[, N, N]) -> a site field (*local, nd, ...)
            a = np.moveaxis(g[0].numpy(), 0, nd)
            if a.ndim == nd + 1:
                a = a[..., None]
            out.append(gather_spinor(lat, np.ascontiguousarray(a)))
        return out

    res = on_grids(dims, grids, body)
    if world().rank == 0:
        for key in grids_run(res):
            for got, want in zip(res[key], res["serial"]):
                np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-11)


# -- the unit-determinant proposal operator ---------------------------------------------------------

def _triangular_dense(links, dims, kappa):
    """``(1 - k^2 L)(1 - k^2 R)`` from the dense Wilson matrix (even sites in global order)."""
    from lattice_hpc.fermions.dense import dense_wilson

    nd = len(dims)
    mem = tuple(reversed(dims))
    V = int(np.prod(dims))
    D = dense_wilson(links, kappa)
    ns = D.shape[0] // V
    H = (np.eye(len(D)) - D) / kappa
    par = np.indices(mem).reshape(nd, V).sum(0) % 2
    idx = lambda s: (s[:, None] * ns + np.arange(ns)).reshape(-1)  # noqa: E731
    ie, io = idx(np.where(par == 0)[0]), idx(np.where(par == 1)[0])
    K = H[np.ix_(ie, io)] @ H[np.ix_(io, ie)]
    blk = np.arange(len(ie)) // ns
    low, up = np.where(blk[:, None] > blk[None, :], K, 0), np.where(blk[:, None] < blk[None, :], K, 0)
    assert np.abs(np.where(blk[:, None] == blk[None, :], K, 0)).max() < 1e-13  # no diagonal
    n = len(ie)
    return (np.eye(n) - kappa ** 2 * low) @ (np.eye(n) - kappa ** 2 * up), np.eye(n) - kappa ** 2 * K


def _dense_of(op_apply, D, columns=None):
    from lattice_hpc.flows.fermions import _EvenBasis

    basis = _EvenBasis(D)
    columns = range(basis.n) if columns is None else columns
    out = np.zeros((basis.n, len(columns)), dtype=np.complex128)
    for c, j in enumerate(columns):
        out[:, c] = basis.local_part(op_apply(basis.vectors(j, j + 1)[0]))
    return D.lattice.comm.allreduce(out)


@pytest.mark.parametrize("case", ["u1_2d", "su3_4d"])
def test_triangular_operator_has_unit_determinant_and_equals_its_dense_definition(case):
    from lattice_hpc.fermions import WilsonDirac
    from lattice_hpc.fermions.triangular import TriangularSchur
    from lattice_hpc.flows.fermions import gauge_field

    if case == "u1_2d":
        dims, group, kappa = (4, 6), U1, 0.26
        lat = _lattice(dims)
        links = complex_links(U1, _angles(lat, 1, seed=8))[0].numpy()
    else:
        dims, group, kappa = (4, 4, 4, 4), SU3, 0.12
        lat = _lattice(dims)
        links = _su3(lat, 1, eps=1.5)[0].numpy()
    D = WilsonDirac(gauge_field(lat, group, links), kappa)
    T = TriangularSchur(D)
    want, M = _triangular_dense(links, dims, kappa)
    # 4D: a spread of columns (the whole 1536 x 1536 matrix takes minutes here)
    cols = list(range(want.shape[0])) if case == "u1_2d" else list(range(0, want.shape[0], 37))
    got = _dense_of(T.apply, D, cols)
    assert np.abs(got - want[:, cols]).max() < 1e-13
    assert np.abs(_dense_of(T.apply_dagger, D, cols) - want.conj().T[:, cols]).max() < 1e-13
    if case == "u1_2d":
        sign, ld = np.linalg.slogdet(got)
        assert abs(ld) < 1e-12 and abs(sign - 1) < 1e-12  # det M_0 = 1
        assert np.abs(dense_schur(D) - M).max() < 1e-13   # the dense Schur matrix, same order
    dev = np.abs(got - M[:, cols]).max()
    assert 1e-6 < dev < 10 * kappa ** 4 * 64  # M_0 = M + k^4 L R: close, but not M


@pytest.mark.mpi
def test_triangular_proposals_are_the_same_on_every_grid():
    from lattice_hpc.backend import Backend
    from lattice_hpc.fermions import WilsonDirac
    from lattice_hpc.fermions.triangular import TriangularSchur
    from lattice_hpc.flows.fermions import gauge_field

    def body(lat):
        links = complex_links(U1, _angles(lat, 1, seed=9))[0].numpy()
        D = WilsonDirac(gauge_field(lat, U1, links), 0.27)
        eta = gaussian_source(lat, CounterRNG(2), ("eta",), Backend("numpy", "double"))
        return [gather_spinor(lat, TriangularSchur(D).apply_dagger(eta))]

    res = on_grids((8, 8), [(1, 1), (1, 2), (2, 2)], body)
    if world().rank == 0:
        for key in grids_run(res):
            np.testing.assert_allclose(res[key][0], res["serial"][0], rtol=0, atol=1e-13)
