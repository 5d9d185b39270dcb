"""The derivative of the even/odd preconditioned Wilson(-clover) operator w.r.t. the links.

Link variation and force convention (:mod:`lattice_hpc.gauge.action`, :mod:`.monomials`): under
``U_mu(x) -> exp(eps X_mu(x)) U_mu(x)``, ``dU = eps X U`` and ``dU^dag = -eps U^dag X``.  Every
term below is written as ``d/d eps (...) = sum_{x,mu} Re Tr(X_mu(x) M_mu(x))`` for a colour
matrix field ``M``; the force is ``F = P_TA(M)`` (the group's ``project_algebra``), since
``Re Tr(X M) = Re Tr(X P_TA(M))`` for traceless anti-Hermitian ``X``.

**Hopping term.**  ``H b(x) = sum_mu (1 - g_mu) U_mu(x) b~(x+mu) + (1 + g_mu) U_mu(x-mu)^dag
b(x-mu)`` (``g_mu = gamma_mu``; ``f~(x+mu)`` is ``f(x+mu)`` times the boundary phase when the hop
crosses the global boundary; the backward hop carries the conjugate phase).  For spinor fields
``a, b``::

    d/d eps Re <a, H b> = sum Re Tr X_mu(x) [ U_mu(x) O_mu(x) - Q_mu(x) U_mu(x)^dag ],
    O_mu(x) = Tr_spin[(1 - g_mu) b~(x+mu) a(x)^dag],
    Q_mu(x) = Tr_spin[(1 + g_mu) b(x) a~(x+mu)^dag]

(colour outer products: ``O[j, i] = sum_s ((1 - g_mu) b~)_{s j} conj(a_{s i})``).  The first is
the forward hop ``x <- x+mu`` through ``U``, the second the backward hop ``x+mu <- x`` through
``U^dag`` (``dU^dag = -eps U^dag X`` gives its sign).  The shifted fields come from one halo
exchange (depth 1, faces) of all the spinors involved, with the boundary phase applied on the
top layer.

**Clover term.**  ``A(x) = 1 + c sum_{mu<nu} sigma_{mu nu} F_{mu nu}(x)`` (spin times colour)
with ``c = i kappa c_sw`` (:meth:`WilsonDirac._clover_blocks`).  An insertion
``Re Tr_{spin,colour}[dA(x) S(x)]`` (``S = r l^dag`` for ``Re <l, dA r>``; ``S = A^{-1}`` for
``d log det A``) is ``sum_{mu<nu} Re Tr[dF_{mu nu} L_{mu nu}]`` with
``L_{mu nu}[j, i] = c sum_{s,t} sigma_{mu nu, s t} S_{(t j), (s i)}``.  With
``F = (Q - Q^dag) / 8`` this is ``Re Tr[dQ_{mu nu} G_{mu nu}]``, ``G = (L - L^dag) / 8``.  The
clover ``Q_{mu nu}(x)`` is the sum of the four plaquettes ``P_{mu nu}(z) = a b c d`` that have
``x`` as a corner, each started at ``x`` (``a = U_mu(z)``, ``b = U_nu(z+mu)``,
``c = U_mu(z+nu)^dag``, ``d = U_nu(z)^dag``), so by cyclicity::

    sum_x Re Tr[Q(x) G(x)] = sum_z Re Tr[G(z) a b c d + a G(z+mu) b c d + a b G(z+mu+nu) c d
                                         + a b c G(z+nu) d].

``U_mu(y)`` is ``a`` of ``P_{mu nu}(y)`` and ``c`` of ``P_{mu nu}(y-nu)``, which gives, per
``nu != mu`` (``G_{nu mu} = G_{mu nu}^dag = -G_{mu nu}``: the plane counts once whether
``mu < nu`` or not)::

    M_mu(y) += U_mu(y) [ b c d G(y) + G(y+mu) b c d + b G(y+mu+nu) c d + b c G(y+nu) d ]
             - [ d' G(y-nu) a' b' + d' a' G(y-nu+mu) b' + d' a' b' G(y+mu)
                 + G(y) d' a' b' ] U_mu(y)^dag

with ``b = U_nu(y+mu)``, ``c = U_mu(y+nu)^dag``, ``d = U_nu(y)^dag`` and ``a' = U_mu(y-nu)``,
``b' = U_nu(y-nu+mu)``, ``d' = U_nu(y-nu)^dag``.  ``G`` at the neighbours comes from one halo
exchange (depth 1, faces and edges) of the six planes; the links from ``U.refresh()``.

**Schur complement.**  ``D_hat = A_ee - k^2 H_eo A_oo^{-1} H_oe`` (``k = kappa``) and
``d(A^{-1}) = -A^{-1} dA A^{-1}`` give, for even ``l, r`` and ``X_o = A_oo^{-1} H_oe r``,
``Y_o = A_oo^{-1} (H^dag)_oe l``::

    Re <l, dD_hat r> = -k^2 Re <l + Y_o, dH (r + X_o)> + Re <l, dA r>_e + k^2 Re <Y_o, dA X_o>_o

(the cross terms of the hopping part vanish by parity), i.e. one hopping insertion and one
clover insertion ``S = (r + X_o)(l + k^2 Y_o)^dag``.

Communication: the spinor and ``G`` halos go through ``lattice.halo(...).exchange`` (the
documented communication point) and the gauge halo through ``U.refresh()`` (done by the clover
construction of :class:`~lattice_hpc.fermions.WilsonDirac`; :meth:`GaugeField.U` refuses a stale
one); no reductions here.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from ..fermions.gamma import gammas, sigma, spin_count
from ..groups.linalg import dagger

EVEN, ODD = 0, 1


def clover_coefficient(D) -> complex:
    """``c`` in ``A = 1 + c sum_{mu<nu} sigma_{mu nu} F_{mu nu}``: ``2 kappa c_sw (i/4) * 2``."""
    return 1j * D.kappa * D.csw


class DiracDerivative:
    """Accumulates insertions ``w Re <l, dD r>`` (and clover traces), then gives the force.

    Args:
        U: the gauge field the operators were built from (the links of every operator added).
        bc: boundary phase per direction (the operators' ``bc``).

    Use :meth:`add_schur` (``w Re <l, dD_hat r>`` for a :class:`~lattice_hpc.fermions.WilsonDirac`
    ``D``), :meth:`add_logdet` (``w log det A`` on a parity), then :meth:`force` (collective).
    """

    def __init__(self, U, bc):
        self.U, self.lattice = U, U.lattice
        self.xp = U.backend.xp
        self.dtype = U.backend.complex
        self.bc = tuple(bc)
        self.pairs = []      # (coef, a, b): coef Re <a, dH b>
        self.Lam = None      # (6, *local, 3, 3): sum_p Re Tr[dF_p Lam_p], planes (0,1), (0,2), ...
        xp = self.xp
        nd = self.lattice.ndim
        self.spin, self.color = spin_count(nd), U.group.N
        G, eye = gammas(nd)[0], np.eye(self.spin)
        self.planes = list(combinations(range(nd), 2))
        self.sigma = [xp.asarray(sigma(mu, nu, nd), dtype=self.dtype) for mu, nu in self.planes]
        self.one_minus = [xp.asarray(eye - G[mu], dtype=self.dtype) for mu in range(nd)]
        self.one_plus = [xp.asarray(eye + G[mu], dtype=self.dtype) for mu in range(nd)]

    # -- insertions --------------------------------------------------------------------------
    def add_hopping(self, coef: float, a, b) -> None:
        """Adds ``coef Re <a, dH b>`` (full-lattice spinor fields)."""
        if coef != 0:
            self.pairs.append((float(coef), a, b))

    def _lam(self):
        if self.Lam is None:
            self.Lam = self.xp.zeros((len(self.planes),) + self.lattice.shape(0) + (self.color,) * 2,
                                     dtype=self.dtype)
        return self.Lam

    def add_clover_outer(self, c: complex, l, r) -> None:
        """Adds ``Re <l, dA r>`` for ``A = 1 + c sum_{mu<nu} sigma_{mu nu} F_{mu nu}``."""
        Lam = self._lam()
        lc = l.conj()
        for p, s in enumerate(self.sigma):
            Lam[p] += c * ((s @ r).swapaxes(-1, -2) @ lc)

    def add_clover_trace(self, c: complex, blocks, mask=None) -> None:
        """Adds ``Re sum_x Tr[dA(x) S(x)]``, ``S`` chiral blocks ``(..., 2, 6, 6)``, on ``mask``."""
        Lam = self._lam()
        C = self.color  # clover blocks exist for 4D SU(3) only
        S = blocks.reshape(blocks.shape[:-3] + (2, 2, C, 2, C))  # [b, a', j, a, i]
        if mask is not None:
            S = S * mask[..., None, None, None, None, None]
        for p, (mu, nu) in enumerate(self.planes):
            s = sigma(mu, nu)
            for b in range(2):
                for a in range(2):
                    for a2 in range(2):
                        v = s[2 * b + a, 2 * b + a2]  # sigma_{s t}, s = (b, a), t = (b, a2)
                        if v != 0:
                            Lam[p] += (c * v) * S[..., b, a2, :, a, :]

    def add_schur(self, D, l, r, weight: float) -> None:
        """Adds ``weight Re <l, dD_hat r>`` for even fields ``l, r`` (zero on odd sites)."""
        k2 = D.kappa ** 2
        X = D.dslash(r, None, 0.0, None, 1.0, D.clover_inv, False, ODD)   # A_oo^-1 H_oe r
        Y = D.dslash(l, None, 0.0, None, 1.0, D.clover_inv, True, ODD)    # A_oo^-1 H^dag_oe l
        self.add_hopping(-weight * k2, l + Y, r + X)
        if D.clover is not None:
            self.add_clover_outer(weight * clover_coefficient(D), l + k2 * Y, r + X)

    def add_logdet(self, D, weight: float, parity: int = ODD) -> None:
        """Adds ``weight d/d eps log det A_pp`` (``= weight Tr[A^{-1} dA]`` on parity ``pp``)."""
        if D.clover is None:
            return
        mask = self.lattice.parity_sites(parity, self.xp)[0].astype(D.backend.real)
        self.add_clover_trace(weight * clover_coefficient(D), D.clover_inv, mask)

    # -- the force ---------------------------------------------------------------------------
    def _shifted_up(self, padded, mu):
        """``f~(x + mu)`` from a padded field with a filled halo (leading axis kept)."""
        lat, xp = self.lattice, self.xp
        v = lat.view(padded, 1, {mu: 1}, lead=1)
        if self.bc[mu] != 1 and lat.origin[mu] + lat.local_dims[mu] == lat.dims[mu]:
            top = xp.asarray(lat.global_coords[mu] == lat.dims[mu] - 1)
            phase = xp.where(top, self.bc[mu], 1.0).astype(self.dtype)
            v = v * phase[..., None, None]
        return v

    def _hopping_matrices(self):
        """Per direction ``(O_mu, Q_mu)`` summed over the pairs, or None."""
        if not self.pairs:
            return None
        lat, xp = self.lattice, self.xp
        n = len(self.pairs)
        padded = xp.zeros((2 * n,) + lat.shape(1) + (self.spin, self.color), dtype=self.dtype)
        inner = lat.view(padded, 1, None, lead=1)
        for i, (_, a, b) in enumerate(self.pairs):
            inner[2 * i] = a
            inner[2 * i + 1] = b
        lat.halo(1, 1).exchange(padded, lead=1)  # collective
        out = []
        for mu in range(lat.ndim):
            up = self._shifted_up(padded, mu)
            O = Q = 0
            for i, (coef, a, b) in enumerate(self.pairs):
                O = O + coef * ((self.one_minus[mu] @ up[2 * i + 1]).swapaxes(-1, -2) @ a.conj())
                Q = Q + coef * (b.swapaxes(-1, -2) @ (self.one_plus[mu] @ up[2 * i]).conj())
            out.append((O, Q))
        return out

    def _clover_gamma(self):
        """``G_p = (L_p - L_p^dag) / 8`` with a filled halo (depth 1, codim 2), or None."""
        if self.Lam is None:
            return None
        lat, xp = self.lattice, self.xp
        G = xp.zeros((len(self.planes),) + lat.shape(1) + (self.color,) * 2, dtype=self.dtype)
        lat.view(G, 1, None, lead=1)[...] = (self.Lam - dagger(self.Lam)) / 8.0
        lat.halo(1, 2).exchange(G, lead=1)  # collective
        return G

    def matrices(self):
        """Collective: ``M_mu(x)`` with ``d/d eps (sum of insertions) = sum Re Tr(X M)``."""
        U, lat, xp = self.U, self.lattice, self.xp
        hop = self._hopping_matrices()
        G = self._clover_gamma()
        out = []
        for mu in range(lat.ndim):
            u = U.U(mu)
            M = xp.zeros(lat.shape(0) + (self.color,) * 2, dtype=self.dtype)
            if hop is not None:
                O, Q = hop[mu]
                M += u @ O - Q @ dagger(u)
            if G is not None:
                M += self._clover_matrix(G, mu)
            out.append(M)
        return out

    def _clover_matrix(self, G, mu):
        U, lat = self.U, self.lattice
        u = U.U(mu)
        up = 0
        down = 0
        for nu in range(lat.ndim):
            if nu == mu:
                continue
            Gp = G[self.planes.index((min(mu, nu), max(mu, nu)))]
            sign = 1.0 if mu < nu else -1.0  # G_{nu mu} = G_{mu nu}^dag = -G_{mu nu}

            def g(shift=None):
                return lat.view(Gp, 1, shift)

            b = U.U(nu, {mu: 1})
            c = dagger(U.U(mu, {nu: 1}))
            d = dagger(U.U(nu))
            cd = c @ d
            bc = b @ c
            bcd = b @ cd
            up_nu = (bcd @ g() + g({mu: 1}) @ bcd + b @ (g({mu: 1, nu: 1}) @ cd)
                     + bc @ (g({nu: 1}) @ d))
            a1 = U.U(mu, {nu: -1})
            b1 = U.U(nu, {nu: -1, mu: 1})
            d1 = dagger(U.U(nu, {nu: -1}))
            ab = a1 @ b1
            dab = d1 @ ab
            down_nu = (d1 @ (g({nu: -1}) @ ab) + (d1 @ a1) @ (g({nu: -1, mu: 1}) @ b1)
                       + dab @ g({mu: 1}) + g() @ dab)
            up = up + sign * up_nu
            down = down + sign * down_nu
        return u @ up - down @ dagger(u)

    def link_gradient(self):
        """Collective: the gradient ``g_mu(x)`` of the hopping insertions with respect to the links
        taken as unconstrained complex matrices, in PyTorch's convention for a real function of
        complex inputs: ``d (sum of insertions) = sum_{x, mu} Re Tr[g_mu(x)^dag dU_mu(x)]``.

        The insertions are linear in ``U`` (forward hops) and in ``U^dag`` (backward hops):
        ``d Re <a, H b> = Re Tr(dU O) + Re Tr(dU^dag Q)`` (the module docstring's ``O``, ``Q``),
        so ``g = O^dag + Q``.  On the group, ``dU = X U`` gives back :meth:`matrices`.  Shape
        ``(ndim, *local, N, N)``; hopping insertions only (no clover term)."""
        if self.Lam is not None:
            raise ValueError("link_gradient covers the hopping term only; with clover insertions "
                             "use force() (the algebra-projected derivative)")
        xp, lat = self.xp, self.lattice
        hop = self._hopping_matrices()
        if hop is None:
            return xp.zeros((lat.ndim,) + lat.shape(0) + (self.color,) * 2, dtype=self.dtype)
        return xp.stack([dagger(O) + Q for O, Q in hop])

    def force(self):
        """Collective: ``F = P_TA(M)``, shape ``(ndim, *local, N, N)`` (for U(1): ``i Im M``)."""
        group = self.U.group
        return self.xp.stack([group.project_algebra(M) for M in self.matrices()])


__all__ = ["DiracDerivative", "clover_coefficient"]
