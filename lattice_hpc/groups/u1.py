"""U(1), stored as 1 x 1 complex matrices ``U = exp(i theta)``.

The algebra is ``i R``; its generator is ``T = i / sqrt(2)`` so that ``-Tr T^2 = 1/2`` as for SU(N).
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module


class U1:
    """The group U(1)."""

    N = 1
    name = "U1"
    dim = 1
    haar_normals = 0

    def __repr__(self):
        return "U1()"

    def identity(self, shape, xp=np, dtype=np.complex128):
        return xp.ones(tuple(shape) + (1, 1), dtype=dtype)

    def from_angle(self, theta, dtype=np.complex128):
        """``exp(i theta)`` as 1 x 1 matrices."""
        xp = array_module(theta)
        return xp.exp(1j * theta).astype(dtype)[..., None, None]

    def angle(self, u):
        """The angle ``theta`` in (-pi, pi] of each element."""
        xp = array_module(u)
        return xp.angle(u[..., 0, 0])

    def haar_from_uniform(self, u, dtype=np.complex128):
        """Uniform (Haar) elements ``exp(2 pi i u)`` from uniforms ``u`` in (0, 1)."""
        return self.from_angle(2.0 * np.pi * u - np.pi, dtype)

    def project(self, m):
        """``m / |m|``."""
        xp = array_module(m)
        return m / xp.abs(m)

    def project_algebra(self, m):
        """Anti-Hermitian part ``i Im m`` (U(1) has no traceless condition)."""
        return 1j * m.imag

    def algebra(self, coeffs):
        """``X = x T`` with ``T = i / sqrt 2``, from one coefficient per element (last axis)."""
        return (1j / np.sqrt(2.0)) * coeffs[..., 0:1, None].astype(np.complex128)

    def exp(self, x):
        xp = array_module(x)
        return xp.exp(x)

    def unitarity_violation(self, u):
        xp = array_module(u)
        return (float(xp.abs(xp.abs(u) - 1).max()), 0.0)
