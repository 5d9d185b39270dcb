"""The one generalised hopping operation that every kernel implements, and its communication.

Every implementation (reference on the array module, compiled CPU, CUDA) computes::

    out(x) = alpha B(x) chi(x) + beta C(x) [H psi](x)    for x of parity ``parity`` (all if None),
    out(x) = 0                                            on the other parity,
    H psi(x) = sum_mu (1 - s gamma_mu) U_mu(x) psi(x+mu) + (1 + s gamma_mu) U_mu(x-mu)^dag psi(x-mu),

``s = -1`` for ``dagger``, ``B``/``C`` site-diagonal ``(..., 2, 6, 6)`` chiral blocks or ``None``
(identity).  ``D = A - kappa H`` is ``(chi=psi, alpha=1, B=A, beta=-kappa)``; the even/odd Schur
complement ``A_ee - kappa^2 H_eo A_oo^{-1} H_oe`` is two calls (``C = A_oo^{-1}``, then ``B = A_ee``).

:meth:`Hopping.dslash` fixes the order of work, the same for every implementation: pack the
spin-projected faces of the partitioned directions (``P psi`` of the lower face, ``U^dag P psi`` of
the upper face: half spinors, so half the bytes of a spinor halo, and no gauge halo), post them
(:class:`lattice_hpc.comm.FaceExchange`), compute the bulk while they travel, then add what came in.
With a ``parity``, only the faces' sites of the other parity are packed: the ones the hops need.
"""

from __future__ import annotations

import abc
import time

import numpy as np

from ...comm.faces import FaceExchange

#: Seconds spent in :meth:`Hopping.dslash` (all operators of this process) and in waiting for its
#: face exchange, with the number of calls: read and reset by callers that report where time goes
#: (the HMC's per-trajectory records).  On a GPU the figures are launch times unless the caller
#: synchronises.
PROFILE = {"seconds": 0.0, "wait_seconds": 0.0, "calls": 0}


def reset_profile() -> dict:
    """The profile so far, then zeroed."""
    out = dict(PROFILE)
    PROFILE.update(seconds=0.0, wait_seconds=0.0, calls=0)
    return out


class Hopping(abc.ABC):
    """Base class: subclasses implement :meth:`pack`, :meth:`bulk` and :meth:`face_add`.

    Args:
        op: the :class:`~lattice_hpc.fermions.WilsonDirac` (lattice, links, boundary phases).
    """

    name = "abstract"

    def __init__(self, op):
        self.op = op
        self.lattice = op.lattice
        self.xp = op.xp
        self.faces = FaceExchange(op.lattice.grid)
        self.partitioned = list(self.faces.directions)

    def dslash(self, psi, chi=None, alpha=0.0, B=None, beta=1.0, C=None, dagger=False, parity=None):
        """Collective: the generalised hopping operation of the module docstring (a new array)."""
        t0 = time.perf_counter()
        if chi is None:
            chi = psi
        source_parity = None if parity is None else 1 - parity
        lower, upper = {}, {}
        for mu in self.partitioned:
            lower[mu] = self.pack(psi, mu, 0, source_parity, dagger)
            upper[mu] = self.pack(psi, mu, 1, source_parity, dagger)
        pending = self.faces.start(lower, upper)
        out = self.bulk(psi, chi, alpha, B, beta, C, dagger, parity)
        t1 = time.perf_counter()
        above, below = pending.finish()
        t2 = time.perf_counter()
        for mu in self.partitioned:
            self.face_add(out, above[mu], mu, 1, C, beta, dagger, parity)
            self.face_add(out, below[mu], mu, 0, C, beta, dagger, parity)
        PROFILE["seconds"] += time.perf_counter() - t0
        PROFILE["wait_seconds"] += t2 - t1
        PROFILE["calls"] += 1
        return out

    def parity_mask(self, parity):
        """``1`` on the interior sites of ``parity``, ``0`` elsewhere, shaped to multiply a spinor
        field (the lattice's cached mask, on this kernel's array module)."""
        return self.lattice.parity_sites(parity, self.xp)[0][..., None, None]

    def apply_blocks(self, blocks, psi, parity=None):
        """``blocks(x) psi(x)`` on ``parity`` (all if None), zero elsewhere, on the array module:
        a site-local product, the same for every implementation."""
        out = apply_blocks(blocks, psi)
        if parity is not None:
            out *= self.parity_mask(parity)
        return out

    # -- what an implementation provides -------------------------------------------------------
    @abc.abstractmethod
    def pack(self, psi, mu, side, parity, dagger):
        """Face buffer ``(V / L_mu, 2, 3)``: side 0 ``P_f psi`` at ``x_mu = 0``, side 1 ``U^dag P_b psi``
        at ``x_mu = L_mu - 1`` (only sites of ``parity`` need be filled)."""

    @abc.abstractmethod
    def bulk(self, psi, chi, alpha, B, beta, C, dagger, parity):
        """``out`` with every hop that stays on this rank (wraps of unpartitioned directions too)."""

    @abc.abstractmethod
    def face_add(self, out, buf, mu, side, C, beta, dagger, parity):
        """Add the hops from a received face buffer to the face ``x_mu = L-1`` (side 1) or 0 (side 0)."""


def apply_blocks(blocks, psi):
    """Apply site-diagonal ``(..., 2, 6, 6)`` chiral blocks to a spinor field ``(..., 4, 3)``."""
    v = psi.reshape(psi.shape[:-2] + (2, 6, 1))
    return (blocks @ v).reshape(psi.shape)


def pack_hermitian(M, xp):
    """Hermitian ``(..., 2, 6, 6)`` blocks packed as the fused kernels read them: ``(..., 2, 18)``
    complex, the 6 real diagonal entries in the first 3 slots (pairs as re, im), then the 15 entries
    below the diagonal row by row (``numpy.tril_indices(6, -1)`` order)."""
    d = xp.ascontiguousarray(xp.diagonal(M, axis1=-2, axis2=-1).real)
    rows, cols = (xp.asarray(i) for i in np.tril_indices(6, -1))
    out = xp.empty(M.shape[:-2] + (18,), dtype=M.dtype)
    out[..., :3] = d[..., 0::2] + 1j * d[..., 1::2]
    out[..., 3:] = M[..., rows, cols]
    return out


class PackedBlocks:
    """Packed copies of an operator's clover blocks (``A`` and ``A^{-1}``), made once each.

    Only the operator's own block arrays are cached (by identity, holding a reference so the
    identity stays theirs); any other array is packed on each call.
    """

    def __init__(self, op, xp):
        self.op, self.xp, self.cache = op, xp, {}

    def __call__(self, M):
        if M is None:
            return None
        if not (M is self.op.clover or M is self.op._clover_inv):
            return pack_hermitian(M, self.xp)
        key = id(M)
        if key not in self.cache:
            self.cache[key] = (M, pack_hermitian(M, self.xp))
        return self.cache[key][1]
