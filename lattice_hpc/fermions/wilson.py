"""The Wilson(-clover) Dirac operator in kappa normalization: the reference implementation.

Conventions (CONVENTIONS.md)::

    D psi(x) = A(x) psi(x) - kappa H psi(x),
    H psi(x) = sum_mu [ (1 - gamma_mu) U_mu(x) psi(x + mu) + (1 + gamma_mu) U_mu(x - mu)^dag psi(x - mu) ]
    A(x) = 1 + 2 kappa c_sw (i/4) sum_{mu, nu} sigma_{mu nu} F_{mu nu}(x)       (A = 1 for Wilson)

with the clover-leaf field strength ``F_{mu nu} = (1/8)(Q_{mu nu} - Q_{nu mu})`` (openQCD
``doc/dirac.pdf``), DeGrand-Rossi gammas (:mod:`.gamma`), and a phase per direction for hops
across the global boundary (default: periodic in space, antiperiodic in time).  ``D^dag`` is the
same with ``gamma_mu -> -gamma_mu`` (so ``D^dag = gamma_5 D gamma_5``, which the tests check
against the explicit form).  ``A`` commutes with ``gamma_5 = diag(1, 1, -1, -1)``: it is stored
as two 6x6 blocks per site (spins 0,1 and 2,3 with their colours).

Spinor fields are local arrays ``(L_t, ..., L_x, 4, 3)`` (memory order, no halo) on the backend's
array module; this module is written on that module only (NumPy or CuPy).

Communication: the hopping term projects each spinor to half spinors (2 spins x 3 colours) with
``1 -/+ gamma_mu = R P`` (:func:`.gamma.projector`), packs the faces of the partitioned
directions -- ``P_- psi`` of the lower face (needed at ``-mu``) and ``U^dag P_+ psi`` of the upper
face (needed at ``+mu``) -- and hands them to :class:`lattice_hpc.comm.FaceExchange`: half the
bytes of a spinor halo, and no gauge-field halo at all.  The interior sites are computed while the
faces travel; the face sites follow.  Directions that are not partitioned wrap on-rank.
"""

from __future__ import annotations

import numpy as np

from ..comm.faces import FaceExchange
from ..gauge import GaugeField
from ..groups.linalg import dagger
from .gamma import GAMMA5, projector, sigma

SPIN, COLOR = 4, 3


def _sl(ax: int, sl) -> tuple:
    """Index selecting ``sl`` along memory axis ``ax``."""
    return (slice(None),) * ax + (sl,)


class WilsonDirac:
    """``D``, ``D^dag``, ``gamma_5`` and the hopping term on a decomposed lattice.

    Args:
        U: the gauge field (its halo is refreshed here, collectively, when ``csw != 0``).
        kappa: hopping parameter, ``kappa = 1 / (2 m0 + 8)``.
        csw: clover coefficient (0 for plain Wilson fermions).
        bc: phase per direction for hops across the global boundary (default ``+1`` in space,
            ``-1`` in time).
    """

    def __init__(self, U: GaugeField, kappa: float, csw: float = 0.0, bc=None):
        lat = U.lattice
        if U.N != COLOR or lat.ndim != 4:
            raise ValueError("Wilson fermions are implemented for 4D SU(3) gauge fields")
        self.lattice, self.kappa, self.csw = lat, float(kappa), float(csw)
        self.backend = U.backend
        xp = self.xp = U.backend.xp
        self.dtype = U.backend.complex
        self.bc = tuple(bc) if bc is not None else (1,) * (lat.ndim - 1) + (-1,)
        self.links = [xp.ascontiguousarray(U.U(mu)) for mu in range(lat.ndim)]
        self.links_dag = [xp.ascontiguousarray(dagger(u)) for u in self.links]
        self.faces = FaceExchange(lat.grid)
        self.partitioned = set(self.faces.directions)
        self.upper_boundary = [o + L == D for o, L, D in zip(lat.origin, lat.local_dims, lat.dims)]
        self.lower_boundary = [o == 0 for o in lat.origin]
        self._proj = {(mu, s): tuple(xp.asarray(m, dtype=self.dtype) for m in projector(mu, s))
                      for mu in range(lat.ndim) for s in (1, -1)}
        self._g5 = xp.asarray(np.diag(GAMMA5).real.reshape(SPIN, 1), dtype=U.backend.real)
        self.clover = self._clover_blocks(U) if self.csw else None

    # -- fields ------------------------------------------------------------------------------
    def shape(self) -> tuple:
        return self.lattice.shape(0) + (SPIN, COLOR)

    def zeros(self):
        return self.xp.zeros(self.shape(), dtype=self.dtype)

    def gamma5(self, psi):
        """``gamma_5 psi`` (diagonal in this basis)."""
        return psi * self._g5

    # -- the operator ------------------------------------------------------------------------
    def apply(self, psi):
        """Collective: ``D psi``."""
        return self.diagonal(psi) - self.kappa * self.hop(psi)

    def apply_dagger(self, psi):
        """Collective: ``D^dag psi`` (``gamma_mu -> -gamma_mu``; ``A`` is Hermitian)."""
        return self.diagonal(psi) - self.kappa * self.hop(psi, dagger=True)

    def normal(self, psi):
        """Collective: ``D^dag D psi``."""
        return self.apply_dagger(self.apply(psi))

    def diagonal(self, psi):
        """``A psi`` (the site-diagonal part)."""
        if self.clover is None:
            return psi.copy()
        return apply_blocks(self.clover, psi)

    def hop(self, psi, dagger: bool = False):
        """Collective: ``H psi`` (``dagger``: with ``gamma_mu -> -gamma_mu``)."""
        xp = self.xp
        nd = self.lattice.ndim
        sf = -1 if dagger else 1  # forward hop projects with (1 - sf gamma_mu)
        out = xp.zeros_like(psi)
        fwd, bwd, lower, upper = {}, {}, {}, {}
        for mu in range(nd):
            ax = nd - 1 - mu
            Pf, _ = self._proj[(mu, sf)]
            Pb, _ = self._proj[(mu, -sf)]
            fwd[mu] = xp.matmul(Pf, psi)  # P psi(x): multiplied by U_mu(x - mu) at the receiver
            bwd[mu] = xp.matmul(xp.matmul(Pb, psi), _T(self.links_dag[mu]))  # U^dag P psi(x)
            if mu in self.partitioned:
                lower[mu] = xp.ascontiguousarray(fwd[mu][_sl(ax, 0)])
                upper[mu] = xp.ascontiguousarray(bwd[mu][_sl(ax, -1)])
        pending = self.faces.start(lower, upper)
        for mu in range(nd):  # interior (and on-rank wraps) while the faces travel
            self._accumulate(out, mu, fwd[mu], bwd[mu], sf, None, None)
        above, below = pending.finish()
        for mu in sorted(self.partitioned):
            self._accumulate(out, mu, fwd[mu], bwd[mu], sf, above[mu], below[mu])
        return out

    def _accumulate(self, out, mu, h, g, sf, from_above, from_below):
        """Add the hops along ``mu``: bulk sites (``from_* is None``) or the two face layers."""
        xp = self.xp
        nd = self.lattice.ndim
        ax = nd - 1 - mu
        L = self.lattice.local_dims[mu]
        _, Rf = self._proj[(mu, sf)]
        _, Rb = self._proj[(mu, -sf)]
        U = self.links[mu]
        if from_above is None:
            if mu in self.partitioned:
                # forward hop for x_mu < L-1 and backward hop for x_mu > 0 stay on this rank
                lo, hi = _sl(ax, slice(0, L - 1)), _sl(ax, slice(1, L))
                out[lo] += xp.matmul(Rf, xp.matmul(h[hi], _T(U[lo])))
                out[hi] += xp.matmul(Rb, g[lo])
                return
            hn = xp.roll(h, -1, axis=ax)  # psi(x + mu), wrapping on-rank
            gp = xp.roll(g, 1, axis=ax)   # U^dag psi(x - mu)
            if self.bc[mu] != 1:  # the wrap is the global boundary
                hn[_sl(ax, -1)] *= self.bc[mu]
                gp[_sl(ax, 0)] *= np.conj(self.bc[mu])
            out += xp.matmul(Rf, xp.matmul(hn, _T(U)))
            out += xp.matmul(Rb, gp)
            return
        top, bottom = _sl(ax, slice(L - 1, L)), _sl(ax, slice(0, 1))
        hn = xp.expand_dims(from_above, ax)
        gp = xp.expand_dims(from_below, ax)
        if self.upper_boundary[mu] and self.bc[mu] != 1:
            hn = hn * self.bc[mu]
        if self.lower_boundary[mu] and self.bc[mu] != 1:
            gp = gp * np.conj(self.bc[mu])
        out[top] += xp.matmul(Rf, xp.matmul(hn, _T(U[top])))
        out[bottom] += xp.matmul(Rb, gp)

    # -- clover --------------------------------------------------------------------------------
    def _clover_blocks(self, U: GaugeField):
        """``A = 1 + 2 kappa c_sw (i/4) sum_{mu,nu} sigma_{mu nu} F_{mu nu}`` as ``(..., 2, 6, 6)``."""
        xp = self.xp
        U.refresh()  # collective: the leaves reach x +/- mu +/- nu
        c = 2.0 * self.kappa * self.csw * 0.25j * 2.0  # sum over mu<nu counts each pair twice
        shape = self.lattice.shape(0)
        A = xp.zeros(shape + (2, 6, 6), dtype=self.dtype)
        for mu in range(4):
            for nu in range(mu + 1, 4):
                F = field_strength(U, mu, nu)
                s = sigma(mu, nu)
                for b in range(2):
                    sb = xp.asarray(s[2 * b:2 * b + 2, 2 * b:2 * b + 2], dtype=self.dtype)
                    A[..., b, :, :] += c * xp.einsum("ab,...ij->...aibj", sb, F).reshape(shape + (6, 6))
        A += xp.eye(6, dtype=self.dtype)
        return A


def _T(m):
    """Transpose of the colour matrices: ``h @ U^T`` applies ``U`` to the colour index of ``h``."""
    return m.swapaxes(-1, -2)


def apply_blocks(blocks, psi):
    """Apply site-diagonal ``(..., 2, 6, 6)`` chiral blocks to a spinor field ``(..., 4, 3)``."""
    v = psi.reshape(psi.shape[:-2] + (2, 6, 1))
    return (blocks @ v).reshape(psi.shape)


def field_strength(U: GaugeField, mu: int, nu: int):
    """Clover-leaf ``F_{mu nu}(x) = (1/8)(Q_{mu nu} - Q_{nu mu})`` over the interior (halo codim 2)."""
    def u(d, shift=None):
        return U.U(d, shift)

    def dg(m):
        return dagger(m)

    m_, n_ = {mu: -1}, {nu: -1}
    mn = {mu: -1, nu: -1}
    Q = (u(mu) @ u(nu, {mu: 1}) @ dg(u(mu, {nu: 1})) @ dg(u(nu))
         + u(nu) @ dg(u(mu, {mu: -1, nu: 1})) @ dg(u(nu, m_)) @ u(mu, m_)
         + dg(u(mu, m_)) @ dg(u(nu, mn)) @ u(mu, mn) @ u(nu, n_)
         + dg(u(nu, n_)) @ u(mu, n_) @ u(nu, {mu: 1, nu: -1}) @ dg(u(mu)))
    return (Q - dg(Q)) / 8.0
