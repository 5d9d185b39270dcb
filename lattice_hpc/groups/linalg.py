"""Small-matrix helpers on stacks of matrices (last two axes), for NumPy and CuPy arrays."""

from __future__ import annotations

from ..backend import array_module


def dagger(m):
    """Hermitian conjugate of the last two axes."""
    return m.conj().swapaxes(-1, -2)


def trace(m):
    """Trace over the last two axes."""
    return m.diagonal(axis1=-2, axis2=-1).sum(axis=-1)


def retrace(m):
    """Real part of the trace."""
    return trace(m).real


def gram_schmidt_rows(m):
    """Orthonormalise the rows of each matrix (modified Gram-Schmidt), returning a unitary stack.

    Equivalent to the ``Q`` of a QR decomposition with a positive real ``R`` diagonal, so applied to a
    matrix of i.i.d. complex Gaussians it gives a Haar-distributed element of U(N).
    """
    xp = array_module(m)
    n = m.shape[-1]
    rows = []
    for i in range(n):
        v = m[..., i, :]
        for u in rows:
            v = v - (u.conj() * v).sum(axis=-1, keepdims=True) * u
        v = v / xp.sqrt((v.conj() * v).real.sum(axis=-1, keepdims=True))
        rows.append(v)
    return xp.stack(rows, axis=-2)


def det(m):
    """Determinant of each matrix (closed forms for N <= 3, LU otherwise)."""
    xp = array_module(m)
    n = m.shape[-1]
    if n == 1:
        return m[..., 0, 0]
    if n == 2:
        return m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]
    if n == 3:
        return (m[..., 0, 0] * (m[..., 1, 1] * m[..., 2, 2] - m[..., 1, 2] * m[..., 2, 1])
                - m[..., 0, 1] * (m[..., 1, 0] * m[..., 2, 2] - m[..., 1, 2] * m[..., 2, 0])
                + m[..., 0, 2] * (m[..., 1, 0] * m[..., 2, 1] - m[..., 1, 1] * m[..., 2, 0]))
    return xp.linalg.det(m)
