"""SU(N) eigenphase (spectral) maps through the Weyl alcove (lattice_hpc.flows.spectral).

float64 checks: cell round trip, conjugation equivariance, inverse, special unitarity, log-Jacobian
against the autograd Jacobian in exponential coordinates, normalisation of the Haar density in cell
coordinates (quadrature and Haar samples), and normalisation of the single-link flow density.
A float32/complex64 smoke test closes.
"""

import math

import numpy as np
import pytest
import torch

from lattice_hpc.flows.splines import rq_spline, rq_spline_knots
from lattice_hpc.flows.spectral import (cell_to_phases, from_cell, log_haar_cell,
                                        log_haar_cell_constant, log_haar_cell_normalised,
                                        spectral_map, to_cell)

torch.set_num_threads(1)

DT = torch.float64
CT = torch.complex128
TWO_PI = 2 * math.pi


def haar_su(n, N, seed, dtype=CT):
    """Haar SU(N): QR of a complex Gaussian, phases of diag(R) moved into Q, det divided out."""
    g = torch.Generator().manual_seed(seed)
    z = torch.complex(torch.randn(n, N, N, generator=g, dtype=DT),
                      torch.randn(n, N, N, generator=g, dtype=DT))
    q, r = torch.linalg.qr(z)
    dg = torch.diagonal(r, dim1=-2, dim2=-1)
    q = q * (dg / dg.abs()).unsqueeze(-2)
    det = torch.linalg.det(q)
    q = q / (det ** (1.0 / N))[..., None, None]
    return q.to(dtype)


def su_basis(N, dtype=CT):
    """Generalised Gell-Mann matrices / 2: Hermitian, traceless, tr(T_a T_b) = delta_ab / 2."""
    mats = []
    for j in range(N):
        for k in range(j + 1, N):
            m = torch.zeros(N, N, dtype=dtype)
            m[j, k] = m[k, j] = 0.5
            mats.append(m)
            m = torch.zeros(N, N, dtype=dtype)
            m[j, k], m[k, j] = -0.5j, 0.5j
            mats.append(m)
    for l in range(1, N):
        m = torch.zeros(N, N, dtype=dtype)
        for j in range(l):
            m[j, j] = 1.0
        m[l, l] = -l
        mats.append(m * (0.5 * math.sqrt(2.0 / (l * (l + 1)))))
    return torch.stack(mats)


class AutoregressiveSplines:
    """A bijection of the unit cube: u_j -> rq_spline(u_j; a_j + sum_{i<j} b_ji u_i).

    Forward conditions coordinate j on the *input* coordinates u_{<j}; the inverse recovers them
    first.  The Jacobian is triangular, so log|det| is the sum of the elementwise log-derivatives.
    """

    def __init__(self, dim, K=4, seed=0, scale=0.5, dtype=DT):
        g = torch.Generator().manual_seed(seed)
        self.dim, self.K = dim, K
        self.a = scale * torch.randn(dim, 3 * K + 1, generator=g, dtype=DT).to(dtype)
        self.b = scale * torch.randn(dim, dim, 3 * K + 1, generator=g, dtype=DT).to(dtype)

    def params(self, j, u_prev):
        p = self.a[j]
        for i in range(j):
            p = p + self.b[j, i] * u_prev[..., i:i + 1]
        K = self.K
        return p[..., :K], p[..., K:2 * K], p[..., 2 * K:]

    def __call__(self, u, inverse=False):
        out, ld = [], torch.zeros_like(u[..., 0])
        for j in range(self.dim):
            cond = torch.stack(out, -1) if (inverse and j) else u
            w, h, d = self.params(j, cond)
            v, l = rq_spline(u[..., j], w, h, d, inverse=inverse)
            out.append(v)
            ld = ld + l
        return torch.stack(out, -1), ld


def _unitarity_err(W):
    N = W.shape[-1]
    eye = torch.eye(N, dtype=W.dtype)
    return ((W.conj().transpose(-2, -1) @ W - eye).abs().amax((-2, -1)),
            (torch.linalg.det(W) - 1).abs())


@pytest.mark.parametrize("N", [2, 3, 4])
def test_cell_round_trip(N):
    W = haar_su(40, N, seed=N)
    V, u, order = to_cell(W)
    assert u.shape == (40, N - 1) and order.shape == (40, N)
    assert (u >= 0).all() and (u <= 1).all()
    assert (from_cell(V, u, order) - W).abs().max() < 1e-12
    # the alcove phases are the eigenphases of W
    th = cell_to_phases(u)
    assert (th.sum(-1)).abs().max() < 1e-14
    assert (th[..., :-1] >= th[..., 1:]).all() and (th[..., 0] - th[..., -1] <= TWO_PI).all()
    lam = torch.linalg.eigvals(W)
    e = torch.polar(torch.ones_like(th), th)
    dist = (lam.unsqueeze(-1) - e.unsqueeze(-2)).abs().amin(-1)    # each eigenvalue is some e
    assert dist.max() < 1e-12


def test_to_cell_k_shifts_su3():
    """Phase sums 2 pi k with k = -1, 0, 1 all occur and are handled (diagonal examples)."""
    cases = [(2.5, 2.0, TWO_PI - 4.5), (-2.5, -2.0, -TWO_PI + 4.5), (0.3, -0.1, -0.2)]
    for a, b, c in cases:
        W = torch.diag(torch.polar(torch.ones(3, dtype=DT), torch.tensor([a, b, c], dtype=DT)))
        V, u, order = to_cell(W)
        th = cell_to_phases(u)
        assert abs(th.sum().item()) < 1e-14
        assert (from_cell(V, u, order) - W).abs().max() < 1e-13
    # N=3: th1 = (2a1+a2)/3, th2 = (-a1+a2)/3, th3 = (-a1-2a2)/3
    u = torch.tensor([0.3, 0.6], dtype=DT)
    a1, a2 = TWO_PI * 0.3, 0.6 * (TWO_PI - TWO_PI * 0.3)
    ref = torch.tensor([(2 * a1 + a2) / 3, (-a1 + a2) / 3, (-a1 - 2 * a2) / 3], dtype=DT)
    assert (cell_to_phases(u) - ref).abs().max() < 1e-15


@pytest.mark.parametrize("N", [2, 3])
def test_equivariance_inverse_unitarity(N):
    f = AutoregressiveSplines(N - 1, seed=10 + N)
    W = haar_su(20, N, seed=20 + N)
    g = haar_su(20, N, seed=30 + N)
    gd = g.conj().transpose(-2, -1)
    W2, ld = spectral_map(W, f)
    W2g, ldg = spectral_map(g @ W @ gd, f)
    assert (W2g - g @ W2 @ gd).abs().max() < 1e-12
    assert (ldg - ld).abs().max() < 1e-12
    un, de = _unitarity_err(W2)
    assert un.max() < 1e-12 and de.max() < 1e-12
    Wb, ldb = spectral_map(W2, f, inverse=True)
    assert (Wb - W).abs().max() < 1e-12
    assert (ld + ldb).abs().max() < 1e-10
    # the map is not the identity
    assert (W2 - W).abs().max() > 1e-2


def _autograd_logdet(W, fmap):
    """log|det d eps'/d eps| at eps = 0 with W(eps) = W exp(i eps.T) and
    W'(0)^{-1} W'(eps) = exp(i eps'.T): first derivatives of log at 1 are the identity, so
    eps'_a = 2 Im tr(T_a W'(0)^dag W'(eps)) to first order, exactly what the Jacobian needs."""
    N = W.shape[-1]
    T = su_basis(N)
    W0p = fmap(W)[0].detach()
    W0pd = W0p.conj().T

    def F(eps):
        X = W @ torch.linalg.matrix_exp(1j * torch.einsum("a,aij->ij", eps.to(CT), T))
        M = W0pd @ fmap(X)[0]
        return 2.0 * torch.einsum("aij,ji->a", T, M).imag

    J = torch.autograd.functional.jacobian(F, torch.zeros(N * N - 1, dtype=DT))
    assert torch.isfinite(J).all()
    return torch.linalg.slogdet(J)[1]


@pytest.mark.parametrize("N", [2, 3])
@pytest.mark.parametrize("inverse", [False, True])
def test_logdet_matches_autograd_jacobian(N, inverse):
    f = AutoregressiveSplines(N - 1, seed=40 + N)
    fmap = lambda X: spectral_map(X, f, inverse=inverse)
    Ws = haar_su(3, N, seed=50 + N)
    for W in Ws:
        ref = _autograd_logdet(W, fmap)
        ld = fmap(W)[1]
        assert abs(ld.item() - ref.item()) < 1e-10


def test_basis_is_orthonormal():
    for N in (2, 3):
        T = su_basis(N)
        G = torch.einsum("aij,bji->ab", T, T)
        assert (G - 0.5 * torch.eye(N * N - 1)).abs().max() < 1e-15


def _gl(n, a=0.0, b=1.0):
    xg, wg = np.polynomial.legendre.leggauss(n)
    xg, wg = torch.tensor(xg, dtype=DT), torch.tensor(wg, dtype=DT)
    return 0.5 * (a + b) + 0.5 * (b - a) * xg, 0.5 * (b - a) * wg


def _tensor_grid(N, n):
    x, w = _gl(n)
    grids = torch.meshgrid(*([x] * (N - 1)), indexing="ij")
    wgrids = torch.meshgrid(*([w] * (N - 1)), indexing="ij")
    u = torch.stack([g.reshape(-1) for g in grids], -1)
    wt = torch.ones(u.shape[0], dtype=DT)
    for g in wgrids:
        wt = wt * g.reshape(-1)
    return u, wt


@pytest.mark.parametrize("N,n", [(2, 40), (3, 40), (4, 16)])
def test_haar_cell_density_normalised(N, n):
    """The integrand is a trigonometric polynomial in alpha times a polynomial: Gauss-Legendre
    converges to rounding."""
    u, wt = _tensor_grid(N, n)
    assert abs((torch.exp(log_haar_cell_normalised(u)) * wt).sum().item() - 1) < 1e-12
    lh = log_haar_cell(u) - log_haar_cell_constant(N)
    assert (lh - log_haar_cell_normalised(u)).abs().max() == 0
    if N == 2:   # p(u) = 2 sin^2(pi u)
        ref = torch.log(2 * torch.sin(math.pi * u[:, 0]) ** 2)
        assert (log_haar_cell_normalised(u) - ref).abs().max() < 1e-13
    if N == 3:   # p(u) = 64/3 (1-u1) prod_k sin^2(alpha_k/2)
        a1 = TWO_PI * u[:, 0]
        a2 = u[:, 1] * (TWO_PI - a1)
        a0 = TWO_PI - a1 - a2
        ref = torch.log(64 / 3 * (1 - u[:, 0]) * (torch.sin(a0 / 2) * torch.sin(a1 / 2)
                                                  * torch.sin(a2 / 2)) ** 2)
        # (the reference loses digits near the corner u = (1, 1) to the cancellation in a0)
        assert (log_haar_cell_normalised(u) - ref).abs().max() < 1e-9


@pytest.mark.parametrize("N", [2, 3])
def test_haar_samples_match_cell_density(N):
    n = 20000
    _, u, _ = to_cell(haar_su(n, N, seed=60 + N))
    q, wt = _tensor_grid(N, 40)
    p = torch.exp(log_haar_cell_normalised(q)) * wt
    for j in range(N - 1):
        mean = (p * q[:, j]).sum()
        var = (p * q[:, j] ** 2).sum() - mean ** 2
        assert abs(u[:, j].mean() - mean) < 3 * math.sqrt(var / n)


def _diag_su(v):
    """Diagonal SU(N) matrices with cell point v (V = 1, identity order)."""
    N = v.shape[-1] + 1
    I = torch.eye(N, dtype=CT).expand(v.shape[:-1] + (N, N))
    order = torch.arange(N).expand(v.shape[:-1] + (N,))
    return from_cell(I, v, order)


def _bin_nodes(widths, heights, derivs, n):
    """Gauss-Legendre nodes/weights on every image bin [y_k, y_{k+1}] of a batch of splines:
    (..., K n) each."""
    _, yk, _ = rq_spline_knots(widths, heights, derivs)
    xg, wg = _gl(n, -1.0, 1.0)
    a, b = yk[..., :-1, None], yk[..., 1:, None]
    x = 0.5 * (a + b) + 0.5 * (b - a) * xg
    w = 0.5 * (b - a) * wg
    return x.flatten(-2), w.flatten(-2)


def test_flow_density_normalised_su2():
    """int q dHaar = 1 for q(W) = exp(-logdet(f^{-1}(W))) = exp(logdet of the inverse map)."""
    f = AutoregressiveSplines(1, seed=70)
    v, wt = _bin_nodes(*f.params(0, None), n=128)
    v = v.unsqueeze(-1)
    _, ld_inv = spectral_map(_diag_su(v), f, inverse=True)
    integral = (torch.exp(ld_inv + log_haar_cell_normalised(v)) * wt).sum()
    assert abs(integral.item() - 1) < 1e-8


def test_flow_density_normalised_su3():
    """Nested Gauss-Legendre per spline bin: outer over v1 on the bins of the first spline,
    inner over v2 on the bins of the second spline, whose parameters depend on u1 = s1^{-1}(v1)."""
    f = AutoregressiveSplines(2, seed=71)
    n = 48
    v1, w1 = _bin_nodes(*f.params(0, None), n=n)                  # (4 n,)
    u1, _ = rq_spline(v1, *f.params(0, None), inverse=True)
    v2, w2 = _bin_nodes(*f.params(1, u1.unsqueeze(-1)), n=n)      # (4 n, 4 n)
    v = torch.stack([v1.unsqueeze(-1).expand_as(v2), v2], -1)
    wt = w1.unsqueeze(-1) * w2
    _, ld_inv = spectral_map(_diag_su(v), f, inverse=True)
    integral = (torch.exp(ld_inv + log_haar_cell_normalised(v)) * wt).sum()
    assert abs(integral.item() - 1) < 1e-8


def test_parameter_and_input_gradients_finite():
    f = AutoregressiveSplines(2, seed=80)
    f.a.requires_grad_(True)
    f.b.requires_grad_(True)
    W = haar_su(10, 3, seed=81)
    T = su_basis(3)
    eps = 0.1 * torch.randn(10, 8, dtype=DT, generator=torch.Generator().manual_seed(82))
    eps = eps.requires_grad_(True)
    X = W @ torch.linalg.matrix_exp(1j * torch.einsum("na,aij->nij", eps.to(CT), T))
    for inv in (False, True):
        W2, ld = spectral_map(X, f, inverse=inv)
        loss = ld.sum() + (W2.real ** 2).sum() + W2.imag.sum()
        grads = torch.autograd.grad(loss, (f.a, f.b, eps), retain_graph=True)
        for gr in grads:
            assert torch.isfinite(gr).all() and gr.abs().sum() > 0


@pytest.mark.parametrize("N", [2, 3])
def test_float32_smoke(N):
    f = AutoregressiveSplines(N - 1, seed=90 + N, dtype=torch.float32)
    W = haar_su(50, N, seed=95 + N, dtype=torch.complex64)
    V, u, order = to_cell(W)
    assert u.dtype == torch.float32
    assert (from_cell(V, u, order) - W).abs().max() < 1e-5
    W2, ld = spectral_map(W, f)
    assert W2.dtype == torch.complex64 and ld.dtype == torch.float32
    Wb, ldb = spectral_map(W2, f, inverse=True)
    assert (Wb - W).abs().max() < 1e-4
    assert (ld + ldb).abs().max() < 1e-3
    un, de = _unitarity_err(W2)
    assert un.max() < 1e-5 and de.max() < 1e-5
