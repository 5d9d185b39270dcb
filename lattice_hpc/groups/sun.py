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

        With ``X = i H`` and ``H = V diag(w) V^dag`` (Hermitian eigendecomposition),
        ``exp(X) = V diag(e^{i w}) V^dag``; it is unitary with determinant ``e^{i Tr H} = 1``.
        """
        xp = array_module(x)
        h = -1j * x
        h = 0.5 * (h + dagger(h))
        w, v = xp.linalg.eigh(h)
        return (v * xp.exp(1j * w)[..., None, :]) @ dagger(v)

    def unitarity_violation(self, u):
        """``max |U U^dag - 1|`` and ``max |det U - 1|`` over the stack."""
        xp = array_module(u)
        eye = self.identity((), xp, u.dtype)
        return (float(xp.abs(u @ dagger(u) - eye).max()), float(xp.abs(det(u) - 1).max()))
