"""Dense Wilson matrices of whole (global, single-process) gauge fields: exact determinants for
reweighting and for the references of the tests, batched over configurations.

``D = 1 - kappa H`` (CONVENTIONS.md, :mod:`.wilson`) as a ``(B, V n_s N, V n_s N)`` matrix, rows
and columns ordered by global site in memory order (``t`` slowest, ``x`` fastest), then spin,
then colour; the boundary phase ``bc[mu]`` multiplies the forward hop across the global boundary
and its conjugate the backward one.  Two degenerate flavours weigh a configuration by
``det(D^dag D) = |det D|^2``: :func:`logdet_normal_dense` returns ``2 log|det D|``.  For small
lattices only (the matrix has ``(V n_s N)^2`` entries): the 2D Schwinger model up to ``L = 16``
(``512 x 512``), 4D SU(3) at ``2^4``.
"""

from __future__ import annotations

import numpy as np

from .gamma import gammas


def dense_wilson(links: np.ndarray, kappa: float, bc=None) -> np.ndarray:
    """The Wilson matrix of a batch of global fields ``links`` ``(B, ndim, *dims reversed, N, N)``
    (or one field without ``B``), complex128 ``(B, n, n)``."""
    links = np.asarray(links, dtype=np.complex128)
    single = _is_single(links)
    if single:
        links = links[None]
    B, nd = links.shape[0], links.shape[1]
    mem = links.shape[2:2 + nd]  # (L_t, ..., L_x)
    N = links.shape[-1]
    G = gammas(nd)[0]
    ns = G.shape[-1]
    bc = (1,) * (nd - 1) + (-1,) if bc is None else tuple(bc)
    V = int(np.prod(mem))
    blk = ns * N
    D = np.zeros((V, V, B, blk, blk), dtype=np.complex128)  # [row site, column site, b, ., .]
    D[np.arange(V), np.arange(V)] = np.eye(blk)
    site = np.arange(V).reshape(mem)
    eye = np.eye(ns)
    for mu in range(nd):
        ax = nd - 1 - mu
        x, y = site.reshape(V), np.roll(site, -1, axis=ax).reshape(V)  # x and x + mu
        phase = np.ones(mem, dtype=np.complex128)
        edge = [slice(None)] * nd
        edge[ax] = slice(mem[ax] - 1, mem[ax])
        phase[tuple(edge)] = bc[mu]
        ph = phase.reshape(V)
        U = links[:, mu].reshape(B, V, N, N)
        # row x, column x+mu: -kappa (1 - g) U_mu(x); row x+mu, column x: -kappa (1 + g) U_mu(x)^dag
        fwd = np.einsum("st,bxij,x->xbsitj", eye - G[mu], U, ph).reshape(V, B, blk, blk)
        bwd = np.einsum("st,bxji,x->xbsitj", eye + G[mu], U.conj(), np.conj(ph)).reshape(V, B, blk, blk)
        D[x, y] += -kappa * fwd
        D[y, x] += -kappa * bwd
    out = D.transpose(2, 0, 3, 1, 4).reshape(B, V * blk, V * blk)
    return out[0] if single else out


def _is_single(links) -> bool:
    """Whether ``links`` is one field ``(ndim, *dims, N, N)`` rather than a batch."""
    nd = links.shape[0]
    return links.ndim == nd + 3 and nd in (2, 4)


def logdet_normal_dense(links: np.ndarray, kappa: float, bc=None) -> np.ndarray:
    """``log det(D^dag D) = 2 log|det D|`` of each field of the batch (float64 ``(B,)``)."""
    _, ld = np.linalg.slogdet(dense_wilson(links, kappa, bc))
    return 2.0 * ld


__all__ = ["dense_wilson", "logdet_normal_dense"]
