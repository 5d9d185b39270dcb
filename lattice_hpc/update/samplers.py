"""Exact samplers for the single-link distributions of the Wilson action.

Each sampler draws, for every entry of ``alpha``, one variate using uniforms from a callable
``uniforms(todo, n, draw)`` that returns ``n`` uniforms in (0, 1) for the entries ``todo`` at counter
``draw``.  Rejection loops redraw only the entries not yet accepted, and attempt ``k`` of an entry
always uses the same counters, so the variate of a site does not depend on which other sites are
drawn with it (decomposition independence).
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module

MAX_ATTEMPTS = 100000
KP_SWITCH = 2.0  # Kennedy-Pendleton above this alpha, Creutz below (both exact)


def su2_a0(alpha, uniforms):
    """``a0`` in [-1, 1] with density ``sqrt(1 - a0^2) exp(alpha a0)``, and two more uniforms.

    - ``alpha >= KP_SWITCH``: Kennedy and Pendleton, Phys. Lett. B156 (1985) 393:
      ``lambda^2 = -(ln r1 + cos^2(2 pi r2) ln r3) / (2 alpha)``, accept if ``r4^2 <= 1 - lambda^2``,
      ``a0 = 1 - 2 lambda^2``.
    - ``alpha < KP_SWITCH``: Creutz, PRD 21 (1980) 2308: ``a0`` from ``exp(alpha a0)`` on [-1, 1] by
      inversion, accepted with probability ``sqrt(1 - a0^2)``.

    Returns ``(a0, extra)`` where ``extra`` has two further uniforms per entry from the accepted
    attempt (for the direction of the remaining three components).
    """
    xp = array_module(alpha)
    n = alpha.shape[0]
    a0 = xp.empty(n, dtype=np.float64)
    extra = xp.empty((n, 2), dtype=np.float64)
    todo = xp.arange(n)
    for attempt in range(MAX_ATTEMPTS):
        if todo.size == 0:
            return a0, extra
        u = uniforms(todo, 6, 3 * attempt)
        a = alpha[todo]
        small = a < 1e-12
        a_safe = xp.where(small, 1.0, a)
        # Kennedy-Pendleton
        lam2 = -(xp.log(u[:, 0]) + xp.cos(2 * np.pi * u[:, 1]) ** 2 * xp.log(u[:, 2])) / (2 * a_safe)
        kp_val = 1.0 - 2.0 * lam2
        kp_ok = u[:, 3] ** 2 <= 1.0 - lam2
        # Creutz (alpha -> 0 limit: uniform a0)
        e = xp.exp(-2.0 * a_safe)
        cr_val = xp.where(small, 2.0 * u[:, 0] - 1.0, 1.0 + xp.log(e + u[:, 0] * (1.0 - e)) / a_safe)
        cr_val = xp.clip(cr_val, -1.0, 1.0)
        cr_ok = u[:, 1] ** 2 <= 1.0 - cr_val ** 2
        use_kp = a >= KP_SWITCH
        val = xp.where(use_kp, kp_val, cr_val)
        ok = xp.where(use_kp, kp_ok, cr_ok)
        done = todo[ok]
        a0[done] = val[ok]
        extra[done] = u[ok][:, 4:6]
        todo = todo[~ok]
    raise RuntimeError(f"SU(2) heatbath: {todo.size} sites not accepted after {MAX_ATTEMPTS} attempts")


def su2_heatbath_element(alpha, uniforms):
    """Quaternions ``(a0, a1, a2, a3)`` of SU(2) elements with density ``exp(alpha a0)`` (Haar measure).

    ``a0`` from :func:`su2_a0`; ``(a1, a2, a3)`` uniform on the sphere of radius ``sqrt(1 - a0^2)``.
    """
    xp = array_module(alpha)
    a0, extra = su2_a0(alpha, uniforms)
    r = xp.sqrt(xp.maximum(1.0 - a0 * a0, 0.0))
    cos_t = 2.0 * extra[:, 0] - 1.0
    sin_t = xp.sqrt(xp.maximum(1.0 - cos_t * cos_t, 0.0))
    phi = 2.0 * np.pi * extra[:, 1]
    return xp.stack([a0, r * sin_t * xp.cos(phi), r * sin_t * xp.sin(phi), r * cos_t], axis=-1)


def von_mises(kappa, uniforms):
    """Angles in (-pi, pi] with density ``exp(kappa cos theta)`` (Best and Fisher, Appl. Stat. 28 (1979) 152).

    ``kappa < 1e-8`` gives the uniform distribution.
    """
    xp = array_module(kappa)
    n = kappa.shape[0]
    out = xp.empty(n, dtype=np.float64)
    todo = xp.arange(n)
    for attempt in range(MAX_ATTEMPTS):
        if todo.size == 0:
            return out
        u = uniforms(todo, 3, 2 * attempt)
        k = kappa[todo]
        tiny = k < 1e-8
        ks = xp.where(tiny, 1.0, k)
        r = 1.0 + xp.sqrt(1.0 + 4.0 * ks * ks)
        rho = (r - xp.sqrt(2.0 * r)) / (2.0 * ks)
        s = xp.where(ks < 1e-5, 1.0 / ks + ks, (1.0 + rho * rho) / (2.0 * rho))
        z = xp.cos(np.pi * u[:, 0])
        w = (1.0 + s * z) / (s + z)
        y = ks * (s - w)
        ok = (y * (2.0 - y) - u[:, 1] >= 0) | (xp.log(y / u[:, 1]) + 1.0 - y >= 0)
        theta = xp.arccos(xp.clip(w, -1.0, 1.0))
        theta = xp.where(u[:, 2] < 0.5, -theta, theta)
        theta = xp.where(tiny, 2.0 * np.pi * u[:, 0] - np.pi, theta)
        ok = ok | tiny
        done = todo[ok]
        out[done] = theta[ok]
        todo = todo[~ok]
    raise RuntimeError(f"U(1) heatbath: {todo.size} sites not accepted after {MAX_ATTEMPTS} attempts")


def quaternion_matrix(q):
    """SU(2) matrices ``q0 + i q.sigma`` = ``[[q0 + i q3, q2 + i q1], [-q2 + i q1, q0 - i q3]]``."""
    xp = array_module(q)
    m = xp.empty(q.shape[:-1] + (2, 2), dtype=np.complex128)
    m[..., 0, 0] = q[..., 0] + 1j * q[..., 3]
    m[..., 0, 1] = q[..., 2] + 1j * q[..., 1]
    m[..., 1, 0] = -q[..., 2] + 1j * q[..., 1]
    m[..., 1, 1] = q[..., 0] - 1j * q[..., 3]
    return m
