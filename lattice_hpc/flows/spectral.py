"""Conjugation-equivariant eigenphase ("spectral") maps of SU(N) matrices (pure torch).

Convention (all bijections in ``lattice_hpc.flows``): a function applies the map -- the forward map,
or its inverse when ``inverse=True`` -- and returns ``(y, logdet)`` where ``logdet`` is the log of
the Jacobian of the map that was *actually applied*; here it is taken with respect to Haar measure
on SU(N) (both sides), so ``log q(W') = log q(W) - logdet``.

Background (Boyda, Kanwar, Racaniere, Rezende, Albergo, Cranmer, Hackett, Shanahan, "Sampling using
SU(N) gauge equivariant flows", arXiv:2008.05456, sec. III): a map that changes only the
eigenvalues, ``W = V diag(e^{i th}) V^{-1} -> W' = V diag(e^{i th'}) V^{-1}``, commutes with
conjugation, ``f(g W g^dag) = g f(W) g^dag``, provided the map of eigenphases is equivariant under
their permutations (the Weyl group) and keeps ``det = 1``.  Here this is done through the canonical
cell (the Weyl alcove):

* Eigenphases ``phi_j = arg(lambda_j)`` in (-pi, pi] have ``sum_j phi_j = 2 pi k`` (det = 1), with
  ``|k| < N``.  Sorted decreasingly, ``phi_(1) >= ... >= phi_(N)``, the representative with sum 0 is
  obtained by rotating the list cyclically: for ``k > 0`` the ``k`` largest get ``-2 pi`` and move
  to the end, for ``k < 0`` the ``|k|`` smallest get ``+2 pi`` and move to the front (for N = 3:
  subtract 2 pi from the largest if k = 1, add 2 pi to the smallest if k = -1).  The result
  ``th_1 >= th_2 >= ... >= th_N``, ``th_1 - th_N <= 2 pi``, ``sum th = 0`` is the alcove point.
* Affine simple roots: ``alpha_j = th_j - th_{j+1}`` (j = 1..N-1),
  ``alpha_0 = 2 pi - sum_j alpha_j``, all >= 0.  The phases are recovered from
  ``alpha_1..alpha_{N-1}`` alone:
  ``th_1 = sum_j (N-j) alpha_j / N``, ``th_{j+1} = th_j - alpha_j`` (N = 3:
  ``th = ((2a1+a2)/3, (-a1+a2)/3, (-a1-2a2)/3)``), so ``sum th = 0`` exactly and det = 1.
* Cell coordinates in the unit cube [0,1]^{N-1} by stick breaking:
  ``u_j = alpha_j / (2 pi - alpha_1 - ... - alpha_{j-1})`` (N = 2: ``u = a1/(2 pi)``; N = 3:
  ``u1 = a1/(2 pi)``, ``u2 = a2/(2 pi - a1)``), with Jacobian
  ``|d alpha/d u| = (2 pi)^{N-1} prod_j (1 - u_j)^{N-1-j}`` (N = 3: ``(2 pi)^2 (1 - u1)``).

Haar density in the cell.  Weyl's integration formula, ``int_{SU(N)} F dU = (1/N!) int_T F |Delta|^2
dt`` (dt the normalised Haar measure of the maximal torus, ``d th_1 .. d th_{N-1} / (2 pi)^{N-1}``),
with the torus covered ``N!`` times by the images of the alcove under the Weyl group and
``d th_1..d th_{N-1} = d alpha_1..d alpha_{N-1} / N``, gives for class functions

    int_{SU(N)} F dU = int_{[0,1]^{N-1}} F(u) p(u) du,
    p(u) = |Delta|^2 |d alpha/d u| / (N (2 pi)^{N-1}) = |Delta|^2 prod_j (1-u_j)^{N-1-j} / N,

    |Delta|^2 = prod_{i<j} |e^{i th_i} - e^{i th_j}|^2 = prod_{i<j} 4 sin^2((th_i - th_j)/2).

For N = 3 the three differences are alpha_1, alpha_2 and alpha_1 + alpha_2 = 2 pi - alpha_0, so
``|Delta|^2 = 64 prod_{k=0..2} sin^2(alpha_k/2)``; for N = 2, ``p(u) = 2 sin^2(pi u)``.
:func:`log_haar_cell` returns ``log(|Delta|^2 |d alpha/d u|)``; :func:`log_haar_cell_normalised`
subtracts ``log(N (2 pi)^{N-1})`` (exact; the tests check it by quadrature for N = 2, 3, 4).

Eigendecomposition and reconstruction.  ``torch.linalg.eig`` gives unit-norm eigenvectors ``V``;
for a unitary matrix with distinct eigenvalues they are orthogonal in exact arithmetic, and
numerically ``V^dag V = 1 + O(eps / gap)``.  :func:`from_cell` rebuilds with ``V^{-1}`` (a linear
solve), not ``V^dag``: ``V D V^{-1}`` is the matrix function of ``W`` defined by the eigenvalue map
whatever the normalisation of the columns, so (i) unchanged phases return ``W`` to rounding even
when ``V`` is slightly non-orthogonal, (ii) the result is invariant under any rescaling of the
eigenvectors, in particular the phase freedom that ``torch.linalg.eig``'s backward requires the loss
to be invariant to, and (iii) autograd differentiates the exact matrix function.  det = 1 holds to
rounding because the new phases sum to zero exactly (in exact arithmetic) by construction;
unitarity holds to ``O(eps/gap)``.

Numerically delicate points: degenerate or nearly degenerate eigenvalues (measure zero under Haar)
make ``V`` ill-conditioned and the eig gradients large (they contain ``1/(lambda_i - lambda_j)``);
``log_haar_cell`` is ``-inf`` on the cell boundary (a zero of ``|Delta|``).  Sorting and the
integer 2 pi shift are piecewise constant and carry no gradient; gradients flow through the gathered
phases and the eigenvectors.
"""

from __future__ import annotations

import math

import torch

from .splines import TWO_PI

__all__ = [
    "to_cell", "from_cell", "cell_to_phases", "log_haar_cell", "log_haar_cell_normalised",
    "log_haar_cell_constant", "spectral_map",
]


def _alpha_from_u(u):
    """Affine roots ``(alpha_1..alpha_{N-1})`` and ``alpha_0`` from cell coordinates."""
    one = torch.ones_like(u[..., :1])
    sticks = TWO_PI * torch.cumprod(torch.cat([one, 1.0 - u], dim=-1), dim=-1)  # (..., N)
    alpha = u * sticks[..., :-1]
    return alpha, sticks[..., -1]


def cell_to_phases(u):
    """Alcove eigenphases ``th_1 >= ... >= th_N`` (sum exactly 0 up to rounding), shape
    ``(..., N)``, of the cell point ``u`` of shape ``(..., N-1)``."""
    N = u.shape[-1] + 1
    alpha, _ = _alpha_from_u(u)
    wts = torch.arange(N - 1, 0, -1, dtype=u.dtype, device=u.device) / N
    th1 = (alpha * wts).sum(dim=-1, keepdim=True)
    zero = torch.zeros_like(alpha[..., :1])
    return th1 - torch.cat([zero, torch.cumsum(alpha, dim=-1)], dim=-1)


def to_cell(W):
    """Eigenvectors, cell point and ordering of special unitary matrices.

    ``W``: ``(..., N, N)`` complex (complex128 or complex64), special unitary, N >= 2.  Returns
    ``(V, u, order)``: ``V`` ``(..., N, N)`` the eigenvectors (columns, in ``torch.linalg.eig``'s
    order), ``u`` ``(..., N-1)`` real in [0, 1] the cell coordinates, and ``order`` ``(..., N)``
    int64: ``V[..., :, order[..., j]]`` is the eigenvector of the j-th alcove phase
    ``cell_to_phases(u)[..., j]``.
    """
    N = W.shape[-1]
    if N < 2 or W.shape[-2] != N:
        raise ValueError(f"to_cell: need (..., N, N) with N >= 2, got {tuple(W.shape)}")
    lam, V = torch.linalg.eig(W)
    phi = torch.angle(lam)                                    # (-pi, pi]
    with torch.no_grad():
        perm = torch.argsort(phi, dim=-1, descending=True)
        k = torch.round(phi.sum(dim=-1) / TWO_PI).to(torch.long)
        j = torch.arange(N, device=W.device)
        pos = j + k.unsqueeze(-1)                              # |k| < N
        src = torch.remainder(pos, N)
        wrap = torch.div(pos, N, rounding_mode="floor")        # -1, 0 or 1
        order = torch.gather(perm, -1, src)
    theta = torch.gather(phi, -1, order) - TWO_PI * wrap.to(phi.dtype)
    alpha = theta[..., :-1] - theta[..., 1:]                   # >= 0
    one = torch.ones_like(alpha[..., :1])
    # Remaining stick before alpha_j: 2 pi - sum_{i<j} alpha_i = 2 pi - (theta_1 - theta_j).
    rem = TWO_PI - torch.cat([torch.zeros_like(one), torch.cumsum(alpha[..., :-1], dim=-1)], dim=-1)
    u = (alpha / rem).clamp(0.0, 1.0)
    return V, u, order


def from_cell(V, u_new, order):
    """Matrix with the eigenvalues of the cell point ``u_new`` on the eigenvectors ``V``.

    ``W_new = V_s diag(exp(i th)) V_s^{-1}`` with ``th = cell_to_phases(u_new)`` and ``V_s`` the
    columns of ``V`` in alcove order (``order`` from :func:`to_cell`).  ``V^{-1}`` (a linear solve)
    rather than ``V^dag``: see the module docstring.  det = 1 and unitarity hold to rounding.
    """
    th = cell_to_phases(u_new)
    N = th.shape[-1]
    idx = order.unsqueeze(-2).expand(order.shape[:-1] + (N, N))
    batch = torch.broadcast_shapes(V.shape, idx.shape)
    Vs = torch.gather(V.expand(batch), -1, idx.expand(batch))
    e = torch.polar(torch.ones_like(th), th).to(V.dtype)
    return torch.linalg.solve(Vs, Vs * e.unsqueeze(-2), left=False)


def log_haar_cell(u):
    """``log(|Delta|^2 |d alpha/d u|)`` at the cell point ``u`` ``(..., N-1)``: the log Haar
    density of eigenphases in cell coordinates up to the constant ``log(N (2 pi)^{N-1})``.

    ``|Delta|^2 = prod_{i<j} 4 sin^2((th_i - th_j)/2)``, ``|d alpha/d u| =
    (2 pi)^{N-1} prod_j (1-u_j)^{N-1-j}``.  For each pair the smaller of the arc ``th_i - th_j``
    and its complement ``2 pi - (th_i - th_j)`` (a sum of affine roots including alpha_0) is used,
    so small gaps on either side keep their relative accuracy.
    """
    N = u.shape[-1] + 1
    alpha, alpha0 = _alpha_from_u(u)
    zero = torch.zeros_like(alpha[..., :1])
    c = torch.cat([zero, torch.cumsum(alpha, dim=-1)], dim=-1)   # th_1 - th_j, (..., N)
    i, j = torch.triu_indices(N, N, offset=1, device=u.device)
    d = c[..., j] - c[..., i]                                    # th_i - th_j in [0, 2 pi]
    dc = alpha0.unsqueeze(-1) + c[..., i] + (c[..., -1:] - c[..., j])
    gap = torch.minimum(d, dc)
    log_vdm = (2.0 * torch.log(2.0 * torch.sin(0.5 * gap))).sum(dim=-1)
    expo = torch.arange(N - 2, -1, -1, dtype=u.dtype, device=u.device)
    log_jac = (N - 1) * math.log(TWO_PI) + (expo * torch.log1p(-u)).sum(dim=-1)
    return log_vdm + log_jac


def log_haar_cell_constant(N):
    """``log(N (2 pi)^{N-1})``: ``exp(log_haar_cell(u) - this)`` integrates to 1 over the cube."""
    return math.log(N) + (N - 1) * math.log(TWO_PI)


def log_haar_cell_normalised(u):
    """Normalised log Haar density of the cell point ``u`` (integrates to 1 over the unit cube)."""
    return log_haar_cell(u) - log_haar_cell_constant(u.shape[-1] + 1)


def spectral_map(W, cell_map, inverse=False):
    """Conjugation-equivariant map of special unitary ``W`` through its eigenphases.

    ``V, u, order = to_cell(W)``; ``u2, ld = cell_map(u, inverse)`` (a caller's bijection of the
    unit cube returning the new point and ``log|det du2/du|`` of shape ``(...)``);
    ``W_new = from_cell(V, u2, order)``; and

        logdet = ld + log_haar_cell(u2) - log_haar_cell(u),

    the log of the Jacobian of ``W -> W_new`` with respect to Haar measure on SU(N) (density of the
    image relative to Haar: ``q(W_new) = q(W) exp(-logdet)``).  With ``inverse=True`` the caller's
    inverse cell map is applied and ``logdet`` is that of the inverse map.  Returns
    ``(W_new, logdet)``.
    """
    V, u, order = to_cell(W)
    u2, ld = cell_map(u, inverse)
    W_new = from_cell(V, u2, order)
    return W_new, ld + log_haar_cell(u2) - log_haar_cell(u)
