"""Mixtures of non-compact projections: diffeomorphisms of the circle (pure torch).

Convention (all bijections in ``lattice_hpc.flows``): a function applies the map -- the forward map,
or its inverse when ``inverse=True`` -- and returns ``(y, logdet)`` where ``logdet = log|dy/dx|`` of
the map that was *actually applied*, elementwise.  For ``inverse=True`` this is therefore minus the
forward log-derivative evaluated at the output.

Non-compact projection (Rezende et al., "Normalizing Flows on Tori and Spheres", arXiv:2002.02428,
sec. 2.1; used for U(1) gauge fields by Kanwar et al., "Equivariant flow-based sampling for lattice
gauge theory", arXiv:2003.06413):

    g_s(x) = 2 atan(e^s tan(x/2)),   x in [0, 2 pi),

continued through x = pi to a monotone bijection of [0, 2 pi) (on (pi, 2 pi) the principal atan is
negative and 2 pi is added).  Written without a branch cut,

    g_s(x) = 2 atan2(e^s sin(x/2), cos(x/2))          (sin(x/2) >= 0 for x in [0, 2 pi)),

which is smooth and increasing, with ``g_s(0) = 0``, ``g_s(pi) = pi`` and ``g_s(x) -> 2 pi`` as
``x -> 2 pi``.  Its derivative is

    g_s'(x) = e^s / (cos^2(x/2) + e^{2s} sin^2(x/2)) = 1 / (e^{-s} cos^2(x/2) + e^{s} sin^2(x/2)).

The mixture ``f(x) = sum_k rho_k g_{s_k}(x)`` with ``rho = softmax(logits)`` is again an increasing
bijection of [0, 2 pi) (a convex combination of increasing maps with the same endpoints), and
``log f'(x) = logsumexp_k(log rho_k + log g_{s_k}'(x))``.  An optional rotation ``t`` is added
modulo 2 pi afterwards (it does not change the log-derivative).

Inverse: f is monotone, so ``f(x) = y`` is solved by a vectorised safeguarded Newton iteration
keeping a bracket ``[lo, hi]`` (initially [0, 2 pi]); a Newton step that leaves the bracket (or is
not finite) is replaced by bisection.  The iteration stops when, for every element, the Newton
update is below ``tol`` (default ``64 eps 2 pi``: about 1e-13 in float64) or the residual
``|f(x) - y|`` is at the rounding level of f (``16 eps 2 pi``), after at most ``max_iter`` steps.
The attainable accuracy is ``~eps 2 pi / f'(x)``: about 1e-15 for moderate ``s``, worse where the
mixture is very flat (large ``|s|``, ``f'`` small).

Gradients of the inverse: the root ``x*`` is found under ``torch.no_grad``; then one Newton step is
taken with gradients enabled and the slope held fixed,

    x = x* - (f(x*; params) - y) / f'(x*)      (f'(x*) detached).

At the root its value is ``x*`` (up to rounding), and its derivatives are exactly those of the
implicit function ``f(x(y, params); params) = y``: ``dx/dy = 1/f'(x*)`` and
``dx/dparams = -(d f/d params)(x*) / f'(x*)``.  The returned ``logdet = -log f'(x)`` is evaluated at
this differentiable ``x`` so its gradients are right too.
"""

from __future__ import annotations

import torch

from .splines import TWO_PI, wrap_angle

__all__ = ["ncp_mixture"]


def _mixture(x, s, log_rho):
    """``(f(x), log f'(x))`` of the NCP mixture; x ``(...)``, s and log_rho ``(..., K)``."""
    half = 0.5 * x.unsqueeze(-1)
    sn, cs = torch.sin(half), torch.cos(half)
    ep, em = torch.exp(s), torch.exp(-s)
    g = 2.0 * torch.atan2(ep * sn, cs)
    log_gp = -torch.log(em * cs * cs + ep * sn * sn)
    f = (torch.exp(log_rho) * g).sum(dim=-1)
    return f, torch.logsumexp(log_rho + log_gp, dim=-1)


@torch.no_grad()
def _solve(y, s, log_rho, tol, max_iter):
    """Root of f(x) = y on [0, 2 pi] by safeguarded Newton (vectorised, no gradients)."""
    x = y.clone()
    if x.numel() == 0:
        return x
    lo = torch.zeros_like(y)
    hi = torch.full_like(y, TWO_PI)
    rtol = 16.0 * torch.finfo(y.dtype).eps * TWO_PI     # rounding level of f itself
    for _ in range(max_iter):
        f, lfp = _mixture(x, s, log_rho)
        r = f - y
        lo = torch.where(r <= 0, x, lo)
        hi = torch.where(r >= 0, x, hi)
        xn = x - r * torch.exp(-lfp)
        ok = (xn >= lo) & (xn <= hi)          # False for NaN as well
        xn = torch.where(ok, xn, 0.5 * (lo + hi))
        # done: the update is below tol, or the residual is at rounding level (then further
        # steps only move x by noise / f', which can exceed tol where f' is small)
        done = bool((((xn - x).abs() <= tol) | (r.abs() <= rtol)).all())
        x = xn
        if done:
            break
    return x


def ncp_mixture(theta, s, logits, t=None, inverse=False, tol=None, max_iter=100):
    """Mixture of non-compact projections on the circle, plus an optional rotation.

    Forward: ``y = (sum_k softmax(logits)_k g_{s_k}(theta mod 2 pi) + t) mod 2 pi`` with
    ``g_s(x) = 2 atan(e^s tan(x/2))`` continued monotonically to [0, 2 pi).

    ``theta``: shape ``(...)`` (any real angle, reduced modulo 2 pi); ``s``, ``logits``:
    ``(..., K)``; ``t``: ``(...)`` or None.  Batch shapes broadcast.

    Returns ``(y, logdet)``, ``y`` in ``[0, 2 pi)``, ``logdet = log|dy/dtheta|`` of the map applied:
    ``log f'(theta)`` forward, ``-log f'(y)`` for ``inverse=True``.  The inverse is found to
    ``tol`` (default ``64 eps(dtype) 2 pi``) and is differentiable in ``theta``, ``s``, ``logits``
    and ``t`` with the exact implicit-function first derivatives (see the module docstring).
    """
    log_rho = torch.log_softmax(logits, dim=-1)
    if not inverse:
        f, lfp = _mixture(wrap_angle(theta), s, log_rho)
        if t is not None:
            f = f + t
        return wrap_angle(f), lfp

    y = theta if t is None else theta - t
    y = wrap_angle(y)
    batch = torch.broadcast_shapes(y.shape, s.shape[:-1], log_rho.shape[:-1])
    y = y.expand(batch)
    if tol is None:
        tol = 64.0 * torch.finfo(y.dtype).eps * TWO_PI
    xs = _solve(y.detach(), s.detach(), log_rho.detach(), tol, max_iter)
    f, lfp = _mixture(xs, s, log_rho)
    x = xs - (f - y) * torch.exp(-lfp.detach())
    x = wrap_angle(x)
    _, lfp_x = _mixture(x, s, log_rho)
    return x, -lfp_x
