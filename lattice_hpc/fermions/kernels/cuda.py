"""The fused kernels of ``wilson.cuh`` on the GPU: NVRTC through ``cupy.RawModule``.

The same source as the CPU kernels (:mod:`.cpu`), compiled for the device: one thread per site
(or per pair of sites along x when a parity is asked for), one launch per bulk, face pack and face
add, all on CuPy's current stream, so the kernels are ordered and the face exchange synchronises
the stream before handing buffers to MPI (:mod:`lattice_hpc.comm.faces`).

Untested on a device at the time of writing (no GPU was lent while issue 4 was worked on): the
source is the one the CPU tests check against the reference, and ``tests/test_kernels.py`` runs
the same checks here whenever CuPy finds a GPU.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ...errors import BackendError
from .base import Hopping, PackedBlocks
from .cpu import geometry_arrays, kernel_links
from .source import kernel_source

THREADS = 128


@lru_cache(maxsize=None)
def module(precision: str, recon: int = 18):  # pragma: no cover - GPU only
    import cupy

    return cupy.RawModule(code=kernel_source(precision, recon), options=("-std=c++14",),
                          name_expressions=None)


class CudaHopping(Hopping):  # pragma: no cover - GPU only
    """The fused kernels on CuPy arrays."""

    name = "cuda"

    def __init__(self, op):
        super().__init__(op)
        if op.backend.name != "cupy":
            raise BackendError("the CUDA kernels take CuPy arrays: use backend 'cupy'")
        import cupy

        self.cp = cupy
        mod = module(op.backend.precision, op.recon)
        self.k_bulk = mod.get_function("dslash_bulk")
        self.k_pack = mod.get_function("pack_face")
        self.k_face = mod.get_function("face_add")
        self.real = op.backend.real
        self.gauge = kernel_links(op, cupy)
        self.geom, self.bc = geometry_arrays(op, cupy)
        self.V = self.lattice.local_volume
        self.null = cupy.zeros(1, dtype=op.dtype)  # stands for an absent block array
        self.packed = PackedBlocks(op, cupy)

    def _launch(self, kernel, n, args):
        blocks = (int(n) + THREADS - 1) // THREADS
        kernel((blocks,), (THREADS,), args)

    def pack(self, psi, mu, side, parity, dagger):
        n = self.V // self.lattice.local_dims[mu]
        buf = self.cp.empty((n, 2, 3), dtype=self.op.dtype)
        self._launch(self.k_pack, n, (buf, psi, self.gauge, self.geom, np.int32(mu), np.int32(side),
                                      np.int32(-1 if parity is None else parity),
                                      np.int32(dagger), np.int64(n)))
        return buf

    def bulk(self, psi, chi, alpha, B, beta, C, dagger, parity):
        B, C = self.packed(B), self.packed(C)
        out = self.cp.empty_like(psi)
        n = self.V if parity is None else self.V // 2
        self._launch(self.k_bulk, n, (
            out, psi, chi, self.gauge, self.null if B is None else B, self.null if C is None else C,
            self.geom, self.bc, np.int32(-1 if parity is None else parity), np.int32(dagger),
            self.real(alpha), self.real(beta), np.int32(B is not None), np.int32(C is not None),
            np.int64(n)))
        return out

    def face_add(self, out, buf, mu, side, C, beta, dagger, parity):
        n = self.V // self.lattice.local_dims[mu]
        buf = self.cp.ascontiguousarray(buf)
        C = self.packed(C)
        self._launch(self.k_face, n, (
            out, buf, self.gauge, self.null if C is None else C, self.geom, self.bc, np.int32(mu),
            np.int32(side), np.int32(-1 if parity is None else parity), np.int32(dagger),
            self.real(beta), np.int32(C is not None), np.int64(n)))

