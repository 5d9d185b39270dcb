"""SU(N): Haar-random elements, projection to the group, algebra projection and exponential.

All functions act on stacks of N x N complex matrices (leading axes are sites, directions, ...).
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module
from .linalg import dagger, det, gram_schmidt_rows, trace


class SUN:
    """The group SU(N).

    Attributes:
        N: matrix size; ``name``: ``"SU3"`` etc.; ``dim``: ``N^2 - 1`` (algebra dimension).
    """

    def __init__(self, N: int):
        if N < 2:
            raise ValueError("SU(N) needs N >= 2")
        self.N = int(N)
        self.name = f"SU{self.N}"
        self.dim = self.N * self.N - 1

    def __repr__(self):
        return f"SUN({self.N})"

    # number of normal / uniform variates per element consumed by the random constructors
    @property
    def haar_normals(self) -> int:
        return 2 * self.N * self.N

    def identity(self, shape, xp=np, dtype=np.complex128):
        """Identity matrices of leading shape ``shape``."""
        out = xp.zeros(tuple(shape) + (self.N, self.N), dtype=dtype)
        for i in range(self.N):
            out[..., i, i] = 1
        return out

    def haar(self, normals, dtype=np.complex128):
        """Haar-random SU(N) elements from ``2 N^2`` standard normals per element (last axis).

        Gram-Schmidt of a complex Gaussian matrix is Haar on U(N) (Mezzadri, math-ph/0609050);
        dividing by ``det^(1/N)`` maps it to SU(N) up to a centre element, which keeps Haar measure.
        """
        N = self.N
        z = (normals[..., : N * N] + 1j * normals[..., N * N: 2 * N * N]).reshape(
            normals.shape[:-1] + (N, N))
        return self._fix_det(gram_schmidt_rows(z.astype(dtype)))

    def project(self, m):
        """Project matrices back to SU(N): Gram-Schmidt on the rows, then divide out ``det^(1/N)``.

        Used to remove rounding drift after many multiplications; on an element of SU(N) it is the
        identity map up to rounding.
        """
        return self._fix_det(gram_schmidt_rows(m))

    def _fix_det(self, u):
        xp = array_module(u)
        phase = xp.angle(det(u)) / self.N
        return u * xp.exp(-1j * phase)[..., None, None].astype(u.dtype)

    def project_algebra(self, m):
        """Traceless anti-Hermitian part: ``(m - m^dag)/2 - Tr(m - m^dag)/(2N)``.

        For anti-Hermitian traceless ``X``: ``Re Tr(X m) = Re Tr(X project_algebra(m))``.
        """
        a = 0.5 * (m - dagger(m))
        tr = trace(a) / self.N
        out = a.copy()
        for i in range(self.N):
            out[..., i, i] -= tr
        return out

    def algebra(self, coeffs):
        """``X = sum_a x_a T^a`` from ``N^2 - 1`` real coefficients per element (last axis).

        ``T^a = i lambda^a / 2`` with generalised Gell-Mann matrices ``lambda^a``: the symmetric and
        antisymmetric off-diagonal ones, then the diagonal ``sqrt(2/(l(l+1))) diag(1,..,1,-l,0,..)``.
        """
        xp = array_module(coeffs)
        N = self.N
        h = xp.zeros(coeffs.shape[:-1] + (N, N), dtype=np.complex128)
        a = 0
        for j in range(N):
            for k in range(j + 1, N):
                s, t = coeffs[..., a], coeffs[..., a + 1]
                h[..., j, k] = 0.5 * (s - 1j * t)
                h[..., k, j] = 0.5 * (s + 1j * t)
                a += 2
        for ell in range(1, N):
            c = coeffs[..., a] * (0.5 * np.sqrt(2.0 / (ell * (ell + 1))))
            for i in range(ell):
                h[..., i, i] += c
            h[..., ell, ell] -= ell * c
            a += 1
        return 1j * h

    def exp(self, x):
        """``exp(X)`` for anti-Hermitian traceless ``X``, exact to rounding.

        SU(3): the Cayley-Hamilton form of Morningstar and Peardon (hep-lat/0311018, eqs. 19-33),
        ``exp(iQ) = f0 + f1 Q + f2 Q^2`` with ``Q = -iX``, elementwise on the stack (no
        eigensolver).  Other ``N``: with ``X = i H`` and ``H = V diag(w) V^dag`` (Hermitian
        eigendecomposition), ``exp(X) = V diag(e^{i w}) V^dag``.  Both are unitary with
        determinant 1 to rounding.
        """
        xp = array_module(x)
        h = -1j * x
        h = 0.5 * (h + dagger(h))
        if self.N == 3:
            return _exp_su3(h, xp).astype(x.dtype, copy=False)
        w, v = xp.linalg.eigh(h)
        return (v * xp.exp(1j * w)[..., None, :]) @ dagger(v)

    def unitarity_violation(self, u):
        """``max |U U^dag - 1|`` and ``max |det U - 1|`` over the stack."""
        xp = array_module(u)
        eye = self.identity((), xp, u.dtype)
        return (float(xp.abs(u @ dagger(u) - eye).max()), float(xp.abs(det(u) - 1).max()))


def _exp_su3(Q, xp):
    """``exp(iQ)`` for Hermitian traceless 3x3 ``Q`` (Morningstar and Peardon, hep-lat/0311018).

    ``c0 = det Q = Tr Q^3 / 3``, ``c1 = Tr Q^2 / 2``, ``theta = arccos(|c0| / c0_max)`` with
    ``c0_max = 2 (c1/3)^(3/2)``, ``u = sqrt(c1/3) cos(theta/3)``, ``w = sqrt(c1) sin(theta/3)``;
    ``f_j = h_j / (9 u^2 - w^2)`` with the ``h_j`` of their eq. (30), and for ``c0 < 0`` the
    symmetry ``f_j(-c0) = (-1)^j conj(f_j(c0))``.  ``9 u^2 - w^2 >= 2 c1 > 0`` for
    ``theta <= pi/2``; ``Q = 0`` (``c1 = 0``) is handled by its Taylor series.
    """
    Q = Q.astype(np.complex128)
    Q2 = Q @ Q
    c1 = 0.5 * trace(Q2).real
    c0 = (trace(Q2 @ Q).real) / 3.0
    small = c1 < 1e-30
    c1s = xp.where(small, 1.0, c1)
    c0max = 2.0 * (c1s / 3.0) ** 1.5
    neg = c0 < 0
    theta = xp.arccos(xp.clip(xp.abs(c0) / c0max, 0.0, 1.0))
    u = xp.sqrt(c1s / 3.0) * xp.cos(theta / 3.0)
    w = xp.sqrt(c1s) * xp.sin(theta / 3.0)
    w2 = w * w
    xi0 = xp.where(w2 < 1e-4, 1.0 - w2 / 6.0 * (1.0 - w2 / 20.0 * (1.0 - w2 / 42.0)),
                   xp.sin(w) / xp.where(w2 < 1e-4, 1.0, w))
    e2iu, emiu = xp.exp(2j * u), xp.exp(-1j * u)
    cw = xp.cos(w)
    h0 = (u * u - w2) * e2iu + emiu * (8 * u * u * cw + 2j * u * (3 * u * u + w2) * xi0)
    h1 = 2 * u * e2iu - emiu * (2 * u * cw - 1j * (3 * u * u - w2) * xi0)
    h2 = e2iu - emiu * (cw + 3j * u * xi0)
    den = 9 * u * u - w2
    f0, f1, f2 = h0 / den, h1 / den, h2 / den
    f0 = xp.where(neg, xp.conj(f0), f0)
    f1 = xp.where(neg, -xp.conj(f1), f1)
    f2 = xp.where(neg, xp.conj(f2), f2)
    f0 = xp.where(small, 1.0, f0)  # Q = 0: exp(iQ) = 1 + iQ - Q^2 / 2 to the order that remains
    f1 = xp.where(small, 1j, f1)
    f2 = xp.where(small, -0.5, f2)
    eye = xp.eye(3, dtype=np.complex128)
    return f0[..., None, None] * eye + f1[..., None, None] * Q + f2[..., None, None] * Q2
