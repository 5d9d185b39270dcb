"""Monotone rational-quadratic splines on an interval and on the circle (pure torch).

Convention (all bijections in ``lattice_hpc.flows``): a function applies the map -- the forward map,
or its inverse when ``inverse=True`` -- and returns ``(y, logdet)`` where ``logdet = log|dy/dx|`` of
the map that was *actually applied*, elementwise.  For ``inverse=True`` this is therefore minus the
forward log-derivative evaluated at the output.  A flow ``U = f(z)`` has model density
``log q(U) = log r(z) - logdet_forward(z)`` (see CONVENTIONS.md, "Normalizing flows").

Everything works for float32 and float64 tensors of any batch shape on any device (the device and
dtype of the inputs are used), and is differentiable with torch autograd with respect to the input
and to every parameter.

Rational-quadratic spline (Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows",
arXiv:1906.04032, sec. 3.1).  The interval ``[left, right]`` is cut into ``K`` bins by knots
``(x_k, y_k)``, ``k = 0..K``, with ``x_0 = y_0 = left`` and ``x_K = y_K = right`` and positive
derivatives ``d_k`` at all ``K + 1`` knots.  Bin widths and heights are the softmax of the
unnormalised parameters, raised so that every bin is at least ``min_bin`` of the interval,

    w_k = (right - left) * (min_bin + (1 - K min_bin) softmax(widths)_k),

and ``d_k = min_deriv + softplus(derivs_k)``.  In bin ``k``, with ``xi = (x - x_k)/w_k`` in [0, 1],
``s_k = h_k/w_k``,

    y = y_k + h_k [s_k xi^2 + d_k xi(1-xi)] / [s_k + (d_{k+1} + d_k - 2 s_k) xi(1-xi)],

    dy/dx = s_k^2 [d_{k+1} xi^2 + 2 s_k xi(1-xi) + d_k (1-xi)^2]
            / [s_k + (d_{k+1} + d_k - 2 s_k) xi(1-xi)]^2 ,

which is strictly increasing, C^1 across knots, and maps each bin onto its image bin.  The inverse
solves the quadratic ``a xi^2 + b xi + c = 0`` with
(``dy = y - y_k``, ``c2 = d_{k+1} + d_k - 2 s_k``)

    a = h_k (s_k - d_k) + dy c2,   b = h_k d_k - dy c2,   c = -s_k dy,

by the cancellation-free root ``xi = 2c / (-b - sqrt(b^2 - 4ac))`` (``c <= 0 < b`` at the left knot,
and this root is the one in [0, 1]).

Circular spline (Rezende, Papamakarios, Racaniere, Albergo, Kanwar, Shanahan, Cranmer,
"Normalizing Flows on Tori and Spheres", arXiv:2002.02428, sec. 2.2): the same spline on
``[0, 2 pi]`` with ``d_K = d_0``, so the induced map of the circle is C^1 (a diffeomorphism fixing
the angle 0); callers add a rotation themselves.

Numerical notes: inputs are clamped to ``[left, right]`` (the circle maps reduce modulo 2 pi first),
so values outside by rounding give the endpoint images, never NaN; the bin fraction ``xi`` is
clamped to [0, 1] and the discriminant to >= 0 for the same reason.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["TWO_PI", "wrap_angle", "rq_spline_knots", "rq_spline", "circular_rq_spline"]

TWO_PI = 2.0 * math.pi


def wrap_angle(theta: torch.Tensor) -> torch.Tensor:
    """``theta`` reduced to ``[0, 2 pi)`` (derivative 1).

    ``torch.remainder`` can return exactly ``2 pi`` for tiny negative inputs (rounding); such values
    are mapped to 0 so that the result is always in the half-open interval.
    """
    r = torch.remainder(theta, TWO_PI)
    return torch.where(r >= TWO_PI, r - TWO_PI, r)


def _knots(p: torch.Tensor, left: float, right: float, min_bin: float) -> torch.Tensor:
    """Knot positions (..., K+1) from unnormalised bin sizes (..., K); exact endpoints."""
    K = p.shape[-1]
    q = min_bin + (1.0 - min_bin * K) * torch.softmax(p, dim=-1)
    c = F.pad(torch.cumsum(q, dim=-1), (1, 0), value=0.0)
    k = left + (right - left) * c
    lo = torch.full_like(k[..., :1], left)
    hi = torch.full_like(k[..., :1], right)
    return torch.cat([lo, k[..., 1:-1], hi], dim=-1)


def rq_spline_knots(widths, heights, derivs, left=0.0, right=1.0, min_bin=1e-3, min_deriv=1e-3):
    """Normalised knots ``(xk, yk, dk)``, each of shape ``(..., K+1)``.

    ``xk``, ``yk``: knot positions with ``xk[..., 0] = yk[..., 0] = left`` and
    ``xk[..., K] = yk[..., K] = right`` exactly; ``dk = min_deriv + softplus(derivs)``: the
    derivatives at the knots.  ``widths``, ``heights``: ``(..., K)``; ``derivs``: ``(..., K+1)``.
    """
    K = widths.shape[-1]
    if heights.shape[-1] != K or derivs.shape[-1] != K + 1:
        raise ValueError(
            f"rq_spline: widths and heights need K={K} entries and derivs K+1 in the last axis, "
            f"got {tuple(widths.shape)}, {tuple(heights.shape)}, {tuple(derivs.shape)}")
    if not (min_bin * K < 1.0):
        raise ValueError(f"rq_spline: min_bin={min_bin} too large for K={K} bins")
    if not right > left:
        raise ValueError(f"rq_spline: need right > left, got [{left}, {right}]")
    xk = _knots(widths, left, right, min_bin)
    yk = _knots(heights, left, right, min_bin)
    dk = min_deriv + F.softplus(derivs)
    return xk, yk, dk


def _log_slope(xi, s, d0, d1):
    """log dy/dx of the rational-quadratic bin at fraction ``xi``."""
    om = 1.0 - xi
    t = xi * om
    den = s + (d1 + d0 - 2.0 * s) * t
    num = d1 * xi * xi + 2.0 * s * t + d0 * om * om
    return 2.0 * torch.log(s) + torch.log(num) - 2.0 * torch.log(den)


def rq_spline(x, widths, heights, derivs, inverse=False, left=0.0, right=1.0,
              min_bin=1e-3, min_deriv=1e-3):
    """Monotone rational-quadratic spline of ``[left, right]`` onto itself (arXiv:1906.04032).

    ``x``: shape ``(...)``; ``widths``, ``heights``: ``(..., K)`` unnormalised bin sizes (softmax,
    each bin at least ``min_bin`` of the interval); ``derivs``: ``(..., K+1)`` unnormalised knot
    derivatives (``min_deriv + softplus``) at all knots including both ends.  Batch shapes
    broadcast.  Maps ``left -> left``, ``right -> right``.

    Returns ``(y, logdet)``: ``y = f(x)`` (or ``f^{-1}(x)`` when ``inverse=True``) and
    ``logdet = log|dy/dx|`` of the map applied (for the inverse, ``-log f'(y)``).  Inputs outside
    ``[left, right]`` are clamped to it.
    """
    xk, yk, dk = rq_spline_knots(widths, heights, derivs, left, right, min_bin, min_deriv)
    K = widths.shape[-1]
    batch = torch.broadcast_shapes(x.shape, xk.shape[:-1], yk.shape[:-1], dk.shape[:-1])
    z = x.expand(batch).clamp(left, right)
    xk = xk.expand(batch + (K + 1,))
    yk = yk.expand(batch + (K + 1,))
    dk = dk.expand(batch + (K + 1,))

    # Bin index (piecewise constant, no gradient): number of interior knots <= z.
    search = yk if inverse else xk
    idx = (z.detach().unsqueeze(-1) >= search[..., 1:K].detach()).sum(dim=-1, keepdim=True)
    idx1 = idx + 1

    def at(t, i):
        return torch.gather(t, -1, i).squeeze(-1)

    x0, x1 = at(xk, idx), at(xk, idx1)
    y0, y1 = at(yk, idx), at(yk, idx1)
    d0, d1 = at(dk, idx), at(dk, idx1)
    w = x1 - x0
    h = y1 - y0
    s = h / w

    if not inverse:
        xi = ((z - x0) / w).clamp(0.0, 1.0)
        t = xi * (1.0 - xi)
        den = s + (d1 + d0 - 2.0 * s) * t
        y = y0 + h * (s * xi * xi + d0 * t) / den
        return y, _log_slope(xi, s, d0, d1)

    dy = z - y0
    c2 = d1 + d0 - 2.0 * s
    a = h * (s - d0) + dy * c2
    b = h * d0 - dy * c2
    c = -s * dy
    disc = (b * b - 4.0 * a * c).clamp_min(0.0)
    xi = (2.0 * c / (-b - torch.sqrt(disc))).clamp(0.0, 1.0)
    out = x0 + xi * w
    return out, -_log_slope(xi, s, d0, d1)


def circular_rq_spline(theta, widths, heights, derivs, inverse=False, min_bin=1e-3,
                       min_deriv=1e-3):
    """Circular rational-quadratic spline on ``[0, 2 pi)`` (arXiv:2002.02428, sec. 2.2).

    ``theta``: shape ``(...)``, any real angle (reduced modulo 2 pi); ``widths``, ``heights``:
    ``(..., K)``; ``derivs``: ``(..., K)`` -- the derivative at the last knot (angle 2 pi) is the
    one at the first (angle 0), so the circle map is C^1.  The map fixes the angle 0.

    Returns ``(y, logdet)`` with ``y`` in ``[0, 2 pi)`` and ``logdet = log|dy/dtheta|`` of the map
    applied (forward, or inverse when ``inverse=True``).
    """
    K = widths.shape[-1]
    if derivs.shape[-1] != K:
        raise ValueError(f"circular_rq_spline: derivs needs K={K} entries in the last axis, "
                         f"got {tuple(derivs.shape)}")
    d = torch.cat([derivs, derivs[..., :1]], dim=-1)
    y, ld = rq_spline(wrap_angle(theta), widths, heights, d, inverse=inverse, left=0.0,
                      right=TWO_PI, min_bin=min_bin, min_deriv=min_deriv)
    return wrap_angle(y), ld
