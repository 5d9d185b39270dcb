"""Dirac matrices in the DeGrand-Rossi basis (Chroma, QUDA), directions in the code's order x, y, z, t.

::

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


def sigma(mu: int, nu: int) -> np.ndarray:
    """``sigma_{mu nu} = (i/2) [gamma_mu, gamma_nu]``."""
    return 0.5j * (GAMMA[mu] @ GAMMA[nu] - GAMMA[nu] @ GAMMA[mu])


def projector(mu: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """``(P, R)`` with ``1 - s gamma_mu = R @ P``; ``P`` is 2x4, ``R`` is 4x2."""
    full = EYE - s * GAMMA[mu]
    P = full[:2]
    R, *_ = np.linalg.lstsq(P.T, full.T, rcond=None)  # full = R P  <=>  full^T = P^T R^T
    R = R.T
    assert np.allclose(R @ P, full)
    return P, R
