"""Free Wilson fermions (``U = 1``) in momentum space: exact references for the tests.

Boundary conditions: a phase ``bc_mu = exp(i theta_mu)`` for a hop across the global boundary in
direction ``mu`` (default periodic in space, antiperiodic in time, ``theta = (0, 0, 0, pi)``), so the
allowed momenta are ``p_mu = (2 pi n_mu + theta_mu) / L_mu``, ``n_mu = 0 .. L_mu - 1``.  On the plane
wave ``e^{i p x}`` (times a constant spinor) the kappa-normalized operator (CONVENTIONS.md) acts as

    M(p) = A(p) + i sum_mu b_mu(p) gamma_mu,   A = 1 - 2 kappa sum_mu cos p_mu,   b_mu = 2 kappa sin p_mu,

which ``tests/test_wilson.py`` checks against ``WilsonDirac``.  Because ``(sum_mu b_mu gamma_mu)^2 =
|b|^2``,  ``M(p)^{-1} = (A - i b.gamma) / d``  with  ``d = A^2 + |b|^2``.

Propagator from the origin, times the colour identity:

    S(x; 0) = (1/V) sum_p e^{i p x} M(p)^{-1}

(``(1/V) sum_p e^{ipx} = delta_{x,0}`` for ``x`` inside the lattice, so ``D S = delta``).

Pion correlator.  With ``S`` diagonal in colour (a factor 3 = ``sum_{a,b} |delta_ab|^2``) and
``L^3`` the spatial volume,

    C(t) = 3 sum_xvec tr[S(x;0) S(x;0)^dag]
         = (3 / (L^3 T^2)) sum_pvec sum_{p_t, q_t} e^{i (p_t - q_t) t} tr[M^{-1}(pvec, p_t) M^{-1}(pvec, q_t)^dag]

(the sum over ``xvec`` sets the spatial momenta of ``S`` and ``S^dag`` equal), and
``tr[M^{-1}(p) M^{-1}(q)^dag] = 4 (A_p A_q + b_p . b_q) / (d_p d_q)`` (the cross terms are
traceless), so the double sum over ``p_t, q_t`` factorizes into squared moduli:

    C(t) = (12 / (L^3 T^2)) sum_pvec [ |f(pvec, t)|^2 + sum_mu |g_mu(pvec, t)|^2 ],
    f(pvec, t) = sum_{p_t} e^{i p_t t} A(p) / d(p),   g_mu(pvec, t) = sum_{p_t} e^{i p_t t} b_mu(p) / d(p).

It is symmetric, ``C(t) = C(T - t)``: ``e^{i (p_t - q_t) T} = 1``, and ``C`` is real.

Trace: ``Tr D^{-1} = 3 sum_p tr_spin M(p)^{-1} = 12 sum_p A(p) / d(p)``.

In 2D (the Schwinger model, one colour, two spins: :mod:`.gamma`) the same formulas hold with
the factor ``12 = 3 colours x tr 1_4`` replaced by ``2 = 1 x tr 1_2`` (``n_c n_s`` below), ``L^3``
by ``L`` and ``vec p`` by the one spatial momentum.

All arrays are host NumPy, global, in memory order (``t`` slowest, ``x`` fastest); ``dims`` and
momenta are in direction order ``(x, y, z, t)``.  Explicit sums and FFTs: meant for small lattices.
"""

from __future__ import annotations

import numpy as np

from .gamma import gammas, spin_count


def _factor(ndim: int) -> int:
    """``n_c n_s``: colours times spins of the fermions of a ``ndim``-dimensional lattice (12 for
    4D QCD, 2 for the 2D Schwinger model)."""
    return (3 if ndim == 4 else 1) * spin_count(ndim)


def _thetas(ndim: int, bc) -> np.ndarray:
    bc = (1,) * (ndim - 1) + (-1,) if bc is None else tuple(bc)
    if len(bc) != ndim:
        raise ValueError(f"{len(bc)} boundary phases for {ndim} directions")
    return np.angle(np.asarray(bc, dtype=np.complex128))


def momenta(dims, bc=None) -> list[np.ndarray]:
    """The allowed momenta per direction: ``p_mu = (2 pi n + theta_mu) / L_mu``, ``n = 0 .. L_mu - 1``."""
    dims = tuple(int(L) for L in dims)
    th = _thetas(len(dims), bc)
    return [(2 * np.pi * np.arange(L) + th[mu]) / L for mu, L in enumerate(dims)]


def _momentum_grid(dims, bc=None) -> list[np.ndarray]:
    """``p_mu`` broadcast over the momentum grid in memory order ``(n_t, n_z, n_y, n_x)``."""
    ps = momenta(dims, bc)
    nd = len(ps)
    out = []
    for mu, p in enumerate(ps):
        shape = [1] * nd
        shape[nd - 1 - mu] = p.size
        out.append(np.broadcast_to(p.reshape(shape), tuple(len(q) for q in reversed(ps))))
    return out


def coefficients(p, kappa: float):
    """``(A, b)`` with ``M(p) = A + i sum_mu b_mu gamma_mu``; ``p`` a sequence of arrays (one per mu)."""
    A = 1.0 - 2.0 * kappa * sum(np.cos(q) for q in p)
    b = np.stack([2.0 * kappa * np.sin(q) for q in p], axis=-1)
    return A, b


def dirac_matrix(p, kappa: float) -> np.ndarray:
    """``M(p)`` as ``(..., n_s, n_s)`` spin matrices (:func:`.gamma.gammas` of ``len(p)``
    dimensions); ``p`` one array per mu."""
    A, b = coefficients(p, kappa)
    G = gammas(len(p))[0]
    return A[..., None, None] * np.eye(G.shape[-1]) + 1j * np.einsum("...m,mij->...ij", b, G)


def free_propagator(dims, kappa: float, bc=None) -> np.ndarray:
    """``S(x; 0) = (1/V) sum_p e^{ipx} M(p)^{-1}`` as spin matrices ``(T, Z, Y, X, 4, 4)``
    (``(T, X, 2, 2)`` in 2D).

    ``M(p)^{-1}`` by numerical inversion of :func:`dirac_matrix`; the sum over ``p`` by an inverse FFT
    of the integer momenta times the twist ``e^{i theta x / L}``.
    """
    dims = tuple(int(L) for L in dims)
    nd = len(dims)
    Minv = np.linalg.inv(dirac_matrix(_momentum_grid(dims, bc), kappa))
    axes = tuple(range(nd))
    S = np.fft.ifftn(Minv, axes=axes)  # (1/V) sum_n e^{2 pi i n x / L} Minv(n)
    th = _thetas(nd, bc)
    for mu, L in enumerate(dims):
        if th[mu]:
            shape = [1] * nd + [1, 1]
            shape[nd - 1 - mu] = L
            S = S * np.exp(1j * th[mu] * np.arange(L) / L).reshape(shape)
    return S


def free_propagator_colour(dims, kappa: float, bc=None) -> np.ndarray:
    """:func:`free_propagator` times the colour identity: ``(T, Z, Y, X, 4, 3, 4, 3)``
    (sink spin, sink colour, source spin, source colour; ``(T, X, 2, 1, 2, 1)`` in 2D), the
    layout of :func:`lattice_hpc.fermions.point_propagator` gathered to one rank."""
    S = free_propagator(dims, kappa, bc)
    return np.einsum("...ij,ab->...iajb", S, np.eye(_factor(len(dims)) // S.shape[-1]))


def free_pion_correlator(dims, kappa: float, bc=None) -> np.ndarray:
    """``C(t)``, ``t = 0 .. T-1``, of the free field from the momentum sums (module docstring)."""
    dims = tuple(int(L) for L in dims)
    T = dims[-1]
    p = _momentum_grid(dims, bc)  # memory order (n_t, n_z, n_y, n_x)
    A, b = coefficients(p, kappa)
    d = A * A + np.einsum("...m,...m->...", b, b)
    pt = momenta(dims, bc)[-1]
    phase = np.exp(1j * np.outer(np.arange(T), pt))  # (t, n_t)
    f = np.einsum("tn,n...->t...", phase, A / d)           # (t, n_z, n_y, n_x)
    g = np.einsum("tn,n...m->t...m", phase, b / d[..., None])
    spatial = int(np.prod(dims[:-1]))
    total = np.abs(f) ** 2 + (np.abs(g) ** 2).sum(axis=-1)
    return _factor(len(dims)) / (spatial * T * T) * total.reshape(T, -1).sum(axis=1)


def free_trace(dims, kappa: float, bc=None) -> float:
    """``Tr D^{-1} = 3 sum_p tr_spin M(p)^{-1} = 12 sum_p A(p) / d(p)`` (real; ``2 sum_p A / d``
    in 2D)."""
    A, b = coefficients(_momentum_grid(dims, bc), kappa)
    d = A * A + np.einsum("...m,...m->...", b, b)
    return float(_factor(len(dims)) * np.sum(A / d))
