"""The fused kernels of ``wilson.cuh`` compiled for the CPU with the C++ compiler, through ctypes
(built and cached by :func:`lattice_hpc.compiled.shared_library`: ``$CXX``, ``$LATTICE_HPC_CACHE``,
``$OMP_NUM_THREADS``).
"""

from __future__ import annotations

import ctypes

import numpy as np

from ...compiled import shared_library
from ...errors import BackendError
from .base import Hopping, PackedBlocks
from .source import kernel_source

_P, _I, _L = ctypes.c_void_p, ctypes.c_int, ctypes.c_long


def library(precision: str, recon: int = 18) -> ctypes.CDLL:
    """The compiled kernels for ``precision`` and link storage ``recon`` (compiled on first use)."""
    lib = shared_library(kernel_source(precision, recon), f"wilson_{precision}_r{recon}")
    real = ctypes.c_double if precision == "double" else ctypes.c_float
    for f in (lib.dslash_bulk, lib.dslash_bulk_items):
        f.argtypes = [_P] * 8 + [_I, _I, real, real, _I, _I, _L]
    lib.pack_face.argtypes = [_P] * 4 + [_I, _I, _I, _I, _L]
    lib.face_add.argtypes = [_P] * 6 + [_I, _I, _I, _I, real, _I, _L]
    for f in (lib.dslash_bulk, lib.dslash_bulk_items, lib.pack_face, lib.face_add):
        f.restype = None
    return lib


def _ptr(a) -> int | None:
    return None if a is None else a.ctypes.data


class CompiledHopping(Hopping):
    """The fused kernels on host arrays (NumPy), one call per bulk / face / pack.

    ``bulk_kernel`` is the library's ``dslash_bulk`` (the CPU's vectorised body); the tests set it
    to ``dslash_bulk_items``, the GPU's per-work-item body compiled for the CPU, to check that one
    against the reference where there is no GPU.
    """

    name = "compiled"

    def __init__(self, op):
        super().__init__(op)
        if op.backend.name != "numpy":
            raise BackendError("the compiled CPU kernels take NumPy arrays: use kernel='cuda' on CuPy")
        self.lib = library(op.backend.precision, op.recon)
        self.bulk_kernel = self.lib.dslash_bulk
        self.real = op.backend.real
        lat = self.lattice
        self.gauge = kernel_links(op, np)
        self.geom, self.bc = geometry_arrays(op, np)
        self.V = lat.local_volume
        self.packed = PackedBlocks(op, np)

    def _check(self, a):
        if a.dtype != self.op.dtype or not a.flags.c_contiguous:
            raise TypeError(f"kernel input must be C-contiguous {self.op.dtype}, got {a.dtype}")
        return a

    def pack(self, psi, mu, side, parity, dagger):
        n = self.V // self.lattice.local_dims[mu]
        buf = np.empty((n, 2, 3), dtype=self.op.dtype)
        self.lib.pack_face(buf.ctypes.data, self._check(psi).ctypes.data, self.gauge.ctypes.data,
                           self.geom.ctypes.data, mu, side, -1 if parity is None else parity,
                           int(dagger), n)
        return buf

    def bulk(self, psi, chi, alpha, B, beta, C, dagger, parity):
        B, C = self.packed(B), self.packed(C)
        out = np.empty_like(psi)
        n = self.V if parity is None else self.V // 2
        self.bulk_kernel(out.ctypes.data, self._check(psi).ctypes.data,
                         self._check(chi).ctypes.data, self.gauge.ctypes.data, _ptr(B), _ptr(C),
                         self.geom.ctypes.data, self.bc.ctypes.data,
                         -1 if parity is None else parity, int(dagger), alpha, beta,
                         int(B is not None), int(C is not None), n)
        return out

    def face_add(self, out, buf, mu, side, C, beta, dagger, parity):
        n = self.V // self.lattice.local_dims[mu]
        buf = np.ascontiguousarray(buf)
        C = self.packed(C)
        self.lib.face_add(out.ctypes.data, buf.ctypes.data, self.gauge.ctypes.data, _ptr(C),
                          self.geom.ctypes.data, self.bc.ctypes.data, mu, side,
                          -1 if parity is None else parity, int(dagger), beta,
                          int(C is not None), n)


def kernel_links(op, xp):
    """The links as the kernels read them: ``(4, *local, 3, 3)``, or ``(4, *local, 2, 3)`` (the
    first two rows) for ``recon=12``."""
    rows = 3 if op.recon == 18 else 2
    return xp.ascontiguousarray(xp.stack([u[..., :rows, :] for u in op.links]))


def geometry_arrays(op, xp):
    """``geom`` (int32: local dims, partitioned / upper / lower boundary masks, origin parity) and
    ``bc`` (real: re, im of each direction's boundary phase) as the kernels read them."""
    lat = op.lattice
    part = sum(1 << mu for mu in range(lat.ndim) if lat.grid.dims[mu] > 1)
    upper = sum(1 << mu for mu in range(lat.ndim) if op.upper_boundary[mu])
    lower = sum(1 << mu for mu in range(lat.ndim) if op.lower_boundary[mu])
    geom = np.array(list(lat.local_dims) + [part, upper, lower, sum(lat.origin) % 2], dtype=np.int32)
    bc = np.array([[complex(b).real, complex(b).imag] for b in op.bc], dtype=op.backend.real).ravel()
    return xp.asarray(geom), xp.asarray(bc)
