"""Exact results of 2D U(1) lattice gauge theory with the Wilson action on a periodic L x T torus.

On a torus every plaquette carries the same representation in the character expansion, so with
the geometric charge ``Q = sum_p phi_p / (2 pi)`` (``phi_p`` in ``(-pi, pi]``, CONVENTIONS.md) and a
theta term (Bonati and Rossi, arXiv:1901.09830; Kovacs, Seiler et al., and the textbook treatment
of Wiese's lectures on 2D U(1))::

    Z(theta) = sum_k c_k(theta)^V,    c_k(theta) = int_{-pi}^{pi} dphi/(2 pi) exp(beta cos phi
                                                    + i (theta / (2 pi) - k) phi),

``V = L T`` plaquettes, ``c_k(0) = I_k(beta)``.  Then, exactly in finite volume,

    <P> = <cos phi_p> = (1/V) d ln Z / d beta = sum_k I_k^{V-1} I_k' / sum_k I_k^V,
    <Q^2> = -Z''(0) / Z(0),    chi_t = <Q^2> / V,

with ``I_k' = (I_{k-1} + I_{k+1}) / 2``.  The integrals are done by Gauss-Legendre quadrature
(the integrands are smooth on ``[-pi, pi]``), the sums over ``k`` to ``kmax``.  The terms of
``Z''`` carry ``(I_k / I_0)^{V-2}``, which decays fast for ``V >= 3``; on a two-plaquette torus the
sum converges only like ``1/kmax`` (``Q = 0`` there exactly).
"""

from __future__ import annotations

import numpy as np

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(400)
_PHI = np.pi * _NODES  # quadrature on [-pi, pi]
_W = _WEIGHTS / 2  # int_{-pi}^{pi} dphi / (2 pi) f = sum_i W_i f(phi_i)


def _moments(beta: float, kmax: int):
    """``c_k``, ``c_k'`` and ``c_k''`` at theta = 0 for ``k = -kmax .. kmax`` (scaled by e^-beta)."""
    k = np.arange(-kmax, kmax + 1)[:, None]
    base = _W * np.exp(beta * (np.cos(_PHI) - 1.0))
    phase = np.exp(-1j * k * _PHI)
    x = _PHI / (2 * np.pi)
    c0 = (base * phase).sum(axis=1).real
    c1 = (base * phase * 1j * x).sum(axis=1).real
    c2 = (base * phase * -(x ** 2)).sum(axis=1).real
    return c0, c1, c2


def log_partition(beta: float, volume: int, kmax: int = 60) -> float:
    """Exact ``ln Z`` of the Wilson action ``-beta sum_p cos phi_p`` with normalised Haar measure
    on the links (``Z = sum_k I_k(beta)^V``; ``ln Z = 0`` at ``beta = 0``).  A flow's reverse-KL
    loss ``E_q[ln q + S]`` plus ``ln Z`` is its exact ``KL(q || p)`` in nats."""
    c0, _, _ = _moments(beta, kmax)  # I_k e^-beta
    m = c0.max()
    return float(volume * (beta + np.log(m)) + np.log(((c0 / m) ** volume).sum()))


def plaquette(beta: float, volume: int, kmax: int = 60) -> float:
    """Exact ``<cos phi_p>`` on a torus of ``volume`` plaquettes."""
    c0, _, _ = _moments(beta, kmax + 1)
    I = c0  # I_k(beta) e^-beta, k = -(kmax+1) .. kmax+1
    Ik, Ikp = I[1:-1], 0.5 * (I[:-2] + I[2:])
    r = Ik / Ik.max()  # terms relative to the largest (k = 0): avoids overflow of I^V
    return float((r ** (volume - 1) * Ikp / Ik.max()).sum() / (r ** volume).sum())


def topological_susceptibility(beta: float, volume: int, kmax: int = 60) -> tuple[float, float]:
    """Exact ``(<Q^2>, chi_t = <Q^2> / V)`` with the geometric charge on a torus of ``volume``
    plaquettes."""
    c0, c1, c2 = _moments(beta, kmax)
    m = c0.max()
    r, d1, d2 = c0 / m, c1 / m, c2 / m
    V = volume
    Z = (r ** V).sum()
    Z2 = (V * (V - 1) * r ** (V - 2) * d1 ** 2 + V * r ** (V - 1) * d2).sum()
    q2 = float(-Z2 / Z)
    return q2, q2 / V


def infinite_volume(beta: float) -> tuple[float, float]:
    """``(<P>, chi_t)`` at infinite volume: ``I_1/I_0`` and ``<phi^2>/(4 pi^2)`` of one plaquette."""
    c0, _, c2 = _moments(beta, 1)
    return float(0.5 * (c0[0] + c0[2]) / c0[1]), float(-c2[1] / c0[1])
