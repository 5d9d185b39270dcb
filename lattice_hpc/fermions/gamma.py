"""Dirac matrices: the DeGrand-Rossi basis in 4D (Chroma, QUDA), Pauli matrices in 2D.

4D, directions in the code's order x, y, z, t::

    gamma_x = [[0, 0, 0, i], [0, 0, i, 0], [0, -i, 0, 0], [-i, 0, 0, 0]]
    gamma_y = [[0, 0, 0, -1], [0, 0, 1, 0], [0, 1, 0, 0], [-1, 0, 0, 0]]
    gamma_z = [[0, 0, i, 0], [0, 0, 0, -i], [-i, 0, 0, 0], [0, i, 0, 0]]
    gamma_t = [[0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0]]
    gamma_5 = gamma_x gamma_y gamma_z gamma_t = diag(1, 1, -1, -1)

Hermitian, ``{gamma_mu, gamma_nu} = 2 delta_{mu nu}``.  ``sigma_{mu nu} = (i/2)[gamma_mu, gamma_nu]``.

Spin projection: ``1 -/+ gamma_mu`` has rank 2 and, in this basis, its first two rows are
independent, so ``1 - s gamma_mu = R_s P_s`` with ``P_s`` = those two rows (4 -> 2 spins: the
half spinor that the hopping term multiplies by a link and sends to a neighbour) and ``R_s``
(2 -> 4) rebuilding the full spinor.  ``s = +1`` is the forward hop ``(1 - gamma_mu)``, ``s = -1``
the backward one ``(1 + gamma_mu)``.

2D (the Schwinger model), directions x, t, two-component spinors::

    gamma_x = sigma_1 = [[0, 1], [1, 0]]
    gamma_t = sigma_2 = [[0, -i], [i, 0]]
    gamma_5 = -i gamma_x gamma_t = sigma_3 = diag(1, -1)

(the basis of Gattringer and Lang's book, and of the Schwinger-model flow papers, Albergo et al.
2106.05934 and 2202.11712).  ``1 - s gamma_mu`` has rank 1 there: ``P`` is its first row (2 -> 1
spin) and ``R`` the column that rebuilds it.  :func:`gammas` gives the set for a dimension.
"""

from __future__ import annotations

import numpy as np

GAMMA = np.array([
    [[0, 0, 0, 1j], [0, 0, 1j, 0], [0, -1j, 0, 0], [-1j, 0, 0, 0]],
    [[0, 0, 0, -1], [0, 0, 1, 0], [0, 1, 0, 0], [-1, 0, 0, 0]],
    [[0, 0, 1j, 0], [0, 0, 0, -1j], [-1j, 0, 0, 0], [0, 1j, 0, 0]],
    [[0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0]],
], dtype=np.complex128)
GAMMA5 = GAMMA[0] @ GAMMA[1] @ GAMMA[2] @ GAMMA[3]
EYE = np.eye(4, dtype=np.complex128)

GAMMA_2D = np.array([
    [[0, 1], [1, 0]],
    [[0, -1j], [1j, 0]],
], dtype=np.complex128)
GAMMA5_2D = -1j * GAMMA_2D[0] @ GAMMA_2D[1]


def gammas(ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """``(gamma_mu for mu < ndim, gamma_5)`` of the basis of a ``ndim``-dimensional lattice."""
    if ndim == 4:
        return GAMMA, GAMMA5
    if ndim == 2:
        return GAMMA_2D, GAMMA5_2D
    raise ValueError(f"Dirac matrices are defined for 2 and 4 dimensions, not {ndim}")


def spin_count(ndim: int) -> int:
    """Spinor components on a ``ndim``-dimensional lattice: 4 in 4D, 2 in 2D."""
    return gammas(ndim)[0].shape[-1]


def sigma(mu: int, nu: int, ndim: int = 4) -> np.ndarray:
    """``sigma_{mu nu} = (i/2) [gamma_mu, gamma_nu]``."""
    G = gammas(ndim)[0]
    return 0.5j * (G[mu] @ G[nu] - G[nu] @ G[mu])


def projector(mu: int, s: int, ndim: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """``(P, R)`` with ``1 - s gamma_mu = R @ P``; ``P`` is 2x4 and ``R`` 4x2 in 4D, 1x2 and 2x1
    in 2D."""
    G = gammas(ndim)[0]
    n = G.shape[-1]
    full = np.eye(n) - s * G[mu]
    P = full[:n // 2]
    R, *_ = np.linalg.lstsq(P.T, full.T, rcond=None)  # full = R P  <=>  full^T = P^T R^T
    R = R.T
    assert np.allclose(R @ P, full)
    return P, R
