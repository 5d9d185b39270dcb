"""The reference hopping kernel, written on the array module (NumPy or CuPy): the definition that
the fused kernels are tested against.

Each hop projects with ``1 - s gamma_mu = R P`` (:func:`lattice_hpc.fermions.gamma.projector`),
multiplies the 2-spin half spinor by the link and rebuilds 4 spins with ``R``.  Hops that stay on
the rank (and wraps of unpartitioned directions, with the boundary phase) are whole-array shifts;
face sites of partitioned directions get the received buffers in :meth:`face_add`.
"""

from __future__ import annotations

import numpy as np

from ...groups.linalg import dagger as _dagger
from ..gamma import projector
from .base import Hopping, apply_blocks


def _sl(ax: int, sl) -> tuple:
    """Index selecting ``sl`` along memory axis ``ax``."""
    return (slice(None),) * ax + (sl,)


def _T(m):
    """Transpose of the colour matrices: ``h @ U^T`` applies ``U`` to the colour index of ``h``."""
    return m.swapaxes(-1, -2)


class ReferenceHopping(Hopping):
    name = "reference"

    def __init__(self, op):
        super().__init__(op)
        xp, lat = self.xp, self.lattice
        self.links = op.links
        self.links_dag = [xp.ascontiguousarray(_dagger(u)) for u in op.links]
        self.proj = {(mu, s): tuple(xp.asarray(m, dtype=op.dtype) for m in projector(mu, s, lat.ndim))
                     for mu in range(lat.ndim) for s in (1, -1)}

    def _axis(self, mu):
        return self.lattice.ndim - 1 - mu

    def pack(self, psi, mu, side, parity, dagger):
        xp, ax = self.xp, self._axis(mu)
        sf = -1 if dagger else 1
        if side == 0:
            P, _ = self.proj[(mu, sf)]
            return xp.ascontiguousarray(xp.matmul(P, psi[_sl(ax, 0)]))
        P, _ = self.proj[(mu, -sf)]
        face = _sl(ax, -1)
        return xp.ascontiguousarray(xp.matmul(xp.matmul(P, psi[face]), _T(self.links_dag[mu][face])))

    def bulk(self, psi, chi, alpha, B, beta, C, dagger, parity):
        xp, lat, op = self.xp, self.lattice, self.op
        sf = -1 if dagger else 1
        acc = xp.zeros_like(psi)
        for mu in range(lat.ndim):
            ax, L = self._axis(mu), lat.local_dims[mu]
            Pf, Rf = self.proj[(mu, sf)]
            Pb, Rb = self.proj[(mu, -sf)]
            U = self.links[mu]
            h = xp.matmul(Pf, psi)  # P psi(x), multiplied by U_mu(x - mu) where it is used
            g = xp.matmul(xp.matmul(Pb, psi), _T(self.links_dag[mu]))  # U^dag P psi(x)
            if mu in self.partitioned:  # hops that stay on this rank
                lo, hi = _sl(ax, slice(0, L - 1)), _sl(ax, slice(1, L))
                acc[lo] += xp.matmul(Rf, xp.matmul(h[hi], _T(U[lo])))
                acc[hi] += xp.matmul(Rb, g[lo])
                continue
            hn = xp.roll(h, -1, axis=ax)  # psi(x + mu), wrapping on-rank
            gp = xp.roll(g, 1, axis=ax)   # U^dag psi(x - mu)
            if op.bc[mu] != 1:  # the wrap is the global boundary
                hn[_sl(ax, -1)] *= op.bc[mu]
                gp[_sl(ax, 0)] *= np.conj(op.bc[mu])
            acc += xp.matmul(Rf, xp.matmul(hn, _T(U)))
            acc += xp.matmul(Rb, gp)
        out = beta * (acc if C is None else apply_blocks(C, acc))
        if alpha != 0:
            out += alpha * (chi if B is None else apply_blocks(B, chi))
        if parity is not None:
            out *= self.parity_mask(parity)
        return out

    def face_add(self, out, buf, mu, side, C, beta, dagger, parity):
        xp, op, ax, L = self.xp, self.op, self._axis(mu), self.lattice.local_dims[mu]
        sf = -1 if dagger else 1
        if side == 1:
            face = _sl(ax, slice(L - 1, L))
            _, R = self.proj[(mu, sf)]
            hn = xp.expand_dims(buf, ax)
            if op.upper_boundary[mu] and op.bc[mu] != 1:
                hn = hn * op.bc[mu]
            contrib = xp.matmul(R, xp.matmul(hn, _T(self.links[mu][face])))
        else:
            face = _sl(ax, slice(0, 1))
            _, R = self.proj[(mu, -sf)]
            gp = xp.expand_dims(buf, ax)
            if op.lower_boundary[mu] and op.bc[mu] != 1:
                gp = gp * np.conj(op.bc[mu])
            contrib = xp.matmul(R, gp)
        if C is not None:
            contrib = apply_blocks(C[face], contrib)
        contrib = beta * contrib
        if parity is not None:
            contrib = contrib * self.parity_mask(parity)[face]
        out[face] += contrib
