"""A unit-determinant approximation of the even/odd Wilson operator: ``M_0 = (1 - k^2 L)(1 - k^2 R)``.

For Wilson fermions the Schur complement on the even sites is ``M = D_hat = 1 - k^2 K`` with
``K = H_eo H_oe`` (:mod:`.evenodd`; ``k = kappa``).  ``K`` connects an even site ``x`` to the
even sites ``y = x + d`` two hops away, ``d = s e_mu + t e_nu`` (``mu != nu``, or ``mu = nu``,
``s = t``: the back-tracking paths vanish, ``(1 - gamma)(1 + gamma) = 0``), so its diagonal is
zero on lattices with extents >= 4.  Ordering the even sites by their global lexicographic index
``g`` splits ``K = L + R`` into its strictly lower (``g(y) < g(x)``) and strictly upper parts, and

    M_0 = (1 - k^2 L)(1 - k^2 R) = M + k^4 L R,        det M_0 = 1

(each factor is unit triangular in that order).  ``M_0`` is gauge covariant (each path carries
its links), agrees with ``M`` to order ``k^4``, and its determinant is known exactly: the
tractable conditional density of pseudofermion proposals ``phi = M_0^dag eta``
(:mod:`lattice_hpc.flows.determinant`).  ``K`` is ``gamma_5``-Hermitian (``K^dag = gamma_5 K
gamma_5``, from ``H^dag = gamma_5 H gamma_5``), so ``L^dag = gamma_5 R gamma_5`` and
``M_0^dag = gamma_5 M_0 gamma_5``.

Each two-hop path term is one hop after another (``T_{mu,+} psi(x) = (1 - gamma_mu) U_mu(x)
psi(x + mu)``, ``T_{mu,-} psi(x) = (1 + gamma_mu) U_mu(x - mu)^dag psi(x - mu)``, with the boundary
phases of the operator), masked site by site by the order of ``x`` and ``x + d``.  The shifted
spinors come from depth-1 face exchanges (``lattice.halo``), the links from the gauge field's
halo: collective, any process grid.  The reference kernel's cost (``2 d (2 d - 1)`` path terms)
is fine for proposals; it is not a solver operator.

Learned coefficients (``coeffs``, :mod:`lattice_hpc.flows.conditional`): the two-hop paths fall
into two classes, straight (``d = 2 s e_mu``) and bent (``mu != nu``), and each triangle can carry
its own weight per class, ``L_c = c_{L,straight} L_straight + c_{L,bent} L_bent`` (likewise
``R_c``), ``M_c = (1 - k^2 L_c)(1 - k^2 R_c)``.  Every such ``M_c`` is still unit triangular
(``det M_c = 1`` for any real ``c``) and gauge covariant; ``c = 1`` is ``M_0``.  Reversing a
path keeps it straight or bent, so ``L_k^dag = gamma_5 R_k gamma_5`` class by class and
``M_c^dag = gamma_5 M_{c'} gamma_5`` with ``c'`` the two triangles' coefficients swapped
(:meth:`apply_dagger`; with ``c_L = c_R``, ``c' = c``).
"""

from __future__ import annotations

import numpy as np

from .gamma import gammas


class TriangularSchur:
    """``M_0 = (1 - k^2 L)(1 - k^2 R)`` of a Wilson :class:`~lattice_hpc.fermions.WilsonDirac`
    ``D`` (no clover term), on even-site spinor fields.  Every method is collective."""

    EVEN = 0

    def __init__(self, D, paths=None, coeffs=None):
        if D.clover is not None:
            raise ValueError("TriangularSchur is the Wilson operator's (csw = 0)")
        self.D, self.lattice, self.xp, self.kappa = D, D.lattice, D.xp, D.kappa
        nd = self.lattice.ndim
        G = gammas(nd)[0]
        eye = np.eye(G.shape[-1])
        self.proj = {(mu, s): self.xp.asarray(eye - s * G[mu], dtype=D.dtype)
                     for mu in range(nd) for s in (1, -1)}
        U = D.gauge_field
        U.refresh()
        self.fwd = [U.U(mu) for mu in range(nd)]                                    # U_mu(x)
        self.bwd = [U.U(mu, {mu: -1}).conj().swapaxes(-1, -2) for mu in range(nd)]  # U_mu(x-mu)^dag
        self.paths, self.even = paths if paths is not None else self.paths_of(self.lattice, self.xp)
        #: ``coeffs[lower][bent]``: the weight of each class of two-hop paths in each triangle
        self.coeffs = np.ones((2, 2)) if coeffs is None else np.asarray(coeffs, dtype=np.float64).reshape(2, 2)

    @staticmethod
    def paths_of(lattice, xp=np):
        """``(paths, even)``: the two-hop paths ``((mu, s), (nu, t), lower mask)`` (``psi(x + d)``
        reaches ``x``; the mask is ``g(x + d) < g(x)`` on the even sites) and the even-site mask,
        which depend on the lattice only: pass them to every operator on the same lattice."""
        lat = lattice
        if min(lat.dims) < 4:
            raise ValueError(f"TriangularSchur needs extents >= 4 (the two-hop paths must not "
                             f"return to their start), got {lat.dims}")
        nd, coords, dims, g = lat.ndim, lat.global_coords, lat.dims, lat.global_index

        def index_at(d):
            idx = np.zeros(lat.shape(0), dtype=np.int64)
            stride = 1
            for mu in range(nd):
                idx += ((coords[mu] + d[mu]) % dims[mu]) * stride
                stride *= dims[mu]
            return idx

        paths = []
        even = lat.parity_sites(TriangularSchur.EVEN, np)[0]
        for mu in range(nd):
            for s in (1, -1):
                for nu in range(nd):
                    for t in (1, -1):
                        if nu == mu and t == -s:
                            continue  # back-tracking: (1 - s g)(1 + s g) = 0
                        d = [0] * nd
                        d[mu] += s
                        d[nu] += t
                        lower = (index_at(d) < g) & even
                        paths.append(((mu, s), (nu, t), xp.asarray(lower[..., None, None])))
        return paths, xp.asarray(even[..., None, None])

    def _hop(self, psi, mu, s):
        """``T_{mu,s} psi`` on every site (collective: one face exchange)."""
        lat, xp, D = self.lattice, self.xp, self.D
        padded = xp.zeros(lat.shape(1) + psi.shape[lat.ndim:], dtype=psi.dtype)
        lat.view(padded, 1)[...] = psi
        lat.halo(1, 1).exchange(padded)
        nb = lat.view(padded, 1, {mu: s})
        bc = D.bc[mu]
        if bc != 1:
            top = lat.global_coords[mu] == (lat.dims[mu] - 1 if s == 1 else 0)
            if top.any():
                phase = np.where(top, bc if s == 1 else np.conj(bc), 1.0)
                nb = nb * xp.asarray(phase[..., None, None], dtype=psi.dtype)
        link = self.fwd[mu] if s == 1 else self.bwd[mu]
        return self.proj[(mu, s)] @ (nb @ link.swapaxes(-1, -2))

    def triangle_parts(self, psi, lower: bool):
        """``[X_straight psi, X_bent psi]`` with ``X = L`` (``lower``) or ``R``, unweighted, for
        an even-site field ``psi`` (zero on odd sites); collective."""
        first = {}
        out = [self.xp.zeros_like(psi), self.xp.zeros_like(psi)]
        for (mu, s), (nu, t), mask in self.paths:
            if (nu, t) not in first:
                first[(nu, t)] = self._hop(psi, nu, t)  # on the odd sites
            term = self._hop(first[(nu, t)], mu, s)
            out[int(mu != nu)] += term * (mask if lower else (self.even & ~mask))
        return out

    def _triangle(self, psi, lower: bool, coeffs=None):
        """``L_c psi`` (``lower``) or ``R_c psi`` (module docstring)."""
        c = (self.coeffs if coeffs is None else coeffs)[int(bool(lower))]
        straight, bent = self.triangle_parts(psi, lower)
        return float(c[0]) * straight + float(c[1]) * bent

    def apply(self, psi, coeffs=None):
        """``M_c psi = (1 - k^2 L_c)(1 - k^2 R_c) psi``."""
        k2 = self.kappa ** 2
        r = psi - k2 * self._triangle(psi, False, coeffs)
        return r - k2 * self._triangle(r, True, coeffs)

    def apply_dagger(self, psi):
        """``M_c^dag psi = gamma_5 M_c' gamma_5 psi`` with ``c'`` the coefficients of the two
        triangles swapped (``L^dag = gamma_5 R gamma_5`` path class by path class, applied in
        the reverse order: ``M_c^dag = (1 - k^2 R_c^dag)(1 - k^2 L_c^dag)``)."""
        D, c = self.D, self.coeffs
        return D.gamma5(self.apply(D.gamma5(psi), np.stack([c[1], c[0]])))


__all__ = ["TriangularSchur"]
